//go:build linux

package kernel

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/synth"
)

// BenchmarkIncrementalApply times what one pod event costs the kernel side once the table is in
// place: a remote pod that is a peer of some local pods' policies goes away, or comes back
// (alternately), and the agent applies the difference (render.Diff) with `nft -f -`. ns/op is
// parsing the new script, Diff and the apply; the full script's apply is BenchmarkApply. It reports the update's bytes
// and elements.
//
// With foreign=150000 another table in the namespace holds a 150,000-element interval set, as
// another component's could: nft 1.0.6 loads every interval set of the namespace before an
// element command, so this is what the update's command forms must not depend on (see
// render.DefaultMaxRefill); refill=all sends every set that loses elements in full.
func BenchmarkIncrementalApply(b *testing.B) {
	for _, size := range applySizes {
		for _, v := range []struct{ foreign, refill int }{{0, 0}, {150000, 0}, {150000, math.MaxInt32}} {
			name := fmt.Sprintf("pods=%d,policies=%d", size.pods, size.policies)
			if v.foreign > 0 {
				name += fmt.Sprintf(",foreign=%d", v.foreign)
			}
			if v.refill > 0 {
				name += ",refill=all" // --incremental-refill-max above every set's size
			}
			b.Run(name, func(b *testing.B) { benchIncrementalApply(b, size.pods, size.policies, v.foreign, v.refill) })
		}
	}
}

// foreignTable is a table of another component with one interval set of n ranges.
func foreignTable(n int) []byte {
	var s bytes.Buffer
	s.WriteString("add table inet foreign\nadd set inet foreign ranges { type ipv4_addr; flags interval; elements = {\n")
	for i := range n {
		a := 0x0b000000 + 4*uint32(i) // 11.0.0.0 on: apart from the synthetic cluster's addresses
		fmt.Fprintf(&s, "\t%d.%d.%d.%d-%d.%d.%d.%d,\n", a>>24, a>>16&0xff, a>>8&0xff, a&0xff, a>>24, a>>16&0xff, a>>8&0xff, a&0xff+1)
	}
	s.WriteString("}; }\n")
	return s.Bytes()
}

func benchIncrementalApply(b *testing.B, pods, policies, foreign, refill int) {
	tb := requireKernel(b, "perf/kernel incremental apply benchmark")
	if pods > 10000 && testing.Short() {
		b.Skip("150k-pod cluster skipped in -short mode")
	}
	cl := synth.Generate(synth.Sized(pods, policies))
	in := translate.Input{Node: cl.LocalNode, Policies: cl.Policies, Namespaces: cl.Namespaces, Pods: compact.NewPods(cl.Pods)}
	// The remote pod that goes and comes back: the first one that is a peer somewhere.
	full, _ := translate.Translate(in)
	peer := -1
	for i, p := range in.Pods {
		if p.NodeHandle() != compact.Intern(cl.LocalNode) && p.NumIPs() > 0 && p.OwnsAddresses() && inSomePeerSet(&full, p.IP(0)) {
			peer = i
			break
		}
	}
	if peer < 0 {
		b.Fatal("no remote pod is a peer")
	}
	without := in
	without.Pods = slices.Delete(slices.Clone(in.Pods), peer, peer+1)
	rsWithout, _ := translate.Translate(without)
	st := epoch.Start(1, &full)
	scripts := [2][]byte{render.Render(full, render.Options{Epochs: st}).Text}
	st2 := epoch.Next(st, &full, &rsWithout)
	scripts[1] = render.Render(rsWithout, render.Options{Epochs: st2}).Text

	ns := netns.NewScratch(tb)
	if foreign > 0 {
		if err := applyScript(ns, foreignTable(foreign)); err != nil {
			b.Fatal(err)
		}
	}
	if err := applyScript(ns, scripts[0]); err != nil {
		b.Fatal(err)
	}
	var tables [2]*render.Table
	for k := range scripts {
		t, err := render.ParseTable(scripts[k])
		if err != nil {
			b.Fatal(err)
		}
		tables[k] = t
	}
	var bytes, elements int
	i := 0
	for b.Loop() {
		// The agent parses each new script once (the previous one it keeps parsed).
		if _, err := render.ParseTable(scripts[(i+1)%2]); err != nil {
			b.Fatal(err)
		}
		u, err := render.Diff(tables[i%2], tables[(i+1)%2], render.DiffOptions{Table: render.DefaultTable, MaxShare: 0.5, MaxRefill: refill})
		if err != nil {
			b.Fatal(err)
		}
		if err := applyScript(ns, u.Text); err != nil {
			b.Fatalf("%v\n%s", err, u.Text)
		}
		bytes, elements = len(u.Text), u.Elements
		i++
	}
	b.ReportMetric(float64(bytes), "bytes/update")
	b.ReportMetric(float64(elements), "elements/update")
}

func inSomePeerSet(rs *ruleset.RuleSet, a netip.Addr) bool {
	for _, p := range rs.Policies {
		for _, rules := range [][]ruleset.Rule{p.Ingress, p.Egress} {
			for _, r := range rules {
				if !r.AnyPeer && r.Peers.Contains(a) {
					return true
				}
			}
		}
	}
	return false
}
