package ruleset

import (
	"net/netip"
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
	want := AddrSet{V4: []AddrRange{r("10.0.0.10", "10.0.0.31"), r("10.0.0.40", "10.0.0.40")}, V6: []AddrRange{r("fd00::1", "fd00::1")}}
	if len(got.V4) != 2 || got.V4[0] != want.V4[0] || got.V4[1] != want.V4[1] || len(got.V6) != 1 || got.V6[0] != want.V6[0] {
		t.Errorf("Set() = %v, want %v", got, want)
	}
}

func TestBuilderHandlesTheEndOfTheAddressSpace(t *testing.T) {
	var b Builder
	b.AddPrefix(netip.MustParsePrefix("255.255.255.0/24"))
	b.AddAddr(netip.MustParseAddr("255.255.255.255"))
	if got := b.Set().V4; len(got) != 1 || got[0] != r("255.255.255.0", "255.255.255.255") {
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
