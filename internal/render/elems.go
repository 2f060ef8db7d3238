package render

import (
	"iter"
	"slices"
)

// elemList is the elements of a set or map as the script writes them, each without its comma,
// kept as their clause (see elements) and where each element starts in it, rather than as one
// string each. At 150,000 pods a table has some 180,000 elements: a string per element was 2.9 MB
// of headers per render from scratch, a pointer each for the collector to follow in the memo
// that keeps the last table, and a write barrier each while a collection runs. The clause is the
// text that goes into the script, so the elements cost it four bytes each.
//
// Equal elements make equal clauses (the clause is written from them alone), so two lists are
// compared by their clauses, and a set whose list is the previous table's very memory (a Memo
// reused it) compares at once.
type elemList struct {
	clause string  // clauseStart, "\n\t" ELEMENT "," per element, clauseEnd; "" without elements
	starts []int32 // where each element starts in clause (a clause is far below 2 GiB)
}

// Len returns the number of elements.
func (l *elemList) Len() int { return len(l.starts) }

// at returns element i, which shares the clause's memory. An element ends where the next one's
// ",\n\t" begins; the last one, at the comma before clauseEnd.
func (l *elemList) at(i int) string {
	end := len(l.clause) - len(clauseEnd) - len(",")
	if i+1 < len(l.starts) {
		end = int(l.starts[i+1]) - len(",\n\t")
	}
	return l.clause[l.starts[i]:end]
}

// all yields the elements in order.
func (l *elemList) all() iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := range l.starts {
			if !yield(l.at(i)) {
				return
			}
		}
	}
}

// same reports whether the list is o's very memory, which a Memo gives a set it reused.
func (l *elemList) same(o *elemList) bool {
	return len(l.starts) == len(o.starts) && (len(l.starts) == 0 || &l.starts[0] == &o.starts[0])
}

// equal reports whether the two lists hold the same elements in the same order.
func (l *elemList) equal(o *elemList) bool { return l.same(o) || l.clause == o.clause }

// elemListBuilder writes an elemList element by element.
type elemListBuilder struct {
	b      []byte
	starts []int32
}

// grow makes room for n more elements of about width bytes each.
func (w *elemListBuilder) grow(n, width int) {
	w.b = slices.Grow(w.b, len(clauseStart)+len(clauseEnd)+n*(width+len("\n\t,")))
	w.starts = slices.Grow(w.starts, n)
}

// next returns the builder's buffer with what goes before the next element: the caller appends
// the element to it and hands it to add.
func (w *elemListBuilder) next() []byte {
	if len(w.starts) == 0 {
		w.b = append(w.b[:0], clauseStart...)
	}
	w.b = append(w.b, "\n\t"...)
	w.starts = append(w.starts, int32(len(w.b)))
	return w.b
}

// add takes back what next returned, with the element appended.
func (w *elemListBuilder) add(b []byte) { w.b = append(b, ',') }

// addString adds the element s.
func (w *elemListBuilder) addString(s string) { w.add(append(w.next(), s...)) }

// list returns the elements added, in memory of their own (the builder's can be reused).
func (w *elemListBuilder) list() elemList {
	if len(w.starts) == 0 {
		return elemList{}
	}
	return elemList{clause: string(append(w.b, clauseEnd...)), starts: slices.Clone(w.starts)}
}

// reset empties the builder and keeps its memory.
func (w *elemListBuilder) reset() { w.b, w.starts = w.b[:0], w.starts[:0] }

// newElemList returns the list of elems.
func newElemList(elems []string) elemList {
	var w elemListBuilder
	width := 0
	for _, e := range elems {
		width += len(e)
	}
	w.grow(len(elems), width/max(1, len(elems)))
	for _, e := range elems {
		w.addString(e)
	}
	return w.list()
}
