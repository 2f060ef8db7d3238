package render

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// TestRenderWritesOverARecycledScript pins Memo.Recycle: the next Render with the Memo writes its
// script into the recycled text's memory, and writes the same bytes as a Render without a Memo,
// whatever the recycled text held; the parts it appends at the end keep their memory too.
func TestRenderWritesOverARecycledScript(t *testing.T) {
	var m Memo
	first := Render(goldenCases[2].rs, Options{Memo: &m})
	m.Recycle(first.Text)
	for _, c := range []int{1, 2, 3} { // smaller and larger tables than the first
		got := Render(goldenCases[c].rs, Options{Memo: &m})
		want := Render(goldenCases[c].rs, Options{})
		if !bytes.Equal(got.Text, want.Text) {
			t.Fatalf("%s: a Render over a recycled text differs from a fresh one:\n%s\nwant:\n%s", goldenCases[c].name, got.Text, want.Text)
		}
		if c == 1 && &got.Text[:1][0] != &first.Text[:1][0] {
			t.Errorf("%s: the Render did not write over the recycled text", goldenCases[c].name)
		}
		m.Recycle(got.Text)
	}
}

// TestTheMemoKeepsNoBufferFarLargerThanItsUse pins keptBuffer: once a Render without text (an
// event's) writes a fraction of what a full script wrote, the Memo lets the script's memory go
// rather than keeping it for good; a buffer about the size of its use is kept.
func TestTheMemoKeepsNoBufferFarLargerThanItsUse(t *testing.T) {
	var large ruleset.RuleSet
	for i := range 5000 {
		large.Local = append(large.Local, ruleset.LocalAddr{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Pod: fmt.Sprintf("x/p%d", i)})
	}
	var m Memo
	full := Render(large, Options{Memo: &m})
	if len(full.Text) < 4*keptSlack {
		t.Fatalf("the large script has %d bytes: too few to tell", len(full.Text))
	}
	m.Recycle(full.Text)
	Render(goldenCases[1].rs, Options{Memo: &m, TableOnly: true})
	if cap(m.spare) >= len(full.Text) {
		t.Errorf("after a small Render without text the Memo keeps %d bytes, the large script's %d", cap(m.spare), len(full.Text))
	}
	for i, b := range m.scratch {
		if cap(b) > keptSlack {
			t.Errorf("after a small Render the Memo keeps %d bytes of scratch %d", cap(b), i)
		}
	}
	// A buffer the size of what a Render wrote is kept.
	b := bytes.NewBuffer(make([]byte, 0, 8*keptSlack))
	b.Write(make([]byte, 3*keptSlack))
	if got := keptBuffer(b); cap(got) != 8*keptSlack || len(got) != 0 {
		t.Errorf("keptBuffer of a buffer holding 3/8 of its capacity = len %d, cap %d; want it emptied and kept", len(got), cap(got))
	}
}

// TestTheEpochChainsAreReusedWithinABlock pins the Memo's stamp and window chains: a Render after
// a narrowing change within a block reuses what the last one wrote for them (the same Table
// chains), one into a new block writes them anew, and every Render writes what a Render without
// a Memo writes, its Table as its text reads.
func TestTheEpochChainsAreReusedWithinABlock(t *testing.T) {
	var rs ruleset.RuleSet
	for i := range 3 {
		rs.Local = append(rs.Local, ruleset.LocalAddr{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Pod: fmt.Sprintf("x/p%d", i)})
	}
	st := epoch.Start(epoch.Block-1, &rs)
	var m Memo
	var last *Script
	for step, cur := range []uint32{epoch.Block - 1, epoch.Block, epoch.Block + 1} {
		st.Current = cur
		st.Addrs[step].Since = [2]uint32{cur, cur}
		got := Render(rs, Options{Epochs: st, Memo: &m})
		want := Render(rs, Options{Epochs: st})
		if !bytes.Equal(got.Text, want.Text) {
			t.Fatalf("epoch %d: the memoised Render differs from a fresh one", cur)
		}
		parsed, err := ParseTable(got.Text)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Table.Equal(parsed) {
			t.Fatalf("epoch %d: the memoised Render's Table is not what its text reads", cur)
		}
		stamp := got.Table.chains[stampChainName(cur)]
		if reused := last != nil && stamp == last.Table.chains[stampChainName(cur)]; reused != (cur == epoch.Block) {
			t.Errorf("epoch %d: the stamp chain reused = %v, want it reused only within the block", cur, reused)
		}
		last = &got
	}
}

// TestEditedPeerSetsEqualFreshOnes pins editedElements, which a Render without text uses for a
// peer set whose peers changed since the last render: its elements must be those a fresh render
// formats, in order, and every element both sets hold must be copied from the previous render's
// text rather than formatted again (the edit costs a merge, not formatting the whole set); the
// previous elements are marked to tell. Ranges of an interval set that start at the same address
// but end elsewhere are different elements.
func TestEditedPeerSetsEqualFreshOnes(t *testing.T) {
	const mark = "kept:"
	format := func(peers ruleset.AddrSet, is4, addrs bool, prefix string) []string {
		var out []string
		for r := range peerElements(peers, is4, addrs) {
			if addrs {
				out = append(out, prefix+r.First.String())
			} else {
				out = append(out, prefix+string(r.AppendTo(nil)))
			}
		}
		return out
	}
	for _, c := range []struct {
		name       string
		prev, next ruleset.AddrSet
		is4, addrs bool
		kept       int // elements copied from the previous render's
	}{
		{"a peer joins in the middle", set("10.0.0.1", "10.0.0.3", "10.0.9.9"), set("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.9.9"), true, true, 3},
		{"a peer leaves", set("10.0.0.1", "10.0.0.2", "10.0.0.3"), set("10.0.0.1", "10.0.0.3"), true, true, 2},
		{"a peer joins at the end", set("10.0.0.1"), set("10.0.0.1", "10.0.0.7"), true, true, 1},
		{"the first peer", set(), set("10.0.0.1"), true, true, 0},
		{"the last peer leaves", set("10.0.0.1"), set(), true, true, 0},
		{"nothing in common", set("10.0.0.1", "10.0.0.2"), set("10.0.1.1"), true, true, 0},
		{"IPv6", set("fd00::1", "fd00::3"), set("fd00::1", "fd00::2", "fd00::3"), false, true, 2},
		{"a range that ends elsewhere", set("10.0.0.0/16", "10.9.0.0/16"), set("10.0.0.0/15", "10.9.0.0/16"), true, false, 1},
		{"a range split", set("10.0.0.0/24"), set("10.0.0.0/25", "10.0.0.200"), true, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			prev := &memoSet{elems: newElemList(format(c.prev, c.is4, c.addrs, mark)), peers: c.prev, is4: c.is4, addressesOnly: c.addrs}
			edited := editedElements(prev, c.next, c.is4, c.addrs)
			got, kept := []string{}, 0
			for e := range edited.all() {
				if rest, ok := strings.CutPrefix(e, mark); ok {
					e = rest
					kept++
				}
				got = append(got, e)
			}
			if want := format(c.next, c.is4, c.addrs, ""); !slices.Equal(got, want) {
				t.Fatalf("edited %v, want %v", got, want)
			}
			if kept != c.kept {
				t.Errorf("%d elements are copied from the previous render's, want %d", kept, c.kept)
			}
		})
	}
}
