package epoch

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

var (
	webKey  = ruleset.PolicyKey{Namespace: "shop", Name: "allow-web"}
	denyKey = ruleset.PolicyKey{Namespace: "shop", Name: "deny"}
	a1      = netip.MustParseAddr("10.0.1.1")
	a2      = netip.MustParseAddr("10.0.1.2")
)

func peers(addrs ...string) ruleset.AddrSet {
	var b ruleset.Builder
	for _, a := range addrs {
		b.AddAddr(netip.MustParseAddr(a))
	}
	return b.Set()
}

func tcp(first, last uint16) ruleset.PortRange {
	return ruleset.PortRange{Protocol: ruleset.TCP, First: first, Last: last}
}

// cluster is the rule set of two local pods: web-1 (a1) isolated for ingress by allow-web, whose
// rule is given, and web-2 (a2), isolated by deny alone. change edits it before it is returned.
func cluster(change func(rs *ruleset.RuleSet)) *ruleset.RuleSet {
	rs := &ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{a1}, IngressPolicies: []ruleset.PolicyKey{webKey}},
			{Namespace: "shop", Name: "web-2", IPs: []netip.Addr{a2}, IngressPolicies: []ruleset.PolicyKey{denyKey}},
		},
		Policies: []ruleset.Policy{
			{Key: webKey, Ingress: []ruleset.Rule{{Index: 0, Peers: peers("10.0.2.1", "10.0.2.2"), Ports: []ruleset.PortRange{tcp(80, 80)}}}},
			{Key: denyKey, Ingress: []ruleset.Rule{}},
		},
		Local: []ruleset.LocalAddr{{Addr: a1, Pod: "shop/web-1"}, {Addr: a2, Pod: "shop/web-2"}},
	}
	if change != nil {
		change(rs)
	}
	return rs
}

func webRule(rs *ruleset.RuleSet) *ruleset.Rule { return &rs.Policies[0].Ingress[0] }

// TestNextAdvancesOnlyWhereAChangeCanNarrow pins how epochs are scoped: per local address and
// direction, moved only by a change that can deny something that was allowed there.
func TestNextAdvancesOnlyWhereAChangeCanNarrow(t *testing.T) {
	const cur = 40
	prev := State{Current: cur, Addrs: []Addr{
		{Addr: a1, Owner: "shop/web-1", Since: [2]uint32{30, 31}},
		{Addr: a2, Owner: "shop/web-2", Since: [2]uint32{20, 21}},
	}}
	unchanged := [2][2]uint32{{30, 31}, {20, 21}}
	cases := []struct {
		name   string
		change func(rs *ruleset.RuleSet)
		// want: Current, then Since of a1 and a2
		current uint32
		since   [2][2]uint32
	}{
		{"the same rule set changes nothing", nil, cur, unchanged},
		{"a pod joining a peer set re-validates nothing", func(rs *ruleset.RuleSet) {
			webRule(rs).Peers = peers("10.0.2.1", "10.0.2.2", "10.0.2.3")
		}, cur, unchanged},
		{"a new rule re-validates nothing", func(rs *ruleset.RuleSet) {
			rs.Policies[0].Ingress = append([]ruleset.Rule{{Index: 0, AnyPeer: true, Ports: []ruleset.PortRange{tcp(443, 443)}}}, rs.Policies[0].Ingress...)
		}, cur, unchanged},
		{"a wider port range re-validates nothing", func(rs *ruleset.RuleSet) {
			webRule(rs).Ports = []ruleset.PortRange{tcp(80, 90)}
		}, cur, unchanged},
		{"a second policy on an isolated pod re-validates nothing", func(rs *ruleset.RuleSet) {
			rs.Targets[0].IngressPolicies = []ruleset.PolicyKey{webKey, denyKey}
		}, cur, unchanged},
		{"isolation lost re-validates nothing", func(rs *ruleset.RuleSet) {
			rs.Targets = rs.Targets[1:]
		}, cur, unchanged},
		{"a peer leaving re-validates the pods the policy isolates, in that direction only", func(rs *ruleset.RuleSet) {
			webRule(rs).Peers = peers("10.0.2.1")
		}, cur + 1, [2][2]uint32{{cur + 1, 31}, {20, 21}}},
		{"a port removed re-validates", func(rs *ruleset.RuleSet) {
			webRule(rs).Ports = []ruleset.PortRange{tcp(81, 81)}
		}, cur + 1, [2][2]uint32{{cur + 1, 31}, {20, 21}}},
		{"a named port no longer resolving re-validates", func(rs *ruleset.RuleSet) {
			webRule(rs).NamedPorts = nil
		}, cur, unchanged}, // (there was none: nothing narrowed)
		{"a policy no longer selecting the pod re-validates", func(rs *ruleset.RuleSet) {
			rs.Targets[0].IngressPolicies = []ruleset.PolicyKey{denyKey}
		}, cur + 1, [2][2]uint32{{cur + 1, 31}, {20, 21}}},
		{"isolation gained re-validates that direction", func(rs *ruleset.RuleSet) {
			rs.Targets[1].EgressPolicies = []ruleset.PolicyKey{denyKey}
			rs.Policies[1].Egress = []ruleset.Rule{}
		}, cur + 1, [2][2]uint32{{30, 31}, {20, cur + 1}}},
		{"another pod on an address re-validates both directions", func(rs *ruleset.RuleSet) {
			rs.Local[1].Pod = "shop/web-3"
			rs.Targets[1].Name = "web-3"
		}, cur + 1, [2][2]uint32{{30, 31}, {cur + 1, cur + 1}}},
	}
	old := cluster(nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Next(prev, old, cluster(c.change))
			if got.Current != c.current {
				t.Errorf("Current = %d, want %d", got.Current, c.current)
			}
			if since := sinceOf(got); since != c.since {
				t.Errorf("Since = %v, want %v", since, c.since)
			}
		})
	}
}

func TestNextGivesANewAddressTheNewEpoch(t *testing.T) {
	old := cluster(nil)
	rs := cluster(func(rs *ruleset.RuleSet) {
		rs.Local = append(rs.Local, ruleset.LocalAddr{Addr: netip.MustParseAddr("10.0.1.3"), Pod: "shop/web-3"})
	})
	got := Next(Start(9, old), old, rs)
	if got.Current != 10 {
		t.Fatalf("Current = %d, want 10", got.Current)
	}
	if e, _ := got.Lookup(netip.MustParseAddr("10.0.1.3")); e.Since != [2]uint32{10, 10} {
		t.Errorf("the new address: Since = %v, want [10 10]", e.Since)
	}
	if e, _ := got.Lookup(a1); e.Since != [2]uint32{9, 9} {
		t.Errorf("an untouched address: Since = %v, want [9 9]", e.Since)
	}
}

func TestNextWithoutHistoryStartsAtOne(t *testing.T) {
	rs := cluster(nil)
	if got := Next(State{}, &ruleset.RuleSet{}, rs); got.Current != 1 || len(got.Addrs) != 2 || got.Addrs[0].Since != [2]uint32{1, 1} {
		t.Errorf("Next from nothing = %+v", got)
	}
}

func TestEpochsWrapAroundAndOldWindowsAreRebased(t *testing.T) {
	if After(Max) != 1 || After(1) != 2 || After(0) != 1 {
		t.Errorf("After(Max), After(1), After(0) = %d, %d, %d", After(Max), After(1), After(0))
	}
	old := cluster(nil)
	narrowed := cluster(func(rs *ruleset.RuleSet) { webRule(rs).Peers = peers("10.0.2.1") })
	// web-2's window dates from half the epochs ago: rebased to the new epoch, so a stamp of
	// the previous wrap can never fall in it.
	prev := State{Current: Max, Addrs: []Addr{
		{Addr: a1, Owner: "shop/web-1", Since: [2]uint32{Max - 3, Max - 3}},
		{Addr: a2, Owner: "shop/web-2", Since: [2]uint32{Max/2 + 1, Max - 1}},
	}}
	got := Next(prev, old, narrowed)
	want := []Addr{
		{Addr: a1, Owner: "shop/web-1", Since: [2]uint32{1, Max - 3}},
		{Addr: a2, Owner: "shop/web-2", Since: [2]uint32{1, Max - 1}},
	}
	if got.Current != 1 || !slices.Equal(got.Addrs, want) {
		t.Errorf("Next = %+v, want Current 1 and %+v", got, want)
	}
}

// TestHorizonMovesOncePerBlock pins the newer end of the fresh windows: the end of the current
// epoch's block of Block epochs, never past Max, so that windows stay put while the epoch moves
// within a block; and a wrapped window still ends at the horizon after the wrap.
func TestHorizonMovesOncePerBlock(t *testing.T) {
	for _, c := range []struct{ cur, want uint32 }{
		{1, Block}, {Block, Block}, {Block + 1, 2 * Block}, {Max - 1, Max}, {Max, Max},
	} {
		if got := Horizon(c.cur); got != c.want {
			t.Errorf("Horizon(%d) = %d, want %d", c.cur, got, c.want)
		}
	}
	for cur := uint32(1); cur <= Block; cur++ {
		if got := Windows(1, Horizon(cur)); !slices.Equal(got, Windows(1, Block)) {
			t.Fatalf("the window of an address moved with the epoch inside a block: at %d %#x", cur, got)
		}
	}
	if got, want := Windows(Max-1, Horizon(2)), [][2]uint32{{Mark(1), Mark(Block) | LowMask}, {Mark(Max - 1), Mark(Max) | LowMask}}; !slices.Equal(got, want) {
		t.Errorf("wrapped window = %#x, want %#x", got, want)
	}
}

func TestWindows(t *testing.T) {
	cases := []struct {
		since, cur uint32
		want       [][2]uint32
	}{
		{5, 7, [][2]uint32{{0x5000, 0x7fff}}},
		{7, 7, [][2]uint32{{0x7000, 0x7fff}}},
		// Wrapped: epoch 0 (an unstamped flow) is never in a window.
		{Max - 1, 2, [][2]uint32{{0x1000, 0x2fff}, {0xffffe000, 0xffffffff}}},
	}
	for _, c := range cases {
		if got := Windows(c.since, c.cur); !slices.Equal(got, c.want) {
			t.Errorf("Windows(%d, %d) = %#x, want %#x", c.since, c.cur, got, c.want)
		}
	}
}

// TestClusterNetworkPolicyChangesNarrow pins that under ClusterNetworkPolicy tiers any change to
// what judges an address counts as narrowing in that direction (a Deny can override any allow,
// so even an added policy or rule can refuse a live flow), and nothing else moves.
func TestClusterNetworkPolicyChangesNarrow(t *testing.T) {
	const cur = 40
	prev := State{Current: cur, Addrs: []Addr{
		{Addr: a1, Owner: "shop/web-1", Since: [2]uint32{30, 31}},
		{Addr: a2, Owner: "shop/web-2", Since: [2]uint32{20, 21}},
	}}
	withTier := func(change func(rs *ruleset.RuleSet)) *ruleset.RuleSet {
		return cluster(func(rs *ruleset.RuleSet) {
			rs.ClusterPolicies = []ruleset.ClusterPolicy{{Name: "block", Tier: ruleset.AdminTier, Priority: 1,
				Ingress: []ruleset.ClusterRule{{Rule: ruleset.Rule{Index: 0, Peers: peers("10.0.3.1"), AnyPort: true}, Action: ruleset.Deny}}}}
			rs.Targets[0].AdminIngress = []string{"block"}
			if change != nil {
				change(rs)
			}
		})
	}
	unchanged := [2][2]uint32{{30, 31}, {20, 21}}
	a1In := [2][2]uint32{{cur + 1, 31}, {20, 21}}
	for _, c := range []struct {
		name     string
		old, cur *ruleset.RuleSet
		since    [2][2]uint32
	}{
		{"the same tiers change nothing", withTier(nil), withTier(nil), unchanged},
		{"a policy gained by the tier narrows", cluster(nil), withTier(nil), a1In},
		{"a policy lost by the tier narrows (a Pass or an Accept may have let it pass a Deny)", withTier(nil), cluster(nil), a1In},
		{"a peer added to a Deny rule narrows", withTier(nil), withTier(func(rs *ruleset.RuleSet) {
			rs.ClusterPolicies[0].Ingress[0].Peers = peers("10.0.3.1", "10.0.3.2")
		}), a1In},
		{"a NetworkPolicy change under a tier narrows", withTier(nil), withTier(func(rs *ruleset.RuleSet) {
			webRule(rs).Peers = peers("10.0.2.1", "10.0.2.2", "10.0.2.3")
		}), a1In},
		{"a change of another direction's policies does not", withTier(nil), withTier(func(rs *ruleset.RuleSet) {
			rs.ClusterPolicies[0].Egress = []ruleset.ClusterRule{{Rule: ruleset.Rule{Index: 0, AnyPeer: true, AnyPort: true}, Action: ruleset.Accept}}
		}), unchanged},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Next(prev, c.old, c.cur)
			if since := sinceOf(got); since != c.since {
				t.Errorf("Since = %v, want %v", since, c.since)
			}
		})
	}
}

// sinceOf returns Since of a1 and a2 in st.
func sinceOf(st State) (since [2][2]uint32) {
	for i, a := range []netip.Addr{a1, a2} {
		if e, ok := st.Lookup(a); ok {
			since[i] = e.Since
		}
	}
	return since
}

// TestWindowedChangesOnlyAtANewBlock pins the windows the table holds (State.Windowed): every
// epoch of the current block, so that a narrowing change within the block finds the chains it
// moves addresses to, and the older Sinces held when the block began, kept until it ends even
// once no address holds them, so that a change within a block never deletes a window chain
// either: the set changes only when a change starts a new block.
func TestWindowedChangesOnlyAtANewBlock(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.1.3")}
	rs := func(owners ...string) *ruleset.RuleSet {
		r := &ruleset.RuleSet{}
		for i, a := range addrs {
			r.Local = append(r.Local, ruleset.LocalAddr{Addr: a, Pod: owners[i]})
		}
		return r
	}
	block := func(first, last uint32, more ...uint32) []uint32 {
		out := append([]uint32(nil), more...)
		for e := first; e <= last; e++ {
			out = append(out, e)
		}
		slices.Sort(out)
		return out
	}
	// The last epoch of the first block, addresses valid from 5, 30 and 64.
	st := State{Current: 64, Addrs: []Addr{
		{Addr: addrs[0], Owner: "a", Since: [2]uint32{5, 5}},
		{Addr: addrs[1], Owner: "b", Since: [2]uint32{30, 30}},
		{Addr: addrs[2], Owner: "c", Since: [2]uint32{64, 64}},
	}}
	if got, want := st.Windowed(), block(1, 64); !slices.Equal(got, want) {
		t.Fatalf("block 1: Windowed = %v, want %v", got, want)
	}
	// c changes owner (narrows): the epoch moves into the next block.
	st = Next(st, rs("a", "b", "c"), rs("a", "b", "c2"))
	if st.Current != 65 || !slices.Equal(st.Kept, []uint32{5, 30}) {
		t.Fatalf("new block: Current %d, Kept %v; want 65, [5 30]", st.Current, st.Kept)
	}
	want := block(65, 128, 5, 30)
	if got := st.Windowed(); !slices.Equal(got, want) {
		t.Fatalf("block 2: Windowed = %v, want %v", got, want)
	}
	// a narrows: nobody holds 5 any more, yet its window stays until the block ends.
	st = Next(st, rs("a", "b", "c2"), rs("a2", "b", "c2"))
	if got := st.Windowed(); st.Current != 66 || !slices.Equal(got, want) {
		t.Fatalf("within the block: Current %d, Windowed = %v; want 66, %v", st.Current, got, want)
	}
	// Into the third block: only 30 is still held.
	for st.Current < 128 {
		prevOwner := fmt.Sprintf("c%d", st.Current)
		st = Next(st, rs("a2", "b", prevOwner), rs("a2", "b", prevOwner+"x"))
		st.Addrs[2].Owner = fmt.Sprintf("c%d", st.Current) // the next step's old owner
	}
	st = Next(st, rs("a2", "b", fmt.Sprintf("c%d", st.Current)), rs("a2", "b", "last"))
	if st.Current != 129 || !slices.Equal(st.Kept, []uint32{30, 66}) {
		t.Fatalf("third block: Current %d, Kept %v; want 129, [30 66]", st.Current, st.Kept)
	}
}

// TestNextReadsLocalInAnyOrder pins that Next judges each address alike whether the new rule
// set's Local is sorted (as the translator makes it, which Next reads by position) or not.
func TestNextReadsLocalInAnyOrder(t *testing.T) {
	prev := State{Current: 40, Addrs: []Addr{
		{Addr: a1, Owner: "shop/web-1", Since: [2]uint32{30, 31}},
		{Addr: a2, Owner: "shop/web-2", Since: [2]uint32{20, 21}},
	}}
	narrowed := func(rs *ruleset.RuleSet) { webRule(rs).Peers = peers("10.0.2.1") }
	sorted := Next(prev, cluster(nil), cluster(narrowed))
	reversed := Next(prev, cluster(nil), cluster(func(rs *ruleset.RuleSet) {
		narrowed(rs)
		slices.Reverse(rs.Local)
	}))
	slices.Reverse(reversed.Addrs) // State.Addrs follow Local
	if got, want := sinceOf(reversed), sinceOf(sorted); got != want {
		t.Errorf("with Local reversed, Since = %v, want %v", got, want)
	}
	if want := [2][2]uint32{{41, 31}, {20, 21}}; sinceOf(sorted) != want {
		t.Errorf("Since = %v, want %v", sinceOf(sorted), want)
	}
}

// TestAddrKeysOrderAsAddrs pins that the numbers the views search order addresses as
// netip.Addr.Compare does, families and IPv4-mapped IPv6 addresses included.
func TestAddrKeysOrderAsAddrs(t *testing.T) {
	addrs := []netip.Addr{{}}
	for _, s := range []string{"0.0.0.0", "10.0.1.1", "10.0.1.2", "255.255.255.255", "::", "::1", "::ffff:10.0.1.1",
		"fd00::1", "fd00::1:0", "fd00:0:0:1::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	for _, a := range addrs {
		for _, b := range addrs {
			if got, want := compareKeys(keyOf(a), keyOf(b)), a.Compare(b); got != want {
				t.Errorf("compareKeys(%v, %v) = %d, want %d", a, b, got, want)
			}
		}
	}
}
