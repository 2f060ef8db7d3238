package ruleset

import (
	"net/netip"
	"slices"
)

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct {
	First netip.Addr
	Last  netip.Addr
}

// AddrSet is a set of addresses kept as sorted, disjoint, non-adjacent ranges per family. The
// canonical form means equal sets compare equal and render identically, and the kernel's interval
// sets never see overlapping elements.
type AddrSet struct {
	V4 []AddrRange
	V6 []AddrRange
}

// IsEmpty reports whether the set holds no address.
func (s AddrSet) IsEmpty() bool { return len(s.V4) == 0 && len(s.V6) == 0 }

// Builder collects addresses and ranges and produces a canonical AddrSet.
type Builder struct {
	v4, v6 []AddrRange
}

// AddAddr adds one address. Invalid addresses are ignored. IPv4-mapped IPv6 addresses are kept as
// IPv6: a pod address is exactly what the API says.
func (b *Builder) AddAddr(a netip.Addr) {
	if a.IsValid() {
		b.AddRange(AddrRange{First: a, Last: a})
	}
}

// AddPrefix adds every address of the (masked) prefix.
func (b *Builder) AddPrefix(p netip.Prefix) {
	if !p.IsValid() {
		return
	}
	b.AddRange(PrefixRange(p))
}

// AddRange adds an inclusive range. Ranges that are invalid, mix families or run backwards are
// ignored.
func (b *Builder) AddRange(r AddrRange) {
	if !r.First.IsValid() || !r.Last.IsValid() || r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) {
		return
	}
	if r.First.Is4() {
		b.v4 = append(b.v4, r)
	} else {
		b.v6 = append(b.v6, r)
	}
}

// AddSet adds every range of s.
func (b *Builder) AddSet(s AddrSet) {
	b.v4 = append(b.v4, s.V4...)
	b.v6 = append(b.v6, s.V6...)
}

// Set returns the canonical union of everything added.
func (b *Builder) Set() AddrSet {
	return AddrSet{V4: merge(b.v4), V6: merge(b.v6)}
}

func merge(rs []AddrRange) []AddrRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b AddrRange) int { return a.First.Compare(b.First) })
	out := []AddrRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		// Merge overlapping and adjacent ranges (Last+1 == First).
		if next := last.Last.Next(); r.First.Compare(last.Last) <= 0 || (next.IsValid() && next == r.First) {
			if last.Last.Less(r.Last) {
				last.Last = r.Last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// PrefixRange returns the range of addresses a prefix covers, host bits ignored.
func PrefixRange(p netip.Prefix) AddrRange {
	p = p.Masked()
	first := p.Addr()
	bits := first.BitLen()
	b := first.AsSlice()
	for i := p.Bits(); i < bits; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	last, _ := netip.AddrFromSlice(b)
	return AddrRange{First: first, Last: last}
}

// Subtract returns the ranges of r not covered by any of the holes (all of r's family).
func Subtract(r AddrRange, holes []AddrRange) []AddrRange {
	holes = merge(holes)
	var out []AddrRange
	cur := r.First
	for _, h := range holes {
		if h.Last.Less(cur) || r.Last.Less(h.First) {
			continue
		}
		if cur.Less(h.First) {
			out = append(out, AddrRange{First: cur, Last: h.First.Prev()})
		}
		if !h.Last.Less(r.Last) {
			return out
		}
		cur = h.Last.Next()
	}
	return append(out, AddrRange{First: cur, Last: r.Last})
}

// Prefix returns the prefix the range is exactly equal to, if it is one.
func (r AddrRange) Prefix() (netip.Prefix, bool) {
	first, last := r.First.AsSlice(), r.Last.AsSlice()
	if len(first) != len(last) {
		return netip.Prefix{}, false
	}
	// The range is a prefix of length n when First and Last agree on the first n bits, First
	// has only zeros after them and Last only ones.
	n := 0
	for n < len(first)*8 && bit(first, n) == bit(last, n) {
		n++
	}
	for i := n; i < len(first)*8; i++ {
		if bit(first, i) != 0 || bit(last, i) != 1 {
			return netip.Prefix{}, false
		}
	}
	return netip.PrefixFrom(r.First, n), true
}

func bit(b []byte, i int) byte { return b[i/8] >> (7 - uint(i%8)) & 1 }
