package ruleset

import (
	"net/netip"
	"slices"
)

// Flow is a new connection (or the first packet of one) crossing the node.
type Flow struct {
	Src, Dst netip.Addr
	// Protocol is TCP, UDP, SCTP, or any other name (e.g. "icmp"), which only rules without ports
	// allow.
	Protocol Protocol
	Port     uint16
}

// Allows reports whether the node lets the flow through, following the datapath the renderer
// builds (see package render): an address of the node's pod ranges that no known pod owns is
// closed; a local source isolated for egress must be allowed by one of its egress policies, and a
// local destination isolated for ingress by one of its ingress policies; a pod may always reach
// itself. An address several local pods claim (see Claim) must be allowed by one policy of every
// claimant isolated in the direction. (Forged sources are not modelled: a Flow has no interface.) It is the reference the semantics tests check the translator
// against, and a way to explain a verdict without a kernel.
func (rs *RuleSet) Allows(f Flow) bool {
	if rs.Edges.Closed(f.Src) || rs.Edges.Closed(f.Dst) {
		return false
	}
	if f.Src == f.Dst {
		return true
	}
	policies := make(map[PolicyKey]*Policy, len(rs.Policies))
	for i := range rs.Policies {
		policies[rs.Policies[i].Key] = &rs.Policies[i]
	}
	for i := range rs.Targets {
		p := &rs.Targets[i]
		if len(p.EgressPolicies) > 0 && slices.Contains(p.IPs, f.Src) && !anyAllows(p.EgressPolicies, policies, true, f) {
			return false
		}
		if len(p.IngressPolicies) > 0 && slices.Contains(p.IPs, f.Dst) && !anyAllows(p.IngressPolicies, policies, false, f) {
			return false
		}
	}
	for i := range rs.Claims {
		c := &rs.Claims[i]
		if c.Addr == f.Src && !everyAllows(c.Egress, policies, true, f) {
			return false
		}
		if c.Addr == f.Dst && !everyAllows(c.Ingress, policies, false, f) {
			return false
		}
	}
	return true
}

// everyAllows reports whether one policy of every isolated claimant allows the flow (true when no
// claimant is isolated).
func everyAllows(claimants []ClaimantPolicies, policies map[PolicyKey]*Policy, egress bool, f Flow) bool {
	for _, c := range claimants {
		if !anyAllows(c.Policies, policies, egress, f) {
			return false
		}
	}
	return true
}

func anyAllows(keys []PolicyKey, policies map[PolicyKey]*Policy, egress bool, f Flow) bool {
	for _, k := range keys {
		p := policies[k]
		if p == nil {
			continue
		}
		rules, peer := p.Ingress, f.Src
		if egress {
			rules, peer = p.Egress, f.Dst
		}
		for i := range rules {
			if rules[i].matches(peer, f) {
				return true
			}
		}
	}
	return false
}

func (r *Rule) matches(peer netip.Addr, f Flow) bool {
	if !r.AnyPeer && !r.Peers.Contains(peer) {
		return false
	}
	if r.AnyPort {
		return true
	}
	for _, pr := range r.Ports {
		if pr.Protocol == f.Protocol && (pr.First == 0 || (pr.First <= f.Port && f.Port <= pr.Last)) {
			return true
		}
	}
	return slices.Contains(r.NamedPorts, Endpoint{Addr: f.Dst, Protocol: f.Protocol, Port: f.Port})
}

// Contains reports whether a is in the set.
func (s AddrSet) Contains(a netip.Addr) bool {
	for r := range s.Ranges(a.Is4()) {
		if !a.Less(r.First) && !r.Last.Less(a) {
			return true
		}
	}
	return false
}
