package ruleset

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// TestWithAndWithoutAddrMatchTheBuilder pins that adding and removing one address at a time gives,
// after every step, exactly (reflect.DeepEqual) the set a Builder makes of the same addresses, and
// never changes the set it started from. The addresses crowd around range boundaries, carries
// between the halves of IPv6 addresses and the ends of both address spaces.
func TestWithAndWithoutAddrMatchTheBuilder(t *testing.T) {
	var universe []netip.Addr
	for _, base := range []string{"0.0.0.0", "10.0.0.250", "10.0.1.0", "255.255.255.250", "::", "fd00::fffe", "fd00:0:0:0:ffff:ffff:ffff:fffc", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffa"} {
		a := netip.MustParseAddr(base)
		for range 6 {
			universe = append(universe, a)
			if a = a.Next(); !a.IsValid() {
				break
			}
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for run := range 50 {
		in := map[netip.Addr]bool{}
		var s AddrSet
		for step := range 200 {
			a := universe[rng.IntN(len(universe))]
			before := AddrSet{v4: slices.Clone(s.v4), v6: slices.Clone(s.v6)}
			prev := s
			if rng.IntN(2) == 0 {
				s, in[a] = s.WithAddr(a), true
			} else {
				s = s.WithoutAddr(a)
				delete(in, a)
			}
			if !reflect.DeepEqual(prev, before) {
				t.Fatalf("run %d step %d: editing the set changed the one it started from", run, step)
			}
			var b Builder
			for x := range in {
				b.AddAddr(x)
			}
			if want := b.Set(); !reflect.DeepEqual(s, want) {
				t.Fatalf("run %d step %d (%v): got %v, want %v", run, step, a, slices.Collect(s.Ranges(true)), slices.Collect(want.Ranges(true)))
			}
		}
	}
}

// TestIdentityIsSharedMemory pins what AddrSet.Identity promises: a copy of a set has its
// identity, per family; a set built again with the same addresses, or edited, has another; the
// families' identities never meet; empty ranges have none.
func TestIdentityIsSharedMemory(t *testing.T) {
	var b Builder
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.9", "fd00::1"} {
		b.AddAddr(netip.MustParseAddr(a))
	}
	s := b.Set()
	b.Reset()
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.9", "fd00::1"} {
		b.AddAddr(netip.MustParseAddr(a))
	}
	again := b.Set()
	cp := s
	edited := s.WithAddr(netip.MustParseAddr("10.0.0.5"))
	for _, is4 := range []bool{true, false} {
		if s.Identity(is4) != cp.Identity(is4) {
			t.Errorf("is4=%v: a copy has another identity", is4)
		}
		if s.Identity(is4) == again.Identity(is4) {
			t.Errorf("is4=%v: a set built again has the same identity", is4)
		}
	}
	if s.Identity(true) == edited.Identity(true) {
		t.Error("an edited family keeps its identity")
	}
	if s.Identity(false) != edited.Identity(false) {
		t.Error("the family an edit left alone changed its identity")
	}
	if s.Identity(true) == s.Identity(false) {
		t.Error("the families have the same identity")
	}
	if id := (AddrSet{}).Identity(true); id != nil {
		t.Errorf("an empty family's identity is %v, want nil", id)
	}
}
