package render

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// TestAWindowChangeTouchesNoIntervalSet pins how an update moves local addresses to a newer window
// (a narrowing change, see package epoch): their elements of the hash maps fresh-in/out-v4|v6 now
// jump to the window chain of the new epoch, which the table holds already (every epoch of the
// block has its window and stamp chains), the stamp map sends accepted connections to the new
// epoch's stamp chain, and the current epoch's set holds the new stamp: elements only, so the
// update can go over netlink, and no interval set is declared, flushed or edited, whatever the
// number of local addresses. The windows were elements of concatenated interval sets, into which
// the kernel inserts in time growing with the set: 45 ms of nft per such update with 110 local
// pods, more than a second with 1,000; then chains the update added, which only nft can.
func TestAWindowChangeTouchesNoIntervalSet(t *testing.T) {
	var rs ruleset.RuleSet
	for i := range 300 {
		rs.Local = append(rs.Local, ruleset.LocalAddr{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).Next(), Pod: fmt.Sprintf("x/p%d", i)})
	}
	before := epoch.Start(1, &rs)
	after := epoch.State{Current: 2, Addrs: slices.Clone(before.Addrs)}
	for _, i := range []int{7, 9, 250} {
		after.Addrs[i].Since[epoch.Ingress] = 2
	}
	a, err := ParseTable(Render(rs, Options{Epochs: before}).Text)
	if err != nil {
		t.Fatal(err)
	}
	next := Render(rs, Options{Epochs: after}).Text
	b, err := ParseTable(next)
	if err != nil {
		t.Fatal(err)
	}
	u, err := Diff(a, b, DiffOptions{Table: DefaultTable, MaxShare: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	text := string(u.Text)
	for line := range strings.Lines(string(next)) {
		if strings.Contains(line, "flags interval") {
			t.Errorf("the table holds an interval set: %s", line)
		}
	}
	for _, want := range []string{
		"\t10.0.0.8 : goto window-in-2,", "\t10.0.0.10 : goto window-in-2,", "\t10.0.0.251 : goto window-in-2,",
		"\tipv4 : goto stamp-2,", "\tipv6 : goto stamp-2,", "\t0x00002000 comment \"epoch 2\",",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the update has no %q:\n%s", want, text)
		}
	}
	if !u.ElementsOnly || u.Chains != 0 {
		t.Errorf("the update changes chains (%d), not only elements:\n%s", u.Chains, text)
	}
	// The three addresses change their verdict, the stamp map its two and the current epoch its
	// element (each a deletion and an addition); the egress windows and every other address stay.
	if u.Elements != 12 || strings.Contains(text, "window-out-2") {
		t.Errorf("the update changes %d elements, want 12, and no egress window:\n%s", u.Elements, text)
	}
}
