package render

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// An incremental update turns the table one script installed into the table another script
// installs, in one transaction, without recreating what both share: set and map elements are
// added and deleted, chains whose rules changed are flushed and refilled, chains and sets that
// appear or disappear are added or deleted. Sets and maps that stay keep their kernel objects,
// which matters beyond the size of the transaction: a set a transaction creates is usable only some
// milliseconds after the transaction's rules are live (see addressesOnly), while an existing set
// keeps answering from its old elements until the new ones are in.
//
// The difference is computed between the two scripts' tables as named objects (Table): declarations
// as the text writes them, rules, set and map elements one by one. Render builds its script's
// Table while writing it; ParseTable reads one back from a script's text, whose form this package
// fixes (see script): one command per line, set and map elements one per line inside their
// declaration. Most of a table is set elements, and one event changes few of them: a set whose
// elements are the previous table's very memory (what Render gives with a Memo) is taken as
// unchanged without reading them.

// Table is a rendered script's table as named objects, the input of Diff: Script.Table, or a
// script's text parsed by ParseTable. Keep the last applied script's Table for the next Diff.
type Table struct {
	chains     map[string]*chainObj
	chainOrder []string
	sets       map[string]*setObj // sets and maps
	setOrder   []string
	objects    map[string]*statefulObj // counters and limits, by kind and name
	objOrder   []string
}

// Sets returns the names of the table's sets and maps, in the order the script declares them.
func (t *Table) Sets() []string { return t.setOrder }

// Elements returns the elements of a set or map as the script writes them (without the comma),
// none for an unknown name, in a slice of the caller's.
func (t *Table) Elements(set string) []string {
	if s := t.sets[set]; s != nil {
		return slices.Collect(s.elems.all())
	}
	return nil
}

// SharesElements reports whether the set or map has elements, and they are the very memory of
// o's set of the same name: what a Render with a Memo gives a set it reused.
func (t *Table) SharesElements(o *Table, set string) bool {
	a, b := t.sets[set], o.sets[set]
	return a != nil && b != nil && a.elems.Len() > 0 && a.elems.same(&b.elems)
}

// Equal reports whether two Tables hold the same objects in the same order: declarations, rules
// and elements as the script writes them (not what Render keeps beside them for the digest).
func (t *Table) Equal(o *Table) bool {
	if !slices.Equal(t.chainOrder, o.chainOrder) || !slices.Equal(t.setOrder, o.setOrder) || !slices.Equal(t.objOrder, o.objOrder) {
		return false
	}
	for _, name := range t.chainOrder {
		if !t.chains[name].equal(o.chains[name]) {
			return false
		}
	}
	for _, name := range t.setOrder {
		if !t.sets[name].equal(o.sets[name]) {
			return false
		}
	}
	for _, key := range t.objOrder {
		if *t.objects[key] != *o.objects[key] {
			return false
		}
	}
	return true
}

// statefulObj is a named counter or limit: declared once, its state (a counter's packets) lives
// in the kernel for as long as the object does.
type statefulObj struct {
	kind, name string
	decl       string
}

type chainObj struct {
	decl  string // the add chain line
	rules []string
	epoch bool // a stamp or window chain, which the digest leaves out
}

func (c *chainObj) equal(o *chainObj) bool {
	return c.decl == o.decl && slices.Equal(c.rules, o.rules)
}

type setObj struct {
	decl  string // the declaration line up to its elements, without its closing brace
	isMap bool
	elems elemList
	epoch bool // a map or set of the epochs, which the digest leaves out
	// sum is the digest of the elements, computed once for all the Tables that share them
	// (through a Memo); nil in a parsed Table.
	sum *elementsSum
}

func (s *setObj) equal(o *setObj) bool {
	return s.decl == o.decl && s.isMap == o.isMap && s.elems.equal(&o.elems)
}

func newTable() *Table { return newTableSized(tableSize{}) }

// tableSize is how many chains, sets and maps, and counters and limits a Table has room for.
type tableSize struct{ chains, sets, objects int }

func newTableSized(n tableSize) *Table {
	return &Table{chains: make(map[string]*chainObj, n.chains), sets: make(map[string]*setObj, n.sets),
		objects: make(map[string]*statefulObj, n.objects), chainOrder: make([]string, 0, n.chains),
		setOrder: make([]string, 0, n.sets), objOrder: make([]string, 0, n.objects)}
}

func (t *Table) size() tableSize { return tableSize{len(t.chains), len(t.sets), len(t.objects)} }

// ParseTable reads a script Render wrote. Render returns its script's Table (Script.Table); this
// reads the script of another process, or one kept as text.
func ParseTable(text []byte) (*Table, error) {
	t := newTable()
	var (
		open  *setObj
		elems elemListBuilder
	)
	for line := range bytes.Lines(text) {
		l := strings.TrimSuffix(string(line), "\n")
		if open != nil {
			if l == "}; }" {
				open.elems, open = elems.list(), nil
				elems.reset()
				continue
			}
			elems.addString(strings.TrimSuffix(strings.TrimPrefix(l, "\t"), ","))
			continue
		}
		f := strings.SplitN(l, " ", 6)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || (len(f) >= 2 && f[1] == "table"):
		case len(f) >= 5 && f[0] == "add" && f[1] == "chain":
			name := f[4]
			if t.chains[name] != nil {
				return nil, fmt.Errorf("chain %s declared twice", name)
			}
			t.chains[name] = &chainObj{decl: l}
			t.chainOrder = append(t.chainOrder, name)
		case len(f) >= 5 && f[0] == "add" && (f[1] == "set" || f[1] == "map"):
			name := f[4]
			// The declaration without its end, whether elements follow or not, so that a set
			// that gains its first elements or loses its last is declared the same.
			s := &setObj{decl: strings.TrimSuffix(l, " }"), isMap: f[1] == "map"}
			if head, ok := strings.CutSuffix(l, " elements = {"); ok {
				s.decl, open = head, s
			}
			t.sets[name] = s
			t.setOrder = append(t.setOrder, name)
		case len(f) >= 5 && f[0] == "add" && (f[1] == "counter" || f[1] == "limit"):
			key := f[1] + " " + f[4]
			if t.objects[key] != nil {
				return nil, fmt.Errorf("%s declared twice", key)
			}
			t.objects[key] = &statefulObj{kind: f[1], name: f[4], decl: l}
			t.objOrder = append(t.objOrder, key)
		case len(f) == 6 && f[0] == "add" && f[1] == "rule":
			c := t.chains[f[4]]
			if c == nil {
				return nil, fmt.Errorf("rule for undeclared chain %s", f[4])
			}
			c.rules = append(c.rules, f[5])
		default:
			return nil, fmt.Errorf("unexpected line %q", l)
		}
	}
	if open != nil {
		return nil, errors.New("unterminated elements")
	}
	return t, nil
}

// shareFloor is the least number of elements MaxShare takes a share of: in a small table, a change
// of a few elements (a narrowing change moves the current epoch's stamp, some six elements, besides
// its own) goes in place like any small change rather than as a full replace.
const shareFloor = 100

// ErrNeedsFullApply means that only a full replace gets from one script to the other: a chain's,
// set's or map's declaration changed, or the change is larger than the limit.
var ErrNeedsFullApply = errors.New("the change needs a full apply")

// Update is an incremental update and what it holds.
type Update struct {
	Text []byte
	// Elements counts the elements added and deleted; Chains the chains added, refilled or
	// deleted; Sets the sets and maps added or deleted.
	Elements, Chains, Sets int
	// ElementsOnly is true when the update changes set and map elements and nothing else (no
	// chain, set, map, counter or limit appears, goes or changes): Changes then says all it does,
	// and the update can go to the kernel as element messages rather than as Text.
	ElementsOnly bool
	// Changes are the element changes, one per set or map, in the script's order.
	Changes []ElementChange
}

// ElementChange is what an update does to the elements of one set or map: Delete holds the keys
// that go (a map's without their values), Add the elements that come, both as the script writes
// them; Decl is the set's declaration (see Table), which gives its type.
type ElementChange struct {
	Set, Decl   string
	Delete, Add []string
}

// DiffOptions are the table an update is for and its bounds.
type DiffOptions struct {
	// Table is the table's name, as the scripts were rendered with.
	Table string
	// MaxShare is the largest share of the new table's elements (counted as at least
	// shareFloor) an update may change; a larger
	// change is ErrNeedsFullApply.
	MaxShare float64
	// MaxRefill is the largest set or map that is declared again with all its elements when it
	// loses some (see DefaultMaxRefill); 0 means DefaultMaxRefill, negative means never.
	MaxRefill int
}

// Diff returns the transaction that turns the table of one script (from) into that of the next
// (to), both rendered for opts.Table (their Script.Table, or their text parsed by ParseTable).
// When more than opts.MaxShare of to's elements would change, or a declaration changed, it
// returns ErrNeedsFullApply.
func Diff(a, b *Table, opts DiffOptions) (Update, error) {
	tableName, maxShare, maxRefill := opts.Table, opts.MaxShare, cmp.Or(opts.MaxRefill, DefaultMaxRefill)
	var u Update
	var addChains, addSets, elems, refill, flushGone, delSets, delObjects, delChains bytes.Buffer
	total := 0
	for _, name := range b.chainOrder {
		nc, oc := b.chains[name], a.chains[name]
		switch {
		case oc == nil:
			addChains.WriteString(nc.decl + "\n")
			writeRules(&refill, tableName, name, nc.rules)
			u.Chains++
		case oc.decl != nc.decl:
			return Update{}, fmt.Errorf("%w: chain %s is declared differently", ErrNeedsFullApply, name)
		case !slices.Equal(oc.rules, nc.rules):
			fmt.Fprintf(&refill, "flush chain inet %s %s\n", tableName, name)
			writeRules(&refill, tableName, name, nc.rules)
			u.Chains++
		}
	}
	for _, name := range a.chainOrder {
		if b.chains[name] == nil {
			fmt.Fprintf(&flushGone, "flush chain inet %s %s\n", tableName, name)
			fmt.Fprintf(&delChains, "delete chain inet %s %s\n", tableName, name)
			u.Chains++
		}
	}
	for _, name := range b.setOrder {
		cur, prev := b.sets[name], a.sets[name]
		total += cur.elems.Len()
		switch {
		case prev == nil:
			writeAll(&addSets, cur)
			u.Sets++
			u.Elements += cur.elems.Len()
		case prev.decl != cur.decl:
			return Update{}, fmt.Errorf("%w: set %s is declared differently", ErrNeedsFullApply, name)
		case prev.elems.equal(&cur.elems):
			// Unchanged, as nearly every set is after one event: said without building the
			// sets of elementDiff.
		default:
			gone, added := elementDiff(prev, cur)
			u.Changes = append(u.Changes, ElementChange{Set: name, Decl: cur.decl, Delete: gone, Add: added})
			switch {
			case len(gone) > 0 && cur.elems.Len() <= maxRefill:
				fmt.Fprintf(&elems, "flush %s inet %s %s\n", cur.kind(), tableName, name)
				writeAll(&elems, cur)
			case len(gone) > 0:
				writeElements(&elems, "delete", tableName, name, gone)
				fallthrough
			case len(added) > 0:
				writeDeclaration(&elems, cur.decl, added)
			}
			u.Elements += len(gone) + len(added)
		}
	}
	for _, name := range a.setOrder {
		if b.sets[name] == nil {
			fmt.Fprintf(&delSets, "delete %s inet %s %s\n", a.sets[name].kind(), tableName, name)
			u.Sets++
		}
	}
	// Counters and limits that stay keep their state (a counter goes on counting); new ones are
	// added with the sets, those that go are deleted once no rule refers to them.
	objectsChange := false
	for _, key := range b.objOrder {
		cur, prev := b.objects[key], a.objects[key]
		switch {
		case prev == nil:
			addSets.WriteString(cur.decl + "\n")
			objectsChange = true
		case prev.decl != cur.decl:
			return Update{}, fmt.Errorf("%w: %s is declared differently", ErrNeedsFullApply, key)
		}
	}
	for _, key := range a.objOrder {
		if o := a.objects[key]; b.objects[key] == nil {
			fmt.Fprintf(&delObjects, "delete %s inet %s %s\n", o.kind, tableName, o.name)
			objectsChange = true
		}
	}
	u.ElementsOnly = u.Chains == 0 && u.Sets == 0 && !objectsChange
	if float64(u.Elements) > maxShare*float64(max(total, shareFloor)) {
		return Update{}, fmt.Errorf("%w: %d of %d elements change", ErrNeedsFullApply, u.Elements, total)
	}
	// Order: what is referenced exists before what refers to it, and goes after it. New chains
	// (empty) and sets first; element changes (map elements may jump to new chains; those to
	// deleted chains go here); chains refilled; chains that go are emptied, then the sets, maps,
	// counters and limits that go, then those chains.
	var out bytes.Buffer
	fmt.Fprintf(&out, "# flock-netpol: incremental update, %d elements, %d chains, %d sets.\n", u.Elements, u.Chains, u.Sets)
	for _, part := range []*bytes.Buffer{&addChains, &addSets, &elems, &refill, &flushGone, &delSets, &delObjects, &delChains} {
		out.Write(part.Bytes())
	}
	u.Text = out.Bytes()
	return u, nil
}

func writeRules(b *bytes.Buffer, tableName, chain string, rules []string) {
	for _, r := range rules {
		fmt.Fprintf(b, "add rule inet %s %s %s\n", tableName, chain, r)
	}
}

// elementDiff returns the elements only in old (by key for a map, so that a key whose value
// changed is deleted and added again) and those only in new.
func elementDiff(old, new *setObj) (gone, added []string) {
	// An event changes a few elements of a set of thousands, which Render writes in the same
	// order each time: what both lists begin and end with is in both (no element is listed
	// twice), and only what lies between needs looking up.
	o, n := &old.elems, &new.elems
	first, oEnd, nEnd := 0, o.Len(), n.Len()
	for first < oEnd && first < nEnd && o.at(first) == n.at(first) {
		first++
	}
	for oEnd > first && nEnd > first && o.at(oEnd-1) == n.at(nEnd-1) {
		oEnd, nEnd = oEnd-1, nEnd-1
	}
	have := make(map[string]bool, oEnd-first)
	for i := first; i < oEnd; i++ {
		have[o.at(i)] = true
	}
	want := make(map[string]bool, nEnd-first)
	for i := first; i < nEnd; i++ {
		e := n.at(i)
		want[e] = true
		if !have[e] {
			added = append(added, e)
		}
	}
	for i := first; i < oEnd; i++ {
		if e := o.at(i); !want[e] {
			if old.isMap {
				e, _, _ = strings.Cut(e, " : ")
			}
			gone = append(gone, e)
		}
	}
	return gone, added
}

// Elements reach the kernel through set declarations, not `add element` / `delete element`
// commands: nft 1.0.6 answers an element command by first loading the elements of every interval
// set of every table in the network namespace, so another component's table with one large
// interval set made a one-element update of ours take seconds (measured: 1.8–2.8 s and 200 MiB of
// nft with a 150,000-element interval set beside it, against 0.02–0.09 s without), while a set
// declaration with elements loads nothing (0.02–0.06 s either way). A set that loses elements is
// therefore flushed and declared again with all its elements, in the same transaction, when it
// holds at most DefaultMaxRefill of them (sending them costs nft about 5 µs each); only a larger one
// loses its elements with `delete element`, which pays that load when such a table exists. A set
// that only gains elements is declared again with the new ones: an `add set` of an existing set
// with the same declaration adds its elements.
const DefaultMaxRefill = 1024

// kind is the nft object kind: set or map.
func (s *setObj) kind() string {
	if s.isMap {
		return "map"
	}
	return "set"
}

// writeAll writes a set's or map's declaration with all its elements (none: the declaration
// alone), whose clause is the text for them.
func writeAll(b *bytes.Buffer, s *setObj) {
	b.WriteString(s.decl)
	b.WriteString(s.elems.clause)
	b.WriteString(" }\n")
}

// writeDeclaration writes a set's or map's declaration with the given elements (none: the
// declaration alone).
func writeDeclaration(b *bytes.Buffer, decl string, elems []string) {
	b.WriteString(decl)
	if len(elems) > 0 {
		b.WriteString(" elements = {\n")
		for _, e := range elems {
			b.WriteString("\t" + e + ",\n")
		}
		b.WriteString("};")
	}
	b.WriteString(" }\n")
}

func writeElements(b *bytes.Buffer, verb, tableName, set string, elems []string) {
	fmt.Fprintf(b, "%s element inet %s %s {", verb, tableName, set)
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(" " + e)
	}
	b.WriteString(" }\n")
}
