package synth

import (
	"fmt"
	"sync"
	"testing"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// cluster10k is shared by the 10k benchmarks. The 150k cluster is not cached: keeping it alive
// would inflate the live heap, and with it the GC pacing, of every benchmark that runs after it.
var cluster10k = sync.OnceValue(func() Cluster { return Generate(Sized(10000, 1000)) })

func BenchmarkTranslateRender(b *testing.B) {
	for _, size := range []struct{ pods, policies int }{{10000, 1000}, {150000, 10000}} {
		b.Run(fmt.Sprintf("pods=%d,policies=%d", size.pods, size.policies), func(b *testing.B) {
			var cl Cluster
			if size.pods == 10000 {
				cl = cluster10k()
			} else {
				if testing.Short() {
					b.Skip("150k-pod cluster skipped in -short mode")
				}
				cl = Generate(Sized(size.pods, size.policies))
			}
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
