package render

import (
	"bytes"
	"slices"
	"testing"
)

// TestElemListKeepsEachElement pins elemList: each element comes back as it was added, commas and
// spaces inside it included, and the clause is what writeDeclaration writes for the same elements
// (Diff writes a new set's elements as its clause).
func TestElemListKeepsEachElement(t *testing.T) {
	for _, elems := range [][]string{
		nil,
		{"10.0.0.1"},
		{"10.0.0.1", "10.0.0.4-10.0.0.7", "fd00::1"},
		{"10.0.0.1 : jump pod-in-x", `0x00000000 comment "a, b"`, ","},
	} {
		l := newElemList(elems)
		if got := slices.Collect(l.all()); !slices.Equal(got, elems) {
			t.Errorf("%q: the list gives %q", elems, got)
		}
		if l.Len() != len(elems) {
			t.Errorf("%q: Len %d", elems, l.Len())
		}
		var want, got bytes.Buffer
		writeDeclaration(&want, "add set inet t s { type ipv4_addr;", elems)
		writeAll(&got, &setObj{decl: "add set inet t s { type ipv4_addr;", elems: l})
		if got.String() != want.String() {
			t.Errorf("%q: writeAll wrote\n%s\nwant\n%s", elems, got.String(), want.String())
		}
	}
}

// TestElemListEqualityIsByElements pins elemList.equal and same: lists built apart from the same
// elements are equal but not the same memory; a copy of a list is both; a list with an element
// more, less or changed is neither.
func TestElemListEqualityIsByElements(t *testing.T) {
	a, b := newElemList([]string{"10.0.0.1", "10.0.0.2"}), newElemList([]string{"10.0.0.1", "10.0.0.2"})
	if !a.equal(&b) || a.same(&b) {
		t.Errorf("two lists of the same elements: equal %v, same %v; want true, false", a.equal(&b), a.same(&b))
	}
	c := a
	if !c.same(&a) || !c.equal(&a) {
		t.Error("a copy of a list is not the same memory")
	}
	for _, other := range [][]string{{"10.0.0.1"}, {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, {"10.0.0.1", "10.0.0.3"}, nil} {
		o := newElemList(other)
		if a.equal(&o) || a.same(&o) {
			t.Errorf("%q is taken as equal to %q", other, slices.Collect(a.all()))
		}
	}
	var empty1, empty2 elemList
	if !empty1.equal(&empty2) {
		t.Error("two empty lists differ")
	}
}
