//go:build linux

package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/netns"
)

// TestNarrowingChangesAcrossABlockEqualFullApplies drives epochs through the end of a block of
// epoch.Block and into the next, one narrowing change at a time (a local address changes owner:
// everything about it is judged again), and applies each script two ways: in one namespace as
// the update from the previous script, over netlink when it changes elements only (every change
// within a block) and through nft otherwise (the change that starts a block, which rewrites the
// windows and the stamp chains); in another as a full replace. After every step the two tables
// must be the same. It pins what the random steps of TestIncrementalUpdatesEqualFullApplies
// never reach: a new block, and the windows an old block keeps (epoch.State.Kept).
func TestNarrowingChangesAcrossABlockEqualFullApplies(t *testing.T) {
	incNS, fullNS := netns.NewScratch(t), netns.NewScratch(t)
	inc, full := scratchClient(t, incNS), scratchClient(t, fullNS)
	elements := netlinkElements(t, incNS)
	ctx := context.Background()
	rs := func(step int) *ruleset.RuleSet {
		r := &ruleset.RuleSet{}
		for i := range 4 {
			owner := fmt.Sprintf("x/p%d", i)
			if i == step%4 {
				owner += fmt.Sprintf("-%d", step) // a new owner: this address narrows
			}
			r.Local = append(r.Local, ruleset.LocalAddr{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Pod: owner})
		}
		return r
	}
	prev := rs(0)
	st := epoch.Start(epoch.Block-3, prev)
	last := render.Render(*prev, render.Options{Epochs: st})
	for _, c := range []*nft.Client{inc, full} {
		if err := c.Apply(ctx, last.Text); err != nil {
			t.Fatal(err)
		}
	}
	overNetlink, throughNft := 0, 0
	for step := 1; step <= 6; step++ {
		cur := rs(step)
		st = epoch.Next(st, prev, cur)
		script := render.Render(*cur, render.Options{Epochs: st})
		u, err := render.Diff(last.Table, script.Table, render.DiffOptions{Table: render.DefaultTable, MaxShare: 1})
		if err != nil {
			t.Fatalf("step %d (epoch %d): %v", step, st.Current, err)
		}
		if u.ElementsOnly {
			overNetlink++
			err = elements.UpdateElements(ctx, "inet", render.DefaultTable, setChanges(u.Changes))
		} else {
			throughNft++
			err = inc.Apply(ctx, u.Text)
		}
		if err != nil {
			t.Fatalf("step %d (epoch %d): the update was refused: %v\n%s", step, st.Current, err, u.Text)
		}
		if err := full.Apply(ctx, script.Text); err != nil {
			t.Fatal(err)
		}
		if a, b := listing(t, incNS), listing(t, fullNS); a != b {
			t.Fatalf("step %d (epoch %d): the updated table differs from the fully applied one\nupdated:\n%s\nfull:\n%s", step, st.Current, a, b)
		}
		prev, last = cur, script
	}
	// Epochs Block-2 .. Block+3: the step into Block+1 starts a block, the others stay in theirs.
	if st.Current != epoch.Block+3 || throughNft != 1 || overNetlink != 5 || len(st.Kept) == 0 {
		t.Errorf("epoch %d, %d updates through nft, %d over netlink, kept windows %v; want %d, 1, 5 and some",
			st.Current, throughNft, overNetlink, st.Kept, epoch.Block+3)
	}
}
