package synth

import (
	"bytes"
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
				script   []byte
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
	var script []byte
	for b.Loop() {
		script = render.Render(rs, render.Options{})
	}
	reportScript(b, rs, script)
}

// reportScript reports the size of the rule set and of its script as custom metrics.
func reportScript(b *testing.B, rs ruleset.RuleSet, script []byte) {
	b.Helper()
	rules, sets, elements := countScript(script)
	b.ReportMetric(float64(len(script)), "bytes/script")
	b.ReportMetric(float64(rules), "rules")
	b.ReportMetric(float64(sets), "sets")
	b.ReportMetric(float64(elements), "elements")
	b.ReportMetric(float64(len(rs.Targets)), "isolated-pods")
	b.ReportMetric(float64(len(rs.Policies)), "policies")
}

// countScript counts "add rule" lines, "add set" lines (maps are not sets) and element lines:
// the renderer writes every element of a set or map on its own tab-indented line.
func countScript(script []byte) (rules, sets, elements int) {
	for len(script) > 0 {
		line := script
		if i := bytes.IndexByte(script, '\n'); i >= 0 {
			line, script = script[:i], script[i+1:]
		} else {
			script = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("add rule ")):
			rules++
		case bytes.HasPrefix(line, []byte("add set ")):
			sets++
		case bytes.HasPrefix(line, []byte("\t")):
			elements++
		}
	}
	return rules, sets, elements
}
