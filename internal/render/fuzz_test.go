package render

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/fuzzbytes"
	"github.com/flock-net/flock-netpol/test/nftcheck"
)

// TestNamesThatNeverPassedValidationStayValidIdentifiers pins generatedName's and comment's rule:
// a namespace, pod or policy name that the API server would have rejected (an object written
// straight into etcd) cannot make nft reject the whole script: outside [a-zA-Z0-9/_.-] the
// readable part of a name becomes '_', and a comment loses its quotes, newlines and NUL bytes.
func TestNamesThatNeverPassedValidationStayValidIdentifiers(t *testing.T) {
	bad := []string{`a"b`, "a b", "a;b{}", "a\nb", "a\x00b", "ünïcödé", "a:b", "$x", "@set", "#c", `a\b`, strings.Repeat("é", 80)}
	var rs ruleset.RuleSet
	for i, name := range bad {
		a := netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)})
		key := ruleset.PolicyKey{Namespace: name, Name: name}
		rs.Targets = append(rs.Targets, ruleset.Target{Namespace: name, Name: fmt.Sprint(i), IPs: []netip.Addr{a}, IngressPolicies: []ruleset.PolicyKey{key}})
		rs.Policies = append(rs.Policies, ruleset.Policy{Key: key, Ingress: []ruleset.Rule{{Index: 0, Peers: set("10.0.2.0/24"), AnyPort: true}}})
		rs.Local = append(rs.Local, ruleset.LocalAddr{Addr: a, Pod: name + "/" + fmt.Sprint(i)})
	}
	slices.SortFunc(rs.Targets, func(a, b ruleset.Target) int { return strings.Compare(a.Namespace, b.Namespace) })
	slices.SortFunc(rs.Policies, func(a, b ruleset.Policy) int { return strings.Compare(a.Key.Namespace, b.Key.Namespace) })
	script := Render(rs, Options{}).Text
	for _, line := range strings.Split(string(script), "\n") {
		if strings.Contains(line, "\x00") {
			t.Errorf("a NUL byte reached the script: %q", line)
		}
	}
	for _, name := range bad {
		for _, d := range []direction{ingress, egress} {
			n := policyChainName(d, ruleset.PolicyKey{Namespace: name, Name: name})
			if strings.IndexFunc(n, func(r rune) bool { return identifierRune(r) != r }) >= 0 || len(n) > maxNameLen {
				t.Errorf("policy %q: chain name %q is not a plain nft identifier of at most %d bytes", name, n, maxNameLen)
			}
		}
	}
	if c := nftcheck.Client(t); c != nil {
		if err := c.Check(context.Background(), script); err != nil {
			t.Errorf("nft -c rejects the script of badly named objects: %v", err)
		}
	}
}

// fuzzReader builds values out of the fuzzer's bytes (fuzzbytes).
type fuzzReader struct{ *fuzzbytes.Reader }

func (r *fuzzReader) uint16() uint16 { return uint16(r.Byte())<<8 | uint16(r.Byte()) }

// name returns one of a few names, a bad one (see TestNamesThatNeverPassedValidationStayValidIdentifiers)
// or a few of the fuzzer's raw bytes.
func (r *fuzzReader) name() string {
	names := []string{"a", "web", "x.y-z", strings.Repeat("long", 40), `q"uote`, "sp ace", "nul\x00", "ünï"}
	if i := r.N(len(names) + 1); i < len(names) {
		return names[i]
	}
	n := r.N(12)
	s := make([]byte, n)
	for i := range s {
		s[i] = r.Byte()
	}
	return string(s)
}

// addr returns an address of a small pool (two /24s and two /112s), or a random one.
func (r *fuzzReader) addr() netip.Addr {
	switch r.N(4) {
	case 0:
		return netip.AddrFrom4([4]byte{10, 0, byte(r.N(2)), r.Byte()})
	case 1:
		return netip.AddrFrom16([16]byte{0: 0xfd, 13: byte(r.N(2)), 14: 0, 15: r.Byte()})
	case 2:
		return netip.AddrFrom4([4]byte{r.Byte(), r.Byte(), r.Byte(), r.Byte()})
	}
	var b [16]byte
	for i := range b {
		b[i] = r.Byte()
	}
	return netip.AddrFrom16(b)
}

func (r *fuzzReader) prefix() netip.Prefix {
	a := r.addr()
	return netip.PrefixFrom(a, r.N(a.BitLen()+1)).Masked()
}

func (r *fuzzReader) protocol() ruleset.Protocol {
	return []ruleset.Protocol{ruleset.TCP, ruleset.UDP, ruleset.SCTP}[r.N(3)]
}

// rule builds one rule. ownAddrs are the local addresses, where named ports of ingress rules live.
func (r *fuzzReader) rule(index int, ownAddrs []netip.Addr) ruleset.Rule {
	rule := ruleset.Rule{Index: index, AnyPeer: r.N(4) == 0, AnyPort: r.N(4) == 0}
	if !rule.AnyPeer {
		var b ruleset.Builder
		for range r.N(6) {
			if r.Bool() {
				b.AddAddr(r.addr())
			} else {
				b.AddPrefix(r.prefix())
			}
		}
		rule.Peers = b.Set()
	}
	if !rule.AnyPort {
		for range r.N(4) {
			pr := ruleset.PortRange{Protocol: r.protocol()}
			if !r.Bool() {
				pr.First = max(r.uint16(), 1)
				pr.Last = pr.First
				if r.Bool() {
					pr.Last = max(pr.First, r.uint16())
				}
			}
			if !slices.Contains(rule.Ports, pr) {
				rule.Ports = append(rule.Ports, pr)
			}
		}
		for range r.N(4) {
			a := r.addr()
			if len(ownAddrs) > 0 && r.Bool() {
				a = ownAddrs[r.N(len(ownAddrs))]
			}
			rule.NamedPorts = append(rule.NamedPorts, ruleset.Endpoint{Addr: a, Protocol: r.protocol(), Port: max(r.uint16(), 1)})
		}
		slices.SortFunc(rule.NamedPorts, ruleset.CompareEndpoints)
		rule.NamedPorts = slices.Compact(rule.NamedPorts)
	}
	return rule
}

// fuzzRuleSet builds a rule set that keeps every promise of package ruleset (sorted, unique keys
// and addresses, every referenced policy present) from the fuzzer's bytes, and the options to
// render it with.
func fuzzRuleSet(data []byte) (ruleset.RuleSet, Options) {
	r := &fuzzReader{fuzzbytes.New(data)}
	var rs ruleset.RuleSet
	opts := Options{AntiSpoofing: r.Bool()}
	if r.Bool() {
		opts.Established = Keep
	}

	var keys []ruleset.PolicyKey
	for range r.N(5) {
		k := ruleset.PolicyKey{Namespace: r.name(), Name: r.name()}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	used := map[netip.Addr]bool{}
	fresh := func() netip.Addr {
		for range 4 {
			if a := r.addr(); !used[a] {
				used[a] = true
				return a
			}
		}
		return netip.Addr{}
	}
	targets := map[string]bool{}
	for range r.N(5) {
		t := ruleset.Target{Namespace: r.name(), Name: r.name()}
		if targets[podID(&t)] {
			continue
		}
		targets[podID(&t)] = true
		for range 1 + r.N(2) {
			if a := fresh(); a.IsValid() {
				t.IPs = append(t.IPs, a)
			}
		}
		slices.SortFunc(t.IPs, netip.Addr.Compare)
		for _, k := range keys {
			switch r.N(4) {
			case 1:
				t.IngressPolicies = append(t.IngressPolicies, k)
			case 2:
				t.EgressPolicies = append(t.EgressPolicies, k)
			case 3:
				t.IngressPolicies = append(t.IngressPolicies, k)
				t.EgressPolicies = append(t.EgressPolicies, k)
			}
		}
		if len(t.IngressPolicies)+len(t.EgressPolicies) > 0 {
			rs.Targets = append(rs.Targets, t)
		}
	}
	for range r.N(3) {
		c := ruleset.Claim{Addr: fresh()}
		if !c.Addr.IsValid() {
			continue
		}
		c.Claimants = []string{"c/" + r.name(), "c/" + r.name() + "~"}
		slices.Sort(c.Claimants)
		for _, pod := range c.Claimants {
			if len(keys) > 0 && r.Bool() {
				c.Ingress = append(c.Ingress, ruleset.ClaimantPolicies{Pod: pod, Policies: []ruleset.PolicyKey{keys[r.N(len(keys))]}})
			}
			if len(keys) > 0 && r.Bool() {
				c.Egress = append(c.Egress, ruleset.ClaimantPolicies{Pod: pod, Policies: []ruleset.PolicyKey{keys[r.N(len(keys))]}})
			}
		}
		rs.Claims = append(rs.Claims, c)
		rs.Local = append(rs.Local, ruleset.LocalAddr{Addr: c.Addr, Pod: strings.Join(c.Claimants, ",")})
	}
	var own []netip.Addr
	for _, t := range rs.Targets {
		own = append(own, t.IPs...)
		for _, a := range t.IPs {
			rs.Local = append(rs.Local, ruleset.LocalAddr{Addr: a, Pod: podID(&t)})
		}
	}
	for _, k := range keys {
		p := ruleset.Policy{Key: k}
		if r.N(3) > 0 {
			p.Ingress = []ruleset.Rule{}
			for i := range r.N(4) {
				p.Ingress = append(p.Ingress, r.rule(i, own))
			}
		}
		if r.N(3) > 0 {
			p.Egress = []ruleset.Rule{}
			for i := range r.N(4) {
				p.Egress = append(p.Egress, r.rule(i, nil))
			}
		}
		rs.Policies = append(rs.Policies, p)
	}
	for range r.N(3) {
		rs.Edges.PodCIDRs = append(rs.Edges.PodCIDRs, r.prefix())
	}
	if len(rs.Edges.PodCIDRs) > 0 {
		for _, l := range rs.Local {
			rs.Edges.LocalPods = append(rs.Edges.LocalPods, l.Addr)
		}
	}

	slices.SortFunc(rs.Targets, func(a, b ruleset.Target) int {
		return strings.Compare(podID(&a), podID(&b))
	})
	slices.SortFunc(rs.Policies, func(a, b ruleset.Policy) int {
		return strings.Compare(a.Key.Namespace+"\x00"+a.Key.Name, b.Key.Namespace+"\x00"+b.Key.Name)
	})
	for i := range rs.Targets {
		for _, ks := range [][]ruleset.PolicyKey{rs.Targets[i].IngressPolicies, rs.Targets[i].EgressPolicies} {
			slices.SortFunc(ks, func(a, b ruleset.PolicyKey) int {
				return strings.Compare(a.Namespace+"\x00"+a.Name, b.Namespace+"\x00"+b.Name)
			})
		}
	}
	slices.SortFunc(rs.Claims, func(a, b ruleset.Claim) int { return a.Addr.Compare(b.Addr) })
	slices.SortFunc(rs.Local, func(a, b ruleset.LocalAddr) int { return a.Addr.Compare(b.Addr) })
	slices.SortFunc(rs.Edges.PodCIDRs, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	rs.Edges.PodCIDRs = slices.Compact(rs.Edges.PodCIDRs)
	slices.SortFunc(rs.Edges.LocalPods, netip.Addr.Compare)
	if r.Bool() {
		opts.Epochs = epoch.Start(uint32(r.Byte())+1, &rs)
	}
	return rs, opts
}

// FuzzRender renders random rule sets: the renderer never panics, gives the same bytes twice, a
// digest that Digest reads back, the Table that ParseTable reads back, and (as root) a script that `nft -c -f -` accepts. The seeds
// (testdata/fuzz/FuzzRender and the golden cases' shapes) run with every `go test`; `make fuzz`
// explores further.
func FuzzRender(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x01\x04\x00\x00\x00\x00\x04\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
	f.Add(bytes.Repeat([]byte{0xff, 0x01, 0x7f, 0x80, 0x03}, 40))
	f.Add(bytes.Repeat([]byte{0x05, 0x06, 0x07, 0x08}, 60))
	checker := nftcheck.Client(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, opts := fuzzRuleSet(data)
		a := Render(rs, opts)
		if b := Render(rs, opts); !bytes.Equal(a.Text, b.Text) || a.Digest != b.Digest {
			t.Fatal("two renders of one rule set differ")
		}
		if d, ok := Digest(a.Text); !ok || d != a.Digest {
			t.Fatalf("Digest(script) = %q, %v; want %q", d, ok, a.Digest)
		}
		checkTable(t, a)
		if checker != nil {
			if err := checker.Check(context.Background(), a.Text); err != nil {
				t.Fatalf("nft -c rejects the script: %v\n%s", err, a.Text)
			}
		}
	})
}

// TestNestedPodRangesAreOneElement pins edges' rule that pod ranges which nest (two ranges of a
// Node, or an override, one inside the other; found by FuzzRender) are written as the widest one:
// overlapping elements make nft reject the whole script ("conflicting intervals").
func TestNestedPodRangesAreOneElement(t *testing.T) {
	rs := ruleset.RuleSet{Edges: ruleset.Edges{PodCIDRs: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16"),
		netip.MustParsePrefix("::/0"), netip.MustParsePrefix("fd00::/48"),
	}}}
	script := string(Render(rs, Options{}).Text)
	for _, inner := range []string{"10.1.0.0/16", "10.2.0.0/16", "fd00::/48"} {
		if strings.Contains(script, inner) {
			t.Errorf("the script lists %s, which lies inside another pod range", inner)
		}
	}
	if c := nftcheck.Client(t); c != nil {
		if err := c.Check(context.Background(), []byte(script)); err != nil {
			t.Errorf("nft -c rejects nested pod ranges: %v", err)
		}
	}
}
