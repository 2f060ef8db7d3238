package render

import (
	"fmt"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// ClusterNetworkPolicy tiers are chains the packet walks in order, in the chain of the pod it
// judges (the destination for ingress, the source for egress):
//
//	adm-in-x/a:  <the pod may reach itself>
//	             jump cnp-in-<admin policy 1>        (by priority, then name)
//	             jump cnp-in-<admin policy 2>
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

// adminChain writes the chain of a pod's Admin tier in one direction and returns its name.
func (s *script) adminChain(pod *ruleset.Target, d direction) string {
	name := adminChainName(pod, d)
	s.ownAddressRules(name, d, pod.IPs)
	for _, p := range adminOf(pod, d) {
		s.rule(name, "jump "+clusterChainName(d, p))
	}
	s.rule(name, "goto "+podChainName(pod, d))
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
