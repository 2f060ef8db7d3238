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

// TestSortOneProtocolIsCompareEndpointsOrder compares sortOneProtocol, which sorts IPv4
// endpoints as integers, with the comparison sort it replaces in peerEndpoints: IPv4 only, IPv6
// only, both mixed, duplicates, ports at both ends of their range, and an endpoint with no
// address (the general order).
func TestSortOneProtocolIsCompareEndpointsOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int, v4, v6 bool) []ruleset.Endpoint {
		var eps []ruleset.Endpoint
		for len(eps) < n {
			ep := ruleset.Endpoint{Protocol: ruleset.TCP, Port: []uint16{0, 1, 80, 8080, 65535}[rng.IntN(5)]}
			if v4 && (!v6 || rng.IntN(2) == 0) {
				ep.Addr = netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), 255, byte(rng.IntN(256))})
			} else {
				ep.Addr = netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(rng.IntN(256))})
			}
			eps = append(eps, ep)
		}
		return eps
	}
	cases := map[string][]ruleset.Endpoint{
		"empty":      nil,
		"IPv4":       random(3000, true, false),
		"IPv6":       random(500, false, true),
		"mixed":      random(3000, true, true),
		"no address": append(random(50, true, true), ruleset.Endpoint{Protocol: ruleset.TCP, Port: 7}),
	}
	for name, eps := range cases {
		want := slices.Clone(eps)
		slices.SortFunc(want, ruleset.CompareEndpoints)
		got := slices.Clone(eps)
		sortOneProtocol(got)
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
