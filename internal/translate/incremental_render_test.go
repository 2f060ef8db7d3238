package translate

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// TestMemoisedRenderEqualsFreshRenderAfterEveryEvent drives the incremental translation through
// the random events of TestIncrementalEqualsTranslateAfterEveryEvent (it lives here for their
// generator) and renders each rule set as the agent does, with one render.Memo kept across the
// events, which reuses the sets whose memory the translation handed out again. After every event
// the script must be the one a render without a memo writes, byte for byte, with the same Table
// (which must be ParseTable's reading of the text), and the update from the previous table must
// be the one Diff computes from the two scripts parsed, where no set shares memory with another
// and nothing can be recognised by identity. A memo keyed by less than what a set's elements
// depend on returns stale elements here.
func TestMemoisedRenderEqualsFreshRenderAfterEveryEvent(t *testing.T) {
	seeds, events := 4, 300
	if testing.Short() {
		seeds = 2
	}
	reused := 0
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			reused += checkMemoisedRender(t, randomBytes(uint64(100+seed), 200*events), events)
		})
	}
	t.Logf("%d sets taken over from the previous render", reused)
	if reused == 0 {
		t.Error("no render reused a set: the events never left a set's memory alone")
	}
}

// checkMemoisedRender runs the events and checks every render; it returns how many sets the
// memoised renders took over unchanged from the previous render (the very memory of their
// elements: Table.SharesElements).
func checkMemoisedRender(t *testing.T, r *fuzzBytes, events int) int {
	t.Helper()
	c := newIncCluster()
	scratch := NewIncremental(Input{Node: localNode})
	for range r.N(3) * 20 {
		c.event(r, scratch)
	}
	inc := NewIncremental(c.input())
	var (
		memo   render.Memo
		log    []string
		prevRS ruleset.RuleSet
		ep     epoch.State
		// The epochs of the same states translated in full, where no rule set shares memory
		// with another: epoch.Next takes a policy whose rules are the previous rule set's very
		// memory as unchanged.
		prevFull ruleset.RuleSet
		fullEp   epoch.State
		prev     render.Script
		reused   int
		diffOpts = []render.DiffOptions{
			{Table: render.DefaultTable, MaxShare: 1},
			{Table: render.DefaultTable, MaxShare: 1, MaxRefill: -1},
			{Table: render.DefaultTable, MaxShare: 0.05},
		}
	)
	for i := range events {
		if i > 0 {
			log = append(log, c.event(r, inc))
		}
		rs, _ := inc.RuleSet()
		ep = epoch.Next(ep, &prevRS, &rs)
		full, _ := Translate(c.input())
		fullEp = epoch.Next(fullEp, &prevFull, &full)
		prevFull = full
		opts := render.Options{Epochs: ep, AntiSpoofing: i%2 == 0, Established: []render.Established{render.Revalidate, render.Keep}[i%5/4]}
		fresh := render.Render(rs, opts)
		opts.Memo = &memo
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("after event %d: %s\nevents:\n  %s", i, fmt.Sprintf(format, args...), strings.Join(log, "\n  "))
		}
		if i%3 != 0 { // as the agent renders, without the text first (the text only for a full apply)
			opts.TableOnly = true
			only := render.Render(rs, opts)
			if only.Text != nil || only.Digest != fresh.Digest || only.Stats != fresh.Stats || !reflect.DeepEqual(only.Counters, fresh.Counters) || !only.Table.Equal(fresh.Table) {
				fail("the render without text differs from a fresh one: text %d bytes, digest %s against %s, stats %+v against %+v, or its Table or counters",
					len(only.Text), only.Digest, fresh.Digest, only.Stats, fresh.Stats)
			}
			opts.TableOnly = false
		}
		got := render.Render(rs, opts)
		if !reflect.DeepEqual(ep, fullEp) {
			fail("the epochs of the incremental rule sets differ from those of full translations:\n%+v\n%+v", ep, fullEp)
		}
		if !bytes.Equal(got.Text, fresh.Text) {
			fail("the memoised render differs from a fresh one:\n%s", lineDiff(got.Text, fresh.Text))
		}
		if got.Digest != fresh.Digest || got.Stats != fresh.Stats || !reflect.DeepEqual(got.Counters, fresh.Counters) {
			fail("digest, stats or counters differ: %s %+v against %s %+v", got.Digest, got.Stats, fresh.Digest, fresh.Stats)
		}
		parsed, err := render.ParseTable(got.Text)
		if err != nil {
			fail("ParseTable: %v", err)
		}
		if !got.Table.Equal(fresh.Table) || !got.Table.Equal(parsed) {
			fail("the memoised render's Table differs from a fresh render's or from ParseTable's")
		}
		if prev.Table != nil {
			prevParsed, err := render.ParseTable(prev.Text)
			if err != nil {
				fail("ParseTable: %v", err)
			}
			for _, o := range diffOpts {
				u, err := render.Diff(prev.Table, got.Table, o)
				want, wantErr := render.Diff(prevParsed, parsed, o)
				if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(u, want) {
					fail("with %+v, Diff of the rendered tables gives (%v)\n%s\nDiff of the parsed scripts (%v)\n%s", o, err, u.Text, wantErr, want.Text)
				}
			}
			reused += sharedSets(prev.Table, got.Table)
		}
		// As the agent does once an apply replaced it: the next render writes over its text.
		memo.Recycle(prev.Text)
		prev, prevRS = got, rs
	}
	return reused
}

// sharedSets counts the sets of b whose elements are a's very memory for the same name: taken
// over from a's render by the memo.
func sharedSets(a, b *render.Table) int {
	n := 0
	for _, name := range b.Sets() {
		if b.SharesElements(a, name) {
			n++
		}
	}
	return n
}

// lineDiff shows the first line where two scripts differ, with its neighbours.
func lineDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			lo := max(i-3, 0)
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s\n(after %q)", i+1, g[i], w[i], strings.Join(g[lo:i], "\n"))
		}
	}
	return fmt.Sprintf("%d lines against %d", len(g), len(w))
}
