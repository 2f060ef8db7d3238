//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// scenarioTimeout bounds one scenario (its API calls and every WaitEnforced).
const scenarioTimeout = 2 * time.Minute

// maxParallelChecks bounds how many matrices of one step are probed at the same time (each one
// runs up to the bed's ProbeConcurrency probes at once, one OS thread each).
const maxParallelChecks = 2

// suite is the cluster and the bed endpoints every scenario uses.
type suite struct {
	c    *cluster.Cluster
	pods map[string]*netns.Pod // by pod id
	eps  []netns.Endpoint      // matrix order: pods, then the external host
}

// env is one scenario's view: its namespace names.
type env struct {
	*suite
	run int
}

// ns maps a logical namespace (x, y, z) to the scenario's actual one (x-7, ...).
func (e *env) ns(logical string) string { return fmt.Sprintf("%s-%d", logical, e.run) }

func inNamespace(ns string) client.DeleteAllOfOption { return client.InNamespace(ns) }

// createPod creates the Pod object of a pod id, bound to its endpoint's node and addresses.
func (e *env) createPod(ctx context.Context, id string) error {
	ns, name, _ := strings.Cut(id, "/")
	_, err := e.c.CreatePod(ctx, cluster.PodObject{
		Namespace:  e.ns(ns),
		Name:       name,
		Labels:     map[string]string{"pod": name},
		Containers: containers(),
		Endpoint:   e.pods[id],
	})
	return err
}

func newSuite(t *testing.T) *suite {
	c := cluster.Start(t, cluster.Options{})
	s := &suite{c: c, pods: map[string]*netns.Pod{}}
	for _, id := range podIDs() {
		v4, v6 := podAddrs(id)
		p := c.AddPod(placement[id], endpointName(id), []netip.Addr{v4, v6}, servedPorts...)
		s.pods[id] = p
		s.eps = append(s.eps, p)
	}
	s.eps = append(s.eps, c.AddExternal(extID, extAddrs, servedPorts...))
	if err := c.Enforce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.WarmUp(s.eps, func(netns.Endpoint) uint16 { return 80 }); err != nil {
		t.Log(c.Bed.DumpState())
		t.Fatal(err)
	}
	return s
}

// TestNetpol runs every scenario on one cluster, one subtest per scenario.
func TestNetpol(t *testing.T) {
	start := time.Now()
	s := newSuite(t)
	t.Logf("cluster and %d endpoints ready in %v", len(s.eps), time.Since(start).Round(time.Millisecond))

	type timing struct {
		name string
		took time.Duration
		ok   bool
	}
	var timings []timing
	for i, sc := range scenarios {
		t0 := time.Now()
		ran := false
		ok := t.Run(sc.name, func(t *testing.T) {
			ran = true
			s.runScenario(t, i+1, sc)
		})
		if ran { // not filtered out by -run
			timings = append(timings, timing{sc.name, time.Since(t0), ok})
		}
	}
	sort.Slice(timings, func(i, j int) bool { return timings[i].took > timings[j].took })
	var sb strings.Builder
	passed := 0
	for _, tm := range timings {
		if tm.ok {
			passed++
		}
	}
	fmt.Fprintf(&sb, "%d of %d scenarios passed in %v (setup included); slowest:", passed, len(timings), time.Since(start).Round(time.Millisecond))
	for _, tm := range timings[:min(5, len(timings))] {
		fmt.Fprintf(&sb, " %s %v;", tm.name, tm.took.Round(time.Millisecond))
	}
	t.Log(sb.String())
}

func (s *suite) runScenario(t *testing.T, run int, sc scenario) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	e := &env{suite: s, run: run}
	if sc.upstream != "" {
		t.Logf("upstream: %q", sc.upstream)
	}
	for _, ns := range namespaces {
		if err := s.c.CreateNamespace(ctx, e.ns(ns), map[string]string{"ns": ns}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Frees the addresses for the next scenario's pods.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ns := range namespaces {
			if err := s.c.ClearNamespace(cctx, e.ns(ns)); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	for _, id := range podIDs() {
		if err := e.createPod(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	for i, st := range sc.steps {
		what := st.what
		if what == "" {
			var descs []string
			for _, a := range st.do {
				descs = append(descs, a.desc)
			}
			what = strings.Join(descs, ", ")
		}
		label := fmt.Sprintf("step %d/%d (%s)", i+1, len(sc.steps), what)
		for _, a := range st.do {
			if err := a.run(ctx, e); err != nil {
				t.Fatalf("%s: %s: %v", label, a.desc, err)
			}
		}
		t0 := time.Now()
		if err := s.c.Enforce(ctx); err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		enforced := time.Since(t0)
		t0 = time.Now()
		results := s.probe(st.checks)
		failed := false
		var summary []string
		for j, ch := range st.checks {
			got := results[j]
			want := got.Expect(func(from, to netns.Endpoint, k netns.Kind) bool {
				return ch.want.verdict(idOf(from), idOf(to), k.IPv6())
			})
			if d := got.Diff(want); d != "" {
				if still := s.recheck(got, ch); len(still) > 0 {
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
		if failed {
			t.Logf("policies of this step:\n%s", e.policiesYAML(ctx))
		}
	}
}

// probe probes each check's port and protocol, both families, from every endpoint to every
// endpoint; a few checks at a time.
func (s *suite) probe(cs []check) []*netns.Matrix {
	out := make([]*netns.Matrix, len(cs))
	sem := make(chan struct{}, maxParallelChecks)
	var wg sync.WaitGroup
	for i, ch := range cs {
		kinds := []netns.Kind{netns.TCP4, netns.TCP6}
		if ch.proto == "udp" {
			kinds = []netns.Kind{netns.UDP4, netns.UDP6}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = s.c.Probe(ch.port, s.eps, s.eps, kinds...)
		})
	}
	wg.Wait()
	return out
}

// retryTimeout is the probe timeout of a second look at flows that were expected reachable but
// timed out.
const retryTimeout = 2 * time.Second

// recheck returns the cells of got that disagree with the check's expectation for good. Only
// "expected reachable, observed blocked" can be an artefact of a loaded machine (a probe missing
// its short timeout): those cells are probed again with retryTimeout and count as reachable when
// either probe got through. A flow that got through when it should have been blocked is never
// retried: that is a verdict.
func (s *suite) recheck(got *netns.Matrix, ch check) []string {
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
				want := ch.want.verdict(idOf(from), idOf(to), k.IPv6())
				key := fmt.Sprintf("%s -> %s %s", from.Name(), to.Name(), k)
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
		saved := s.c.Bed.ProbeTimeout
		s.c.Bed.ProbeTimeout = retryTimeout
		results := s.c.Bed.Probe(flows)
		s.c.Bed.ProbeTimeout = saved
		for i, r := range results {
			if !r.OK {
				still = append(still, fmt.Sprintf("%s: expected reachable, observed blocked twice: %v", keys[i], r.Err))
			}
		}
	}
	return still
}

// policiesYAML prints the scenario's policies as stored, for failure reports.
func (e *env) policiesYAML(ctx context.Context) string {
	var sb strings.Builder
	for _, ns := range namespaces {
		var l networkingv1.NetworkPolicyList
		if err := e.c.Client.List(ctx, &l, client.InNamespace(e.ns(ns))); err != nil {
			fmt.Fprintf(&sb, "# listing policies of %s: %v\n", e.ns(ns), err)
			continue
		}
		for i := range l.Items {
			np := l.Items[i].DeepCopy()
			np.ManagedFields = nil
			b, err := yaml.Marshal(np)
			if err != nil {
				fmt.Fprintf(&sb, "# %s/%s: %v\n", np.Namespace, np.Name, err)
				continue
			}
			sb.WriteString("---\n")
			sb.Write(b)
		}
	}
	return sb.String()
}
