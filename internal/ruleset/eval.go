package ruleset

import (
	"fmt"
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

// Allows reports whether the node lets the flow through (Explain(f).Allowed). It is the
// reference the semantics tests check the translator against.
func (rs *RuleSet) Allows(f Flow) bool { return rs.Explain(f).Allowed }

// Verdict is how a node judges a flow, and why.
type Verdict struct {
	Allowed bool
	// Closed is the address the node's edges close (an address of the node's pod ranges that
	// no known pod owns), when one end is such an address.
	Closed netip.Addr
	// Self is true when the flow goes from an address to itself: a pod may always reach itself.
	Self bool
	// Sides are the isolated local ends the flow must pass, egress (the source) first, then
	// ingress (the destination): one per isolated claimant of the address.
	Sides []Side
	// Audits are the local ends whose policies in audit mode (Policy.Audit) judge the flow,
	// in the same order: where the end is not isolated in the direction (then an Audit side
	// that does not allow means "would drop"), or where its isolating policies refuse the flow
	// (then one that allows means "would allow"); the destination's only when the source's
	// chains let the flow out. They never change Allowed.
	Audits []Side
}

// Side is one local end of a flow and how one tier judged it there: the NetworkPolicies that
// isolate it (Tier empty), or a ClusterNetworkPolicy rule that matched (Tier set).
type Side struct {
	Egress bool
	// Audit is true for a side of Verdict.Audits: Policies are in audit mode.
	Audit bool
	Addr  netip.Addr
	Pod   string // "namespace/name"
	// Tier is AdminTier or BaselineTier when a ClusterNetworkPolicy rule of that tier judged the
	// flow: Matches holds that one rule; Allowed is false for Deny, true for Accept and Pass (a
	// Pass in the Admin tier hands the flow to NetworkPolicy, which judges it in the next Side).
	Tier Tier
	// ToNode is true for the egress of a local pod to this node's own addresses (the input
	// hook), which only the tiers judge.
	ToNode bool
	// Policies isolate the pod in this direction; one of their rules must allow the flow.
	Policies []PolicyKey
	Allowed  bool
	// Matches are the rules that allow the flow.
	Matches []RuleMatch
	// NearMisses are, when no rule allows the flow, the rules whose peer or port matches (but
	// not both).
	NearMisses []RuleMatch
}

// RuleMatch is one rule of a policy as it applies to a flow.
type RuleMatch struct {
	Policy PolicyKey
	Index  int
	// Peer is what matched the flow's far end ("any peer", a range or an address); empty when
	// it did not.
	Peer string
	// Port is what matched the flow's protocol and port ("any port", "tcp/80", "tcp/8000-8080",
	// "udp (every port)", "named port tcp/8443 at 10.0.1.1"); empty when it did not.
	Port string
	// NamedPort is true when Port is a named port resolved at the destination.
	NamedPort bool
	// ClusterPolicy names the ClusterNetworkPolicy of the rule, with its Action and rule Name;
	// empty for a NetworkPolicy rule (Policy).
	ClusterPolicy string
	Action        Action
	Name          string
}

// Explain judges the flow as the rendered datapath does (see package render): an address of the
// node's pod ranges that no known pod owns is closed; a pod may always reach itself; a local
// source isolated for egress must be allowed by one of its egress policies, and a local
// destination isolated for ingress by one of its ingress policies. An address several local pods
// claim (see Claim) must be allowed by one policy of every claimant isolated in the direction.
// Policies in audit mode only report (Verdict.Audits); a claimed address has none.
// (Forged sources are not modelled: a Flow has no interface.)
func (rs *RuleSet) Explain(f Flow) Verdict {
	switch {
	case rs.Edges.Closed(f.Src):
		return Verdict{Closed: f.Src}
	case rs.Edges.Closed(f.Dst):
		return Verdict{Closed: f.Dst}
	case f.Src == f.Dst:
		return Verdict{Allowed: true, Self: true}
	}
	policies := make(map[PolicyKey]*Policy, len(rs.Policies))
	for i := range rs.Policies {
		policies[rs.Policies[i].Key] = &rs.Policies[i]
	}
	var cluster map[string]*ClusterPolicy
	if len(rs.ClusterPolicies) > 0 {
		cluster = make(map[string]*ClusterPolicy, len(rs.ClusterPolicies))
		for i := range rs.ClusterPolicies {
			cluster[rs.ClusterPolicies[i].Name] = &rs.ClusterPolicies[i]
		}
	}
	// Traffic from a local pod to this node's own addresses is policed by the tiers only.
	_, toNode := slices.BinarySearchFunc(rs.NodeAddrs, f.Dst, netip.Addr.Compare)
	v := Verdict{Allowed: true}
	for _, egress := range []bool{true, false} {
		passed := v.Allowed // the flow got past the source's chains (always true for egress)
		addr := f.Dst
		if egress {
			addr = f.Src
		}
		for i := range rs.Targets {
			p := &rs.Targets[i]
			keys, audit := p.IngressPolicies, p.AuditIngress
			if egress {
				keys, audit = p.EgressPolicies, p.AuditEgress
			}
			if !slices.Contains(p.IPs, addr) {
				continue
			}
			pod := p.Namespace + "/" + p.Name
			admin, baseline := p.AdminIngress, p.BaselineIngress
			if egress {
				admin, baseline = p.AdminEgress, p.BaselineEgress
			}
			// The Admin tier first: Accept and Deny decide, Pass hands over to NetworkPolicy.
			if s, ok := judgeTier(egress, addr, pod, AdminTier, admin, cluster, f); ok {
				s.ToNode = egress && toNode
				v.Allowed = v.Allowed && s.Allowed
				v.Sides = append(v.Sides, s)
				if s.Matches[0].Action != Pass {
					continue
				}
			}
			isolated := len(keys) > 0
			// On the way to this node's own addresses (the input hook) NetworkPolicy always
			// allows (its isolation still keeps the Baseline tier out) and audits nothing.
			ownNode := egress && toNode
			var s Side
			if isolated && !ownNode {
				s = judge(egress, addr, pod, keys, policies, f)
				v.Allowed = v.Allowed && s.Allowed
				v.Sides = append(v.Sides, s)
			}
			// Audit policies are consulted where the enforced ones leave the flow undecided by
			// isolation (the pod is not isolated) or refuse it (would they allow it?), on a flow
			// that reaches the pod's chains at all: one refused on the way out never does.
			if len(audit) > 0 && passed && !ownNode && (!isolated || !s.Allowed) {
				a := judge(egress, addr, pod, audit, policies, f)
				a.Audit = true
				v.Audits = append(v.Audits, a)
			}
			// The Baseline tier judges only what NetworkPolicy does not isolate; a Pass there
			// hands over to the default, which allows.
			if !isolated {
				if s, ok := judgeTier(egress, addr, pod, BaselineTier, baseline, cluster, f); ok {
					s.ToNode = ownNode
					v.Allowed = v.Allowed && s.Allowed
					v.Sides = append(v.Sides, s)
				}
			}
		}
		for i := range rs.Claims {
			c := &rs.Claims[i]
			claimants := c.Ingress
			if egress {
				claimants = c.Egress
			}
			if c.Addr == addr && !(egress && toNode) {
				for _, cl := range claimants {
					s := judge(egress, addr, cl.Pod, cl.Policies, policies, f)
					v.Allowed = v.Allowed && s.Allowed
					v.Sides = append(v.Sides, s)
				}
			}
		}
	}
	return v
}

// judgeTier evaluates the ClusterNetworkPolicies of one tier that select one end, in order:
// the first rule that matches the flow decides. ok is false when none matches.
func judgeTier(egress bool, addr netip.Addr, pod string, tier Tier, names []string, cluster map[string]*ClusterPolicy, f Flow) (Side, bool) {
	for _, name := range names {
		p := cluster[name]
		if p == nil {
			continue
		}
		rules, peer := p.Ingress, f.Src
		if egress {
			rules, peer = p.Egress, f.Dst
		}
		for i := range rules {
			r := &rules[i]
			m := r.match(peer, f)
			if m.Peer == "" || m.Port == "" {
				continue
			}
			m.Index, m.ClusterPolicy, m.Action, m.Name = r.Index, name, r.Action, r.Name
			return Side{Egress: egress, Addr: addr, Pod: pod, Tier: tier, Allowed: r.Action != Deny, Matches: []RuleMatch{m}}, true
		}
	}
	return Side{}, false
}

// judge evaluates the rules of the policies isolating one end.
func judge(egress bool, addr netip.Addr, pod string, keys []PolicyKey, policies map[PolicyKey]*Policy, f Flow) Side {
	s := Side{Egress: egress, Addr: addr, Pod: pod, Policies: keys}
	for _, k := range keys {
		p := policies[k]
		if p == nil {
			continue // an unknown policy allows nothing
		}
		rules, peer := p.Ingress, f.Src
		if egress {
			rules, peer = p.Egress, f.Dst
		}
		for i := range rules {
			m := rules[i].match(peer, f)
			m.Policy, m.Index = k, rules[i].Index
			switch {
			case m.Peer != "" && m.Port != "":
				s.Matches = append(s.Matches, m)
			case m.Peer != "" || m.Port != "":
				s.NearMisses = append(s.NearMisses, m)
			}
		}
	}
	s.Allowed = len(s.Matches) > 0
	if s.Allowed {
		s.NearMisses = nil
	}
	return s
}

// match says what of the rule matches the flow whose far end is peer.
func (r *Rule) match(peer netip.Addr, f Flow) RuleMatch {
	var m RuleMatch
	if r.AnyPeer {
		m.Peer = "any peer"
	} else {
		for pr := range r.Peers.Ranges(peer.Is4()) {
			if !peer.Less(pr.First) && !pr.Last.Less(peer) {
				m.Peer = pr.String()
				break
			}
		}
	}
	if r.AnyPort {
		m.Port = "any port"
		return m
	}
	for _, pr := range r.Ports {
		if pr.Protocol == f.Protocol && (pr.First == 0 || (pr.First <= f.Port && f.Port <= pr.Last)) {
			m.Port = pr.String()
			return m
		}
	}
	if slices.Contains(r.NamedPorts, Endpoint{Addr: f.Dst, Protocol: f.Protocol, Port: f.Port}) {
		m.Port = fmt.Sprintf("named port %s/%d at %s", f.Protocol, f.Port, f.Dst)
		m.NamedPort = true
	}
	return m
}

// String renders the range as an address, a prefix when it is exactly one, or first-last (as
// nft writes an interval-set element).
func (r AddrRange) String() string { return string(r.AppendTo(nil)) }

// AppendTo appends the String form to b.
func (r AddrRange) AppendTo(b []byte) []byte {
	if r.First == r.Last {
		return r.First.AppendTo(b)
	}
	if p, ok := r.Prefix(); ok {
		return p.AppendTo(b)
	}
	b = r.First.AppendTo(b)
	b = append(b, '-')
	return r.Last.AppendTo(b)
}

// String renders the port entry as protocol/port, protocol/first-last, or "protocol (every
// port)".
func (p PortRange) String() string {
	switch {
	case p.First == 0:
		return string(p.Protocol) + " (every port)"
	case p.First == p.Last:
		return fmt.Sprintf("%s/%d", p.Protocol, p.First)
	}
	return fmt.Sprintf("%s/%d-%d", p.Protocol, p.First, p.Last)
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
