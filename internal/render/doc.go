// Package render turns a node's rule set into the nft script that replaces the agent's table.
//
// Render is pure and deterministic: the same rule set gives the same bytes. The script is one
// transaction: it creates the table if it is missing, deletes it, and defines it anew, so applying
// it with `nft -f -` swaps the whole ruleset atomically or changes nothing. Objects are defined
// before anything refers to them: chains, then the sets, then the verdict maps, the base chain and
// the rules. Every set and map declares its elements inline (`add set inet T NAME { type ...;
// elements = {` with one element per tab-indented line, then `}; }`); separate `add element`
// commands would make nft 1.0.6 load the elements of every set in the namespace first, which at
// cluster scale doubles the apply's time and nft's peak memory.
//
// # Datapath
//
// Everything lives in one table (`table inet flock-netpol` by default); nothing else is read or
// changed. The main base chain hooks forward at priority filter (0): after Service DNAT at dstnat
// (-100), so policy sees endpoint pod addresses and ports, and before masquerade at srcnat (100),
// so ingress sees the real client address. Traffic to and from the node itself uses the input and
// output hooks, which NetworkPolicy never polices; only when a local pod has ClusterNetworkPolicy
// egress tiers does a second base chain, filter-input, judge that pod's connections to the node
// by those tiers (see cluster.go, which also draws the tier chains).
//
//	filter-forward (base chain, policy accept)
//	  ct state established,related accept       replies and related ICMP of allowed flows
//	  ip saddr vmap @egress-pods-v4             local source isolated for egress?
//	  ip6 saddr vmap @egress-pods-v6              -> jump pod-out-<pod>
//	  jump ingress-dispatch
//
//	pod-out-<pod>: own address accept; jump pol-out-<policy> for each policy; counter drop
//	pol-out-<policy>: one rule per allowed peer/port combination, verdict goto ingress-dispatch
//	ingress-dispatch: ip daddr vmap @ingress-pods-v4; ip6 daddr vmap @ingress-pods-v6; accept
//	pod-in-<pod>: own address accept; jump pol-in-<policy> for each policy; counter drop
//	pol-in-<policy>: one rule per allowed peer/port combination, verdict accept
//	claim-in-<addr>/<pod>: for an address several local pods claim (ruleset.Claim), one chain
//	  per isolating claimant in Claimants order, holding that claimant's policy rules (reusing
//	  the policies' sets) with verdict goto the next claimant's chain, the last one's with the
//	  usual verdict; each ends in counter drop, so a packet must pass every claimant (AND)
//	claim-out-<addr>/<pod>: the same for egress
//
// An allowed egress continues with `goto ingress-dispatch`, so a connection between two pods of
// this node needs both the source's egress and the destination's ingress. ingress-dispatch always
// ends in a verdict, so the goto never falls back into the pod's egress chain. Per-packet work is
// two map lookups plus the rules of the policies that select the pod: peers are named sets
// (interval sets, excepts already cut out) and named ports are `address . protocol . port` sets,
// so the cost does not grow with the number of peers, CIDRs or pods.
package render
