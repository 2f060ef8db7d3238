package render

import (
	"bytes"
	"fmt"
	"net/netip"
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
