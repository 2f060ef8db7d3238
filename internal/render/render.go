package render

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Options configure the script.
type Options struct {
	// Table is the name of the agent's own table in family inet; empty means DefaultTable.
	Table string
}

// DeleteTable returns the script that removes the table, whether or not it exists (nft 1.0.6 has
// no `destroy`, so the table is added first to make the delete always succeed).
func DeleteTable(table string) []byte {
	return fmt.Appendf(nil, "add table inet %s\ndelete table inet %s\n", table, table)
}

// direction holds what differs between ingress and egress in the rendered chains.
type direction struct {
	name      string // "ingress" or "egress"
	short     string // "in" or "out", for names
	peerField string // the address the peer sets match: the source for ingress, the destination for egress
	selfField string // the pod's own address in the packet's other end
	verdict   string // what an allowed packet does next
}

var (
	ingress = direction{"ingress", "in", "saddr", "saddr", "accept"}
	// An allowed egress still needs the destination's ingress: continue with the ingress dispatch,
	// which always ends in a verdict.
	egress = direction{"egress", "out", "daddr", "daddr", "goto " + ingressDispatchChain}
)

// family is one address family of the inet table.
type family struct {
	suffix   string // "-v4" / "-v6"
	proto    string // "ip" / "ip6"
	addrType string // nft set key type
	is4      bool
}

var families = []family{
	{"-v4", "ip", "ipv4_addr", true},
	{"-v6", "ip6", "ipv6_addr", false},
}

// script accumulates the commands of one transaction, grouped so that every object exists before
// anything refers to it: chains, then sets with their elements, then rules, then the maps that
// jump to the chains, and the hooked base chain last.
type script struct {
	table               string
	chains, sets, rules bytes.Buffer
	maps, base          bytes.Buffer
}

// Render returns the nft script that replaces the table with rs.
func Render(rs ruleset.RuleSet, opts Options) []byte {
	s := &script{table: cmp.Or(opts.Table, DefaultTable)}

	byKey := make(map[ruleset.PolicyKey]*ruleset.Policy, len(rs.Policies))
	for i := range rs.Policies {
		p := &rs.Policies[i]
		byKey[p.Key] = p
		s.policyChain(p, ingress, p.Ingress)
		s.policyChain(p, egress, p.Egress)
	}

	s.chain(ingressDispatchChain, comment("sends traffic to isolated local pods through their ingress chains"))
	var inElems, outElems [2][]string
	for i := range rs.Pods {
		pod := &rs.Pods[i]
		if len(pod.IngressPolicies) > 0 {
			name := s.podChain(pod, ingress, pod.IngressPolicies, byKey)
			addMapElements(&inElems, pod.IPs, name)
		}
		if len(pod.EgressPolicies) > 0 {
			name := s.podChain(pod, egress, pod.EgressPolicies, byKey)
			addMapElements(&outElems, pod.IPs, name)
		}
	}
	s.verdictMap(egressMapV4, families[0], outElems[0], "local pods isolated for egress, by source address")
	s.verdictMap(egressMapV6, families[1], outElems[1], "local pods isolated for egress, by source address")
	s.verdictMap(ingressMapV4, families[0], inElems[0], "local pods isolated for ingress, by destination address")
	s.verdictMap(ingressMapV6, families[1], inElems[1], "local pods isolated for ingress, by destination address")

	s.rule(ingressDispatchChain, "ip daddr vmap @"+ingressMapV4)
	s.rule(ingressDispatchChain, "ip6 daddr vmap @"+ingressMapV6)
	s.rule(ingressDispatchChain, "accept")

	fmt.Fprintf(&s.base, "add chain inet %s %s { type %s hook %s priority %s; policy %s; comment %s; }\n",
		s.table, baseChain.name, baseChain.typ, baseChain.hook, baseChain.priority, baseChain.policy,
		comment("flock-netpol: NetworkPolicy for the pods of this node; %s", digestPlaceholder))
	s.rule(forwardChain, "ct state established,related accept")
	s.rule(forwardChain, "ip saddr vmap @"+egressMapV4)
	s.rule(forwardChain, "ip6 saddr vmap @"+egressMapV6)
	s.rule(forwardChain, "jump "+ingressDispatchChain)

	var out bytes.Buffer
	fmt.Fprintf(&out, "# flock-netpol: %d isolated pods, %d policies. Replaces the whole table in one transaction.\n",
		len(rs.Pods), len(rs.Policies))
	fmt.Fprintf(&out, "add table inet %s\ndelete table inet %s\n", s.table, s.table)
	fmt.Fprintf(&out, "add table inet %s { comment %s; }\n", s.table, comment("managed by flock-netpol; changes are overwritten"))
	for _, part := range []*bytes.Buffer{&s.chains, &s.sets, &s.maps, &s.base, &s.rules} {
		out.Write(part.Bytes())
	}
	return stampDigest(out.Bytes())
}

func (s *script) chain(name, comment string) {
	fmt.Fprintf(&s.chains, "add chain inet %s %s { comment %s; }\n", s.table, name, comment)
}

func (s *script) rule(chain, rule string) {
	fmt.Fprintf(&s.rules, "add rule inet %s %s %s\n", s.table, chain, rule)
}

// set declares a named set and adds its elements; the elements must be non-empty.
func (s *script) set(name, typ, flags, comment string, elems []string) {
	fmt.Fprintf(&s.sets, "add set inet %s %s { type %s;%s comment %s; }\n", s.table, name, typ, flags, comment)
	writeElements(&s.sets, s.table, name, elems)
}

func (s *script) verdictMap(name string, f family, elems []string, why string) {
	fmt.Fprintf(&s.maps, "add map inet %s %s { type %s : verdict; comment %s; }\n", s.table, name, f.addrType, comment("%s", why))
	if len(elems) > 0 {
		writeElements(&s.maps, s.table, name, elems)
	}
}

func writeElements(b *bytes.Buffer, table, name string, elems []string) {
	fmt.Fprintf(b, "add element inet %s %s {", table, name)
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n\t")
		b.WriteString(e)
	}
	b.WriteString("\n}\n")
}

func addMapElements(elems *[2][]string, ips []netip.Addr, chain string) {
	for _, a := range ips {
		i := 0
		if !a.Is4() {
			i = 1
		}
		elems[i] = append(elems[i], a.String()+" : jump "+chain)
	}
}

func policyChainName(d direction, k ruleset.PolicyKey) string {
	return generatedName("pol-"+d.short, k.String(), k.String(), "")
}

// podChain writes the chain of one isolated pod in one direction and returns its name.
func (s *script) podChain(pod *ruleset.Pod, d direction, keys []ruleset.PolicyKey, byKey map[ruleset.PolicyKey]*ruleset.Policy) string {
	id := pod.Namespace + "/" + pod.Name
	name := generatedName("pod-"+d.short, id, id, "")
	s.chain(name, comment("%s of pod %s, isolated by %d policies", d.name, id, len(keys)))

	// A pod can always reach itself, also through a Service address that was DNATed back to it.
	for _, f := range families {
		var own []string
		for _, a := range pod.IPs {
			if a.Is4() == f.is4 {
				own = append(own, a.String())
			}
		}
		if len(own) > 0 {
			s.rule(name, fmt.Sprintf("%s %s %s accept", f.proto, d.selfField, anonSet(own)))
		}
	}
	for _, k := range keys {
		p := byKey[k]
		if p == nil || len(rulesOf(p, d)) == 0 {
			continue // the policy isolates but allows nothing in this direction
		}
		s.rule(name, "jump "+policyChainName(d, k))
	}
	s.rule(name, "counter drop")
	return name
}

func rulesOf(p *ruleset.Policy, d direction) []ruleset.Rule {
	if d == ingress {
		return p.Ingress
	}
	return p.Egress
}

// policyChain writes the chain holding what one policy allows in one direction.
func (s *script) policyChain(p *ruleset.Policy, d direction, rules []ruleset.Rule) {
	if len(rules) == 0 {
		return
	}
	chain := policyChainName(d, p.Key)
	s.chain(chain, comment("%s rules of NetworkPolicy %s", d.name, p.Key))
	for i := range rules {
		s.policyRule(chain, p.Key, d, &rules[i])
	}
}

// policyRule writes one ingress or egress rule: (any peer, or the rule's peer set) and (any port,
// one of the numeric ports, or one of the resolved named ports).
func (s *script) policyRule(chain string, k ruleset.PolicyKey, d direction, r *ruleset.Rule) {
	readable := fmt.Sprintf("%s/%s%d", k, d.short, r.Index)
	identity := fmt.Sprintf("%s/%s/%d", k, d.name, r.Index)
	where := fmt.Sprintf("NetworkPolicy %s %s rule %d", k, d.name, r.Index)

	var portMatches []string
	if r.AnyPort {
		portMatches = []string{""}
	}
	for _, pr := range r.Ports {
		portMatches = append(portMatches, portMatch(pr)+" ")
	}
	if r.AnyPeer {
		// Without peers one rule per port entry covers both families.
		for _, pm := range portMatches {
			s.rule(chain, pm+d.verdict)
		}
	}
	for _, f := range families {
		// Named ports: the destination address (the target pod for ingress, the destination pod
		// for egress) with the protocol and port that the name means on that pod.
		var named []string
		for _, e := range r.NamedPorts {
			if e.Addr.Is4() == f.is4 {
				named = append(named, fmt.Sprintf("%s . %s . %d", e.Addr, e.Protocol, e.Port))
			}
		}
		peerMatch := ""
		if !r.AnyPeer {
			elems := rangeElements(r.Peers, f.is4)
			if len(elems) == 0 || (len(portMatches) == 0 && len(named) == 0) {
				continue // no peer of this family, or no port a peer could use
			}
			name := generatedName("peers", identity, readable, f.suffix)
			s.set(name, f.addrType, " flags interval;", comment("%s: peers", where), elems)
			peerMatch = fmt.Sprintf("%s %s @%s ", f.proto, d.peerField, name)
			for _, pm := range portMatches {
				s.rule(chain, peerMatch+pm+d.verdict)
			}
		}
		if len(named) > 0 {
			name := generatedName("named", identity, readable, f.suffix)
			s.set(name, f.addrType+" . inet_proto . inet_service", "", comment("%s: named ports", where), named)
			s.rule(chain, fmt.Sprintf("%s%s daddr . meta l4proto . th dport @%s %s", peerMatch, f.proto, name, d.verdict))
		}
	}
}

// portMatch renders a numeric port entry: one protocol, all of its ports or an inclusive range.
func portMatch(pr ruleset.PortRange) string {
	switch {
	case pr.First == 0:
		return "meta l4proto " + string(pr.Protocol)
	case pr.First == pr.Last:
		return fmt.Sprintf("%s dport %d", pr.Protocol, pr.First)
	default:
		return fmt.Sprintf("%s dport %d-%d", pr.Protocol, pr.First, pr.Last)
	}
}

// rangeElements renders the set's ranges of one family as interval-set elements: an address, a
// prefix when the range is exactly one, or first-last.
func rangeElements(set ruleset.AddrSet, is4 bool) []string {
	rs := set.V6
	if is4 {
		rs = set.V4
	}
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if r.First == r.Last {
			out = append(out, r.First.String())
		} else if p, ok := r.Prefix(); ok {
			out = append(out, p.String())
		} else {
			out = append(out, r.First.String()+"-"+r.Last.String())
		}
	}
	return out
}

func anonSet(elems []string) string {
	if len(elems) == 1 {
		return elems[0]
	}
	b := []byte("{ ")
	for i, e := range elems {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, e...)
	}
	return string(append(b, " }"...))
}
