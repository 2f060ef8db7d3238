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
