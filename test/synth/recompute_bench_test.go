package synth

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// recomputeStates are the two rule sets one remote pod's relabel alternates between, as the
// incremental translation produces them (sharing the memory of what the relabel leaves alone),
// with the epochs the agent would render each with.
func recomputeStates(b *testing.B, cl Cluster) (rs [2]ruleset.RuleSet, opts [2]render.Options) {
	b.Helper()
	in := input(cl)
	i, moved := peerChangingRelabel(b, cl, in)
	inc := translate.NewIncremental(in)
	rs[0], _ = inc.RuleSet()
	inc.SetPod(moved)
	rs[1], _ = inc.RuleSet()
	inc.SetPod(in.Pods[i])
	again, _ := inc.RuleSet()
	ep0 := epoch.Start(1, &rs[0])
	ep1 := epoch.Next(ep0, &rs[0], &rs[1])
	opts[0] = render.Options{Epochs: epoch.Next(ep1, &rs[1], &again)}
	opts[1] = render.Options{Epochs: ep1}
	rs[0] = again
	return rs, opts
}

// BenchmarkRecompute measures the Go side of one pod event after the translation: the
// incremental rule set of a remote pod's relabel (which changes peer sets) rendered and turned
// into the update from the last applied table, as the agent does it. The events alternate
// between the two states.
func BenchmarkRecompute(b *testing.B) {
	for _, size := range []struct{ pods, policies int }{{10000, 1000}, {150000, 10000}} {
		cl := benchCluster(b, size.pods, size.policies)
		rs, opts := recomputeStates(b, cl)
		diffOpts := render.DiffOptions{Table: render.DefaultTable, MaxShare: 0.5}
		b.Run(fmt.Sprintf("pods=%d,policies=%d,parse", size.pods, size.policies), func(b *testing.B) {
			prev, err := render.ParseTable(render.Render(rs[1], opts[1]).Text)
			if err != nil {
				b.Fatal(err)
			}
			var u render.Update
			n := 0
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				script := render.Render(rs[n%2], opts[n%2])
				next, err := render.ParseTable(script.Text)
				if err != nil {
					b.Fatal(err)
				}
				if u, err = render.Diff(prev, next, diffOpts); err != nil {
					b.Fatal(err)
				}
				prev = next
				n++
			}
			b.ReportMetric(float64(u.Elements), "elements/update")
			reportCPU(b, cpu)
		})
		// As the agent does now: Render builds the Table without the text (nothing is parsed),
		// reuses through its Memo the sets the event left alone and edits those it changed, and
		// Diff skips the sets it reused.
		b.Run(fmt.Sprintf("pods=%d,policies=%d,memo", size.pods, size.policies), func(b *testing.B) {
			var memo render.Memo
			withMemo := func(o render.Options) render.Options { o.Memo, o.TableOnly = &memo, true; return o }
			prev := render.Render(rs[1], withMemo(opts[1])).Table
			var u render.Update
			n := 0
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				script := render.Render(rs[n%2], withMemo(opts[n%2]))
				var err error
				if u, err = render.Diff(prev, script.Table, diffOpts); err != nil {
					b.Fatal(err)
				}
				prev = script.Table
				n++
			}
			b.ReportMetric(float64(u.Elements), "elements/update")
			reportCPU(b, cpu)
		})
	}
}

// cpuTime returns the CPU time the process has used so far, its garbage collector's included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start (cpuTime): on a shared machine, what
// a benchmark costs is better told by its CPU time than by the wall time, which other processes
// stretch.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
