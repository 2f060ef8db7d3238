package render

import (
	"bytes"
	"reflect"
	"slices"
	"strconv"
	"testing"
)

// checkTable fails unless the Table Render built while writing the script is the one ParseTable
// reads back from its text: the incremental update is computed from the former, and a script
// kept as text (or written by another process) is read with the latter.
func checkTable(t testing.TB, s Script) {
	t.Helper()
	parsed, err := ParseTable(s.Text)
	if err != nil {
		t.Fatalf("ParseTable: %v", err)
	}
	if !s.Table.Equal(parsed) {
		t.Fatalf("Render's Table differs from ParseTable of its text: %s", tableDifference(s.Table, parsed))
	}
}

// tableDifference names the first object that differs between two tables.
func tableDifference(got, want *Table) string {
	switch {
	case !reflect.DeepEqual(got.chainOrder, want.chainOrder):
		return "chain order " + firstDifference(got.chainOrder, want.chainOrder)
	case !reflect.DeepEqual(got.setOrder, want.setOrder):
		return "set order " + firstDifference(got.setOrder, want.setOrder)
	case !reflect.DeepEqual(got.objOrder, want.objOrder):
		return "object order " + firstDifference(got.objOrder, want.objOrder)
	}
	for _, name := range want.chainOrder {
		if g, w := got.chains[name], want.chains[name]; !g.equal(w) {
			return "chain " + name + ": " + firstDifference(append([]string{g.decl}, g.rules...), append([]string{w.decl}, w.rules...))
		}
	}
	for _, name := range want.setOrder {
		if g, w := got.sets[name], want.sets[name]; !g.equal(w) {
			return "set " + name + ": " + firstDifference(append([]string{g.decl}, slices.Collect(g.elems.all())...), append([]string{w.decl}, slices.Collect(w.elems.all())...))
		}
	}
	for _, key := range want.objOrder {
		if g, w := got.objects[key], want.objects[key]; !reflect.DeepEqual(g, w) {
			return key + ": " + g.decl + " against " + w.decl
		}
	}
	return "(nil against empty?)"
}

func firstDifference(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return "at " + itoa(i) + ": " + got[i] + " against " + want[i]
		}
	}
	return "lengths " + itoa(len(got)) + " and " + itoa(len(want))
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestRenderBuildsTheTableItWrites(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			checkTable(t, Render(c.rs, c.opts))
			for _, table := range []string{"custom", "t"} {
				opts := c.opts
				opts.Table = table
				checkTable(t, Render(c.rs, opts))
			}
		})
	}
}

// TestAPeerJoiningChangesOnlyElements pins why the digest is a set element: when a peer joins a
// policy's set, the update changes set elements only (the peer, and the digest's element), no
// chain, and carries the new script's digest.
func TestAPeerJoiningChangesOnlyElements(t *testing.T) {
	before := goldenCases[2].rs
	after := before
	after.Policies = slices.Clone(before.Policies)
	after.Policies[0].Ingress = slices.Clone(before.Policies[0].Ingress)
	after.Policies[0].Ingress[0].Peers = set("10.0.2.7", "10.0.2.8", "10.0.2.10", "10.200.0.0/16", "fd00::2:7")
	a, b := Render(before, Options{}), Render(after, Options{})
	for _, maxRefill := range []int{0, -1} { // the digest's set refilled, or its element deleted
		u, err := Diff(a.Table, b.Table, DiffOptions{Table: DefaultTable, MaxShare: 1, MaxRefill: maxRefill})
		if err != nil {
			t.Fatal(err)
		}
		if u.Chains != 0 || u.Sets != 0 || u.Elements != 3 {
			t.Errorf("MaxRefill %d: the update changes %d chains, %d sets, %d elements; want only 3 elements:\n%s", maxRefill, u.Chains, u.Sets, u.Elements, u.Text)
		}
		if d, ok := Digest(u.Text[bytes.Index(u.Text, []byte("add set inet "+DefaultTable+" "+DigestSet)):]); !ok || d != b.Digest {
			t.Errorf("MaxRefill %d: the update carries digest %q, want %q:\n%s", maxRefill, d, b.Digest, u.Text)
		}
	}
}
