package render

import (
	"reflect"
	"strings"
	"testing"
)

// TestDiffSaysWhenOnlyElementsChange pins Update.ElementsOnly and Update.Changes, which decide
// whether an update may go to the kernel as element messages: only when nothing but set and map
// elements changes, and then Changes holds every change (a map key whose verdict changed is
// deleted by its key and added again; a set that does not change is absent).
func TestDiffSaysWhenOnlyElementsChange(t *testing.T) {
	const base = `add table inet t
add chain inet t c { comment "c"; }
add counter inet t k
add set inet t s { type ipv4_addr; elements = {
	10.0.0.1,
	10.0.0.2,
}; }
add map inet t m { type ipv4_addr : verdict; elements = {
	10.0.0.1 : jump c,
}; }
add set inet t same { type ipv4_addr; elements = {
	10.9.9.9,
}; }
add rule inet t c accept
`
	edit := func(pairs ...string) string { return strings.NewReplacer(pairs...).Replace(base) }
	for _, tc := range []struct {
		name    string
		next    string
		only    bool
		changes []ElementChange
	}{
		{name: "elements", next: edit("\t10.0.0.1,\n", "\t10.0.0.3,\n", "10.0.0.1 : jump c", "10.0.0.1 : goto c"), only: true, changes: []ElementChange{
			{Set: "s", Decl: "add set inet t s { type ipv4_addr;", Delete: []string{"10.0.0.1"}, Add: []string{"10.0.0.3"}},
			{Set: "m", Decl: "add map inet t m { type ipv4_addr : verdict;", Delete: []string{"10.0.0.1"}, Add: []string{"10.0.0.1 : goto c"}},
		}},
		{name: "a rule", next: edit("c accept", "c drop")},
		{name: "a new set", next: base + "add set inet t n { type ipv4_addr; }\n"},
		{name: "a set goes", next: edit("add set inet t same { type ipv4_addr; elements = {\n\t10.9.9.9,\n}; }\n", "")},
		{name: "a new counter", next: base + "add counter inet t k2\n"},
		{name: "a new chain", next: base + "add chain inet t d\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseTable([]byte(base))
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseTable([]byte(tc.next))
			if err != nil {
				t.Fatal(err)
			}
			u, err := Diff(a, b, DiffOptions{Table: "t", MaxShare: 1})
			if err != nil {
				t.Fatal(err)
			}
			if u.ElementsOnly != tc.only {
				t.Errorf("ElementsOnly = %v, want %v; update:\n%s", u.ElementsOnly, tc.only, u.Text)
			}
			if tc.only && !reflect.DeepEqual(u.Changes, tc.changes) {
				t.Errorf("Changes = %+v\nwant %+v", u.Changes, tc.changes)
			}
		})
	}
}
