// Package ruleset holds the node's rule set: the plain data that the translator produces from
// Kubernetes objects and the renderer turns into an nft script. It has no behaviour beyond small
// helpers for building canonical address sets, so both stages can be tested on their own.
package ruleset

import (
	"cmp"
	"net/netip"
	"slices"
)

// RuleSet is everything one node enforces. All slices are sorted (see the field comments), so the
// same cluster state always yields an equal RuleSet whatever order the objects arrived in.
type RuleSet struct {
	// Targets are the node's local pods that at least one policy isolates (for ingress, egress or
	// both) or audits, or that a ClusterNetworkPolicy selects, sorted by Namespace, then Name.
	// Pods no policy selects are not listed: their traffic is not policed.
	Targets []Target
	// Policies are the NetworkPolicies that select at least one of the Targets, sorted by Namespace,
	// then Name.
	Policies []Policy
	// Edges closes what no policy is asked about: addresses of this node's pod ranges that no
	// known pod owns.
	Edges Edges
	// Claims are the local addresses that more than one live local pod claims, sorted by Addr.
	// Such an address is listed here and in none of the Targets' IPs: it is enforced with the
	// stricter result of its claimants (see Claim).
	Claims []Claim
	// Local lists the addresses of every live local pod, isolated or not, sorted by Addr, each
	// with its owner (claimed addresses once, with their claimants). The epochs of established
	// flows are kept per local address (package epoch).
	Local []LocalAddr
	// ClusterPolicies are the ClusterNetworkPolicies that have a subject among the Targets, in
	// evaluation order: the Admin tier first, then the Baseline tier; within a tier by ascending
	// priority, then by name (the API leaves the order within one priority to the implementation).
	ClusterPolicies []ClusterPolicy
	// NodeAddrs are this node's own addresses (its Node's status.addresses), sorted. A local
	// pod's traffic to them takes the input hook, where NetworkPolicy never polices it (the pod's
	// own node is always allowed) and only the ClusterNetworkPolicy tiers of the pod's egress
	// judge it (a nodes or networks peer can name the node).
	NodeAddrs []netip.Addr
}

// Tier is the tier of a ClusterNetworkPolicy. The Admin tier is consulted before NetworkPolicy,
// the Baseline tier after it (only for traffic no NetworkPolicy isolates).
type Tier string

const (
	AdminTier    Tier = "Admin"
	BaselineTier Tier = "Baseline"
)

// Action is what a ClusterNetworkPolicy rule does with the traffic it matches.
type Action string

const (
	// Accept ends the evaluation of the direction and allows (an allowed egress still needs the
	// destination's ingress).
	Accept Action = "Accept"
	// Deny ends the evaluation and drops.
	Deny Action = "Deny"
	// Pass skips the rest of the tier: from the Admin tier to NetworkPolicy, from the Baseline
	// tier to the default (allow).
	Pass Action = "Pass"
)

// ClusterPolicy is one ClusterNetworkPolicy as it applies to this node's pods.
type ClusterPolicy struct {
	Name     string
	Tier     Tier
	Priority int32
	// Ingress holds the policy's ingress rules in the policy's order; a policy with none does
	// not affect ingress.
	Ingress []ClusterRule
	// Egress is the same for egress.
	Egress []ClusterRule
}

// Key returns the key naming the policy's sets, counters and rules where a NetworkPolicy's key
// would: no namespace (a NetworkPolicy's key always has one), the name.
func (p *ClusterPolicy) Key() PolicyKey { return PolicyKey{Name: p.Name} }

// ClusterRule is one rule of a ClusterNetworkPolicy: Action for the traffic that Rule matches.
// Rule has the same meaning as in a NetworkPolicy (peers, numeric and named ports), except that
// AnyPeer is only set for a rule that fails closed (see translate).
type ClusterRule struct {
	Rule
	Action Action
	// Name is the rule's name in the policy, possibly empty.
	Name string
}

// LocalAddr is an address a live local pod owns.
type LocalAddr struct {
	Addr netip.Addr
	// Pod is the owner, "namespace/name"; the claimants joined by "," when several claim it.
	Pod string
}

// Claim is a local address that several live local pods claim, a broken cluster state that the
// translator reports. It is enforced with the stricter result of its claimants: it is isolated
// for a direction if any claimant is, and a packet to it (ingress) or from it (egress) must then
// be allowed by at least one policy of every claimant isolated for that direction (AND across
// claimants, OR within one claimant's policies). (In peer sets and named ports, an address claimed
// by several pods anywhere in the cluster counts only when every claimant agrees; that is
// resolved by the translator and needs no data here.) A claimant that ClusterNetworkPolicies
// select in a direction is listed there with no policies: it allows nothing new.
type Claim struct {
	Addr netip.Addr
	// Claimants are the local pods claiming Addr, "namespace/name", sorted; at least two.
	Claimants []string
	// Ingress lists the claimants isolated for ingress, in Claimants order, each with its ingress
	// policies. Empty means Addr is not isolated for ingress.
	Ingress []ClaimantPolicies
	// Egress is the same for egress.
	Egress []ClaimantPolicies
}

// ClaimantPolicies is one isolated claimant of a Claim and the policies that isolate it in one
// direction.
type ClaimantPolicies struct {
	Pod      string // "namespace/name"
	Policies []PolicyKey
}

// Edges is what the node closes before any policy is consulted.
type Edges struct {
	// PodCIDRs are this node's pod ranges, masked, sorted, without duplicates. Forwarded traffic
	// from or to an address inside them that LocalPods does not list is dropped: an address the
	// agent does not know (yet) belongs to a pod whose policies are not enforced. Empty means no
	// such check.
	PodCIDRs []netip.Prefix
	// LocalPods are the addresses of every live local pod, isolated or not, sorted.
	LocalPods []netip.Addr
}

// Closed reports whether the edges drop traffic from or to a: it lies in a pod range of the node
// and no known local pod owns it.
func (e *Edges) Closed(a netip.Addr) bool {
	for _, p := range e.PodCIDRs {
		if p.Contains(a) {
			_, known := slices.BinarySearchFunc(e.LocalPods, a, netip.Addr.Compare)
			return !known
		}
	}
	return false
}

// PolicyKey names a NetworkPolicy, or a ClusterNetworkPolicy (no Namespace).
type PolicyKey struct {
	Namespace string
	Name      string
}

func (k PolicyKey) String() string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

// Target is a local pod that policies isolate or audit, or ClusterNetworkPolicies select, in at
// least one direction.
type Target struct {
	Namespace string
	Name      string
	// IPs are the addresses the pod owns on this node, sorted (IPv4 before IPv6), less those that
	// another local pod claims too: those are listed in RuleSet.Claims instead, so no address
	// appears twice. IPs may be empty when every address of the pod is claimed by another.
	IPs []netip.Addr
	// IngressPolicies lists the policies that isolate the pod for ingress, sorted. Non-empty means
	// the pod is isolated for ingress: only what one of these policies allows may reach it.
	IngressPolicies []PolicyKey
	// EgressPolicies is the same for egress.
	EgressPolicies []PolicyKey
	// AuditIngress lists the policies in audit mode (Policy.Audit) that select the pod for
	// ingress, sorted. They do not isolate it: the datapath only counts, and logs when LogDrops
	// is set, what they would allow and, when the pod is not isolated otherwise, what they would
	// drop.
	AuditIngress []PolicyKey
	// AuditEgress is the same for egress.
	AuditEgress []PolicyKey
	// LogDrops asks for a log line (NFLOG) for the first packet of each connection the pod's
	// policies drop, or its audit policies would drop.
	LogDrops bool
	// AdminIngress lists the Admin tier ClusterNetworkPolicies that select the pod as a subject
	// and have ingress rules, by name, in evaluation order (RuleSet.ClusterPolicies's order).
	AdminIngress []string
	// AdminEgress is the same for egress.
	AdminEgress []string
	// BaselineIngress lists the Baseline tier ones the same way.
	BaselineIngress []string
	// BaselineEgress is the same for egress.
	BaselineEgress []string
}

// Policy is one NetworkPolicy as it applies to this node's pods. A policy that isolates a
// direction but has no rules in it contributes only the isolation.
type Policy struct {
	Key PolicyKey
	// Ingress holds the policy's ingress rules when it isolates for ingress (policyTypes), in the
	// policy's own order; nil when it does not.
	Ingress []Rule
	// Egress is the same for egress.
	Egress []Rule
	// Audit is true for a policy in audit mode: it isolates nothing, and its rules only count
	// (and log) what they would allow or drop. Such a policy is listed in its pods' AuditIngress
	// and AuditEgress, never in their IngressPolicies or EgressPolicies.
	Audit bool
}

// Rule is one ingress or egress rule of a policy: traffic from (ingress) or to (egress) one of the
// peers, on one of the ports, is allowed.
type Rule struct {
	// Index is the rule's position in the policy's ingress or egress list, for readable names.
	Index int
	// AnyPeer is true when the rule names no peers (from/to absent or empty): every address.
	// When false, only Peers match, and an empty Peers matches nothing.
	AnyPeer bool
	// Peers is the union of the rule's peers: pod addresses and ipBlocks, with excepts already
	// removed from their own ipBlock.
	Peers AddrSet
	// AnyPort is true when the rule names no ports: every port of every protocol, ICMP included.
	// When false, only Ports and NamedPorts match; if both are empty the rule matches nothing.
	AnyPort bool
	// Ports are the numeric port entries, in the rule's order (duplicates removed).
	Ports []PortRange
	// NamedPorts are the rule's named ports resolved on the pods that own them: the address of
	// each owning pod with the protocol and number that the name means on that pod. For ingress
	// the owners are the policy's local target pods; for egress, the destination pods the rule's
	// peers reach, whichever peer matched: the pods a selector peer matches, and the pods owning
	// an address inside an ipBlock peer (at those addresses only). An address no pod owns matches
	// no named port. Sorted, duplicates removed.
	NamedPorts []Endpoint
}

// Protocol is a transport protocol a NetworkPolicy port can name.
type Protocol string

const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// PortRange matches one protocol on an inclusive port range. First == 0 means every port of the
// protocol (a port entry with a protocol and no port).
type PortRange struct {
	Protocol Protocol
	First    uint16
	Last     uint16
}

// Endpoint is an address, protocol and port owned by one pod.
type Endpoint struct {
	Addr     netip.Addr
	Protocol Protocol
	Port     uint16
}

// CompareEndpoints orders endpoints by address, protocol, then port (Rule.NamedPorts's order).
// It compares the protocols only for equal addresses: a rule may resolve a named port on
// thousands of pods.
func CompareEndpoints(a, b Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}
