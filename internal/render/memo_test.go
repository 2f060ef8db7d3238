package render

import (
	"bytes"
	"testing"
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
