package ruleset

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func r(first, last string) AddrRange {
	return AddrRange{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
}

func TestBuilderMergesOverlappingAndAdjacentRanges(t *testing.T) {
	var b Builder
	b.AddRange(r("10.0.0.10", "10.0.0.20"))
	b.AddRange(r("10.0.0.15", "10.0.0.30"))
	b.AddRange(r("10.0.0.31", "10.0.0.31")) // adjacent
	b.AddRange(r("10.0.0.40", "10.0.0.40"))
	b.AddPrefix(netip.MustParsePrefix("fd00::1/128"))
	b.AddRange(r("10.0.0.50", "10.0.0.49")) // backwards: ignored
	b.AddRange(AddrRange{First: netip.MustParseAddr("10.0.0.1"), Last: netip.MustParseAddr("fd00::1")})
	got := b.Set()
	want4 := []AddrRange{r("10.0.0.10", "10.0.0.31"), r("10.0.0.40", "10.0.0.40")}
	want6 := []AddrRange{r("fd00::1", "fd00::1")}
	if got4, got6 := slices.Collect(got.Ranges(true)), slices.Collect(got.Ranges(false)); !slices.Equal(got4, want4) || !slices.Equal(got6, want6) {
		t.Errorf("Set() = %v %v, want %v %v", got4, got6, want4, want6)
	}
}

// Grow sizes the builder for what is added next: adding that many addresses allocates nothing.
func TestBuilderGrowMakesRoomForWhatIsAdded(t *testing.T) {
	a4, a6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	var b Builder
	allocs := testing.AllocsPerRun(10, func() {
		b = Builder{}
		b.Grow(1000, 300)
		for range 1000 {
			b.AddAddr(a4)
		}
		for range 300 {
			b.AddAddr(a6)
		}
	})
	if allocs != 2 {
		t.Errorf("Grow(1000, 300) and 1,300 addresses took %v allocations, want 2 (one per family)", allocs)
	}
	b.Grow(-1, -5) // a count gone negative must not panic
}

func TestBuilderHandlesTheEndOfTheAddressSpace(t *testing.T) {
	var b Builder
	b.AddPrefix(netip.MustParsePrefix("255.255.255.0/24"))
	b.AddAddr(netip.MustParseAddr("255.255.255.255"))
	if got := slices.Collect(b.Set().Ranges(true)); len(got) != 1 || got[0] != r("255.255.255.0", "255.255.255.255") {
		t.Errorf("got %v", got)
	}
}

func TestPrefixRangeMasksHostBits(t *testing.T) {
	if got := PrefixRange(netip.MustParsePrefix("10.1.2.3/16")); got != r("10.1.0.0", "10.1.255.255") {
		t.Errorf("got %v", got)
	}
	if got := PrefixRange(netip.MustParsePrefix("fd00::5/127")); got != r("fd00::4", "fd00::5") {
		t.Errorf("got %v", got)
	}
}

func TestSubtractCutsHolesWithoutWidening(t *testing.T) {
	cases := []struct {
		name  string
		holes []AddrRange
		want  []AddrRange
	}{
		{"no holes", nil, []AddrRange{r("10.0.0.0", "10.0.0.255")}},
		{"hole in the middle", []AddrRange{r("10.0.0.10", "10.0.0.19")}, []AddrRange{r("10.0.0.0", "10.0.0.9"), r("10.0.0.20", "10.0.0.255")}},
		{"hole at the start", []AddrRange{r("10.0.0.0", "10.0.0.127")}, []AddrRange{r("10.0.0.128", "10.0.0.255")}},
		{"hole at the end", []AddrRange{r("10.0.0.128", "10.0.0.255")}, []AddrRange{r("10.0.0.0", "10.0.0.127")}},
		{"hole covers all", []AddrRange{r("10.0.0.0", "10.0.0.255")}, nil},
		{"overlapping holes", []AddrRange{r("10.0.0.10", "10.0.0.20"), r("10.0.0.15", "10.0.0.30")}, []AddrRange{r("10.0.0.0", "10.0.0.9"), r("10.0.0.31", "10.0.0.255")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Subtract(r("10.0.0.0", "10.0.0.255"), c.holes)
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestRangePrefix(t *testing.T) {
	cases := []struct {
		r    AddrRange
		want string
	}{
		{r("10.0.0.0", "10.0.0.255"), "10.0.0.0/24"},
		{r("10.0.0.5", "10.0.0.5"), "10.0.0.5/32"},
		{r("0.0.0.0", "255.255.255.255"), "0.0.0.0/0"},
		{r("10.0.0.0", "10.0.0.254"), ""},
		{r("10.0.0.1", "10.0.0.2"), ""},
		{r("fd00::", "fd00::ffff"), "fd00::/112"},
		{r("fd00::", "fd00::ffff:ffff:ffff:ffff"), "fd00::/64"},
		{r("fd00::", "fd00:0:0:1:ffff:ffff:ffff:ffff"), "fd00::/63"},
		{r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "::/0"},
		{r("fd00::", "fd00:0:0:1:ffff:ffff:ffff:fffe"), ""},
		{r("fd00::1", "fd00:0:0:1:ffff:ffff:ffff:ffff"), ""},
		{r("fd00::", "fd00:0:0:2:ffff:ffff:ffff:ffff"), ""},
		{r("10.0.0.1", "10.0.0.0"), ""},
	}
	for _, c := range cases {
		p, ok := c.r.Prefix()
		if got := ""; ok {
			got = p.String()
			if got != c.want {
				t.Errorf("%v.Prefix() = %s, want %q", c.r, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%v.Prefix() = none, want %s", c.r, c.want)
		}
	}
}

// TestBuilderMatchesAReferenceUnion checks the builder's integer sorting and merging, radix sort
// included, against a plain union of random ranges computed with netip comparisons.
func TestBuilderMatchesAReferenceUnion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 10, radixMin - 1, radixMin, 5000} {
		var b Builder
		var ref []AddrRange
		for range n {
			var first, last netip.Addr
			if rng.IntN(3) == 0 {
				// IPv6 ranges differing in a few bytes of each half, some across the halves.
				var a [16]byte
				a[0], a[1], a[7], a[15] = 0xfd, 0, byte(rng.IntN(4)), byte(rng.IntN(250))
				if rng.IntN(8) == 0 {
					a[8], a[9] = 0xff, 0xff
				}
				first = netip.AddrFrom16(a)
				a[15] += byte(rng.IntN(3))
				last = netip.AddrFrom16(a)
			} else {
				first = netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), byte(rng.IntN(256)), byte(rng.IntN(256))})
				last = first
				for range rng.IntN(3) {
					last = last.Next()
				}
			}
			if rng.IntN(2) == 0 {
				b.AddRange(AddrRange{First: first, Last: last})
			} else {
				b.AddRange(AddrRange{First: first, Last: last})
				b.AddAddr(first)
			}
			ref = append(ref, AddrRange{First: first, Last: last})
		}
		got := b.Set()
		want4, want6 := referenceUnion(ref, true), referenceUnion(ref, false)
		got4, got6 := slices.Collect(got.Ranges(true)), slices.Collect(got.Ranges(false))
		if !slices.Equal(got4, want4) || !slices.Equal(got6, want6) {
			t.Errorf("n=%d: got %d+%d ranges, want %d+%d", n, len(got4), len(got6), len(want4), len(want6))
		}
		// A reset builder starts afresh.
		b.Reset()
		b.AddAddr(netip.MustParseAddr("10.9.9.9"))
		if got := b.Set(); got.Len(true) != 1 || got.Len(false) != 0 {
			t.Errorf("n=%d: after Reset got %v", n, got)
		}
	}
}

func referenceUnion(rs []AddrRange, is4 bool) []AddrRange {
	var fam []AddrRange
	for _, r := range rs {
		if r.First.Is4() == is4 {
			fam = append(fam, r)
		}
	}
	slices.SortFunc(fam, func(a, b AddrRange) int { return a.First.Compare(b.First) })
	var out []AddrRange
	for _, r := range fam {
		if len(out) > 0 {
			last := &out[len(out)-1]
			if next := last.Last.Next(); r.First.Compare(last.Last) <= 0 || (next.IsValid() && next == r.First) {
				if last.Last.Less(r.Last) {
					last.Last = r.Last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func TestCoversIsSubset(t *testing.T) {
	mk := func(elems ...string) AddrSet {
		var b Builder
		for _, e := range elems {
			if p, err := netip.ParsePrefix(e); err == nil {
				b.AddPrefix(p)
			} else {
				b.AddAddr(netip.MustParseAddr(e))
			}
		}
		return b.Set()
	}
	cases := []struct {
		s, o []string
		want bool
	}{
		{nil, nil, true},
		{[]string{"10.0.0.0/24"}, nil, true},
		{nil, []string{"10.0.0.1"}, false},
		{[]string{"10.0.0.0/24", "fd00::/64"}, []string{"10.0.0.1", "10.0.0.7", "fd00::9"}, true},
		{[]string{"10.0.0.0/24"}, []string{"10.0.0.0/23"}, false},
		{[]string{"10.0.0.1", "10.0.0.3"}, []string{"10.0.0.1", "10.0.0.2"}, false},
		{[]string{"10.0.0.1", "10.0.0.3", "10.0.1.0/24"}, []string{"10.0.0.3", "10.0.1.7"}, true},
		{[]string{"fd00::1"}, []string{"fd00::1", "fd00::2"}, false},
		{[]string{"10.0.0.0/8"}, []string{"fd00::1"}, false},
	}
	for _, c := range cases {
		if got := mk(c.s...).Covers(mk(c.o...)); got != c.want {
			t.Errorf("%v covers %v = %v, want %v", c.s, c.o, got, c.want)
		}
	}
}

// Narrow decides whether a peer set is spelled out address by address: a range of n addresses
// is narrow, one of n+1 is not, in either family, and an IPv6 range is never narrow across its
// upper 64 bits however few addresses it holds.
func TestNarrowCountsTheAddressesOfEachRange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []AddrRange
		is4    bool
		want   bool
	}{
		{"empty", nil, true, true},
		{"v4 single addresses", []AddrRange{r("10.0.0.1", "10.0.0.1"), r("10.0.0.9", "10.0.0.9")}, true, true},
		{"v4 exactly 4", []AddrRange{r("10.0.0.0", "10.0.0.3")}, true, true},
		{"v4 5 addresses", []AddrRange{r("10.0.0.1", "10.0.0.1"), r("10.0.1.0", "10.0.1.4")}, true, false},
		{"v4 the whole space", []AddrRange{r("0.0.0.0", "255.255.255.255")}, true, false},
		{"v4 asked, v6 wide", []AddrRange{r("10.0.0.1", "10.0.0.1"), r("fd00::", "fd00::ffff")}, true, true},
		{"v6 exactly 4", []AddrRange{r("fd00::4", "fd00::7")}, false, true},
		{"v6 5 addresses", []AddrRange{r("fd00::4", "fd00::8")}, false, false},
		{"v6 two addresses across the upper half", []AddrRange{r("fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::")}, false, false},
		{"v6 the whole space", []AddrRange{r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder
			for _, x := range tc.ranges {
				b.AddRange(x)
			}
			if got := b.Set().Narrow(tc.is4, 4); got != tc.want {
				t.Errorf("Narrow(%v, 4) = %v, want %v", tc.is4, got, tc.want)
			}
		})
	}
}

// Addresses counts with integers; it must yield what stepping each range with netip.Addr.Next
// yields, in order, across the end of the IPv4 space and a carry into the upper 64 bits of an
// IPv6 address, and Size must count them.
func TestAddressesYieldsEveryAddressOfEachRange(t *testing.T) {
	ranges := []AddrRange{
		r("10.0.0.1", "10.0.0.1"), r("10.0.0.250", "10.0.1.3"), r("255.255.255.253", "255.255.255.255"),
		r("fd00::1", "fd00::3"), r("fd00::ffff:ffff:ffff:fffe", "fd00:0:0:1::1"),
		r("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	}
	var b Builder
	for _, x := range ranges {
		b.AddRange(x)
	}
	set := b.Set()
	for _, is4 := range []bool{true, false} {
		var want []netip.Addr
		for x := range set.Ranges(is4) {
			for a := x.First; ; a = a.Next() {
				want = append(want, a)
				if a == x.Last {
					break
				}
			}
		}
		if got := slices.Collect(set.Addresses(is4)); !slices.Equal(got, want) {
			t.Errorf("Addresses(%v) = %v, want %v", is4, got, want)
		}
		if got := set.Size(is4); got != uint64(len(want)) {
			t.Errorf("Size(%v) = %d, want %d", is4, got, len(want))
		}
	}
	if got := set.WithAddr(netip.MustParseAddr("fe00::1")).Size(false); got != 10 {
		t.Errorf("Size after adding an address = %d, want 10", got)
	}
	var wide Builder
	wide.AddPrefix(netip.MustParsePrefix("fd00::/63"))
	if got := wide.Set().Size(false); got != math.MaxUint64 {
		t.Errorf("Size of a /63 = %d, want MaxUint64", got)
	}
}
