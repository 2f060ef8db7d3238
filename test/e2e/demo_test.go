//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/demo"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// TestDemoWalkthrough runs the walkthrough of `make demo` in-process: the same cluster, pods and
// steps, each step's table measured with real packets and compared with the table written by hand
// from the policies (test/demo/steps.go).
func TestDemoWalkthrough(t *testing.T) {
	start := time.Now()
	var out bytes.Buffer
	tb := testenv.RequireKernel(t, "demo")
	results, err := demo.Run(demo.Options{Out: &out, Cluster: cluster.Options{Logf: t.Logf}})
	t.Logf("demo output:\n%s", out.String())
	if errors.Is(err, netns.ErrUnavailable) {
		tb.Skipf("demo: skipping: %v", err)
	}
	if err != nil {
		t.Error(err)
	}
	if len(results) != len(demo.Steps) {
		t.Errorf("%d of %d steps ran", len(results), len(demo.Steps))
	}
	for i, r := range results {
		if r.Diff != "" {
			t.Errorf("step %d (%s): measured table differs from the policies:\n%s", i, r.Step.Title, r.Diff)
		}
	}
	t.Logf("walkthrough took %v", time.Since(start).Round(time.Millisecond))
}
