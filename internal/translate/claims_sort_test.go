package translate

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
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
