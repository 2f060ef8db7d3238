//go:build linux

package agent

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/test/synth"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// podEvents is how many pod events BenchmarkPodEvent measures of each kind.
const podEvents = 25

// BenchmarkPodEvent times one pod event that changes a peer set, alone (nothing coalesces with
// it, and no apply ran in the min-apply-interval before it), from the event to the kernel's
// answer, through the real reconciler (incremental translation, changes applied in place, over
// netlink when they change elements only, as the agent by default) at cluster scale: 150k pods /
// 10k policies in memory, as BenchmarkEventStream's. A remote pod in the namespace of a local pod
// is relabelled out of the peer sets that hold it (narrow: a peer leaves, its pods' flows are
// judged again) and back (widen). Only events that changed this node's table count. It reports,
// per kind, p50 and p99 (p50-ms, p99-ms and widen-p50-ms, widen-p99-ms), the agent's part
// outside nft or netlink, the share of updates sent over netlink, and the size of the
// transactions (bytes and element lines, the median), and measures once, whatever b.N.
func BenchmarkPodEvent(b *testing.B) {
	b.Run("pods=150000,policies=10000", func(b *testing.B) {
		tb := testenv.RequireKernel(b, "perf/agent pod event")
		if testing.Short() {
			b.Skip("150k-pod cluster skipped in -short mode")
		}
		rec := &sizeRecorder{inner: nft.NewExecutor()}
		cl := synth.Generate(synth.Sized(150000, 10000))
		src := newStreamSource(cl)
		r := startAgent(b, tb, src, cl.LocalNode, rec, "incremental")
		src.observe = func(o client.Object) { r.Observe(o, false) }
		ctx := context.Background()
		applied := func() float64 { return testutil.ToFloat64(r.Metrics.Applies.WithLabelValues("change")) }
		event := func(i int) (time.Duration, bool) {
			time.Sleep(controller.DefaultMinApplyInterval) // alone: nothing applied just before
			before := applied()
			rec.took = 0
			start := time.Now()
			src.relabel(i)
			if _, err := r.Reconcile(ctx, nodeKey); err != nil {
				b.Fatal(err)
			}
			return time.Since(start), applied() > before
		}

		var narrow, widen, agent []time.Duration // agent: each event's time outside nft or netlink
		var sizes, elements []int
		overNetlink := 0
		for i, p := range cl.Pods {
			if len(narrow) == podEvents {
				break
			}
			if p.Spec.NodeName == cl.LocalNode || p.Labels["tier"] == "" || len(p.Status.PodIPs) == 0 || p.Spec.HostNetwork {
				continue
			}
			d, changed := event(i) // out of the peer sets
			if !changed {
				event(i) // back; this pod is in no peer set of this node
				continue
			}
			narrow, agent = append(narrow, d), append(agent, d-rec.took)
			sizes, elements = append(sizes, rec.last), append(elements, rec.elements)
			if rec.netlink {
				overNetlink++
			}
			d, changed = event(i) // back into them
			if !changed {
				b.Fatalf("pod %s/%s came back into the peer sets, and the table did not change", p.Namespace, p.Name)
			}
			widen, agent = append(widen, d), append(agent, d-rec.took)
			sizes, elements = append(sizes, rec.last), append(elements, rec.elements)
			if rec.netlink {
				overNetlink++
			}
		}
		if len(narrow) < podEvents {
			b.Fatalf("only %d remote pods change a peer set of this node", len(narrow))
		}
		for b.Loop() {
		}
		for _, s := range [][]time.Duration{narrow, widen, agent} {
			slices.Sort(s)
		}
		slices.Sort(sizes)
		slices.Sort(elements)
		ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
		b.Logf("%d pod events of each kind, one at a time: a peer leaves p50 %v, p99 %v; a peer joins p50 %v, p99 %v; outside nft or netlink p50 %v, p99 %v; %d of %d over netlink; transactions %d–%d bytes, %d–%d element lines",
			podEvents, percentile(narrow, 50), percentile(narrow, 99), percentile(widen, 50), percentile(widen, 99),
			percentile(agent, 50), percentile(agent, 99), overNetlink, 2*podEvents, sizes[0], sizes[len(sizes)-1], elements[0], elements[len(elements)-1])
		b.ReportMetric(ms(percentile(narrow, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(narrow, 99)), "p99-ms")
		b.ReportMetric(ms(percentile(widen, 50)), "widen-p50-ms")
		b.ReportMetric(ms(percentile(widen, 99)), "widen-p99-ms")
		b.ReportMetric(ms(percentile(agent, 50)), "agent-p50-ms")
		b.ReportMetric(ms(percentile(agent, 99)), "agent-p99-ms")
		b.ReportMetric(100*float64(overNetlink)/float64(2*podEvents), "netlink-pct")
		b.ReportMetric(float64(sizes[len(sizes)/2]), "bytes/update")
		b.ReportMetric(float64(elements[len(elements)/2]), "elements/update")
	})
}
