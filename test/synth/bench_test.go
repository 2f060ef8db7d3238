package synth

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// cluster10k is shared by the 10k benchmarks. The 150k cluster is not cached: keeping it alive
// would inflate the live heap, and with it the GC pacing, of every benchmark that runs after it.
var cluster10k = sync.OnceValue(func() Cluster { return Generate(Sized(10000, 1000)) })

// benchCluster returns the cluster of a size the benchmarks run: the shared 10k one, or a 150k one
// generated anew (skipped in -short mode).
func benchCluster(b *testing.B, pods, policies int) Cluster {
	b.Helper()
	if pods == 10000 {
		return cluster10k()
	}
	if testing.Short() {
		b.Skip("150k-pod cluster skipped in -short mode")
	}
	return Generate(Sized(pods, policies))
}

func BenchmarkTranslateRender(b *testing.B) {
	for _, size := range []struct{ pods, policies int }{{10000, 1000}, {150000, 10000}} {
		b.Run(fmt.Sprintf("pods=%d,policies=%d", size.pods, size.policies), func(b *testing.B) {
			cl := benchCluster(b, size.pods, size.policies)
			in := input(cl)
			b.ReportAllocs()
			var (
				rs       ruleset.RuleSet
				problems []translate.Problem
				script   render.Script
			)
			for b.Loop() {
				rs, problems = translate.Translate(in)
				script = render.Render(rs, render.Options{})
			}
			if len(problems) > 0 {
				b.Fatalf("%d problems, first: %v", len(problems), problems[0])
			}
			reportScript(b, rs, script)
		})
	}
}

func BenchmarkTranslate(b *testing.B) {
	in := input(cluster10k())
	b.ReportAllocs()
	var rs ruleset.RuleSet
	for b.Loop() {
		rs, _ = translate.Translate(in)
	}
	b.ReportMetric(float64(len(rs.Targets)), "isolated-pods")
	b.ReportMetric(float64(len(rs.Policies)), "policies")
}

func BenchmarkRender(b *testing.B) {
	rs, problems := translate.Translate(input(cluster10k()))
	if len(problems) > 0 {
		b.Fatalf("%d problems, first: %v", len(problems), problems[0])
	}
	b.ReportAllocs()
	var script render.Script
	for b.Loop() {
		script = render.Render(rs, render.Options{})
	}
	reportScript(b, rs, script)
}

// reportScript reports the size of the rule set and of its script as custom metrics.
func reportScript(b *testing.B, rs ruleset.RuleSet, script render.Script) {
	b.Helper()
	b.ReportMetric(float64(script.Stats.Bytes), "bytes/script")
	b.ReportMetric(float64(script.Stats.Rules), "rules")
	b.ReportMetric(float64(script.Stats.Sets), "sets")
	b.ReportMetric(float64(script.Stats.Elements), "elements")
	b.ReportMetric(float64(len(rs.Targets)), "isolated-pods")
	b.ReportMetric(float64(len(rs.Policies)), "policies")
}

// BenchmarkEpochNext measures what the epochs of live connections add to a recompute at 150k pods:
// epoch.Next between the rule set of the whole cluster and that of the cluster without one remote
// pod (it leaves the peer sets it was in, so every policy holding it must be compared rule by
// rule, peer sets included).
func BenchmarkEpochNext(b *testing.B) {
	if testing.Short() {
		b.Skip("150k-pod cluster skipped in -short mode")
	}
	old, rs := oneRemotePodGone(Generate(Sized(150000, 10000)))
	prev := epoch.Start(1, &old)
	var next epoch.State
	b.ReportAllocs()
	for b.Loop() {
		next = epoch.Next(prev, &old, &rs)
	}
	b.ReportMetric(float64(next.Current), "epoch")
}

// BenchmarkEpochNextIncremental measures epoch.Next as the agent calls it after one pod event:
// between the two rule sets the incremental translation returns for a remote pod's relabel (which
// changes peer sets), which share the memory of the policies the event left alone.
func BenchmarkEpochNextIncremental(b *testing.B) {
	if testing.Short() {
		b.Skip("150k-pod cluster skipped in -short mode")
	}
	rs, opts := recomputeStates(b, Generate(Sized(150000, 10000)))
	st := opts[1].Epochs
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		st = epoch.Next(st, &rs[(n+1)%2], &rs[n%2])
		n++
	}
	b.ReportMetric(float64(st.Current), "epoch")
}

// BenchmarkDiff measures ParseTable of the new script and render.Diff at 150k pods between the scripts of the whole cluster and
// of the cluster without one remote pod: the Go side of an incremental update (the nft side is
// test/perf/kernel's BenchmarkIncrementalApply).
func BenchmarkDiff(b *testing.B) {
	if testing.Short() {
		b.Skip("150k-pod cluster skipped in -short mode")
	}
	old, rs := oneRemotePodGone(Generate(Sized(150000, 10000)))
	from := render.Render(old, render.Options{}).Text
	to := render.Render(rs, render.Options{Epochs: epoch.Next(epoch.Start(1, &old), &old, &rs)}).Text
	prev, err := render.ParseTable(from)
	if err != nil {
		b.Fatal(err)
	}
	var u render.Update
	b.ReportAllocs()
	for b.Loop() {
		// As the agent does: the new script parsed, the previous one kept parsed.
		next, err := render.ParseTable(to)
		if err != nil {
			b.Fatal(err)
		}
		if u, err = render.Diff(prev, next, render.DiffOptions{Table: render.DefaultTable, MaxShare: 0.5}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(u.Text)), "bytes/update")
	b.ReportMetric(float64(u.Elements), "elements/update")
}

// oneRemotePodGone returns the rule sets of the cluster and of the cluster without its first
// remote pod that owns an address: the peer sets it was in lose it, a narrowing change.
func oneRemotePodGone(cl Cluster) (before, after ruleset.RuleSet) {
	in := input(cl)
	before, _ = translate.Translate(in)
	for i, p := range cl.Pods {
		if p.Spec.NodeName != cl.LocalNode && len(p.Status.PodIPs) > 0 {
			in.Pods = slices.Delete(slices.Clone(in.Pods), i, i+1)
			break
		}
	}
	after, _ = translate.Translate(in)
	return before, after
}
