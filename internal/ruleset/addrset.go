package ruleset

import (
	"cmp"
	"encoding/binary"
	"iter"
	"math"
	"math/bits"
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
// sets never see overlapping elements. Build one with a Builder. The ranges are kept as integers
// (8 bytes for an IPv4 range rather than 48 as AddrRange): a set may hold the addresses of a
// large part of the cluster.
type AddrSet struct {
	v4 []uint64 // First<<32 | Last
	v6 []range6
}

// Len returns the number of ranges of one family.
func (s AddrSet) Len(is4 bool) int {
	if is4 {
		return len(s.v4)
	}
	return len(s.v6)
}

// Identity returns a comparable value that two sets have in common, for the ranges of one family,
// only when those ranges are the same memory: one set was copied from the other, as the
// incremental translation hands out the sets a change leaves alone. Equal identities therefore
// mean equal ranges (a set is never modified once built, and the identity keeps its memory from
// being reused), so a consumer can recognise a family's ranges it has seen before without
// comparing them; different identities say nothing. The identities of the two families never
// compare equal, except for empty ranges (nil).
func (s AddrSet) Identity(is4 bool) any {
	switch {
	case is4 && len(s.v4) > 0:
		return identity4{&s.v4[0], len(s.v4)}
	case !is4 && len(s.v6) > 0:
		return identity6{&s.v6[0], len(s.v6)}
	}
	return nil
}

// identity4 and identity6 are the identities of a family's ranges: their first element and
// their count (a longer set may begin with the same memory).
type (
	identity4 struct {
		first *uint64
		n     int
	}
	identity6 struct {
		first *range6
		n     int
	}
)

// Ranges returns the ranges of one family, in order.
func (s AddrSet) Ranges(is4 bool) iter.Seq[AddrRange] {
	if is4 {
		return func(yield func(AddrRange) bool) {
			for _, r := range s.v4 {
				if !yield(AddrRange{First: addr4(r >> 32), Last: addr4(r)}) {
					return
				}
			}
		}
	}
	return func(yield func(AddrRange) bool) {
		for _, r := range s.v6 {
			if !yield(AddrRange{First: r.first.addr(), Last: r.last.addr()}) {
				return
			}
		}
	}
}

// Addresses returns every address of the ranges of one family, in order: meant for sets whose
// ranges are narrow (see Narrow), as pod addresses are. It counts with integers rather than
// netip.Addr.Next, which a renderer formatting every pod address of a cluster notices.
func (s AddrSet) Addresses(is4 bool) iter.Seq[netip.Addr] {
	if is4 {
		return func(yield func(netip.Addr) bool) {
			for _, r := range s.v4 {
				for a := r >> 32; a <= uint64(uint32(r)); a++ {
					if !yield(addr4(a)) {
						return
					}
				}
			}
		}
	}
	return func(yield func(netip.Addr) bool) {
		for _, r := range s.v6 {
			for a := r.first; ; a = a.next() {
				if !yield(a.addr()) {
					return
				}
				if a == r.last {
					break
				}
			}
		}
	}
}

// Size returns how many addresses the ranges of one family hold, or math.MaxUint64 when they
// hold more.
func (s AddrSet) Size(is4 bool) uint64 {
	var n uint64
	if is4 {
		for _, r := range s.v4 {
			n += uint64(uint32(r)-uint32(r>>32)) + 1
		}
		return n
	}
	for _, r := range s.v6 {
		// last - first, in 128 bits: it must fit in the lower 64.
		d, borrow := bits.Sub64(r.last.lo, r.first.lo, 0)
		if hi, _ := bits.Sub64(r.last.hi, r.first.hi, borrow); hi != 0 || d == math.MaxUint64 || n+d+1 < n {
			return math.MaxUint64
		}
		n += d + 1
	}
	return n
}

// Narrow reports whether every range of one family holds at most n addresses, reading the
// integers rather than building an address per range: a renderer asks it of sets of every pod
// of a large cluster.
func (s AddrSet) Narrow(is4 bool, n uint64) bool {
	if is4 {
		for _, r := range s.v4 {
			if uint64(uint32(r)-uint32(r>>32)) >= n {
				return false
			}
		}
		return true
	}
	for _, r := range s.v6 {
		if r.first.hi != r.last.hi || r.last.lo-r.first.lo >= n {
			return false
		}
	}
	return true
}

// Builder collects addresses and ranges and produces a canonical AddrSet. It keeps addresses as
// integers, not netip.Addr values: a set may hold every pod address of a large cluster, and
// sorting and merging machine words is several times cheaper, in time and memory, than
// comparing 48-byte ranges through a function. Zones are dropped (neither pod addresses nor
// CIDRs carry one).
type Builder struct {
	v4 []uint64 // First<<32 | Last
	v6 []range6
	// Scratch space of the radix sorts, kept for the next Set after a Reset.
	tmp4 []uint64
	tmp6 []range6
}

// Reset empties the builder and keeps its memory, for building the next set.
func (b *Builder) Reset() {
	b.v4, b.v6 = b.v4[:0], b.v6[:0]
}

// Grow makes room for n4 more IPv4 and n6 more IPv6 addresses or ranges, so that adding them
// allocates once rather than doubling its way there. A negative count is taken as 0.
func (b *Builder) Grow(n4, n6 int) {
	b.v4, b.v6 = slices.Grow(b.v4, max(n4, 0)), slices.Grow(b.v6, max(n6, 0))
}

// range6 is an IPv6 range as two 128-bit integers.
type range6 struct{ first, last uint128 }

type uint128 struct{ hi, lo uint64 }

func (a uint128) compare(b uint128) int {
	return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo))
}

func u128(a netip.Addr) uint128 {
	b := a.As16()
	return uint128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// next returns a+1 (wrapping at the end of the address space).
func (a uint128) next() uint128 {
	a.lo++
	if a.lo == 0 {
		a.hi++
	}
	return a
}

func (a uint128) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return netip.AddrFrom16(b)
}

func u32(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(binary.BigEndian.Uint32(b[:]))
}

func addr4(v uint64) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b)
}

// AddAddr adds one address. Invalid addresses are ignored. IPv4-mapped IPv6 addresses are kept as
// IPv6: a pod address is exactly what the API says.
func (b *Builder) AddAddr(a netip.Addr) {
	switch {
	case a.Is4():
		v := u32(a)
		b.v4 = append(b.v4, v<<32|v)
	case a.Is6():
		v := u128(a)
		b.v6 = append(b.v6, range6{v, v})
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
	if !r.First.IsValid() || !r.Last.IsValid() || r.First.Is4() != r.Last.Is4() {
		return
	}
	if r.First.Is4() {
		first, last := u32(r.First), u32(r.Last)
		if last >= first {
			b.v4 = append(b.v4, first<<32|last)
		}
		return
	}
	first, last := u128(r.First), u128(r.Last)
	if last.compare(first) >= 0 {
		b.v6 = append(b.v6, range6{first, last})
	}
}

// AddSet adds every range of s.
func (b *Builder) AddSet(s AddrSet) {
	b.v4 = append(b.v4, s.v4...)
	b.v6 = append(b.v6, s.v6...)
}

// Set returns the canonical union of everything added. The set shares no memory with the
// Builder, which may go on adding (or be Reset) afterwards.
func (b *Builder) Set() AddrSet {
	b.v4, b.tmp4 = sort4(b.v4, b.tmp4)
	b.v6, b.tmp6 = sort6(b.v6, b.tmp6)
	return AddrSet{v4: merge4(b.v4), v6: merge6(b.v6)}
}

// radixMin is the size from which the radix sorts beat comparison sorts.
const radixMin = 256

// sort4 orders packed IPv4 ranges by First and returns them and the scratch slice. Large inputs
// (pod addresses of many namespaces) take a least-significant-digit radix sort on the bytes of
// First in which the ranges differ: a few linear passes instead of n log n comparisons.
// Ranges with equal First may end up in any order, which merging does not mind.
func sort4(rs, tmp []uint64) ([]uint64, []uint64) {
	if slices.IsSorted(rs) {
		return rs, tmp
	}
	if len(rs) < radixMin {
		slices.Sort(rs)
		return rs, tmp
	}
	var differ uint64
	for _, r := range rs {
		differ |= r ^ rs[0]
	}
	tmp = slices.Grow(tmp[:0], cap(rs))[:len(rs)] // as roomy as rs: the two swap roles
	for shift := 32; shift < 64; shift += 8 {
		if byte(differ>>shift) != 0 {
			radixPass(rs, tmp, func(r uint64) byte { return byte(r >> shift) })
			rs, tmp = tmp, rs
		}
	}
	return rs, tmp
}

// sort6 is sort4 for IPv6 ranges.
func sort6(rs, tmp []range6) ([]range6, []range6) {
	byFirst := func(a, b range6) int { return a.first.compare(b.first) }
	if slices.IsSortedFunc(rs, byFirst) {
		return rs, tmp
	}
	if len(rs) < radixMin {
		slices.SortFunc(rs, byFirst)
		return rs, tmp
	}
	var differHi, differLo uint64
	for _, r := range rs {
		differHi |= r.first.hi ^ rs[0].first.hi
		differLo |= r.first.lo ^ rs[0].first.lo
	}
	tmp = slices.Grow(tmp[:0], cap(rs))[:len(rs)] // as roomy as rs: the two swap roles
	for shift := 0; shift < 64; shift += 8 {
		if byte(differLo>>shift) != 0 {
			radixPass(rs, tmp, func(r range6) byte { return byte(r.first.lo >> shift) })
			rs, tmp = tmp, rs
		}
	}
	for shift := 0; shift < 64; shift += 8 {
		if byte(differHi>>shift) != 0 {
			radixPass(rs, tmp, func(r range6) byte { return byte(r.first.hi >> shift) })
			rs, tmp = tmp, rs
		}
	}
	return rs, tmp
}

// radixPass copies src to dst stably sorted by one digit.
func radixPass[T any](src, dst []T, digit func(T) byte) {
	var start [256]int
	for _, r := range src {
		start[digit(r)]++
	}
	pos := 0
	for d, n := range start {
		start[d] = pos
		pos += n
	}
	for _, r := range src {
		d := digit(r)
		dst[start[d]] = r
		start[d]++
	}
}

// merge4 returns the union of packed IPv4 ranges sorted by First: sorted, disjoint and
// non-adjacent ranges, in a new slice.
func merge4(rs []uint64) []uint64 {
	if len(rs) == 0 {
		return nil
	}
	n := 1 // count the merged ranges first, to allocate the result once
	for i, end := 1, rs[0]&0xffffffff; i < len(rs); i++ {
		first, last := rs[i]>>32, rs[i]&0xffffffff
		if first > end+1 { // end+1 cannot overflow: end is at most 2^32-1 in a uint64
			n++
			end = last
		} else {
			end = max(end, last)
		}
	}
	out := make([]uint64, 0, n)
	cur := rs[0]
	for _, r := range rs[1:] {
		if end := cur & 0xffffffff; r>>32 > end+1 {
			out = append(out, cur)
			cur = r
		} else if last := r & 0xffffffff; last > end {
			cur = cur&^0xffffffff | last
		}
	}
	return append(out, cur)
}

// merge6 is merge4 for IPv6.
func merge6(rs []range6) []range6 {
	if len(rs) == 0 {
		return nil
	}
	// starts reports whether r starts a new range after one that ends at end: it neither
	// overlaps nor touches it (the last address has no successor).
	starts := func(end uint128, r range6) bool {
		if r.first.compare(end) <= 0 {
			return false
		}
		if end.lo == math.MaxUint64 {
			return end.hi == math.MaxUint64 || r.first != uint128{end.hi + 1, 0}
		}
		return r.first != uint128{end.hi, end.lo + 1}
	}
	n := 1 // count the merged ranges first, to allocate the result once
	for i, end := 1, rs[0].last; i < len(rs); i++ {
		if starts(end, rs[i]) {
			n++
			end = rs[i].last
		} else if end.compare(rs[i].last) < 0 {
			end = rs[i].last
		}
	}
	out := make([]range6, 0, n)
	cur := rs[0]
	for _, r := range rs[1:] {
		if !starts(cur.last, r) {
			if cur.last.compare(r.last) < 0 {
				cur.last = r.last
			}
			continue
		}
		out = append(out, cur)
		cur = r
	}
	return append(out, cur)
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
	var b Builder
	for _, h := range holes {
		b.AddRange(h)
	}
	holes = slices.Collect(b.Set().Ranges(r.First.Is4()))
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
	if !r.First.IsValid() || r.First.Is4() != r.Last.Is4() {
		return netip.Prefix{}, false
	}
	// The range is a prefix of length n when First and Last agree on the first n bits, First
	// has only zeros after them and Last only ones: First^Last is then a run of low one bits
	// that First has none of and Last has all of.
	var hi, lo, firstHi, firstLo uint64
	if r.First.Is4() {
		first, last := u32(r.First), u32(r.Last)
		lo, firstLo = first^last, first
	} else {
		first, last := u128(r.First), u128(r.Last)
		hi, lo, firstHi, firstLo = first.hi^last.hi, first.lo^last.lo, first.hi, first.lo
	}
	lowOnes := func(x uint64) bool { return x&(x+1) == 0 }
	if firstHi&hi != 0 || firstLo&lo != 0 || !lowOnes(lo) || !lowOnes(hi) || (hi != 0 && lo != math.MaxUint64) {
		return netip.Prefix{}, false
	}
	hostBits := bits.Len64(hi) + bits.Len64(lo)
	return netip.PrefixFrom(r.First, r.First.BitLen()-hostBits), true
}

// Covers reports whether every address of o is in s.
func (s AddrSet) Covers(o AddrSet) bool {
	// Both are canonical (disjoint, non-adjacent ranges), so each range of o lies within one
	// range of s or is not covered.
	j := 0
	for _, r := range o.v4 {
		for j < len(s.v4) && uint32(s.v4[j]) < uint32(r>>32) {
			j++
		}
		if j == len(s.v4) || s.v4[j]>>32 > r>>32 || uint32(s.v4[j]) < uint32(r) {
			return false
		}
	}
	j = 0
	for _, r := range o.v6 {
		for j < len(s.v6) && s.v6[j].last.compare(r.first) < 0 {
			j++
		}
		if j == len(s.v6) || s.v6[j].first.compare(r.first) > 0 || s.v6[j].last.compare(r.last) < 0 {
			return false
		}
	}
	return true
}
