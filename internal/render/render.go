package render

import (
	"bytes"
	"cmp"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Options configure the script.
type Options struct {
	// Table is the name of the agent's own table in family inet; empty means DefaultTable.
	Table string
	// AntiSpoofing drops every forwarded packet whose source address fails a strict
	// reverse-path check (the route back to the source leaves through another interface than
	// the one the packet came in on) before any policy sees it: a pod cannot send with an
	// address that is not its own. Turn it off only for nodes with asymmetric routing, where
	// legitimate traffic arrives on an interface other than the route back.
	AntiSpoofing bool
	// Established says what happens to established and related packets; the zero value is
	// Revalidate.
	Established Established
	// Epochs are the stamps that Revalidate trusts (package epoch). The zero value is
	// epoch.Start(1, rs): only flows stamped by this very table are trusted.
	Epochs epoch.State
	// LogGroup is the NFLOG group that drop logs go to (for the pods whose Target.LogDrops is
	// set), and LogRate the most lines per second the node sends it, with bursts of twice as
	// many; zero means DefaultLogGroup and DefaultLogRate.
	LogGroup uint16
	LogRate  int
	// Memo, when set, lets this Render reuse what earlier ones given the same Memo wrote (see
	// Memo): the caller that renders one rule set after another keeps one. It changes nothing
	// in the output, only what producing it costs.
	Memo *Memo
	// TableOnly renders the Table, the digest, the stats and the counters without the text
	// (Script.Text is nil): what an update in place needs, whose commands Diff writes from the
	// Tables. With a Memo, what it reuses is then not copied at all, which is most of a Render's
	// cost after one event at cluster scale (a text of megabytes). The same options without
	// TableOnly give the text, with the same digest.
	TableOnly bool
}

// Established is how established and related packets are treated.
type Established string

const (
	// Revalidate accepts an established or related packet at once only while the stamp its
	// connection got when last accepted is still valid for both of its ends; any other packet is
	// judged again by the policy chains, on its connection's tuple, and then re-stamped or
	// dropped. A change that denies a flow cuts it at its next packet.
	Revalidate Established = "revalidate"
	// Keep accepts every established or related packet: a connection is judged once, when it
	// starts, and lives on whatever changes afterwards.
	Keep Established = "keep"
)

// ParseEstablished returns the mode a flag names.
func ParseEstablished(s string) (Established, error) {
	switch e := Established(s); e {
	case Revalidate, Keep:
		return e, nil
	}
	return "", fmt.Errorf("unknown mode %q for established connections: want %q or %q", s, Revalidate, Keep)
}

// DeleteTable returns the script that removes the table, whether or not it exists (nft 1.0.6 has
// no `destroy`, so the table is added first to make the delete always succeed).
func DeleteTable(table string) []byte {
	return fmt.Appendf(nil, "add table inet %s\ndelete table inet %s\n", table, table)
}

// Every match is on the packet's connection, as conntrack holds it, not on the packet's own
// header: the connection's source is `ct original saddr`, its destination after DNAT (a Service's
// endpoint) `ct reply saddr`, its destination port `ct reply proto-src` and its protocol `ct
// protocol`. For the first packet of a connection these are its own source, destination, port
// and protocol; for any later packet, a reply or an ICMP error related to the connection
// included, they are still the connection's, so the same chains judge new connections and the
// re-validation of established ones alike.

// direction holds what differs between ingress and egress in the rendered chains.
type direction struct {
	name  string // "ingress" or "egress"
	short string // "in" or "out", for names
	// peer is the connection's address the peer sets match: its source for ingress, its
	// destination for egress (ct original / ct reply).
	peer string
}

var (
	ingress = direction{"ingress", "in", "ct original"}
	egress  = direction{"egress", "out", "ct reply"}
)

// verdict is what a packet that a rule of direction d allows does next. An allowed egress still
// needs the destination's ingress: it continues with the ingress dispatch, which always ends in a
// verdict. An allowed ingress is accepted (through the stamping chain under Revalidate).
func (s *script) verdict(d direction) string {
	if d == egress {
		return "goto " + ingressDispatchChain
	}
	return s.accept
}

// family is one address family of the inet table.
type family struct {
	suffix   string // "-v4" / "-v6"
	proto    string // "ip" / "ip6"
	nfproto  string // "ipv4" / "ipv6"
	addrType string // nft set key type
	icmp     string // the family's ICMP protocol
	is4      bool
}

var families = []family{
	{"-v4", "ip", "ipv4", "ipv4_addr", "icmp", true},
	{"-v6", "ip6", "ipv6", "ipv6_addr", "ipv6-icmp", false},
}

// script accumulates the commands of one transaction, grouped so that every object exists before
// anything refers to it: chains, then sets, then the verdict maps (whose elements jump to the
// chains), the hooked base chain, and the rules last. A set or map declares its elements inline,
// in the `elements = { ... }` clause of its own `add set` / `add map` command: nft 1.0.6 handles a
// separate `add element` command by first loading the elements of every set of every table in
// the namespace, which at cluster scale doubles the apply's time and nft's memory.
//
// The sets are most of the script (megabytes at cluster scale), so they are written straight
// into the output, after the header and the chains, which are written first for that reason; the
// other parts are small and are appended at the end.
type script struct {
	table             string
	accept            string       // the verdict of an allowed packet: "accept", or the stamping chain
	out               bytes.Buffer // header, chains, sets
	maps, base, rules bytes.Buffer
	stats             Stats
	counters          []Counter
	logGroup          uint16
	// clusterPolicies are the rule set's ClusterNetworkPolicies by name; dispatches and
	// classChains what adminDispatch declared (see cluster.go).
	clusterPolicies map[string]*ruleset.ClusterPolicy
	dispatches      map[string]*tierDispatch
	classChains     map[string]bool
	// inEpoch marks the chains and sets declared meanwhile as holding epochs (the stamp and
	// window chains and the maps of fresh.go), which the digest leaves out (see tableDigest).
	inEpoch bool
	// tableOnly is Options.TableOnly: what a Memo gives is not copied into the buffers, whose
	// text is then incomplete and dropped, only counted (skipped).
	tableOnly bool
	skipped   int
	// tab is the table the script installs, built as it is written: its objects are those of
	// out, then the verdict maps (mapOrder) and the base chains (baseOrder), in the order the
	// text has them.
	tab                 *Table
	mapOrder, baseOrder []string
	memo                *Memo
	starts              []int32         // scratch space of elements
	peerJobs            *peerSetJobs    // peer sets formatted ahead (see startPeerSets), or nil
	peerScratch         elemListBuilder // where the others are formatted
	usedElems           []memoKey       // the elements policySets reused or wrote, for the Memo
}

// epochPart marks what write declares as holding epochs.
func (s *script) epochPart(write func()) {
	s.inEpoch = true
	write()
	s.inEpoch = false
}

// reused writes text that a Memo kept into buf, unless the script is TableOnly.
func (s *script) reused(buf *bytes.Buffer, text string) {
	if s.tableOnly {
		s.skipped += len(text)
		return
	}
	buf.WriteString(text)
}

// Script is a rendered script and what the agent needs to know of it, so nothing has to read the
// text back.
type Script struct {
	// Text is the script for `nft -f -`; nil when rendered with Options.TableOnly.
	Text []byte
	// Digest is the digest stamped into the comment of DigestSet's element (see digest.go).
	Digest string
	Stats  Stats
	// Counters are the table's named counters, in the order declared.
	Counters []Counter
	// Table is the table Text installs, as ParseTable(Text) reads it, for Diff. Render builds it
	// while writing, so that an update need not parse the script; the caller must not modify it.
	Table *Table
}

// Stats counts what a script installs, for metrics and benchmarks.
type Stats struct {
	Bytes    int
	Rules    int
	Sets     int // named sets and maps
	Elements int
}

// Render returns the nft script that replaces the table with rs.
func Render(rs ruleset.RuleSet, opts Options) Script {
	s := &script{table: cmp.Or(opts.Table, DefaultTable), accept: "accept", logGroup: cmp.Or(opts.LogGroup, DefaultLogGroup),
		memo: opts.Memo, tableOnly: opts.TableOnly}
	s.tab = s.memo.begin()
	defer s.memo.end(s.tab)
	s.memo.buffers(&s.out, &s.rules, &s.maps, &s.base)
	if !s.tableOnly {
		s.startPeerSets(&rs)
		defer s.peerJobs.wait()
	}
	revalidate := opts.Established != Keep
	ep := opts.Epochs
	if ep.Current == 0 {
		ep = epoch.Start(1, &rs)
	}
	if !s.tableOnly {
		s.out.Grow(512 + 300*(2*len(rs.Policies)+2*len(rs.Targets)) + setsSize(&rs))
		s.rules.Grow(rulesSize(&rs))
		s.maps.Grow(1024 + 200*(len(rs.Targets)+len(rs.Claims))) // a verdict map's element per address and direction
	}
	fmt.Fprintf(&s.out, "# flock-netpol: %d isolated pods, %d policies. Replaces the whole table in one transaction.\n",
		len(rs.Targets), len(rs.Policies))
	fmt.Fprintf(&s.out, "add table inet %s\ndelete table inet %s\n", s.table, s.table)
	fmt.Fprintf(&s.out, "add table inet %s { comment %s; }\n", s.table, comment("managed by flock-netpol; changes are overwritten"))
	s.digestSet()

	reports := reportChains(&rs)
	for i := range rs.Policies {
		p := &rs.Policies[i]
		mode := ""
		if p.Audit {
			mode = " (audit mode: isolates nothing)"
		}
		for _, d := range []direction{ingress, egress} {
			if len(rulesOf(p, d)) > 0 {
				s.chain(policyChainName(d, p.Key), comment("%s rules of NetworkPolicy %s%s", d.name, p.Key, mode))
				if reports[policyDirection{p.Key, d.short}] {
					s.chain(reportChainName(d, p.Key), comment("counts what %s rules of NetworkPolicy %s (audit mode) would allow", d.name, p.Key))
				}
				s.ruleCounters(p, d)
			}
		}
	}
	s.clusterPolicies = make(map[string]*ruleset.ClusterPolicy, len(rs.ClusterPolicies))
	for i := range rs.ClusterPolicies {
		p := &rs.ClusterPolicies[i]
		s.clusterPolicies[p.Name] = p
		for _, d := range []direction{ingress, egress} {
			if len(clusterRulesOf(p, d)) > 0 {
				s.chain(clusterChainName(d, p.Name), comment("%s rules of ClusterNetworkPolicy %s (%s tier, priority %d)", d.name, p.Name, p.Tier, p.Priority))
				s.clusterRuleCounters(p, d)
			}
		}
	}
	logs := false
	for i := range rs.Targets {
		logs = logs || rs.Targets[i].LogDrops
	}
	if logs {
		s.dropLogObjects(cmp.Or(opts.LogRate, DefaultLogRate))
	}
	s.chain(ingressDispatchChain, comment("sends traffic to isolated local pods through their ingress chains"))
	if revalidate {
		s.accept = "goto " + allowChain
		s.chain(allowChain, comment("accepts, stamping the connection with the current epoch"))
	}
	for i := range rs.Targets {
		pod := &rs.Targets[i]
		if len(pod.IPs) == 0 {
			continue // every address of the pod is shared with another local pod: see rs.Claims
		}
		for _, d := range []direction{ingress, egress} {
			// The comment names no count: a chain declared differently needs a full apply.
			isolated, audited := len(policiesOf(pod, d)) > 0, len(auditsOf(pod, d)) > 0
			if len(adminOf(pod, d)) > 0 {
				s.chain(adminChainName(pod, d), comment("%s of pod %s: Admin tier", d.name, podID(pod)))
				s.adminDispatch(adminOf(pod, d), d) // declares its class chains, which must precede the sets
			}
			if isolated || audited || len(baselineOf(pod, d)) > 0 || len(adminOf(pod, d)) > 0 {
				s.chain(podChainName(pod, d), comment("%s of pod %s", d.name, podID(pod)))
			}
			if isolated || (audited && len(baselineOf(pod, d)) == 0) {
				s.podCounter(pod, d, !isolated)
			}
		}
	}
	for i := range rs.Claims {
		c := &rs.Claims[i]
		for _, d := range []direction{ingress, egress} {
			claimants := claimantsOf(c, d)
			for k := range claimants {
				s.chain(claimChainName(c, d, k), comment("%s of %s claimed by %d pods: %d of %d isolating, %s",
					d.name, c.Addr, len(c.Claimants), k+1, len(claimants), claimants[k].Pod))
			}
		}
	}

	byKey := make(map[ruleset.PolicyKey]*ruleset.Policy, len(rs.Policies))
	var declared map[policyDirection][]ruleSets // for the claims' chains, which reuse the policies' sets
	if len(rs.Claims) > 0 {
		declared = make(map[policyDirection][]ruleSets, 2*len(rs.Policies))
	}
	for i := range rs.Policies {
		p := &rs.Policies[i]
		byKey[p.Key] = p
		for _, d := range []direction{ingress, egress} {
			sets := s.policyChain(p, d, rulesOf(p, d))
			if declared != nil {
				declared[policyDirection{p.Key, d.short}] = sets
			}
			if reports[policyDirection{p.Key, d.short}] {
				rules := rulesOf(p, d)
				for j := range rules {
					s.policyRules(reportChainName(d, p.Key), both("return"), &rules[j], sets[j], true)
				}
			}
		}
	}

	for i := range rs.ClusterPolicies {
		p := &rs.ClusterPolicies[i]
		for _, d := range []direction{ingress, egress} {
			s.clusterPolicyChain(p, d)
		}
	}

	var inElems, outElems, passIn, passOut, toNode [2][]string
	for i := range rs.Targets {
		pod := &rs.Targets[i]
		if len(pod.IPs) == 0 {
			continue
		}
		for _, d := range []direction{ingress, egress} {
			elems, pass := &inElems, &passIn
			if d == egress {
				elems, pass = &outElems, &passOut
			}
			if len(policiesOf(pod, d))+len(auditsOf(pod, d))+len(adminOf(pod, d))+len(baselineOf(pod, d)) == 0 {
				continue
			}
			chain := s.podChain(pod, d, byKey)
			if len(adminOf(pod, d)) > 0 {
				addMapElements(pass, pod.IPs, "goto", chain)
				chain = s.adminChain(pod, d)
			}
			addMapElements(elems, pod.IPs, "jump", chain)
			if d == egress && len(adminOf(pod, d))+len(baselineOf(pod, d)) > 0 {
				addMapElements(&toNode, pod.IPs, "jump", chain)
			}
		}
	}
	for i := range rs.Claims {
		c := &rs.Claims[i]
		if len(c.Ingress) > 0 {
			addMapElements(&inElems, []netip.Addr{c.Addr}, "jump", s.claimChains(c, ingress, byKey, declared))
		}
		if len(c.Egress) > 0 {
			addMapElements(&outElems, []netip.Addr{c.Addr}, "jump", s.claimChains(c, egress, byKey, declared))
		}
	}
	s.verdictMap(egressMapV4, families[0], outElems[0], "local pods isolated for egress, by source address")
	s.verdictMap(egressMapV6, families[1], outElems[1], "local pods isolated for egress, by source address")
	s.verdictMap(ingressMapV4, families[0], inElems[0], "local pods isolated for ingress, by destination address")
	s.verdictMap(ingressMapV6, families[1], inElems[1], "local pods isolated for ingress, by destination address")
	policeNode := len(toNode[0])+len(toNode[1]) > 0
	if policeNode {
		s.verdictMap(nodeMapV4, families[0], toNode[0], "local pods whose ClusterNetworkPolicies police their traffic to this node, by source address")
		s.verdictMap(nodeMapV6, families[1], toNode[1], "local pods whose ClusterNetworkPolicies police their traffic to this node, by source address")
	}
	if hasAdminTier(&rs) {
		s.verdictMap(passMapName(egress, families[0]), families[0], passOut[0], "where an Admin tier Pass continues, by source address")
		s.verdictMap(passMapName(egress, families[1]), families[1], passOut[1], "where an Admin tier Pass continues, by source address")
		s.verdictMap(passMapName(ingress, families[0]), families[0], passIn[0], "where an Admin tier Pass continues, by destination address")
		s.verdictMap(passMapName(ingress, families[1]), families[1], passIn[1], "where an Admin tier Pass continues, by destination address")
	}

	s.dispatch(ingressDispatchChain, "daddr", ingressMapV4, ingressMapV6)
	s.rule(ingressDispatchChain, s.accept)
	if revalidate {
		s.rule(allowChain, "meta nfproto vmap @"+stampName)
		s.freshChains(&rs, &ep)
	}

	s.baseChain(baseChain.name, fmt.Sprintf("add chain inet %s %s { type %s hook %s priority %s; policy %s; comment %s; }",
		s.table, baseChain.name, baseChain.typ, baseChain.hook, baseChain.priority, baseChain.policy,
		comment("flock-netpol: NetworkPolicy for the pods of this node")))
	if policeNode {
		s.baseChain(inputChain, fmt.Sprintf("add chain inet %s %s { type filter hook input priority filter; policy accept; comment %s; }",
			s.table, inputChain, comment("flock-netpol: ClusterNetworkPolicy for local pods' traffic to this node")))
	}
	s.edges(&rs.Edges, opts.AntiSpoofing)
	s.fastPath(forwardChain, revalidate)
	s.dispatch(forwardChain, "saddr", egressMapV4, egressMapV6)
	s.rule(forwardChain, "jump "+ingressDispatchChain)
	if policeNode {
		// A local pod's connections to this node's own (unicast) addresses: only its
		// ClusterNetworkPolicy tiers judge them (the pod's chains accept what NetworkPolicy
		// would, see podChain). What conntrack does not track, IPv6 neighbour discovery
		// among it, and multicast or broadcast are left alone: a Deny of every address must
		// not cut a pod off its gateway.
		s.fastPath(inputChain, revalidate)
		for _, f := range families {
			m := nodeMapV4
			if !f.is4 {
				m = nodeMapV6
			}
			s.rule(inputChain, fmt.Sprintf("fib daddr type local ct original %s saddr vmap @%s", f.proto, m))
		}
	}

	s.tab.setOrder = append(s.tab.setOrder, s.mapOrder...)
	s.tab.chainOrder = append(s.tab.chainOrder, s.baseOrder...)
	digest := tableDigest(s.tab)
	ds := s.tab.sets[digestSet]
	ds.elems = newElemList([]string{strings.Replace(ds.elems.at(0), digestPlaceholder, digestPrefix+digest, 1)})
	s.stats.Bytes = s.out.Len() + s.maps.Len() + s.base.Len() + s.rules.Len() + s.skipped
	var text []byte
	spare := &s.out // the next Render's output buffer, when this one returns no text
	if !s.tableOnly {
		for _, b := range []*bytes.Buffer{&s.maps, &s.base, &s.rules} {
			s.out.Write(b.Bytes())
		}
		text, spare = s.out.Bytes(), nil
		stampDigest(text, digest)
	}
	s.memo.keepScratch(spare, &s.rules, &s.maps, &s.base)
	return Script{Text: text, Digest: digest, Stats: s.stats, Counters: s.counters, Table: s.tab}
}

// fastPath writes the rules that accept the packets of established connections at once: whose
// stamp is the current epoch, or still valid at both ends (revalidate); all of them otherwise.
func (s *script) fastPath(chain string, revalidate bool) {
	if !revalidate {
		s.rule(chain, "ct state established,related accept")
		return
	}
	s.rule(chain, fmt.Sprintf("ct state established,related ct mark and 0x%08x @%s accept", epoch.Mask, currentEpochSet))
	s.freshPath(chain)
}

// setsSize estimates the bytes of the set commands, so that the output buffer is allocated once
// rather than grown by doubling: about 24 bytes per element line (an IPv4 address or prefix, an
// IPv6 pod address, a named-port endpoint) and 600 per rule for the set commands themselves. A
// short guess costs one more reallocation, nothing else.
func setsSize(rs *ruleset.RuleSet) int {
	n := 0
	for i := range rs.Policies {
		for _, rules := range [][]ruleset.Rule{rs.Policies[i].Ingress, rs.Policies[i].Egress} {
			for j := range rules {
				r := &rules[j]
				n += 600 + 24*(r.Peers.Len(true)+r.Peers.Len(false)+len(r.NamedPorts))
			}
		}
	}
	return n
}

// rulesSize estimates the bytes of the rules, as setsSize does those of the sets, so that their
// buffer is allocated once rather than grown by doubling: about 4,000 per policy rule (two
// rules, for new and established packets, per port match and family, of some 250 bytes each)
// and 1,500 per isolated pod (its chain).
func rulesSize(rs *ruleset.RuleSet) int {
	n := 4096
	for i := range rs.Policies {
		n += 4000 * (len(rs.Policies[i].Ingress) + len(rs.Policies[i].Egress))
	}
	return n + 1500*len(rs.Targets)
}

func (s *script) chain(name, comment string) {
	decl := "add chain inet " + s.table + " " + name + " { comment " + comment + "; }"
	s.out.WriteString(decl + "\n")
	s.tab.chains[name] = &chainObj{decl: decl, epoch: s.inEpoch}
	s.tab.chainOrder = append(s.tab.chainOrder, name)
}

// baseChain declares a base chain, whose declaration decl is.
func (s *script) baseChain(name, decl string) {
	s.base.WriteString(decl + "\n")
	s.tab.chains[name] = &chainObj{decl: decl}
	s.baseOrder = append(s.baseOrder, name)
}

func (s *script) rule(chain, rule string) {
	s.stats.Rules++
	for _, part := range [...]string{"add rule inet ", s.table, " ", chain, " ", rule, "\n"} {
		s.rules.WriteString(part)
	}
	c := s.tab.chains[chain]
	c.rules = append(c.rules, rule)
}

// object declares a counter or limit, whose declaration decl is.
func (s *script) object(kind, name, decl string) {
	s.out.WriteString(decl + "\n")
	key := kind + " " + name
	s.tab.objects[key] = &statefulObj{kind: kind, name: name, decl: decl}
	s.tab.objOrder = append(s.tab.objOrder, key)
}

// set starts the command that defines a named set, which the caller ends after writing its
// elements (a set always has some).
func (s *script) set(name, typ, flags, comment string) elements {
	s.stats.Sets++
	decl := "add set inet " + s.table + " " + name + " { type " + typ + ";" + flags + " comment " + comment + ";"
	s.out.WriteString(decl)
	obj := &setObj{decl: decl, epoch: s.inEpoch}
	s.tab.sets[name] = obj
	s.tab.setOrder = append(s.tab.setOrder, name)
	e := elements{b: &s.out, count: &s.stats.Elements, set: obj, start: s.out.Len(), starts: &s.starts}
	if s.tableOnly {
		e.skipped = &s.skipped
	}
	return e
}

func (s *script) verdictMap(name string, f family, elems []string, why string) {
	s.mapOf(name, f.addrType+" : verdict", elems, why)
}

// mapOf writes a set or map, whose type typ is ("KEY : VALUE" for a map), with the maps.
func (s *script) mapOf(name, typ string, elems []string, why string) {
	s.stats.Sets++
	isMap := strings.Contains(typ, " : ")
	kind := "set"
	if isMap {
		kind = "map"
	}
	decl := fmt.Sprintf("add %s inet %s %s { type %s; comment %s;", kind, s.table, name, typ, comment("%s", why))
	s.maps.WriteString(decl)
	obj := &setObj{decl: decl, isMap: isMap, epoch: s.inEpoch}
	s.tab.sets[name] = obj
	s.mapOrder = append(s.mapOrder, name)
	e := elements{b: &s.maps, count: &s.stats.Elements, set: obj, start: s.maps.Len(), starts: &s.starts}
	for _, el := range elems {
		e.write(append(e.next(), el...))
	}
	e.end()
}

// elements writes the elements clause that ends an `add set` or `add map` command, one element
// per tab-indented line, each followed by a comma (nft accepts the last one):
//
//	add set inet T NAME { type ipv4_addr; flags interval; comment "..."; elements = {
//		10.0.0.1,
//		10.0.0.4-10.0.0.7,
//	}; }
//
// Without elements the command ends without the clause. Sets can hold every pod address of a
// large cluster, so elements are appended to the script's buffer in place rather than built as
// strings: e.write(x.AppendTo(e.next())). The Table's elements are then cut from one copy of the
// clause.
type elements struct {
	b     *bytes.Buffer
	n     int
	count *int    // the script's element count
	set   *setObj // the set in the script's Table
	start int     // where the clause starts in b
	pre   int     // the length of what next returned: where the element starts in it
	// starts are where each element starts in the clause (see elemList), in the script's
	// scratch space.
	starts *[]int32
	// skipped, when the script has no text (TableOnly), counts the bytes of what reuse does not
	// copy.
	skipped *int
}

// clauseStart and clauseEnd open and close the elements clause.
const (
	clauseStart = " elements = {"
	clauseEnd   = "\n};"
)

// next returns the buffer's free space with what goes before the next element in it.
func (e *elements) next() []byte {
	buf := e.b.AvailableBuffer()
	if e.n == 0 {
		buf = append(buf, clauseStart...)
		*e.starts = (*e.starts)[:0]
	}
	e.n++
	buf = append(buf, "\n\t"...)
	e.pre = len(buf)
	return buf
}

// write adds what next returned, with the element appended.
func (e *elements) write(buf []byte) {
	*e.count++
	*e.starts = append(*e.starts, int32(e.b.Len()+e.pre-e.start))
	e.b.Write(append(buf, ','))
}

// end closes the elements clause, if any, and the command, and returns what a Memo keeps of it.
func (e *elements) end() *memoSet {
	m := &memoSet{sum: new(elementsSum)}
	if e.n > 0 {
		e.b.WriteString(clauseEnd)
		m.elems = elemList{clause: string(e.b.Bytes()[e.start:]), starts: slices.Clone(*e.starts)}
	}
	e.set.elems, e.set.sum = m.elems, m.sum
	e.b.WriteString(" }\n")
	return m
}

// reuse ends the command with the elements of m, which a Memo kept (or which were edited from
// what it kept): their clause is copied into the text, unless the script has none.
func (e *elements) reuse(m *memoSet) {
	*e.count += m.elems.Len()
	if e.skipped != nil {
		*e.skipped += len(m.elems.clause)
	} else {
		e.b.WriteString(m.elems.clause)
	}
	e.set.elems, e.set.sum = m.elems, m.sum
	e.b.WriteString(" }\n")
}

func addMapElements(elems *[2][]string, ips []netip.Addr, verdict, chain string) {
	for _, a := range ips {
		i := familyIndex(a)
		elems[i] = append(elems[i], a.String()+" : "+verdict+" "+chain)
	}
}

func policyChainName(d direction, k ruleset.PolicyKey) string {
	return generatedName("pol-"+d.short, k.String(), k.String(), "")
}

func podID(pod *ruleset.Target) string { return pod.Namespace + "/" + pod.Name }

func podChainName(pod *ruleset.Target, d direction) string {
	id := podID(pod)
	return generatedName("pod-"+d.short, id, id, "")
}

func policiesOf(pod *ruleset.Target, d direction) []ruleset.PolicyKey {
	if d == ingress {
		return pod.IngressPolicies
	}
	return pod.EgressPolicies
}

// podChain writes the rules of the chain of one local pod that policies isolate or audit in one
// direction, and returns the chain's name.
//
// An isolated pod's chain tries its policies' chains (a rule that allows ends in the direction's
// verdict); then, for a new packet, the report chains of its audit policies, which count what
// each would allow and return; then it logs and counts the drop, and drops:
//
//	pod-in-x/a: ip saddr 10.0.1.9 fib saddr . iif oif exists goto allow
//	            jump pol-in-x/p
//	            ct state new jump audit-in-x/q
//	            <log rules>
//	            ct state new counter name "denied-in-x/a" drop
//	            counter drop
//
// A pod that only audit policies select is not isolated: its chain tries their chains, whose
// rules allow as an enforced policy's do, and what none allows is logged, counted as what the
// audit policies would drop, and allowed all the same.
func (s *script) podChain(pod *ruleset.Target, d direction, byKey map[ruleset.PolicyKey]*ruleset.Policy) string {
	name := podChainName(pod, d)
	keys, audits, baseline := policiesOf(pod, d), auditsOf(pod, d), baselineOf(pod, d)
	isolated := len(keys) > 0
	if len(adminOf(pod, d)) == 0 {
		s.ownAddressRules(name, d, pod.IPs) // else the Admin tier chain has done it
	}
	if d == egress && len(adminOf(pod, d))+len(baseline) > 0 && (isolated || (len(audits) > 0 && len(baseline) == 0)) {
		// Reached from the input hook (only there is the destination one of the node's own
		// addresses): NetworkPolicy always allows a pod its own node, and decides for a pod it
		// isolates, so the Baseline tier is not consulted either; audit policies do not count
		// what they would drop there. A pod the Baseline tier judges goes on to it.
		s.rule(name, "fib daddr type local "+s.accept)
	}
	hasRules := func(k ruleset.PolicyKey) bool {
		p := byKey[k]
		return p != nil && len(rulesOf(p, d)) > 0 // else the policy allows nothing in this direction
	}
	for _, k := range keys {
		if hasRules(k) {
			s.rule(name, "jump "+policyChainName(d, k))
		}
	}
	// Audit policies only report where something else decides: the enforced policies, or the
	// Baseline tier (whose Deny an audit policy's allowing rule must not override).
	reportOnly := isolated || len(baseline) > 0
	for _, k := range audits {
		switch {
		case !hasRules(k):
		case reportOnly:
			s.rule(name, "ct state new jump "+reportChainName(d, k))
		default:
			s.rule(name, "jump "+policyChainName(d, k))
		}
	}
	switch {
	case isolated:
		if pod.LogDrops {
			s.logRules(name, false, d)
		}
		s.rule(name, fmt.Sprintf("ct state new counter name %q drop", podCounterName(false, pod, d)))
		s.rule(name, "counter drop")
	case len(baseline) > 0:
		for _, n := range baseline {
			s.rule(name, "jump "+clusterChainName(d, n))
		}
		s.rule(name, s.verdict(d))
	case len(audits) > 0:
		if pod.LogDrops {
			s.logRules(name, true, d)
		}
		s.rule(name, fmt.Sprintf("ct state new counter name %q", podCounterName(true, pod, d)))
		s.rule(name, s.verdict(d))
	default: // only the Admin tier, which passed
		s.rule(name, s.verdict(d))
	}
	return name
}

// reportChains returns the policies in audit mode, per direction, that need a report chain: those
// auditing a pod that enforced policies isolate in the same direction, or that the Baseline tier
// judges.
func reportChains(rs *ruleset.RuleSet) map[policyDirection]bool {
	out := map[policyDirection]bool{}
	for i := range rs.Targets {
		pod := &rs.Targets[i]
		for _, d := range []direction{ingress, egress} {
			if len(policiesOf(pod, d))+len(baselineOf(pod, d)) > 0 {
				for _, k := range auditsOf(pod, d) {
					out[policyDirection{k, d.short}] = true
				}
			}
		}
	}
	return out
}

// ownAddressRules writes the rules that let a pod reach itself, also through a Service address
// that was DNATed back to it: the peer's address (the other end of the packet) is then the pod's
// own.
func (s *script) ownAddressRules(chain string, d direction, ips []netip.Addr) {
	for _, f := range families {
		var own []string
		for _, a := range ips {
			if a.Is4() == f.is4 {
				own = append(own, a.String())
			}
		}
		if len(own) > 0 {
			// Into the pod, its own address as the source must also have come from the pod's
			// side: the route back to it leaves through the interface the packet arrived on.
			check := ""
			if d == ingress {
				check = " fib saddr . iif oif exists"
			}
			s.rule(chain, fmt.Sprintf("%s %s saddr %s%s %s", d.peer, f.proto, anonSet(own), check, s.accept))
		}
	}
}

func claimantsOf(c *ruleset.Claim, d direction) []ruleset.ClaimantPolicies {
	if d == ingress {
		return c.Ingress
	}
	return c.Egress
}

// claimChainName names the chain of the k-th isolating claimant of a claimed address.
func claimChainName(c *ruleset.Claim, d direction, k int) string {
	pod := claimantsOf(c, d)[k].Pod
	addr := c.Addr.String()
	return generatedName("claim-"+d.short, addr+"\x00"+pod, strings.ReplaceAll(addr, ":", "-")+"/"+pod, "")
}

// claimChains writes the chains of an address several local pods claim, in one direction, and
// returns the name of the first. A packet must pass one policy of every isolating claimant, in
// Claimants order: the chain of claimant k holds the rules of its policies (the sets the policy
// chains declared), whose verdict is a goto to the chain of claimant k+1; the last claimant's
// rules carry the direction's usual verdict. Each chain ends in counter drop. The address can
// always reach itself, as a pod can (first chain).
//
//	claim-in-<addr>/x/a: ip saddr 10.0.1.9 fib saddr . iif oif exists accept
//	                     <rules of x/a's policies> goto claim-in-<addr>/x/b
//	                     counter drop
//	claim-in-<addr>/x/b: <rules of x/b's policies> accept
//	                     counter drop
func (s *script) claimChains(c *ruleset.Claim, d direction, byKey map[ruleset.PolicyKey]*ruleset.Policy, declared map[policyDirection][]ruleSets) string {
	claimants := claimantsOf(c, d)
	first := claimChainName(c, d, 0)
	s.ownAddressRules(first, d, []netip.Addr{c.Addr})
	for k, cl := range claimants {
		chain := claimChainName(c, d, k)
		verdict := s.verdict(d)
		if k+1 < len(claimants) {
			verdict = "goto " + claimChainName(c, d, k+1)
		}
		for _, key := range cl.Policies {
			p := byKey[key]
			if p == nil {
				continue // an unknown policy allows nothing
			}
			rules, sets := rulesOf(p, d), declared[policyDirection{key, d.short}]
			for i := range rules {
				s.policyRules(chain, both(verdict), &rules[i], sets[i], false)
			}
		}
		s.rule(chain, "counter drop")
	}
	return first
}

func rulesOf(p *ruleset.Policy, d direction) []ruleset.Rule {
	if d == ingress {
		return p.Ingress
	}
	return p.Egress
}

// policyDirection names the chain of one policy in one direction (direction.short).
type policyDirection struct {
	key ruleset.PolicyKey
	dir string
}

// ruleSets are the named sets declared for one policy rule, per family (families order); ""
// where none was declared. A rule matches a family only through its peer set, unless it has no
// peers at all.
type ruleSets struct {
	peers, named [2]string
	d            direction
	key          ruleset.PolicyKey
}

// policyChain declares the sets of one policy's rules in one direction and writes the rules of
// the chain holding what it allows. It returns the sets, one entry per rule, so that other chains
// (those of claimed addresses) can emit the same rules without declaring a set twice.
func (s *script) policyChain(p *ruleset.Policy, d direction, rules []ruleset.Rule) []ruleSets {
	if len(rules) == 0 {
		return nil
	}
	chain := policyChainName(d, p.Key)
	sets := make([]ruleSets, len(rules))
	for i := range rules {
		sets[i] = s.policySets("NetworkPolicy", p.Key, d, &rules[i])
		s.policyRules(chain, both(s.verdict(d)), &rules[i], sets[i], false)
	}
	return sets
}

// policySets declares the named sets of one ingress or egress rule: per family, its peers (when
// it has peers of that family and a port they could use) and its resolved named ports.
//
// With a Memo, a rule that is the same memory as one of the last render has its set commands
// copied; its sets' Table objects share their elements.
func (s *script) policySets(kind string, k ruleset.PolicyKey, d direction, r *ruleset.Rule) ruleSets {
	key := ruleSetsKey{rule: r, kind: kind, dir: d.short, key: k, table: s.table}
	// What a Render without text wrote has no text, for a Render with text to copy.
	if m, ok := s.memo.lookupRuleSets(key); ok && (s.tableOnly || !m.textless) {
		if s.tableOnly {
			s.skipped += m.size
		} else {
			s.out.WriteString(m.text)
		}
		for i, name := range m.names {
			obj := m.objs[i] // shared with the last render's Table: a Table is never modified
			s.tab.sets[name] = obj
			s.tab.setOrder = append(s.tab.setOrder, name)
			s.stats.Sets++
			s.stats.Elements += obj.elems.Len()
		}
		return m.sets
	}
	start, skipped, first := s.out.Len(), s.skipped, len(s.tab.setOrder)
	s.usedElems = s.usedElems[:0]
	sets := s.writePolicySets(kind, k, d, r)
	if s.memo != nil {
		m := &memoRuleSets{sets: sets, elems: slices.Clone(s.usedElems), textless: s.tableOnly,
			size: s.out.Len() - start + s.skipped - skipped}
		if !s.tableOnly {
			m.text = string(s.out.Bytes()[start:])
		}
		for _, name := range s.tab.setOrder[first:] {
			m.names = append(m.names, name)
			m.objs = append(m.objs, s.tab.sets[name])
		}
		s.memo.storeRuleSets(key, m)
	}
	return sets
}

// writePolicySets is policySets without the Memo's rule sets.
func (s *script) writePolicySets(kind string, k ruleset.PolicyKey, d direction, r *ruleset.Rule) ruleSets {
	where := fmt.Sprintf("%s %s %s rule %d", kind, k, d.name, r.Index)

	sets := ruleSets{d: d, key: k}
	for fi, f := range families {
		named := 0
		for _, e := range r.NamedPorts {
			if e.Addr.Is4() == f.is4 {
				named++
			}
		}
		if !r.AnyPeer {
			if !declaresPeers(r, f) {
				continue // no peer of this family, or no port a peer could use
			}
			name := ruleSetName("peers", k, d, r.Index, f)
			s.peerSet(name, f, r.Peers, comment("%s: peers", where))
			sets.peers[fi] = name
		}
		if named > 0 {
			name := ruleSetName("named", k, d, r.Index, f)
			typ, why := f.addrType+" . inet_proto . inet_service", comment("%s: named ports", where)
			key := memoKey{kind: memoNamedPorts, is4: f.is4, id: namedPortsID(r.NamedPorts)}
			s.usedElems = append(s.usedElems, key)
			if m, ok := s.memo.lookup(key); ok {
				e := s.set(name, typ, "", why)
				e.reuse(m)
			} else {
				e := s.set(name, typ, "", why)
				for _, ep := range r.NamedPorts {
					if ep.Addr.Is4() == f.is4 {
						e.write(appendEndpoint(e.next(), ep))
					}
				}
				s.memo.store(key, e.end())
			}
			sets.named[fi] = name
		}
	}
	return sets
}

// peerSet declares the set of a rule's peers of family f: a hash set of addresses when they are
// narrow enough (see addressesOnly), an interval set otherwise.
//
// Without text (TableOnly), a set whose peers changed since the last render is made from that
// render's set of the same name: the text of the elements both hold is copied, and only the
// others are formatted (editedElements), so that one peer joining a set of thousands costs a
// merge and a copy rather than formatting thousands of addresses.
func (s *script) peerSet(name string, f family, peers ruleset.AddrSet, why string) {
	flags := func(addrs bool) string {
		if addrs {
			return ""
		}
		return " flags interval;"
	}
	key := memoKey{kind: memoPeers, is4: f.is4, id: peers.Identity(f.is4)}
	s.usedElems = append(s.usedElems, key)
	if m, ok := s.memo.lookup(key); ok {
		e := s.set(name, f.addrType, flags(m.addressesOnly), why)
		e.reuse(m)
		s.memo.storeNamed(s.table, name, m)
		return
	}
	addrs := addressesOnly(peers, f.is4)
	e := s.set(name, f.addrType, flags(addrs), why)
	var m *memoSet
	if prev, ok := s.memo.lookupNamed(s.table, name); ok && s.tableOnly && prev.addressesOnly == addrs && prev.is4 == f.is4 {
		m = &memoSet{elems: editedElements(prev, peers, f.is4, addrs), sum: new(elementsSum), peers: peers, is4: f.is4, addressesOnly: addrs}
	} else {
		m = s.formattedPeerSet(key, peers, f.is4, addrs)
	}
	e.reuse(m)
	s.memo.store(key, m)
	s.memo.storeNamed(s.table, name, m)
}

// editedElements returns the elements of a peer set of peers, copying the text of every element
// that prev (rendered from prev.peers, of the same family and kind) holds too rather than
// formatting it again. The elements of a hash set are addresses, those of an interval set ranges,
// in order in both.
func editedElements(prev *memoSet, peers ruleset.AddrSet, is4, addrs bool) elemList {
	var w elemListBuilder
	w.grow(peerSetLen(peers, is4, addrs), len(prev.elems.clause)/max(1, prev.elems.Len()))
	next, stop := iter.Pull(peerElements(prev.peers, is4, addrs))
	defer stop()
	old, more := next()
	i := 0 // old is prev.elems.at(i)
	for r := range peerElements(peers, is4, addrs) {
		for more && old.First.Less(r.First) {
			old, more = next()
			i++
		}
		switch {
		case more && old == r:
			w.add(append(w.next(), prev.elems.at(i)...))
		case addrs:
			w.add(r.First.AppendTo(w.next()))
		default:
			w.add(r.AppendTo(w.next()))
		}
	}
	return w.list()
}

// peerElements yields the elements of a peer set of peers as ranges: each address of a hash set
// (addrs), or each range of an interval set.
func peerElements(peers ruleset.AddrSet, is4, addrs bool) iter.Seq[ruleset.AddrRange] {
	if !addrs {
		return peers.Ranges(is4)
	}
	return func(yield func(ruleset.AddrRange) bool) {
		for a := range peers.Addresses(is4) {
			if !yield(ruleset.AddrRange{First: a, Last: a}) {
				return
			}
		}
	}
}

// policyRules writes one ingress or egress rule into chain with the given verdict, using the
// sets policySets declared for it: (any peer, or the rule's peer set) and (any port, one of the
// numeric ports, or one of the resolved named ports). A match counts in the rule's counter when
// the packet is new: in a chain that only new packets enter (onlyNew), each match is one rule
// with the counter; otherwise it is two, one for new packets, which count, and one for the packets
// of established connections judged again, which do not (a rule cannot count only some of the
// packets it matches). The new packets' rule comes first: they are nearly all the packets these
// chains see, and each then meets one rule, not two.
//
// With a Memo, the rules of a rule that is the same memory as one of the last render are copied.
func (s *script) policyRules(chain string, v verdicts, r *ruleset.Rule, sets ruleSets, onlyNew bool) {
	key := rulesKey{rule: r, chain: chain, v: v, sets: sets, onlyNew: onlyNew}
	if m, ok := s.memo.lookupRules(key); ok {
		for _, rule := range m.rules {
			s.rule(chain, rule)
		}
		return
	}
	first := len(s.tab.chains[chain].rules)
	s.writePolicyRules(chain, v, r, sets, onlyNew)
	if s.memo != nil {
		s.memo.storeRules(key, &memoRules{rules: slices.Clone(s.tab.chains[chain].rules[first:])})
	}
}

// writePolicyRules is policyRules without the Memo.
func (s *script) writePolicyRules(chain string, v verdicts, r *ruleset.Rule, sets ruleSets, onlyNew bool) {
	d := sets.d
	// The comment names the rule in `nft list` and in `nft monitor trace` (flock-netpol trace).
	why := " comment " + comment("%s %s rule %d", sets.key, d.name, r.Index)
	counter := fmt.Sprintf("counter name %q ", ruleCounterName(sets.key, d, r.Index))
	rule := func(match string, fi int) {
		if onlyNew {
			s.rule(chain, match+counter+v[fi]+why)
			return
		}
		s.rule(chain, "ct state new "+match+counter+v[fi]+why)
		s.rule(chain, "ct state != new "+match+v[fi]+why)
	}
	if r.AnyPeer {
		if v[0] == v[1] {
			// Without peers one rule per port match covers both families.
			for _, pm := range portMatches(r, "icmp", "ipv6-icmp") {
				rule(pm.l4+pm.conn, 0)
			}
		} else {
			for fi, f := range families {
				for _, pm := range portMatches(r, f.icmp) {
					rule("meta nfproto "+f.nfproto+" "+pm.l4+pm.conn, fi)
				}
			}
		}
	}
	for fi, f := range families {
		peerMatch := ""
		if !r.AnyPeer {
			if sets.peers[fi] == "" {
				continue
			}
			peerMatch = fmt.Sprintf("%s %s saddr @%s ", d.peer, f.proto, sets.peers[fi])
			for _, pm := range portMatches(r, f.icmp) {
				rule(pm.l4+peerMatch+pm.conn, fi)
			}
		}
		// Named ports: the connection's destination (the target pod for ingress, the destination
		// pod for egress) with the protocol and port that the name means on that pod. nft 1.0.6
		// cannot concatenate `ct reply proto-src`, so this reads the packet's own header: the
		// destination and its port in the original direction, the source and its port in the
		// reply direction (after DNAT and before the reverse translation, both the endpoint's).
		// An ICMP error related to such a connection is judged by the rules without named ports
		// only.
		if sets.named[fi] != "" {
			rule(fmt.Sprintf("%sct direction original %s daddr . meta l4proto . th dport @%s ", peerMatch, f.proto, sets.named[fi]), fi)
			if !onlyNew { // a reply is never new: this one never counts
				s.rule(chain, fmt.Sprintf("%sct direction reply %s saddr . meta l4proto . th sport @%s %s%s", peerMatch, f.proto, sets.named[fi], v[fi], why))
			}
		}
	}
}

// verdicts is what a rule does with a match, per family (families order): the same verdict for
// both, except for an Admin tier Pass, which looks up the family's pass map.
type verdicts [2]string

func both(v string) verdicts { return verdicts{v, v} }

// appendEndpoint renders a named-port element: address . protocol . port.
func appendEndpoint(b []byte, e ruleset.Endpoint) []byte {
	b = e.Addr.AppendTo(b)
	b = append(b, " . "...)
	b = append(b, e.Protocol...)
	b = append(b, " . "...)
	return strconv.AppendUint(b, uint64(e.Port), 10)
}

// portMatch is one way a packet can match a rule's ports: a match on the packet's own protocol
// (empty for none), written first so that a packet of another protocol leaves the rule at once,
// and the match on its connection.
type portMatch struct{ l4, conn string }

// portMatches returns the matches of a rule's ports, on the connection: any port, or per numeric
// port entry one protocol, all of its ports or an inclusive range. An ICMP error related to a
// connection (icmp names the ICMP protocols of the rule's families) is an ICMP packet whose
// connection is the TCP, UDP or SCTP one, and follows that connection's verdict. nft types `ct
// reply proto-src` by the packet's protocol, and needs it as a single `meta l4proto` value (nft
// 1.0.6 rejects `ct protocol` alone, and lists back a `meta l4proto` set with the port as
// "[invalid type]"), hence one match for the protocol itself and one per ICMP protocol.
func portMatches(r *ruleset.Rule, icmp ...string) []portMatch {
	if r.AnyPort {
		return []portMatch{{}}
	}
	var out []portMatch
	for _, pr := range r.Ports {
		if pr.First == 0 {
			out = append(out, portMatch{conn: fmt.Sprintf("ct protocol %s ", pr.Protocol)})
			continue
		}
		port := strconv.Itoa(int(pr.First))
		if pr.Last != pr.First {
			port += "-" + strconv.Itoa(int(pr.Last))
		}
		out = append(out, portMatch{"meta l4proto " + string(pr.Protocol) + " ", "ct reply proto-src " + port + " "})
		for _, p := range icmp {
			out = append(out, portMatch{"meta l4proto " + p + " ", fmt.Sprintf("ct protocol %s ct reply proto-src %s ", pr.Protocol, port)})
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

// edges writes the rules that close the node's edges, ahead of the established fast path so that
// a flow opened through an edge before it was closed does not live on: forged sources (strict
// reverse path), then addresses of the node's pod ranges that no known pod owns, per family and
// range.
func (s *script) edges(e *ruleset.Edges, antiSpoofing bool) {
	if antiSpoofing {
		s.rule(forwardChain, "fib saddr . iif oif missing counter drop comment "+comment("forged source: the route back leaves by another interface"))
	}
	for _, f := range families {
		var cidrs []netip.Prefix
		for _, p := range e.PodCIDRs {
			if p.Addr().Is4() == f.is4 {
				cidrs = append(cidrs, p.Masked())
			}
		}
		// Overlapping elements would make nft reject the whole script ("conflicting intervals"):
		// a range inside another (two pod ranges of a Node, or an override, that nest) is left
		// out. Prefixes nest or are disjoint, so sorted by address, then length, a range overlaps
		// a kept one only if it lies inside the last kept.
		slices.SortFunc(cidrs, func(a, b netip.Prefix) int {
			return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
		})
		kept := cidrs[:0]
		for _, p := range cidrs {
			if n := len(kept); n == 0 || !kept[n-1].Contains(p.Addr()) {
				kept = append(kept, p)
			}
		}
		cidrs = kept
		if len(cidrs) == 0 {
			continue
		}
		// The ranges are written into the rules (a node has one or two per family), not into an
		// interval set: the kernel uses a new interval set only some milliseconds after the
		// transaction that creates it is live (see addressesOnly), which would open the edges
		// after every apply.
		known := localPodsSet + f.suffix
		el := s.set(known, f.addrType, "", comment("addresses of every known local pod"))
		for _, a := range e.LocalPods {
			if a.Is4() == f.is4 {
				el.write(a.AppendTo(el.next()))
			}
		}
		el.end()
		for _, p := range cidrs {
			for _, field := range []string{"saddr", "daddr"} {
				s.rule(forwardChain, fmt.Sprintf("%s %s %s %s %s != @%s counter drop comment %s",
					f.proto, field, p, f.proto, field, known, comment("unknown local pod address")))
			}
		}
	}
}

// dispatch writes the rules that send a packet to the chain of the isolated local pod at one end
// of its connection: the source (field saddr, the egress maps) or the destination (daddr, the
// ingress maps). A packet conntrack does not track (state invalid or untracked) has no connection
// and is dispatched by its own header; the pod chains, which match on the connection, then drop
// it unless the pod allows everything.
func (s *script) dispatch(chain, field, mapV4, mapV6 string) {
	conn := "ct original"
	if field == "daddr" {
		conn = "ct reply"
	}
	for i, f := range families {
		m := []string{mapV4, mapV6}[i]
		s.rule(chain, fmt.Sprintf("ct state invalid,untracked %s %s vmap @%s", f.proto, field, m))
		s.rule(chain, fmt.Sprintf("%s %s saddr vmap @%s", conn, f.proto, m))
	}
}

// maxHashRange is the widest range a peer set spells out address by address.
const maxHashRange = 256

// addressesOnly reports whether a peer set's ranges of one family are all narrow enough to be
// declared as a plain hash set of addresses (pod addresses merge into short ranges; ipBlocks are
// usually wide). A hash set is what the kernel can use the moment a transaction commits: Linux
// (6.18 here) makes a new table's rules live before it has built the lookup structure of the
// interval sets the same transaction created, so for a few milliseconds after every apply an
// interval set matches nothing, and traffic its rule allows is dropped (new connections' first
// packets, and established packets judged again).
func addressesOnly(peers ruleset.AddrSet, is4 bool) bool {
	return peers.Narrow(is4, maxHashRange)
}
