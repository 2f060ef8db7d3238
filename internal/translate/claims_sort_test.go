package translate

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

// TestSortByKeyIsAStableSortByKey compares the radix sort with a stable comparison sort, on
// inputs whose keys vary in all, some or none of the radix digits.
func TestSortByKeyIsAStableSortByKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, mask := range []uint32{0, 0xff, 0x7ff, 0x3ff800, 0xffc00000, 0x0000ffff, 0x00f0f00f, 0xffffffff} {
		for _, n := range []int{0, 1, 255, 256, 3000} {
			keys := make([]uint64, n)
			for i := range keys {
				keys[i] = uint64(0x0a000000|rng.Uint32()&mask)<<32 | uint64(i)
			}
			want := slices.Clone(keys)
			slices.SortStableFunc(want, func(a, b uint64) int { return cmp.Compare(a>>32, b>>32) })
			got, other := sortByKey(slices.Clone(keys), make([]uint64, n))
			if !slices.Equal(got, want) {
				t.Errorf("mask %#x, %d keys: not sorted stably by key", mask, n)
			}
			if len(other) != n {
				t.Errorf("mask %#x, %d keys: the scratch slice has %d values", mask, n, len(other))
			}
		}
	}
}

// TestClaimCandidatesKeepEveryRepeatedKey pins what findClaims relies on: every key that another
// key equals is kept, in its order, and most keys that no other equals are not (else the filter
// saves nothing). The keys are random, or IPv4 addresses a step of two apart (structured like a
// cluster's pod addresses), with repeated keys at both ends and in the middle, below and above
// the size that filters.
func TestClaimCandidatesKeepEveryRepeatedKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{10, candidatesMin - 1, candidatesMin, 50000, 170000} {
		for _, structured := range []bool{false, true} {
			distinct := map[uint32]bool{}
			var vals []uint32
			for len(vals) < n {
				v := rng.Uint32()
				if structured {
					v = 0x0a000000 | uint32(len(vals))<<1 // 10.x.y.z, every other address
				}
				if !distinct[v] {
					distinct[v] = true
					vals = append(vals, v)
				}
			}
			for _, i := range []int{0, n / 2, n - 1} { // repeat these keys elsewhere
				vals = append(vals, vals[i])
			}
			count := map[uint32]int{}
			keys := make([]uint64, len(vals))
			for i, v := range vals {
				keys[i] = uint64(v)<<32 | uint64(i)
				count[v]++
			}
			var want []uint64
			for _, k := range keys {
				if count[uint32(k>>32)] > 1 {
					want = append(want, k)
				}
			}
			got := claimCandidates(slices.Clone(keys))
			var repeated []uint64
			for _, k := range got {
				if count[uint32(k>>32)] > 1 {
					repeated = append(repeated, k)
				}
			}
			if !slices.Equal(repeated, want) {
				t.Errorf("%d keys (structured %v): kept %v of the repeated keys, want %v", len(keys), structured, repeated, want)
			}
			if !slices.IsSortedFunc(got, func(a, b uint64) int { return cmp.Compare(uint32(a), uint32(b)) }) {
				t.Errorf("%d keys (structured %v): the candidates are out of order", len(keys), structured)
			}
			if n >= candidatesMin && len(got) > len(keys)/4 {
				t.Errorf("%d keys (structured %v): %d candidates, want at most a quarter", len(keys), structured, len(got))
			}
		}
	}
}

// TestSortEndpointsIsCompareEndpointsOrder compares sortEndpoints, which sorts IPv4 endpoints as
// integers, with the comparison sort it replaces: IPv4 only, IPv6 only, both mixed, one protocol
// or all three, duplicates, ports at both ends of their range, and an endpoint with no address
// or an unknown protocol (the general order).
func TestSortEndpointsIsCompareEndpointsOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int, v4, v6 bool, protos ...ruleset.Protocol) []ruleset.Endpoint {
		var eps []ruleset.Endpoint
		for len(eps) < n {
			ep := ruleset.Endpoint{Protocol: protos[rng.IntN(len(protos))], Port: []uint16{0, 1, 80, 8080, 65535}[rng.IntN(5)]}
			if v4 && (!v6 || rng.IntN(2) == 0) {
				ep.Addr = netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), 255, byte(rng.IntN(256))})
			} else {
				ep.Addr = netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(rng.IntN(256))})
			}
			eps = append(eps, ep)
		}
		return eps
	}
	tcp, all := []ruleset.Protocol{ruleset.TCP}, []ruleset.Protocol{ruleset.UDP, ruleset.TCP, ruleset.SCTP}
	cases := map[string][]ruleset.Endpoint{
		"empty":                  nil,
		"IPv4":                   random(3000, true, false, tcp...),
		"IPv6":                   random(500, false, true, tcp...),
		"mixed":                  random(3000, true, true, tcp...),
		"IPv4, three protocols":  random(3000, true, false, all...),
		"mixed, three protocols": random(3000, true, true, all...),
		"no address":             append(random(50, true, true, tcp...), ruleset.Endpoint{Protocol: ruleset.TCP, Port: 7}),
		"an unknown protocol":    append(random(50, true, true, all...), ruleset.Endpoint{Addr: netip.MustParseAddr("10.0.0.1"), Protocol: "dccp", Port: 7}),
	}
	for name, eps := range cases {
		want := slices.Clone(eps)
		slices.SortFunc(want, ruleset.CompareEndpoints)
		got := slices.Clone(eps)
		sortEndpoints(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: differs from the order of CompareEndpoints", name)
		}
	}
}

// TestAPanicResolvingPeersAheadReachesTheCaller pins resolvePeersAhead's goroutines: a panic in
// one (here a pod whose input was lost) is raised again on the translating goroutine, where the
// reconciler recovers it, rather than ending the process.
func TestAPanicResolvingPeersAheadReachesTheCaller(t *testing.T) {
	defer setPeersAhead(0)()
	tr := newTranslator()
	tr.loadNamespaces(standardNamespaces())
	tr.loadPods(compact.NewPods(standardPods()), localNode)
	for _, p := range tr.namespaces["y"].pods {
		if p.src.Name() == "b" {
			p.src = nil // its labels cannot be read
		}
	}
	policies := []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"),
		objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "y"}))))}
	var got any
	func() {
		defer func() { got = recover() }()
		tr.resolvePeersAhead(policies)
	}()
	if got == nil {
		t.Fatal("resolvePeersAhead did not panic on its caller's goroutine")
	}
}
