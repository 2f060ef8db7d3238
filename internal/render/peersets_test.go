package render

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"testing"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// largePeersRuleSet is a rule set whose peer sets hold enough elements for a render with text to
// format them on other goroutines: hash sets and interval sets of both families, a set shared by
// two rules and by two policies, a rule whose only ports are named, and one with no port its
// peers could use (no set).
func largePeersRuleSet() ruleset.RuleSet {
	peers := func(seed, n int) ruleset.AddrSet {
		var b ruleset.Builder
		for i := range n {
			b.AddAddr(netip.AddrFrom4([4]byte{10, byte(seed), byte(i >> 8), byte(i)}))
			if i%3 == 0 {
				b.AddAddr(netip.AddrFrom16([16]byte{0: 0xfd, 5: byte(seed), 14: byte(i >> 8), 15: byte(i)}))
			}
		}
		if seed%4 == 0 { // an ipBlock as well: an interval set
			b.AddPrefix(netip.MustParsePrefix(fmt.Sprintf("172.%d.0.0/16", seed)))
			b.AddPrefix(netip.MustParsePrefix(fmt.Sprintf("fc%02x::/32", seed)))
		}
		return b.Set()
	}
	shared := peers(99, 700)
	tcp80 := []ruleset.PortRange{{Protocol: ruleset.TCP, First: 80, Last: 80}}
	var rs ruleset.RuleSet
	for p := range 6 {
		key := ruleset.PolicyKey{Namespace: "shop", Name: fmt.Sprintf("p%d", p)}
		pol := ruleset.Policy{Key: key}
		for i := range 4 {
			pol.Ingress = append(pol.Ingress, ruleset.Rule{Index: i, Peers: peers(10*p+i, 300+100*i), Ports: tcp80})
		}
		pol.Ingress = append(pol.Ingress,
			ruleset.Rule{Index: 4, Peers: shared, AnyPort: true},
			ruleset.Rule{Index: 5, Peers: shared, Ports: tcp80},
			ruleset.Rule{Index: 6, Peers: peers(10*p+6, 500), NamedPorts: []ruleset.Endpoint{{Addr: ip("10.0.1.1"), Protocol: ruleset.TCP, Port: 8443}}},
			ruleset.Rule{Index: 7, Peers: peers(10*p+7, 500)}, // no port: no set
		)
		pol.Egress = []ruleset.Rule{{Index: 0, Peers: peers(10*p+8, 400), AnyPort: true}}
		rs.Policies = append(rs.Policies, pol)
		rs.Targets = append(rs.Targets, ruleset.Target{Namespace: "shop", Name: fmt.Sprintf("web-%d", p),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 1, byte(p + 1)})}, IngressPolicies: []ruleset.PolicyKey{key}, EgressPolicies: []ruleset.PolicyKey{key}})
	}
	return rs
}

// TestPeerSetsFormattedAheadAreTheOnesFormattedInOrder pins startPeerSets: a render with text
// that formats its peer sets on other goroutines writes the same bytes, Table, digest and stats
// as one that formats each when it reaches it, with or without a Memo, and its Table is what its
// text reads.
func TestPeerSetsFormattedAheadAreTheOnesFormattedInOrder(t *testing.T) {
	rs := largePeersRuleSet()
	inOrder := func(opts Options) Script {
		defer func(n int) { parallelPeerElements = n }(parallelPeerElements)
		parallelPeerElements = math.MaxInt
		return Render(rs, opts)
	}
	want := inOrder(Options{})
	var m Memo
	for _, c := range []struct {
		name string
		opts Options
	}{{"without a memo", Options{}}, {"with an empty memo", Options{Memo: &m}}, {"with a full memo", Options{Memo: &m}}} {
		t.Run(c.name, func(t *testing.T) {
			s := &script{memo: c.opts.Memo}
			s.startPeerSets(&rs)
			s.peerJobs.wait()
			if formatted := s.peerJobs != nil; formatted != (c.name != "with a full memo") {
				t.Fatalf("peer sets formatted ahead: %v", formatted)
			}
			got := Render(rs, c.opts)
			if !bytes.Equal(got.Text, want.Text) {
				t.Fatalf("the text differs from the one formatted in order:\n%s", firstDifference(splitLines(got.Text), splitLines(want.Text)))
			}
			if got.Digest != want.Digest || got.Stats != want.Stats || !got.Table.Equal(want.Table) {
				t.Fatalf("digest %s, stats %+v against %s, %+v; tables equal: %v", got.Digest, got.Stats, want.Digest, want.Stats, got.Table.Equal(want.Table))
			}
			checkTable(t, got)
		})
	}
	if want.Stats.Elements < parallelPeerElements {
		t.Fatalf("the rule set has %d elements, fewer than the %d that are formatted ahead", want.Stats.Elements, parallelPeerElements)
	}
}

func splitLines(b []byte) []string {
	var out []string
	for line := range bytes.Lines(b) {
		out = append(out, string(line))
	}
	return out
}

// TestAPanicFormattingAheadReachesTheRender pins the peer set goroutines: a panic in one (here
// formatting without scratch space) is raised again when the render takes the set, on the
// render's goroutine, where the reconciler recovers it, rather than ending the process.
func TestAPanicFormattingAheadReachesTheRender(t *testing.T) {
	peers := set("10.0.0.1")
	key := memoKey{kind: memoPeers, is4: true, id: peers.Identity(true)}
	j := &peerSetJob{peers: peers, is4: true, addrs: true, done: make(chan struct{})}
	j.run(newDigester(), nil)
	s := &script{peerJobs: &peerSetJobs{jobs: map[memoKey]*peerSetJob{key: j}}}
	var got any
	func() {
		defer func() { got = recover() }()
		s.formattedPeerSet(key, peers, true, true)
	}()
	if got == nil || got != j.panicked {
		t.Fatalf("the render raised %v, want the job's panic %v", got, j.panicked)
	}
}
