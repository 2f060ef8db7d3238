package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flock-net/flock-netpol/internal/cli"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/synth"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// The churn scenario. A local pod (target) is isolated for ingress by a policy whose only peer
// is every pod of the churn namespace, so the address of each churn pod is an element of that
// policy's peer set in the node's table while the pod exists, and of no other set of ours.
//
// Address plan: the background cluster is test/synth's (10.0.0.0/16 for 2,000 pods on 19
// nodes, fd00:10::/48, node addresses in 172.16.0.0/12); the target pod is 10.254.0.2; churn pods
// are 10.253.0.0/16, the n-th at 10.253.0.0 + 2n + 1, never reused. Every churn pod lives on
// another node than the agent's: peers can be anywhere.
const (
	targetNS     = "perf-target"
	targetPod    = "target"
	churnNS      = "perf-churn"
	churnPolicy  = "allow-churn"
	churnBacklog = 250 // churn pods alive at any time: a pod is deleted 2*churnBacklog events after its creation
)

var (
	targetIP  = netip.MustParseAddr("10.254.0.2")
	churnBase = netip.MustParseAddr("10.253.0.0")
	// peerSetFragment names the policy's peer sets: every generated set name holds the policy's
	// namespace/name (see internal/render/names.go).
	peerSetFragment = targetNS + "/" + churnPolicy + "/"
)

// churnAddr is the address of the n-th churn pod.
func churnAddr(n int) netip.Addr {
	b := churnBase.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(2*n + 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// driveDuration is how long events are driven: 60 s, FLOCK_PERF_DURATION when set, 10 s in
// -short mode.
func driveDuration() (time.Duration, error) {
	if s := os.Getenv("FLOCK_PERF_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("FLOCK_PERF_DURATION=%q is not a positive duration", s)
		}
		return d, nil
	}
	if testing.Short() {
		return 10 * time.Second, nil
	}
	return time.Minute, nil
}

// BenchmarkEventToKernel reports how long a pod event takes to reach the kernel through the real
// agent, envtest and nft at 50 events per second (p50-ms, p99-ms, max-ms over events), and how
// many nft transactions carried them (applies). It measures once, whatever b.N.
func BenchmarkEventToKernel(b *testing.B) {
	const rate = 50
	d, err := driveDuration()
	if err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("rate=%d/s,duration=%ds", rate, int(d.Round(time.Second).Seconds())), func(b *testing.B) {
		benchEventToKernel(b, rate, d)
	})
}

// applyRecord is one successful `nft -f -`: when it returned and what the churn policy's peer
// sets held in the script it applied (parsed at once, so scripts need not be kept).
type applyRecord struct {
	start, done time.Time
	bytes       int
	peers       addrSet
}

// recorder is the agent's nft.Executor: it runs nft and records every successful apply.
type recorder struct {
	inner nft.Executor
	mu    sync.Mutex
	log   []applyRecord
	fails int
}

func (r *recorder) Run(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
	if !nft.IsApply(argv) {
		return r.inner.Run(ctx, argv, stdin)
	}
	start := time.Now()
	stdout, stderr, err := r.inner.Run(ctx, argv, stdin)
	done := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.fails++
		return stdout, stderr, err
	}
	r.log = append(r.log, applyRecord{start: start, done: done, bytes: len(stdin), peers: scriptSetAddrs(stdin, peerSetFragment)})
	return stdout, stderr, err
}

func (r *recorder) applies() []applyRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// event is one pod create or delete and when its API write returned.
type event struct {
	create  bool
	n       int // churn pod number
	addr    netip.Addr
	written time.Time
	err     error
}

// logTail keeps the agent's last log lines, shown when the benchmark fails.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.lines) >= 200 {
			l.lines = l.lines[1:]
		}
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{})
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func benchEventToKernel(b *testing.B, rate int, duration time.Duration) {
	assets, err := testenv.Assets("")
	if err != nil {
		testenv.Strict(b).Skipf("envtest benchmark: %v", err)
	}
	// The namespace first: its cleanup (registered first) then runs last, after the agent and
	// envtest have stopped.
	nodeNS := netns.NewScratch(b)

	testEnv := &envtest.Environment{BinaryAssetsDirectory: assets}
	restCfg, err := testEnv.Start()
	if err != nil {
		b.Fatalf("starting envtest with the binaries in %s: %v", assets, err)
	}
	b.Cleanup(func() {
		if err := testEnv.Stop(); err != nil {
			b.Errorf("stopping envtest: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	// The writer is not throttled (client-go's default is 5 QPS): the test API server has no
	// other user, and the rate under test is the benchmark's, not the client's.
	writerCfg := rest.CopyConfig(restCfg)
	writerCfg.QPS, writerCfg.Burst = -1, 1000
	c, err := client.New(writerCfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	cl := synth.Generate(synth.Sized(2000, 200))
	loadStart := time.Now()
	if err := loadCluster(ctx, c, cl); err != nil {
		b.Fatal(err)
	}
	if err := loadChurnScenario(ctx, c, cl); err != nil {
		b.Fatal(err)
	}
	// The agent applies nothing until its Node exists.
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cl.LocalNode}}); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d namespaces, %d policies and %d pods (plus the churn scenario) in %s",
		len(cl.Namespaces), len(cl.Policies), len(cl.Pods), time.Since(loadStart).Round(time.Millisecond))

	// The agent as `flock-netpol run` builds it, with the real nft inside the throwaway namespace.
	rec := &recorder{inner: nft.NewExecutor()}
	logs := &logTail{}
	// controller-runtime's own packages log through its global logger.
	ctrllog.SetLogger(logs.logger())
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("the agent's last log lines:\n%s", logs)
		}
	})
	a, err := cli.NewAgent(rest.CopyConfig(restCfg), cli.RunConfig{
		NodeName:               cl.LocalNode,
		Table:                  render.DefaultTable,
		NFT:                    "ip netns exec " + nodeNS + " nft",
		NFTTimeout:             nft.DefaultTimeout,
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		ResyncPeriod:           time.Minute,
		// A benchmark run may start more than one manager in this process.
		SkipNameValidation: true,
	}, logs.logger(), rec)
	if err != nil {
		b.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Manager.Start(agentCtx) }()
	b.Cleanup(func() {
		stopAgent()
		select {
		case err := <-agentDone:
			if err != nil {
				b.Errorf("agent: %v", err)
			}
		case <-time.After(time.Minute):
			b.Errorf("the agent did not stop within a minute")
		}
	})

	// The first apply happens once every cache has synced; wait until the kernel holds the
	// initial churn pods.
	initial := make([]netip.Addr, churnBacklog)
	for n := range churnBacklog {
		initial[n] = churnAddr(n)
	}
	if err := waitForPeers(rec, initial, nil, 2*time.Minute); err != nil {
		b.Fatal(err)
	}
	first := rec.applies()
	b.Logf("first apply: %d bytes, %s in nft", first[len(first)-1].bytes, first[len(first)-1].done.Sub(first[len(first)-1].start).Round(time.Millisecond))

	// Drive: one event every 1/rate, alternately creating the next churn pod and deleting the
	// oldest live one, so that churnBacklog pods live at any time and each lives for
	// 2*churnBacklog/rate (10 s at 50/s), far longer than the latency under test: a pod deleted
	// before its creation reached the kernel makes both events unmeasurable ("unseen", counted
	// as slower than any measured event). Each event runs in its own goroutine (an open loop):
	// a slow write does not slow the rate down. The goroutines only fill in their own event;
	// wg.Wait orders that before the events are read.
	driveStart := time.Now()
	appliesBefore := len(first)
	var (
		events []*event
		wg     sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	next, oldest := churnBacklog, 0
	for k := 0; time.Since(driveStart) < duration; k++ {
		<-tick.C
		ev := &event{create: k%2 == 0}
		if ev.create {
			ev.n, next = next, next+1
		} else {
			ev.n, oldest = oldest, oldest+1
		}
		ev.addr = churnAddr(ev.n)
		events = append(events, ev)
		wg.Go(func() {
			if ev.create {
				// A pod has no address until its status is written (a second write, as the
				// kubelet makes it): the clock starts when that write returns.
				ev.written, ev.err = createChurnPod(ctx, c, cl, ev.n)
			} else {
				ev.err = c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: churnNS, Name: churnName(ev.n)}},
					client.GracePeriodSeconds(0))
				ev.written = time.Now()
			}
		})
	}
	tick.Stop()
	wg.Wait()
	for _, ev := range events {
		if ev.err != nil {
			b.Fatalf("event on churn pod %d: %v", ev.n, ev.err)
		}
	}
	// Wait until the kernel holds the final population, so the last events are measured too.
	var live, gone []netip.Addr
	for n := oldest; n < next; n++ {
		live = append(live, churnAddr(n))
	}
	for n := range oldest {
		gone = append(gone, churnAddr(n))
	}
	if err := waitForPeers(rec, live, gone, time.Minute); err != nil {
		b.Fatal(err)
	}
	if err := checkKernel(ctx, nodeNS, live, gone); err != nil {
		b.Fatal(err)
	}

	applies := rec.applies()
	measured := applies[appliesBefore-1:]
	samples, unseen := latencies(events, measured)
	if len(samples) == 0 {
		b.Fatal("no event was measured")
	}
	slices.SortFunc(samples, func(x, y sample) int { return cmp.Compare(x.lat, y.lat) })
	lat := make([]time.Duration, len(samples), len(samples)+unseen)
	for i, s := range samples {
		lat[i] = s.lat
	}
	// An unseen event took longer than its pod lived: slower than anything measured.
	for range unseen {
		lat = append(lat, unseenLatency)
	}
	var nftTimes []time.Duration
	for _, ap := range applies[appliesBefore:] {
		nftTimes = append(nftTimes, ap.done.Sub(ap.start))
	}
	slices.Sort(nftTimes)
	b.Logf("%d events in %s (%.1f/s), %d unseen; %d applies (%d failed); nft p50 %s, p99 %s; last script %d bytes",
		len(events), duration, float64(len(events))/duration.Seconds(), unseen, len(applies)-appliesBefore, rec.fails,
		percentile(nftTimes, 50).Round(time.Millisecond), percentile(nftTimes, 99).Round(time.Millisecond), applies[len(applies)-1].bytes)
	// The slowest events, split into the time until the nft call that carried them started
	// (watch delivery, waiting for the apply in progress, recompute) and that call itself.
	for _, s := range samples[max(0, len(samples)-5):] {
		ap := measured[s.apply]
		b.Logf("slow event: create=%v pod %d: %s = %s until nft started + %s in nft",
			s.ev.create, s.ev.n, s.lat.Round(time.Millisecond), max(0, ap.start.Sub(s.ev.written)).Round(time.Millisecond),
			ap.done.Sub(ap.start).Round(time.Millisecond))
	}
	ms := func(d time.Duration) float64 {
		if d == unseenLatency {
			return math.Inf(1)
		}
		return float64(d) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(len(events)), "events")
	b.ReportMetric(float64(len(applies)-appliesBefore), "applies")
	b.ReportMetric(float64(unseen), "unseen")
	b.ReportMetric(ms(percentile(nftTimes, 50)), "nft-p50-ms")
	b.ReportMetric(ms(percentile(nftTimes, 99)), "nft-p99-ms")
}

// unseenLatency stands for the latency of an event that no apply reflected.
const unseenLatency = time.Duration(math.MaxInt64)

// percentile returns the p-th percentile of sorted by the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// sample is one measured event: its latency and the apply that reflected it.
type sample struct {
	lat   time.Duration
	apply int // index into the applies given to latencies
	ev    *event
}

// latencies matches every event with the first apply that reflects it: for a create, the first
// apply whose script holds the address (no earlier script can: the address is new); for a
// delete, the first apply after that one whose script no longer holds it. The latency is from the
// write returning to that apply returning, and 0 when the apply returned first (the watch event
// can reach the agent before the HTTP response reaches the writer). Events no apply reflects
// (which the final wait rules out, unless a pod's whole life fell between two applies) are
// counted as unseen.
func latencies(events []*event, applies []applyRecord) (samples []sample, unseen int) {
	seen := map[int]int{} // churn pod -> index of the first apply holding it
	for _, ev := range events {
		if !ev.create {
			continue
		}
		i := slices.IndexFunc(applies, func(a applyRecord) bool { return a.peers.contains(ev.addr) })
		if i < 0 {
			unseen++
			continue
		}
		seen[ev.n] = i
		samples = append(samples, sample{max(0, applies[i].done.Sub(ev.written)), i, ev})
	}
	for _, ev := range events {
		if ev.create {
			continue
		}
		from, ok := seen[ev.n]
		if !ok {
			// Created before the drive: present in the first recorded apply.
			if !applies[0].peers.contains(ev.addr) {
				unseen++
				continue
			}
			from = 0
		}
		j := slices.IndexFunc(applies[from:], func(a applyRecord) bool { return !a.peers.contains(ev.addr) })
		if j < 0 {
			unseen++
			continue
		}
		samples = append(samples, sample{max(0, applies[from+j].done.Sub(ev.written)), from + j, ev})
	}
	return samples, unseen
}

// waitForPeers waits until the last successful apply holds every address of want and none of
// gone.
func waitForPeers(rec *recorder, want, gone []netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var last addrSet
		ok := false
		if aps := rec.applies(); len(aps) > 0 {
			last = aps[len(aps)-1].peers
			ok = !slices.ContainsFunc(want, func(a netip.Addr) bool { return !last.contains(a) }) &&
				!slices.ContainsFunc(gone, last.contains)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the last apply (of %d) does not hold the expected churn pods (%d present, %d gone)",
				timeout, len(rec.applies()), len(want), len(gone))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkKernel reads the table back from the kernel and checks the peer set against the
// recorder's view: what the agent applied is what the kernel holds.
func checkKernel(ctx context.Context, ns string, live, gone []netip.Addr) error {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", render.DefaultTable).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft list table: %v: %s", err, out)
	}
	got := listingSetAddrs(string(out), peerSetFragment)
	var errs []error
	for _, a := range live {
		if !got.contains(a) {
			errs = append(errs, fmt.Errorf("the kernel's peer set lacks live pod address %s", a))
		}
	}
	for _, a := range gone {
		if got.contains(a) {
			errs = append(errs, fmt.Errorf("the kernel's peer set still holds deleted pod address %s", a))
		}
	}
	return errors.Join(errs...)
}

// loadCluster creates the synthetic cluster's namespaces, policies and pods (with their status,
// as a kubelet would write it), a few writes at a time.
func loadCluster(ctx context.Context, c client.Client, cl synth.Cluster) error {
	var objs []func() error
	for _, ns := range cl.Namespaces {
		objs = append(objs, func() error { return createOrLabelNamespace(ctx, c, ns) })
	}
	if err := parallel(objs); err != nil {
		return err
	}
	objs = nil
	for _, np := range cl.Policies {
		objs = append(objs, func() error { return c.Create(ctx, np.DeepCopy()) })
	}
	for _, p := range cl.Pods {
		objs = append(objs, func() error { _, err := createPod(ctx, c, p); return err })
	}
	return parallel(objs)
}

// createOrLabelNamespace creates ns, or gives it ns's labels when it exists (envtest's API
// server creates kube-system itself).
func createOrLabelNamespace(ctx context.Context, c client.Client, ns *corev1.Namespace) error {
	err := c.Create(ctx, ns.DeepCopy())
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur corev1.Namespace
		if err := c.Get(ctx, client.ObjectKeyFromObject(ns), &cur); err != nil {
			return err
		}
		cur.Labels = maps.Clone(ns.Labels)
		return c.Update(ctx, &cur)
	})
}

// parallel runs fns on 16 workers and returns every error.
func parallel(fns []func() error) error {
	work := make(chan func() error)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for fn := range work {
				if err := fn(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, fn := range fns {
		work <- fn
	}
	close(work)
	wg.Wait()
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more errors", len(errs)-5))
	}
	return errors.Join(errs...)
}

// createPod creates p, then writes its status (phase, addresses) through the status subresource,
// and returns when that second write returned.
func createPod(ctx context.Context, c client.Client, p *corev1.Pod) (time.Time, error) {
	pod := p.DeepCopy()
	status := pod.Status
	pod.Status = corev1.PodStatus{}
	if err := c.Create(ctx, pod); err != nil {
		return time.Time{}, fmt.Errorf("creating pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	pod.Status = status
	if err := c.Status().Update(ctx, pod); err != nil {
		return time.Time{}, fmt.Errorf("writing the status of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return time.Now(), nil
}

func churnName(n int) string { return fmt.Sprintf("churn-%06d", n) }

// churnNode is the node churn pods run on: any node but the agent's.
func churnNode(cl synth.Cluster) string { return cl.Nodes[len(cl.Nodes)-1] }

func createChurnPod(ctx context.Context, c client.Client, cl synth.Cluster, n int) (time.Time, error) {
	return createPod(ctx, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: churnNS, Name: churnName(n), Labels: map[string]string{"app": "churn"}},
		Spec: corev1.PodSpec{
			NodeName:   churnNode(cl),
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/churn:1"}},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  churnAddr(n).String(),
			PodIPs: []corev1.PodIP{{IP: churnAddr(n).String()}},
		},
	})
}

// loadChurnScenario creates the target pod, the churn namespace with its first churnBacklog pods,
// and the policy that makes every churn pod a peer of the target.
func loadChurnScenario(ctx context.Context, c client.Client, cl synth.Cluster) error {
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: targetNS, Labels: map[string]string{"perf": "target"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: churnNS, Labels: map[string]string{"perf": "churn"}}},
	} {
		if err := c.Create(ctx, ns); err != nil {
			return err
		}
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: targetNS, Name: churnPolicy},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "perf-target"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"perf": "churn"}}}},
			}},
		},
	}
	if err := c.Create(ctx, np); err != nil {
		return err
	}
	if _, err := createPod(ctx, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: targetNS, Name: targetPod, Labels: map[string]string{"app": "perf-target"}},
		Spec: corev1.PodSpec{
			NodeName:   cl.LocalNode,
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/target:1"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: targetIP.String(), PodIPs: []corev1.PodIP{{IP: targetIP.String()}}},
	}); err != nil {
		return err
	}
	var fns []func() error
	for n := range churnBacklog {
		fns = append(fns, func() error { _, err := createChurnPod(ctx, c, cl, n); return err })
	}
	return parallel(fns)
}
