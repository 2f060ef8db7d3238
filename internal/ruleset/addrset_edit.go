package ruleset

import (
	"math"
	"net/netip"
	"slices"
	"sort"
)

// WithAddr returns s with the address a added, in canonical form, in time linear in the number
// of ranges and without sorting: what a set that gains one pod costs, rather than building it
// again. s is not modified (sets are shared once built). Invalid addresses are ignored.
func (s AddrSet) WithAddr(a netip.Addr) AddrSet {
	switch {
	case a.Is4():
		s.v4 = withValue(s.v4, u32(a), ops4)
	case a.Is6():
		s.v6 = withValue(s.v6, u128(a), ops6)
	}
	return s
}

// WithoutAddr returns s without the address a, as WithAddr does.
func (s AddrSet) WithoutAddr(a netip.Addr) AddrSet {
	switch {
	case a.Is4():
		s.v4 = withoutValue(s.v4, u32(a), ops4)
	case a.Is6():
		s.v6 = withoutValue(s.v6, u128(a), ops6)
	}
	return s
}

// rangeOps are what withValue and withoutValue need of one family's ranges R of values V.
type rangeOps[R any, V comparable] struct {
	bounds  func(R) (first, last V)
	makeR   func(first, last V) R
	compare func(a, b V) int
	next    func(V) (V, bool) // the successor, false for the last address
	prev    func(V) (V, bool) // the predecessor, false for the first address
}

var ops4 = rangeOps[uint64, uint64]{
	bounds:  func(r uint64) (uint64, uint64) { return r >> 32, r & 0xffffffff },
	makeR:   func(first, last uint64) uint64 { return first<<32 | last },
	compare: func(a, b uint64) int { return int(int64(a) - int64(b)) }, // 32-bit values: no overflow
	next:    func(v uint64) (uint64, bool) { return v + 1, v < math.MaxUint32 },
	prev:    func(v uint64) (uint64, bool) { return v - 1, v > 0 },
}

var ops6 = rangeOps[range6, uint128]{
	bounds:  func(r range6) (uint128, uint128) { return r.first, r.last },
	makeR:   func(first, last uint128) range6 { return range6{first, last} },
	compare: uint128.compare,
	next: func(v uint128) (uint128, bool) {
		if v.lo == math.MaxUint64 {
			return uint128{v.hi + 1, 0}, v.hi < math.MaxUint64
		}
		return uint128{v.hi, v.lo + 1}, true
	},
	prev: func(v uint128) (uint128, bool) {
		if v.lo == 0 {
			return uint128{v.hi - 1, math.MaxUint64}, v.hi > 0
		}
		return uint128{v.hi, v.lo - 1}, true
	},
}

// containing returns the index of the last range that starts at or before v (-1: none).
func containing[R any, V comparable](rs []R, v V, o rangeOps[R, V]) int {
	return sort.Search(len(rs), func(i int) bool {
		first, _ := o.bounds(rs[i])
		return o.compare(first, v) > 0
	}) - 1
}

// withValue returns the canonical ranges rs with v added, in a new slice unless v is in rs.
func withValue[R any, V comparable](rs []R, v V, o rangeOps[R, V]) []R {
	i := containing(rs, v, o) // rs[i] starts at or before v; rs[i+1] after it
	if i >= 0 {
		if _, last := o.bounds(rs[i]); o.compare(last, v) >= 0 {
			return rs // already in
		}
	}
	joinsLeft, joinsRight := false, false
	if i >= 0 {
		_, last := o.bounds(rs[i])
		n, ok := o.next(last)
		joinsLeft = ok && n == v
	}
	if i+1 < len(rs) {
		first, _ := o.bounds(rs[i+1])
		n, ok := o.next(v)
		joinsRight = ok && n == first
	}
	out := make([]R, 0, len(rs)+1)
	switch {
	case joinsLeft && joinsRight:
		first, _ := o.bounds(rs[i])
		_, last := o.bounds(rs[i+1])
		out = append(append(append(out, rs[:i]...), o.makeR(first, last)), rs[i+2:]...)
	case joinsLeft:
		first, _ := o.bounds(rs[i])
		out = append(append(append(out, rs[:i]...), o.makeR(first, v)), rs[i+1:]...)
	case joinsRight:
		_, last := o.bounds(rs[i+1])
		out = append(append(append(out, rs[:i+1]...), o.makeR(v, last)), rs[i+2:]...)
	default:
		out = append(append(append(out, rs[:i+1]...), o.makeR(v, v)), rs[i+1:]...)
	}
	return out
}

// withoutValue returns the canonical ranges rs without v, in a new slice unless v is not in rs;
// nil when nothing is left, as a Builder gives.
func withoutValue[R any, V comparable](rs []R, v V, o rangeOps[R, V]) []R {
	i := containing(rs, v, o)
	if i < 0 {
		return rs
	}
	first, last := o.bounds(rs[i])
	if o.compare(last, v) < 0 {
		return rs // not in
	}
	var pieces []R
	if o.compare(first, v) < 0 {
		p, _ := o.prev(v)
		pieces = append(pieces, o.makeR(first, p))
	}
	if o.compare(v, last) < 0 {
		n, _ := o.next(v)
		pieces = append(pieces, o.makeR(n, last))
	}
	if len(rs) == 1 && len(pieces) == 0 {
		return nil
	}
	return slices.Concat(rs[:i], pieces, rs[i+1:])
}
