//go:build linux

package agent

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/synth"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// streamSource is an in-process event source for the reconciler: the synthetic cluster in
// memory, changed by events, which it numbers and, when observe is set, also hands to the
// reconciler's incremental translation as the watches would.
type streamSource struct {
	mu      sync.Mutex
	in      translate.Input
	node    *corev1.Node
	seq     int // events so far
	source  []*corev1.Pod
	observe func(client.Object)
}

func (s *streamSource) Objects(context.Context) (translate.Input, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.in
	in.Pods = slices.Clone(s.in.Pods) // events replace pods in place
	return in, nil
}

func (s *streamSource) Node(context.Context, string) (*corev1.Node, error) { return s.node, nil }

// relabel is one pod event: a remote pod's tier label (what the synthetic policies' pod peers
// select) toggles between its own value and one no policy selects, so the peer sets that hold the
// pod lose it, or get it back.
func (s *streamSource) relabel(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.source[i].DeepCopy()
	if v, ok := p.Labels["tier"]; ok {
		if moved, found := strings.CutSuffix(v, "-moved"); found {
			p.Labels["tier"] = moved
		} else {
			p.Labels["tier"] = v + "-moved"
		}
	}
	s.source[i] = p
	s.in.Pods[i] = compact.NewPod(p)
	if s.observe != nil {
		s.observe(s.in.Pods[i])
	}
	s.seq++
}

// newStreamSource holds the synthetic cluster cl in memory, as the reconciler's Source.
func newStreamSource(cl synth.Cluster) *streamSource {
	return &streamSource{
		in:     translate.Input{Policies: cl.Policies, Namespaces: cl.Namespaces, Pods: compact.NewPods(cl.Pods)},
		node:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cl.LocalNode}},
		source: slices.Clone(cl.Pods),
	}
}

// nodeKey is the request of every recompute of the node's table.
var nodeKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-ruleset"}}

// startAgent returns the agent's reconciler of node's table over src, with nft programming a
// throwaway network namespace through exec (nil: nft itself), set up as mode says: "incremental"
// (the agent's default: translated incrementally, changes applied in place), "full-translate"
// (the whole cluster translated per recompute, changes applied in place) or "full" (translated in
// full, every change a full replace). It has applied the first table, which is not measured; the
// caller hands it every change of src with Observe (which does nothing unless incremental).
func startAgent(b *testing.B, tb testing.TB, src controller.Source, node string, exec nft.Executor, mode string) *controller.Reconciler {
	b.Helper()
	ns := netns.NewScratch(tb)
	nftClient, err := nft.New(nft.Config{Command: []string{"ip", "netns", "exec", ns, "nft"}, Executor: exec, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	share := 0.0
	if mode == "full" {
		share = -1
	}
	// As the agent by default: updates of elements only over netlink (into the namespace), and
	// changes within the interval after an apply coalesced.
	netlink := &nft.NetlinkElements{NetNS: netns.OpenFD(tb, ns)}
	tb.Cleanup(func() { _ = netlink.Close() })
	var elements controller.ElementUpdater = netlink
	if rec, ok := exec.(*sizeRecorder); ok {
		rec.elems, elements = elements, rec
	}
	r := &controller.Reconciler{Source: src, Node: node, Table: render.DefaultTable, Applier: nftClient, Elements: elements,
		MinApplyInterval: controller.DefaultMinApplyInterval, Metrics: controller.NewMetrics(nil), Log: logr.Discard(), IncrementalMaxShare: share}
	if mode == "incremental" {
		r.TranslateIncrementally()
	}
	if _, err := r.Reconcile(context.Background(), nodeKey); err != nil {
		b.Fatal(err)
	}
	return r
}

// cpuSeconds is the CPU time of this process and of its reaped children (nft) so far.
func cpuSeconds() float64 {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

// BenchmarkEventStream drives a sustained stream of pod events through the real reconciler at
// cluster scale: 150k pods / 10k policies in memory (an in-process event source: envtest cannot
// hold that many pods on two cores), 50 relabels per second of remote pods in the namespaces of
// the local pods (the peers of this node's policies), the real nft in a throwaway network
// namespace. The reconciler is set up as the agent is by default: updates of elements only go over
// netlink, and a change within the min-apply-interval after an apply waits for the rest of it.
// Events coalesce as the controller's queue makes them: one recompute runs at a time, and one more
// follows if events arrived while it ran (or waited). Per event, the time from the event to the
// end of the first recompute that read the cluster after it (p50-ms, p99-ms, max-ms; an event that
// arrives while a recompute reads the cluster may already be in it, so this errs on the long
// side): the kernel is never further behind than the interval plus the recompute in progress and
// the next one. Also the recomputes, the applies (a recompute whose rule set did not change applies
// nothing: most remote pods are in no peer set of this node's policies), and the CPU of the agent
// (netlink updates included) and its nft processes per second of wall time (cpu-pct-core). Three
// variants: "incremental" (the agent's default: the rule set translated incrementally from the
// events, changes applied in place), "full-translate" (the whole cluster translated per
// recompute, changes applied in place: --full-translate) and "full" (translated in full, and
// every change replaces the whole table). The drive lasts 60 s, FLOCK_PERF_DURATION when set,
// 10 s with -short.
func BenchmarkEventStream(b *testing.B) {
	for _, mode := range []string{"incremental", "full-translate", "full"} {
		b.Run("pods=150000,policies=10000,rate=50/s,"+mode, func(b *testing.B) {
			tb := testenv.RequireKernel(b, "perf/agent event stream")
			d, err := driveDuration()
			if err != nil {
				b.Fatal(err)
			}
			cl := synth.Generate(synth.Sized(150000, 10000))
			src := newStreamSource(cl)
			// Pods of other nodes in the namespaces of the local pods: the peers of the policies
			// this node enforces.
			local := map[string]bool{}
			for _, p := range cl.Pods {
				if p.Spec.NodeName == cl.LocalNode {
					local[p.Namespace] = true
				}
			}
			var remote []int
			for i, p := range cl.Pods {
				if p.Spec.NodeName != cl.LocalNode && local[p.Namespace] && p.Labels["tier"] != "" && len(p.Status.PodIPs) > 0 && !p.Spec.HostNetwork {
					remote = append(remote, i)
				}
			}
			r := startAgent(b, tb, src, cl.LocalNode, nil, mode)
			src.observe = func(o client.Object) { r.Observe(o, false) }
			ctx := context.Background()

			var (
				mu         sync.Mutex
				at         []time.Time // event times, by sequence number - 1
				lat        []time.Duration
				recomputes int
			)
			dirty := make(chan struct{}, 1)
			done := make(chan struct{})
			stopped := make(chan struct{})
			applied := func() float64 { return testutil.ToFloat64(r.Metrics.Applies.WithLabelValues("change")) }
			go func() { // the controller's worker: one recompute at a time, coalescing
				defer close(stopped)
				seen := 0
				var last time.Time
				for {
					select {
					case <-dirty:
					case <-done:
						return
					}
					// The recompute waits for the min-apply-interval after the last one (see
					// Reconciler.MinApplyInterval); waiting here first, at least as long, tells
					// which events it includes.
					time.Sleep(controller.DefaultMinApplyInterval - time.Since(last))
					src.mu.Lock()
					started := src.seq
					src.mu.Unlock()
					if _, err := r.Reconcile(ctx, nodeKey); err != nil {
						b.Error(err)
						return
					}
					end := time.Now()
					last = end
					mu.Lock()
					recomputes++
					for ; seen < started; seen++ {
						lat = append(lat, end.Sub(at[seen]))
					}
					mu.Unlock()
				}
			}()

			rng := rand.New(rand.NewPCG(1, 2))
			applies0 := applied()
			cpu0, wall0 := cpuSeconds(), time.Now()
			tick := time.NewTicker(time.Second / 50)
			for time.Since(wall0) < d {
				<-tick.C
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
				src.relabel(remote[rng.IntN(len(remote))])
				select {
				case dirty <- struct{}{}:
				default:
				}
			}
			tick.Stop()
			// Let the last events through, then stop the worker.
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				mu.Lock()
				n := len(lat)
				mu.Unlock()
				if n == len(at) {
					break
				}
			}
			wall, cpu := time.Since(wall0), cpuSeconds()-cpu0
			close(done)
			<-stopped
			applies := applied() - applies0
			for b.Loop() {
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lat) != len(at) {
				b.Fatalf("%d of %d events never reached the kernel", len(at)-len(lat), len(at))
			}
			slices.Sort(lat)
			ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
			b.Logf("%s: %d events in %v, %d recomputes, %.0f applies (the other recomputes changed nothing on this node); event to kernel p50 %v, p99 %v, max %v; CPU %.1f s over %v",
				mode, len(at), d, recomputes, applies, percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1], cpu, wall.Round(time.Millisecond))
			b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			b.ReportMetric(float64(len(at)), "events")
			b.ReportMetric(float64(recomputes), "recomputes")
			b.ReportMetric(applies, "applies")
			b.ReportMetric(100*cpu/wall.Seconds(), "cpu-pct-core")
		})
	}
}
