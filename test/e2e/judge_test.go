//go:build linux

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// What TestNetpol and TestCNPConformance share: a step's checks enforced, probed and judged.

// maxParallelChecks bounds how many matrices of one step are probed at the same time (each one
// runs up to the bed's ProbeConcurrency probes at once, one OS thread each).
const maxParallelChecks = 2

// retryTimeout is the probe timeout of a second look at flows that were expected reachable but
// timed out.
const retryTimeout = 2 * time.Second

// judge probes a suite's endpoints, every one to every one, and compares what it sees with the
// checks' expectations.
type judge struct {
	c   *cluster.Cluster
	eps []netns.Endpoint
	// expect is the expected verdict of one cell of a check's matrix.
	expect func(r reach, from, to netns.Endpoint, k netns.Kind) bool
	// name names an endpoint in the reports.
	name func(netns.Endpoint) string
}

// step enforces the cluster's current state, probes the checks and reports to t every cell that
// differs from its check for good, prefixed with label. It reports whether any did.
func (j judge) step(ctx context.Context, t *testing.T, label string, cs []check) (failed bool) {
	t.Helper()
	t0 := time.Now()
	if err := j.c.Enforce(ctx); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	enforced := time.Since(t0)
	t0 = time.Now()
	results := j.probe(cs)
	var summary []string
	for i, ch := range cs {
		got := results[i]
		want := got.Expect(func(from, to netns.Endpoint, k netns.Kind) bool { return j.expect(ch.want, from, to, k) })
		if d := got.Diff(want); d != "" {
			if still := j.recheck(got, ch); len(still) > 0 {
				failed = true
				t.Errorf("%s: %s/%d: observed reachability differs from the expected one:\n%s"+
					"after probing again with a %v timeout, still differing:\n  %s",
					label, ch.proto, ch.port, d, retryTimeout, strings.Join(still, "\n  "))
			} else {
				t.Logf("%s: %s/%d: flows expected reachable timed out at first but got through with a %v timeout:\n%s",
					label, ch.proto, ch.port, retryTimeout, d)
			}
		}
		for _, bad := range got.Misrouted() {
			t.Error(bad)
		}
		r, b := got.Count()
		summary = append(summary, fmt.Sprintf("%s/%d %d reachable %d blocked", ch.proto, ch.port, r, b))
	}
	t.Logf("%s: enforced in %v, probed in %v: %s", label, enforced.Round(time.Millisecond),
		time.Since(t0).Round(time.Millisecond), strings.Join(summary, "; "))
	return failed
}

// kinds are the matrix kinds of a check's protocol, both families.
func kinds(proto string) []netns.Kind {
	switch proto {
	case "udp":
		return []netns.Kind{netns.UDP4, netns.UDP6}
	case "sctp":
		return []netns.Kind{netns.SCTP4, netns.SCTP6}
	}
	return []netns.Kind{netns.TCP4, netns.TCP6}
}

// probe probes each check's port and protocol, both families, from every endpoint to every
// endpoint; a few checks at a time.
func (j judge) probe(cs []check) []*netns.Matrix {
	out := make([]*netns.Matrix, len(cs))
	sem := make(chan struct{}, maxParallelChecks)
	var wg sync.WaitGroup
	for i, ch := range cs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = j.c.Probe(ch.port, j.eps, j.eps, kinds(ch.proto)...)
		})
	}
	wg.Wait()
	return out
}

// recheck returns the cells of got that disagree with the check's expectation for good. Only
// "expected reachable, observed blocked" can be an artefact of a loaded machine (a probe missing
// its short timeout): those cells are probed again with retryTimeout and count as reachable when
// either probe got through. A flow that got through when it should have been blocked is never
// retried: that is a verdict.
func (j judge) recheck(got *netns.Matrix, ch check) []string {
	var flows []netns.Flow
	var keys []string
	var still []string
	for _, from := range got.From {
		for _, to := range got.To {
			for _, k := range got.Kinds {
				state := got.Get(from, to, k)
				if state == netns.NotProbed {
					continue
				}
				want := j.expect(ch.want, from, to, k)
				key := fmt.Sprintf("%s -> %s %s", j.name(from), j.name(to), k)
				switch {
				case want && state == netns.Blocked:
					flows = append(flows, netns.Flow{From: from, To: to.Addr(k.IPv6()), Proto: k.Proto(), Port: ch.port})
					keys = append(keys, key)
				case !want && state == netns.Reachable:
					still = append(still, key+": expected blocked, observed reachable")
				}
			}
		}
	}
	if len(flows) > 0 {
		// No other probe runs now: the step's checks are done.
		saved := j.c.Bed.ProbeTimeout
		j.c.Bed.ProbeTimeout = retryTimeout
		results := j.c.Bed.Probe(flows)
		j.c.Bed.ProbeTimeout = saved
		for i, r := range results {
			if !r.OK {
				still = append(still, fmt.Sprintf("%s: expected reachable, observed blocked twice: %v", keys[i], r.Err))
			}
		}
	}
	return still
}

// runScenarios runs one subtest per name (run gets the scenario's index) and logs how many
// passed, which failed and the slowest, start being when the suite's set-up began.
func runScenarios(t *testing.T, start time.Time, names []string, run func(t *testing.T, i int)) {
	t.Helper()
	type timing struct {
		name string
		took time.Duration
		ok   bool
	}
	var timings []timing
	var failed []string
	for i, name := range names {
		t0 := time.Now()
		ran := false
		ok := t.Run(name, func(t *testing.T) {
			ran = true
			run(t, i)
		})
		if ran { // not filtered out by -run
			timings = append(timings, timing{name, time.Since(t0), ok})
			if !ok {
				failed = append(failed, name)
			}
		}
	}
	slices.SortFunc(timings, func(a, b timing) int { return cmp.Compare(b.took, a.took) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d of %d scenarios passed in %v (setup included)", len(timings)-len(failed), len(timings),
		time.Since(start).Round(time.Millisecond))
	if len(failed) > 0 {
		fmt.Fprintf(&sb, "; failed: %s", strings.Join(failed, " "))
	}
	sb.WriteString("; slowest:")
	for _, tm := range timings[:min(5, len(timings))] {
		fmt.Fprintf(&sb, " %s %v;", tm.name, tm.took.Round(time.Millisecond))
	}
	t.Log(sb.String())
}

// stepOf is one step of a scenario run in an environment E (the suite's cluster): actions, then
// the checks of the whole matrix.
type stepOf[E any] struct {
	what   string // what the step does, for the log; default: its actions
	do     []actionOf[E]
	checks []check
}

type actionOf[E any] struct {
	desc string
	run  func(ctx context.Context, e E) error
}

// runSteps runs the steps in env, judging each step's checks with j; when a step fails, the log
// shows the policies in force (policiesYAML).
func runSteps[E any](ctx context.Context, t *testing.T, j judge, steps []stepOf[E], env E, policiesYAML func(context.Context) string) {
	t.Helper()
	for i, st := range steps {
		what := st.what
		if what == "" {
			var descs []string
			for _, a := range st.do {
				descs = append(descs, a.desc)
			}
			what = strings.Join(descs, ", ")
		}
		label := fmt.Sprintf("step %d/%d (%s)", i+1, len(steps), what)
		for _, a := range st.do {
			if err := a.run(ctx, env); err != nil {
				t.Fatalf("%s: %s: %v", label, a.desc, err)
			}
		}
		if j.step(ctx, t, label, st.checks) {
			t.Logf("policies of this step:\n%s", policiesYAML(ctx))
		}
	}
}
