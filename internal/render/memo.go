package render

import (
	"bytes"
	"maps"
	"slices"
	"sync"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Memo lets a Render reuse what an earlier Render, given the same Memo, wrote for what it can
// recognise without reading it. The incremental translation hands out, for what a change leaves
// alone, the very memory of the previous rule set, and that memory is never modified:
//
//   - the elements of a rule's peer set and of its named-port set, most of the script (megabytes
//     at cluster scale), are reused when they are rendered from the same memory
//     (ruleset.AddrSet.Identity, the named ports' slice) for the same family and kind of set:
//     Render copies the text it wrote then, and its Table gets the same elements' memory
//     (elemList), which Diff recognises as unchanged without comparing the elements;
//   - a rule's set declarations, and its rules in a chain, are reused when the rule is the same
//     memory (*ruleset.Rule: the translation builds a rule anew when anything of it changes),
//     keyed with everything else they are written from (the policy, direction, chain, verdicts,
//     table);
//   - a counter's name and declaration, which follow from the rest of the counter, are kept by
//     value;
//   - the stamp and window chains of the epochs (some 256 chains), which change only when a
//     narrowing change starts a block of epochs, are reused while what they are written from
//     (the block, the windows' newer end, the windows held) stays the same.
//
// The output does not depend on the Memo: with or without one, with whatever it holds, Render
// writes the same bytes (TestMemoisedRenderEqualsFreshRenderAfterEveryEvent, in package
// translate for its event generator, holds it to that). A Memo keeps what the last Render that
// used it reused or wrote, nothing older. The zero value is ready to use; a Memo may be shared by
// goroutines (their Renders then take turns).
type Memo struct {
	mu       sync.Mutex
	sets     memoTable[memoKey, *memoSet]
	named    memoTable[namedKey, *memoSet] // the peer sets by name, for editedElements
	ruleSets memoTable[ruleSetsKey, *memoRuleSets]
	rules    memoTable[rulesKey, *memoRules]
	counters memoTable[counterKey, *memoCounter]
	// epochChains is what the last Render wrote for the stamp and window chains, which change
	// only when a narrowing change starts a block of epochs.
	epochChains *memoEpochChains
	gen         uint64 // counts the Renders, to drop what the last one did not use
	// size is that of the last Render's Table: the next one, after an event, has about as many
	// objects, and its Table is allocated with room for them rather than grown.
	size tableSize
	// spare is a script's text handed back by Recycle, which the next Render writes over;
	// scratch are the buffers of the parts a Render appends to its text at the end (rules, maps,
	// base chains), free again once it returns.
	spare   []byte
	scratch [3][]byte
}

// Recycle hands back the text of a script that Render returned with this Memo, once the caller
// no longer uses it, nor anything the caller gave it to: the next Render writes its script over
// that memory instead of allocating a fresh buffer of the script's size (megabytes at cluster
// scale, zeroed by the allocator and faulted in anew: most of a Render's time after one event
// before). The Memo keeps the largest text it was handed.
func (m *Memo) Recycle(text []byte) {
	if m == nil || cap(text) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cap(text) > cap(m.spare) {
		m.spare = text[:0]
	}
}

// buffers gives a Render's buffers the memory of the memo's spare text and scratch, if any.
func (m *Memo) buffers(out *bytes.Buffer, parts ...*bytes.Buffer) {
	if m == nil {
		return
	}
	if m.spare != nil {
		*out = *bytes.NewBuffer(m.spare)
		m.spare = nil
	}
	for i, b := range parts {
		if m.scratch[i] != nil {
			*b = *bytes.NewBuffer(m.scratch[i])
			m.scratch[i] = nil
		}
	}
}

// keepScratch keeps the memory of a Render's parts, copied into its text, for the next Render,
// and that of the text itself when the Render returns none (out, else nil); but not a buffer
// far larger than what this Render wrote into it (see keptBuffer).
func (m *Memo) keepScratch(out *bytes.Buffer, parts ...*bytes.Buffer) {
	if m == nil {
		return
	}
	if out != nil && out.Cap() > cap(m.spare) {
		m.spare = keptBuffer(out)
	}
	for i, b := range parts {
		m.scratch[i] = keptBuffer(b)
	}
}

// keptBuffer returns the memory of b for the next Render, or nil when b could hold more than four
// times what this Render wrote (and more than keptSlack): after a full script, the Renders of
// events, without text, write a tenth of its megabytes into these buffers (300-400 kB of 3.3 MB at
// 150k pods), and the memo would otherwise keep the script's size alive for good. Four times,
// not two: a buffer that grew by doubling may hold just over twice what it holds, and would be
// dropped and grown again on every Render.
func keptBuffer(b *bytes.Buffer) []byte {
	if b.Cap() > max(4*b.Len(), keptSlack) {
		return nil
	}
	return b.Bytes()[:0]
}

// keptSlack is the capacity a kept buffer may have whatever it held.
const keptSlack = 64 << 10

// ruleSetsKey is what policySets writes from: the rule, what it belongs to, and the table.
type ruleSetsKey struct {
	rule      *ruleset.Rule
	kind, dir string
	key       ruleset.PolicyKey
	table     string
}

// memoRuleSets is what policySets wrote: the set commands' text (none when written by a Render
// without text: textless) and its size, the sets as the Table holds them, what it returned, and
// the keys of the elements it reused or wrote (kept in the memo with it).
type memoRuleSets struct {
	text     string
	textless bool
	size     int
	names    []string
	objs     []*setObj
	sets     ruleSets
	elems    []memoKey
}

// rulesKey is what policyRules writes from.
type rulesKey struct {
	rule    *ruleset.Rule
	chain   string
	v       verdicts
	sets    ruleSets
	onlyNew bool
}

// memoRules are the rules policyRules wrote into the chain.
type memoRules struct {
	rules []string
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

// memoSet is what Render wrote for one set: its elements (as Table holds them), their sum for
// the digest, and for a peer set the peers of its family (is4) and whether it is a hash set of
// addresses (addressesOnly), which the declaration depends on.
type memoSet struct {
	elems         elemList
	sum           *elementsSum
	peers         ruleset.AddrSet
	is4           bool
	addressesOnly bool
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

// namedKey names a peer set of a table, whose last render lookupNamed returns.
type namedKey struct{ table, name string }

// lookupNamed returns the peer set that the last Render declared as name, if it did.
func (m *Memo) lookupNamed(table, name string) (*memoSet, bool) {
	if m == nil {
		return nil, false
	}
	return m.named.get(namedKey{table, name}, m.gen)
}

// storeNamed keeps the peer set that this Render declares as name.
func (m *Memo) storeNamed(table, name string, v *memoSet) {
	if m != nil {
		m.named.put(namedKey{table, name}, v, m.gen)
	}
}

// begin starts a Render's use of the memo, which end finishes, and returns the Table the Render
// builds; a nil Memo is no memo.
func (m *Memo) begin() *Table {
	if m == nil {
		return newTable()
	}
	m.mu.Lock()
	m.gen++
	if m.sets == nil {
		m.sets = memoTable[memoKey, *memoSet]{}
		m.named = memoTable[namedKey, *memoSet]{}
		m.ruleSets = memoTable[ruleSetsKey, *memoRuleSets]{}
		m.rules = memoTable[rulesKey, *memoRules]{}
		m.counters = memoTable[counterKey, *memoCounter]{}
	}
	return newTableSized(m.size)
}

// end drops what this Render did not use, so that the memo holds one table's sets (and keeps the
// memory of no older rule set alive), and keeps the size of its Table.
func (m *Memo) end(t *Table) {
	if m == nil {
		return
	}
	m.size = t.size()
	m.sets.dropUnused(m.gen)
	m.named.dropUnused(m.gen)
	m.ruleSets.dropUnused(m.gen)
	m.rules.dropUnused(m.gen)
	m.counters.dropUnused(m.gen)
	m.mu.Unlock()
}

// lookup returns the set rendered from key, if the memo holds it, and marks it used.
func (m *Memo) lookup(key memoKey) (*memoSet, bool) {
	if m == nil || key.id == nil {
		return nil, false
	}
	return m.sets.get(key, m.gen)
}

// has reports whether the memo holds the set rendered from key, without marking it used.
func (m *Memo) has(key memoKey) bool {
	if m == nil || key.id == nil {
		return false
	}
	_, ok := m.sets[key]
	return ok
}

// store keeps what was rendered from key.
func (m *Memo) store(key memoKey, v *memoSet) {
	if m == nil || key.id == nil {
		return
	}
	m.sets.put(key, v, m.gen)
}

// lookupRuleSets returns what policySets wrote from key, if the memo holds it, and marks it used
// with the elements it holds.
func (m *Memo) lookupRuleSets(key ruleSetsKey) (*memoRuleSets, bool) {
	if m == nil {
		return nil, false
	}
	v, ok := m.ruleSets.get(key, m.gen)
	if ok {
		for _, k := range v.elems {
			m.lookup(k)
		}
	}
	return v, ok
}

func (m *Memo) storeRuleSets(key ruleSetsKey, v *memoRuleSets) {
	if m == nil {
		return
	}
	m.ruleSets.put(key, v, m.gen)
}

// lookupRules returns the rules policyRules wrote from key, if the memo holds them.
func (m *Memo) lookupRules(key rulesKey) (*memoRules, bool) {
	if m == nil {
		return nil, false
	}
	return m.rules.get(key, m.gen)
}

func (m *Memo) storeRules(key rulesKey, v *memoRules) {
	if m == nil {
		return
	}
	m.rules.put(key, v, m.gen)
}

// epochChainsKey is what the stamp and window chains are written from.
type epochChainsKey struct {
	table                string
	first, last, horizon uint32
	windowed             []uint32
}

func (k *epochChainsKey) equal(o *epochChainsKey) bool {
	return k.table == o.table && k.first == o.first && k.last == o.last && k.horizon == o.horizon &&
		slices.Equal(k.windowed, o.windowed)
}

// memoEpochChains is the text the stamp and window chains took in the script's declarations and
// in its rules, and their chains in the Table (which nothing changes once rendered), in order.
type memoEpochChains struct {
	key          epochChainsKey
	decls, rules string
	names        []string
	chains       []*chainObj
	nrules       int
}

func (m *Memo) lookupEpochChains(key *epochChainsKey) (*memoEpochChains, bool) {
	if m == nil || m.epochChains == nil || !m.epochChains.key.equal(key) {
		return nil, false
	}
	return m.epochChains, true
}

func (m *Memo) storeEpochChains(v *memoEpochChains) {
	if m != nil {
		m.epochChains = v
	}
}

// counterKey is a counter without its name, which follows from the rest (as its comment does),
// and the table.
type counterKey struct {
	c     Counter
	table string
}

// memoCounter is a counter's name and declaration.
type memoCounter struct {
	name, decl string
}

func (m *Memo) lookupCounter(key counterKey) (*memoCounter, bool) {
	if m == nil {
		return nil, false
	}
	return m.counters.get(key, m.gen)
}

func (m *Memo) storeCounter(key counterKey, v *memoCounter) {
	if m == nil {
		return
	}
	m.counters.put(key, v, m.gen)
}

// memoTable is one kind of what a Memo keeps, by what it was written from, each entry with the
// Render that last used it (Memo.gen).
type memoTable[K comparable, V any] map[K]*memoEntry[V]

type memoEntry[V any] struct {
	v   V
	gen uint64
}

// get returns the entry of k, if any, and marks it used by the Render gen.
func (t memoTable[K, V]) get(k K, gen uint64) (v V, ok bool) {
	e, ok := t[k]
	if ok {
		e.gen, v = gen, e.v
	}
	return v, ok
}

// put keeps v for k, used by the Render gen.
func (t memoTable[K, V]) put(k K, v V, gen uint64) { t[k] = &memoEntry[V]{v: v, gen: gen} }

// dropUnused drops the entries the Render gen did not use.
func (t memoTable[K, V]) dropUnused(gen uint64) {
	maps.DeleteFunc(t, func(_ K, e *memoEntry[V]) bool { return e.gen != gen })
}
