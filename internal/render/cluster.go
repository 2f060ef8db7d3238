package render

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// ClusterNetworkPolicy tiers are chains the packet walks in order, in the chain of the pod it
// judges (the destination for ingress, the source for egress):
//
//	adm-in-x/a:  <the pod may reach itself>
//	             jump cnp-in-<admin policy 1>        (by priority, then name; only those that
//	             jump cnp-in-<admin policy 2>         can match the peer: see adminDispatch)
//	             goto pod-in-x/a
//	pod-in-x/a:  jump pol-in-x/p ...                  (NetworkPolicy, unchanged)
//	             counter drop                         (isolated by NetworkPolicy), or
//	             jump cnp-in-<baseline policy> ...    (not isolated)
//	             goto allow
//
// A policy's chain holds its rules in order, each with its action: Accept is the direction's
// allow verdict (for egress, on to the destination's ingress), Deny drops, and Pass in the
// Admin tier skips the tier's other policies by a goto to the pod's NetworkPolicy chain, found
// in a verdict map keyed by the pod's address (the policy chain is shared by every pod it
// selects); Pass in the Baseline tier allows, as the default after it does. Peers and named
// ports are the same kind of named sets as NetworkPolicy rules', so the per-packet cost does not
// grow with the number of peers.

func adminOf(pod *ruleset.Target, d direction) []string {
	if d == ingress {
		return pod.AdminIngress
	}
	return pod.AdminEgress
}

func baselineOf(pod *ruleset.Target, d direction) []string {
	if d == ingress {
		return pod.BaselineIngress
	}
	return pod.BaselineEgress
}

func clusterRulesOf(p *ruleset.ClusterPolicy, d direction) []ruleset.ClusterRule {
	if d == ingress {
		return p.Ingress
	}
	return p.Egress
}

func clusterChainName(d direction, name string) string {
	return generatedName("cnp-"+d.short, name, name, "")
}

func adminChainName(pod *ruleset.Target, d direction) string {
	id := podID(pod)
	return generatedName("adm-"+d.short, id, id, "")
}

// passMapName names the map of the chains an Admin tier Pass continues in: by the pod's address
// on its side of the connection.
func passMapName(d direction, f family) string { return "pass-" + d.short + f.suffix }

// hasAdminTier reports whether the rule set holds an Admin tier policy (then the pass maps exist).
func hasAdminTier(rs *ruleset.RuleSet) bool {
	for i := range rs.ClusterPolicies {
		if rs.ClusterPolicies[i].Tier == ruleset.AdminTier {
			return true
		}
	}
	return false
}

// adminChain writes the chain of a pod's Admin tier in one direction and returns its name: the
// pod's own address, the dispatch by the peer's address, the policies every packet walks, then
// NetworkPolicy.
func (s *script) adminChain(pod *ruleset.Target, d direction) string {
	name := adminChainName(pod, d)
	s.ownAddressRules(name, d, pod.IPs)
	ad := s.adminDispatch(adminOf(pod, d), d)
	for fi, f := range families {
		if ad.maps[fi] != "" {
			s.rule(name, fmt.Sprintf("%s %s saddr vmap @%s", d.peer, f.proto, ad.maps[fi]))
		}
	}
	for i, p := range adminOf(pod, d) {
		switch v4, v6 := ad.always[0][i], ad.always[1][i]; {
		case v4 && v6:
			s.rule(name, "jump "+clusterChainName(d, p))
		case v4, v6:
			f := families[0]
			if v6 {
				f = families[1]
			}
			s.rule(name, fmt.Sprintf("meta nfproto %s jump %s", f.nfproto, clusterChainName(d, p)))
		}
	}
	s.rule(name, "goto "+podChainName(pod, d))
	return name
}

// tierDispatch is how the pods that share one ordered list of Admin tier policies, in one
// direction, reach only the policies that can match a packet. The tier can hold many policies
// that select the same pods, and walking all of them would cost every new connection a jump and a
// set lookup per policy (measured: about 0.09 % of the new-connection rate per policy on the path).
//
//	adm-in-x/a:      <the pod may reach itself>
//	                 ct original ip saddr vmap @admm-in-<list>-v4   (peer address : jump admc-in-<class>)
//	                 jump cnp-in-<a policy every packet walks>
//	                 goto pod-in-x/a
//	admc-in-<class>: jump cnp-in-<policy 1>; jump cnp-in-<policy 3>; ...
//
// Per family, a policy is walked by every packet when one of its rules has no peers (AnyPeer) or
// its peers hold more than maxDispatchPeers addresses (a wide networks CIDR, a large
// namespace); otherwise it is dispatched: the map, keyed
// by the peer's address (the conntrack field the rules match), jumps to the chain of the
// address's class, the policies of the list whose peers hold the address together with those
// every packet walks, in the list's order. A class chain that returns decided nothing, so the
// policies walked again after the map decide nothing either: the walk stays exact, and a policy
// is skipped only for an address none of its rules' peers holds. The maps are hash maps: a hash
// set works the moment its transaction commits, where an interval set matches nothing for a few
// milliseconds (see addressesOnly), which here would skip a Deny; so they spell out addresses.
type tierDispatch struct {
	maps   [2]string // per family: the map from a peer address to its class chain; "" when empty
	always [2][]bool // per family, per policy of the list: walked by every packet of the family
}

// adminDispatch returns the dispatch of a list of Admin policies in one direction, declaring
// its class chains and maps the first time the list is seen. It must first be called while the
// chains are declared (before any set): see Render.
func (s *script) adminDispatch(list []string, d direction) *tierDispatch {
	id := d.short + "\x00" + strings.Join(list, "\x00")
	if ad := s.dispatches[id]; ad != nil {
		return ad
	}
	ad := &tierDispatch{}
	if s.dispatches == nil {
		s.dispatches = map[string]*tierDispatch{}
	}
	s.dispatches[id] = ad
	for fi, f := range families {
		var elems []string
		ad.always[fi], elems = s.adminClasses(list, d, f)
		if len(elems) > 0 {
			ad.maps[fi] = generatedName("admm-"+d.short, id, shortList(list), f.suffix)
			s.verdictMap(ad.maps[fi], f, elems, fmt.Sprintf("%s Admin tier: the policies a peer address can match", d.name))
		}
	}
	return ad
}

// adminClasses sorts the policies of list into "always" and dispatched ones for family f and
// returns the dispatch map's elements: each peer address of a dispatched policy, in address
// order, with a jump to its class chain (declared here when new).
func (s *script) adminClasses(list []string, d direction, f family) (always []bool, elems []string) {
	var members []classMember
	always = make([]bool, len(list))
	for i, name := range list {
		rules := clusterRulesOf(s.clusterPolicies[name], d)
		for j := range rules {
			always[i] = always[i] || rules[j].AnyPeer
		}
		always[i] = always[i] || !spellPeers(&members, rules, i, f)
	}
	slices.SortFunc(members, func(a, b classMember) int { return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.policy, b.policy)) })
	members = slices.Compact(members)

	var alwaysIdx []int
	for i := range list {
		if always[i] {
			alwaysIdx = append(alwaysIdx, i)
		}
	}
	var class, last []int // the policies of the current address's class, and of the previous one
	chain := ""
	for start := 0; start < len(members); {
		end := start + 1
		for end < len(members) && members[end].addr == members[start].addr {
			end++
		}
		// The address's policies and the "always" ones, both in list order, merged.
		class = class[:0]
		m, a := start, 0
		for m < end || a < len(alwaysIdx) {
			if a == len(alwaysIdx) || (m < end && members[m].policy < alwaysIdx[a]) {
				class = append(class, members[m].policy)
				m++
			} else {
				class = append(class, alwaysIdx[a])
				a++
			}
		}
		if chain == "" || !slices.Equal(class, last) { // neighbouring addresses often share a class
			last = append(last[:0], class...)
			chain = s.adminClassChain(list, class, d)
		}
		elems = append(elems, members[start].addr.String()+" : jump "+chain)
		start = end
	}
	return always, elems
}

// shortList is the readable part of a name for a list of policies: the first, and how many more.
// Every element of a dispatch map names its class chain, so the names are kept short.
func shortList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return fmt.Sprintf("%s+%d", names[0], len(names)-1)
}

// maxDispatchPeers is the most addresses one policy's peers may hold, per family, for the policy
// to be dispatched; a policy with more is walked by every packet of the family. Its one set
// lookup per packet costs less than a map as large as its peer set (at 50,000 peers the map
// made the script 2.6 times as large and rendering 5 times as slow).
const maxDispatchPeers = 1024

// spellPeers appends each peer address of family f of the rules of policy i to members, and
// reports false, with members as it was, when there are more than maxDispatchPeers.
func spellPeers(members *[]classMember, rules []ruleset.ClusterRule, i int, f family) bool {
	start := len(*members)
	for j := range rules {
		for pr := range rules[j].Peers.Ranges(f.is4) {
			for a := pr.First; ; a = a.Next() {
				if len(*members)-start == maxDispatchPeers {
					*members = (*members)[:start]
					return false
				}
				*members = append(*members, classMember{a, i})
				if a == pr.Last {
					break
				}
			}
		}
	}
	return true
}

// classMember is a peer address of the policy at an index of a list of Admin policies.
type classMember struct {
	addr   netip.Addr
	policy int
}

// adminClassChain returns the chain that walks the given policies of list in order, declaring
// and writing it the first time.
func (s *script) adminClassChain(list []string, class []int, d direction) string {
	names := make([]string, len(class))
	for k, i := range class {
		names[k] = list[i]
	}
	name := generatedName("admc-"+d.short, strings.Join(names, "\x00"), shortList(names), "")
	if s.classChains[name] {
		return name
	}
	if s.classChains == nil {
		s.classChains = map[string]bool{}
	}
	s.classChains[name] = true
	s.chain(name, comment("%s Admin tier: %d policies whose peers can match the address", d.name, len(names)))
	for _, p := range names {
		s.rule(name, "jump "+clusterChainName(d, p))
	}
	return name
}

// clusterPolicyChain declares the sets of one ClusterNetworkPolicy's rules in one direction and
// writes its chain.
func (s *script) clusterPolicyChain(p *ruleset.ClusterPolicy, d direction) {
	rules := clusterRulesOf(p, d)
	key := p.Key()
	for i := range rules {
		r := &rules[i]
		sets := s.policySets("ClusterNetworkPolicy", key, d, &r.Rule)
		s.policyRules(clusterChainName(d, p.Name), s.clusterVerdicts(p.Tier, r.Action, d), &r.Rule, sets, false)
	}
}

// clusterVerdicts is what a rule's action does, per family.
func (s *script) clusterVerdicts(tier ruleset.Tier, a ruleset.Action, d direction) verdicts {
	switch {
	case a == ruleset.Deny:
		return both("drop")
	case a == ruleset.Pass && tier == ruleset.AdminTier:
		// The pod's own address on its side of the connection: the destination (after DNAT)
		// for ingress, the source for egress.
		side := "ct reply"
		if d == egress {
			side = "ct original"
		}
		var v verdicts
		for fi, f := range families {
			v[fi] = fmt.Sprintf("%s %s saddr vmap @%s", side, f.proto, passMapName(d, f))
		}
		return v
	}
	return both(s.verdict(d)) // Accept, or a Baseline Pass: the default after the tier allows
}

// clusterRuleCounters declares the counters of a ClusterNetworkPolicy's rules in one direction.
func (s *script) clusterRuleCounters(p *ruleset.ClusterPolicy, d direction) {
	key := p.Key()
	for _, r := range clusterRulesOf(p, d) {
		s.counter(Counter{Name: ruleCounterName(key, d, r.Index), Kind: CounterRule, Object: p.Name,
			Egress: d == egress, Rule: r.Index, Tier: string(p.Tier), Action: string(r.Action)},
			comment("%s %s rule %d (%s): connections", p.Name, d.name, r.Index, r.Action))
	}
}
