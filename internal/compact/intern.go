package compact

import (
	"encoding/binary"
	"runtime"
	"sync"
	"weak"
)

// table interns immutable values by a key that encodes their content: the pods of one workload
// have the same labels and named ports, so the cache keeps one copy of each for all of them
// rather than one per pod (fewer bytes, and fewer objects for the garbage collector to mark on
// every cycle). Values are held weakly, like unique's handles: one that no pod uses any more is
// collected, and its entry is dropped after it.
type table[T any] struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[T]
}

func newTable[T any]() *table[T] { return &table[T]{m: map[string]weak.Pointer[T]{}} }

// intern returns the value of key, made by build when the table holds none alive.
func (t *table[T]) intern(key []byte, build func() *T) *T {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v := t.m[string(key)].Value(); v != nil {
		return v
	}
	v, k := build(), string(key)
	t.m[k] = weak.Make(v)
	runtime.AddCleanup(v, t.drop, k)
	return v
}

// drop removes the entry of key once its value has been collected, unless the key was interned
// again since.
func (t *table[T]) drop(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[key].Value() == nil {
		delete(t.m, key)
	}
}

// len returns the number of entries, for tests.
func (t *table[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// appendString appends s to a key, length first, so that no two sequences of strings encode
// alike.
func appendString(key []byte, s string) []byte {
	return append(binary.AppendUvarint(key, uint64(len(s))), s...)
}
