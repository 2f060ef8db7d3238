package synth

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// TestRenderTableAtScale checks, on the 10k-pod cluster, that the Table Render builds is the one
// ParseTable reads from its text, and that after an event that changes peer sets (a remote
// pod's relabel, through the incremental translation) a render with the Memo of the previous one
// writes the same script as a fresh render and gives the update Diff computes from the parsed
// scripts.
func TestRenderTableAtScale(t *testing.T) {
	cl := cluster10k()
	in := input(cl)
	inc := translate.NewIncremental(in)
	before, _ := inc.RuleSet()
	var memo render.Memo
	ep := epoch.Start(1, &before)
	first := render.Render(before, render.Options{Epochs: ep, Memo: &memo})
	checkParsed(t, first)

	i, moved := peerChangingRelabel(t, cl, in)
	for _, p := range []*compact.Pod{moved, in.Pods[i]} { // relabelled, then back
		inc.SetPod(p)
		after, _ := inc.RuleSet()
		ep = epoch.Next(ep, &before, &after)
		got := render.Render(after, render.Options{Epochs: ep, Memo: &memo})
		fresh := render.Render(after, render.Options{Epochs: ep})
		if !bytes.Equal(got.Text, fresh.Text) || !got.Table.Equal(fresh.Table) {
			t.Fatal("the render with the memo differs from a fresh one")
		}
		checkParsed(t, got)
		from, _ := render.ParseTable(first.Text)
		to, _ := render.ParseTable(got.Text)
		opts := render.DiffOptions{Table: render.DefaultTable, MaxShare: 0.5}
		u, err := render.Diff(first.Table, got.Table, opts)
		want, wantErr := render.Diff(from, to, opts)
		if err != nil || wantErr != nil || !reflect.DeepEqual(u, want) {
			t.Fatalf("Diff of the rendered tables: %v\n%s\nof the parsed scripts: %v\n%s", err, u.Text, wantErr, want.Text)
		}
		if u.Elements == 0 {
			t.Fatal("the event changed no element")
		}
		first, before = got, after
	}
}

func checkParsed(t *testing.T, s render.Script) {
	t.Helper()
	parsed, err := render.ParseTable(s.Text)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Table.Equal(parsed) {
		t.Fatal("Render's Table differs from ParseTable of its text")
	}
}
