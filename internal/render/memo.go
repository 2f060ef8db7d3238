package render

import (
	"sync"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Memo lets a Render reuse what an earlier Render, given the same Memo, wrote for a set whose
// contents it can recognise without reading them: the elements of a rule's peer set and of its
// named-port set, which are most of the script (megabytes at cluster scale) and which one event
// hardly changes. The incremental translation hands out, for what a change leaves alone, the very
// memory of the previous rule set (ruleset.AddrSet.Identity); a set rendered from the same memory
// has the same elements, so Render copies the text it wrote then, and its Table gets the same
// element slice, which Diff recognises as unchanged without comparing the elements.
//
// The output does not depend on the Memo: with or without one, with whatever it holds, Render
// writes the same bytes. A Memo keeps what the last Render that used it reused or wrote, nothing
// older. The zero value is ready to use; a Memo may be shared by goroutines (their Renders then
// take turns).
type Memo struct {
	mu   sync.Mutex
	sets map[memoKey]*memoSet
	gen  uint64 // counts the Renders, to drop what the last one did not use
}

// memoKey is what a set's elements are rendered from: the kind of set, the family (the sets of
// both families are rendered from the same slice of named ports), and the identity of the memory.
type memoKey struct {
	kind memoKind
	is4  bool
	id   any
}

type memoKind uint8

const (
	memoPeers      memoKind = iota + 1 // a rule's peers: ruleset.AddrSet.Identity
	memoNamedPorts                     // a rule's named ports: namedPortsID
)

// memoSet is what Render wrote for one set: the elements clause and the elements in it (as Table
// holds them, sharing the clause's memory), and for a peer set whether it is a hash set of
// addresses (addressesOnly), which the declaration depends on.
type memoSet struct {
	clause        string
	elems         []string
	addressesOnly bool
	gen           uint64
}

// namedPortsIdentity is the identity of a rule's named ports, as AddrSet.Identity is of its
// peers: a translated rule's slices are never modified, so the same memory holds the same
// endpoints.
type namedPortsIdentity struct {
	first *ruleset.Endpoint
	n     int
}

func namedPortsID(eps []ruleset.Endpoint) any {
	if len(eps) == 0 {
		return nil
	}
	return namedPortsIdentity{&eps[0], len(eps)}
}

// begin starts a Render's use of the memo, which end finishes; a nil Memo is no memo.
func (m *Memo) begin() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.gen++
	if m.sets == nil {
		m.sets = map[memoKey]*memoSet{}
	}
}

// end drops what this Render did not use, so that the memo holds one table's sets (and keeps the
// memory of no older rule set alive).
func (m *Memo) end() {
	if m == nil {
		return
	}
	for k, v := range m.sets {
		if v.gen != m.gen {
			delete(m.sets, k)
		}
	}
	m.mu.Unlock()
}

// lookup returns the set rendered from key, if the memo holds it, and marks it used.
func (m *Memo) lookup(key memoKey) (*memoSet, bool) {
	if m == nil || key.id == nil {
		return nil, false
	}
	v, ok := m.sets[key]
	if ok {
		v.gen = m.gen
	}
	return v, ok
}

// store keeps what was rendered from key.
func (m *Memo) store(key memoKey, v *memoSet) {
	if m == nil || key.id == nil {
		return
	}
	v.gen = m.gen
	m.sets[key] = v
}
