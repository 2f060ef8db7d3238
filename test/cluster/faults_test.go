//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// TestFaults is the fault suite (docs/operations.md, "What happens when"): one agent (node-1's)
// restarted, killed, crash-looped, given a missing, hanging or refusing nft, cut off from the API
// server, its table tampered with, its node rebooted, while a prober sends new connections over a
// fixed set of flows, half of them allowed and half denied. Each scenario is judged from the
// prober's own records: no denied flow may pass and no allowed flow may fail, except inside a
// window the scenario measures and names (a repair, a reboot). The suite ends with a table of
// what it measured.
//
// The short form runs in `make test`; FLOCK_FAULTS=full (set by `make faults`) runs the long one:
// 20 SIGTERM and 20 SIGKILL restarts instead of 3 and 3, a crash loop of 10 instead of 3, and API
// server outages of 10 minutes instead of 20 seconds.
//
//	node-1  pod ranges 10.1.1.0/24, fd00:1:1::/64  a1 (namespace x, app=a), a2 (namespace y)
//	node-2  pod ranges 10.1.2.0/24, fd00:1:2::/64  b1 (namespace y)
//	ext     10.200.0.10, fd00:200::10               outside the cluster
//
// Policies in x, on app=a: ingress from namespace y on port 80 (TCP and UDP) only; egress to
// namespace y only; ingress on port 82 from pods labelled churn=on, a rule no probe uses, which
// the tests flip to make the agent apply (a2's label).
func TestFaults(t *testing.T) {
	full := os.Getenv("FLOCK_FAULTS") == "full"
	start := time.Now()
	addr := netip.MustParseAddr
	c := cluster.Start(t, cluster.Options{PodCIDRs: map[string][]string{
		"node-1": {"10.1.1.0/24", "fd00:1:1::/64"},
		"node-2": {"10.1.2.0/24", "fd00:1:2::/64"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	n1 := c.Node("node-1")

	a1 := c.AddPod("node-1", "a1", []netip.Addr{addr("10.1.1.1"), addr("fd00:1:1::1")}, 80, 81)
	a2 := c.AddPod("node-1", "a2", []netip.Addr{addr("10.1.1.2"), addr("fd00:1:1::2")}, 80, 81)
	b1 := c.AddPod("node-2", "b1", []netip.Addr{addr("10.1.2.1"), addr("fd00:1:2::1")}, 80, 81)
	ext := c.AddExternal("ext", []netip.Addr{addr("10.200.0.10"), addr("fd00:200::10")}, 80, 81)
	for _, ns := range []string{"x", "y"} {
		if err := c.CreateNamespace(ctx, ns, map[string]string{"team": ns}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []cluster.PodObject{
		{Namespace: "x", Name: "a1", Endpoint: a1, Labels: map[string]string{"app": "a"}},
		{Namespace: "y", Name: "a2", Endpoint: a2, Labels: map[string]string{"app": "b"}},
		{Namespace: "y", Name: "b1", Endpoint: b1, Labels: map[string]string{"app": "b"}},
	} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	eps := []netns.Endpoint{a1, a2, b1, ext}
	if err := c.WarmUp(eps, func(netns.Endpoint) uint16 { return 80 }); err != nil {
		t.Fatal(err)
	}
	for _, np := range faultPolicies() {
		if err := c.ApplyPolicy(ctx, np); err != nil {
			t.Fatal(err)
		}
	}

	// node-1's agent from now on: nft through the wrapper, the API server through the proxy.
	script, ctl, err := writeFaultNFT(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := startAPIProxy(c.APIServerHost())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	viaProxy, err := c.KubeconfigVia(proxy.addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &faults{t: t, c: c, n1: n1, ctl: ctl, full: full, api: proxy,
		std: cluster.AgentStart{
			Args:       []string{"--nft", script + " " + ctl + " " + n1.NS.Namespace(), "--nft-timeout", faultNFTTimeout.String()},
			Kubeconfig: viaProxy,
		}}
	if err := c.StopAgent("node-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgentWith("node-1", f.std); err != nil {
		t.Fatal(err)
	}
	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}

	// Probes: a denied flow costs the probe timeout, an allowed one a millisecond or two.
	c.Bed.ProbeTimeout = probeTimeout
	var flows []cluster.ProbeFlow
	for _, k := range netns.AllKinds {
		v6, proto := k.IPv6(), k.Proto()
		fl := func(from, to netns.Endpoint, port uint16, allowed bool, what string) cluster.ProbeFlow {
			return cluster.ProbeFlow{Flow: netns.Flow{From: from, To: to.Addr(v6), Proto: proto, Port: port}, Allowed: allowed, What: what}
		}
		flows = append(flows,
			fl(a2, a1, 80, true, "same node, ingress"),
			fl(b1, a1, 80, true, "cross node, ingress"),
			fl(a1, b1, 80, true, "cross node, egress"),
			fl(ext, a2, 80, true, "external to pod"),
			fl(a2, a1, 81, false, "same node, port not allowed"),
			fl(b1, a1, 81, false, "cross node, port not allowed"),
			fl(ext, a1, 80, false, "external to isolated pod"),
			fl(a1, ext, 80, false, "pod to external, egress isolated"),
		)
	}
	f.p = c.StartProber(flows, probeInterval)
	defer f.p.Stop()
	// Before any fault: the probes must agree with the policies.
	time.Sleep(2 * time.Second)
	f.run("steady state (no fault)", func(t *testing.T, s *scenario) { time.Sleep(3 * time.Second) })
	if t.Failed() {
		t.Fatal("the probes do not agree with the policies before any fault")
	}
	t.Logf("setup %v", time.Since(start).Round(time.Millisecond))

	f.restarts(ctx)
	f.crashLoop(ctx)
	f.nftMissing(ctx)
	f.nftHanging(ctx)
	f.nftRejecting(ctx)
	f.apiOutage(ctx, "refused")
	f.apiOutage(ctx, "blackhole")
	f.tamper(ctx)
	f.reboot(ctx)

	f.p.Stop()
	t.Logf("fault suite (%s form, %d flows, %d probes in all, %v):\n%s", map[bool]string{true: "full", false: "short"}[full],
		len(flows), len(f.p.Records(start, time.Now())), time.Since(start).Round(time.Second), f.table())
}

// Timing of the suite.
const (
	probeTimeout    = 500 * time.Millisecond
	probeInterval   = 40 * time.Millisecond
	faultNFTTimeout = 2 * time.Second
)

func faultPolicies() []*networkingv1.NetworkPolicy {
	tcp, udp := ptr.To(corev1.ProtocolTCP), ptr.To(corev1.ProtocolUDP)
	p80, p82 := ptr.To(intstr.FromInt32(80)), ptr.To(intstr.FromInt32(82))
	sel := metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}
	teamY := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y"}}
	return []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "in-from-y"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teamY}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: p80}, {Protocol: udp, Port: p80}},
			}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "out-to-y"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel,
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teamY}}}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "churn"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"churn": "on"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: p82}},
			}}},
		},
	}
}

// faults is TestFaults's state.
type faults struct {
	t     *testing.T
	c     *cluster.Cluster
	n1    *cluster.Node
	p     *cluster.Prober
	api   *apiProxy // between node-1's agent and the API server
	ctl   string
	std   cluster.AgentStart // how node-1's agent runs between faults
	full  bool
	churn bool
	rows  []faultRow
}

// faultRow is one line of the final table.
type faultRow struct {
	name    string
	rep     cluster.ProbeReport
	excused int    // let-ins and losses inside the scenario's measured windows
	repair  string // the repair time or window the scenario measured
	// straddled counts the allowed TCP probes lost while an apply committed (see straddles).
	straddled int
	failed    bool
	duration  time.Duration
}

// scenario is what a scenario tells run: the windows in which it expects losses (or let-ins) and
// what its repair time was.
type scenario struct {
	windows []window
	repair  []string
}

type window struct {
	from, to time.Time
	letIn    bool // let-ins are excused too, not only losses
	why      string
}

// excuse tolerates losses (and let-ins when letIn) of probes that overlap [from, to].
func (s *scenario) excuse(from, to time.Time, letIn bool, why string) {
	s.windows = append(s.windows, window{from: from, to: to, letIn: letIn, why: why})
}

func (s *scenario) note(format string, args ...any) {
	s.repair = append(s.repair, fmt.Sprintf(format, args...))
}

// mergeWindows returns the windows clipped to [start, end), overlapping ones merged, in order.
func mergeWindows(ws []window, start, end time.Time) []window {
	var out []window
	for _, w := range ws {
		from, to := maxTime(w.from, start), minTime(w.to, end)
		if to.After(from) {
			out = append(out, window{from: from, to: to})
		}
	}
	slices.SortFunc(out, func(a, b window) int { return a.from.Compare(b.from) })
	merged := out[:0]
	for _, w := range out {
		if n := len(merged); n > 0 && !w.from.After(merged[n-1].to) {
			merged[n-1].to = maxTime(merged[n-1].to, w.to)
			continue
		}
		merged = append(merged, w)
	}
	return merged
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// run runs one scenario as a subtest, waits for the probes in flight, and judges the probes that
// started during it.
func (f *faults) run(name string, fn func(t *testing.T, s *scenario)) {
	f.t.Run(name, func(t *testing.T) {
		s := &scenario{}
		for _, name := range []string{"overlaps", "orphans"} {
			_ = os.Remove(filepath.Join(f.ctl, name))
		}
		start := time.Now()
		defer func() { f.judge(t, name, s, start, time.Now()) }()
		fn(t, s)
	})
}

// judge waits for the probes in flight and judges those that started in [start, end), for the
// scenario name; it adds the scenario's row to the table.
func (f *faults) judge(t *testing.T, name string, s *scenario, start, end time.Time) {
	t.Helper()
	time.Sleep(probeTimeout + 200*time.Millisecond) // the probes in flight
	rep := f.p.Report(start, end)
	row := faultRow{name: name, rep: rep, repair: strings.Join(s.repair, "; "), duration: end.Sub(start)}
	defer func() {
		if row.straddled > 0 {
			f.rows[len(f.rows)-1].repair += fmt.Sprintf("; %d TCP connects lost to an apply's commit (known issue)", row.straddled)
		}
	}()
	var bad []cluster.ProbeRecord
	for _, r := range append(append([]cluster.ProbeRecord(nil), rep.LetIn...), rep.Lost...) {
		letIn := !f.p.Flows()[r.Flow].Allowed
		excused := false
		for _, w := range s.windows {
			if (!letIn || w.letIn) && !r.End().Before(w.from) && !r.At.After(w.to) {
				excused = true
			}
		}
		if !excused && !letIn && f.straddles(r) {
			// See straddles: a known issue, counted apart and reported, not a pass.
			row.straddled++
			excused = true
		}
		if excused {
			row.excused++
		} else {
			bad = append(bad, r)
		}
	}
	// The probes' own pace, outside the measured windows: inside them every probe may be
	// dropped and wait its timeout (probeTimeout for each of the flows), so fewer start there,
	// and a long window (a rebooted node's bootstrap table until the client-go backoff lets the
	// agent list again) would fail this check for the window's length, not the probes'.
	probes, outside := rep.Probes, end.Sub(start)
	for _, w := range mergeWindows(s.windows, start, end) {
		probes -= len(f.p.Records(w.from, w.to))
		outside -= w.to.Sub(w.from)
	}
	if outside > time.Second && probes < int(outside.Seconds()*100) {
		t.Errorf("%d probes in the %v outside the measured windows: fewer than 100 per second", probes, outside.Round(time.Millisecond))
	}
	if len(bad) > 0 {
		t.Errorf("%d probes outside every measured window: denied flows let in or allowed flows lost:%s",
			len(bad), f.p.Describe(bad, start, 20))
	}
	row.failed = t.Failed()
	f.rows = append(f.rows, row)
	t.Logf("%s: %d probes, %d denied let in, %d allowed lost (%d inside measured windows), longest gap %v; %s",
		name, rep.Probes, len(rep.LetIn), len(rep.Lost), row.excused, rep.LongestGap.Round(time.Millisecond), row.repair)
	if len(bad) > 0 {
		log, _ := f.n1.AgentLog()
		var applies []string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, logApplied) || strings.Contains(l, logApplyFailed) {
				applies = append(applies, l)
			}
		}
		t.Logf("applies of node-1's current agent (%s):\n%s", f.n1.LogPath(), strings.Join(applies, "\n"))
		t.Logf("applies through the wrapper (UTC):\n%s", wrapperLog(f.ctl, start, end.Add(probeTimeout)))
	}
}

// straddles reports whether r is a probe of an allowed TCP flow that failed to connect (the
// handshake timed out) and started within one probe timeout before an apply through the wrapper
// ended. Known cause: for a few milliseconds after a transaction commits, an interval set it
// created matches nothing (docs/operations.md, Closed edges), so a TCP handshake in flight can
// lose a packet, and the client's SYN retransmit comes after the probe's timeout (UDP probes
// resend in time). Peer sets of pod addresses are hash sets, which the kernel uses at once, so
// only peers given as wide ipBlocks remain exposed; such probes are counted apart in the
// table's notes.
func (f *faults) straddles(r cluster.ProbeRecord) bool {
	fl := f.p.Flows()[r.Flow]
	if fl.Proto != "tcp" || !strings.Contains(r.Err, "dial tcp") {
		return false
	}
	b, _ := os.ReadFile(filepath.Join(f.ctl, "log"))
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 2 || fs[1] != "end" {
			continue
		}
		sec, err := strconv.ParseFloat(fs[0], 64)
		if err != nil {
			continue
		}
		end := time.Unix(0, int64(sec*1e9))
		if !r.At.After(end) && end.Sub(r.At) <= probeTimeout {
			return true
		}
	}
	return false
}

// table prints the rows.
func (f *faults) table() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-44s %7s %9s %9s %8s %12s  %s\n", "scenario", "probes", "let in", "lost", "(window)", "longest gap", "repair time, notes")
	for _, r := range f.rows {
		name := r.name
		if r.failed {
			name += " FAILED"
		}
		fmt.Fprintf(&sb, "%-44s %7d %9d %9d %8d %12v  %s\n", name, r.rep.Probes, len(r.rep.LetIn), len(r.rep.Lost), r.excused,
			r.rep.LongestGap.Round(time.Millisecond), r.repair)
	}
	return sb.String()
}

// flipChurn changes a2's churn label, which changes node-1's script (the churn policy's peers)
// and no probed flow.
func (f *faults) flipChurn(ctx context.Context) error {
	f.churn = !f.churn
	labels := map[string]string{"app": "b"}
	if f.churn {
		labels["churn"] = "on"
	}
	return f.c.SetPodLabels(ctx, "y", "a2", labels)
}

// logCount counts the lines of node-1's current agent log that contain s.
func (f *faults) logCount(s string) int {
	log, _ := f.n1.AgentLog()
	return strings.Count(log, s)
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// restartStd restarts node-1's agent as it runs between faults, if it is not running.
func (f *faults) restartStd(t *testing.T) {
	t.Helper()
	if !f.n1.AgentRunning() {
		if err := f.c.StartAgentWith("node-1", f.std); err != nil {
			t.Fatal(err)
		}
	}
}

// Scenario 1: SIGTERM and SIGKILL restarts at random moments, half of them while an apply (made
// slow by the wrapper's delay) is in flight. The kernel keeps the table through every one: no
// probe may fail or pass wrongly.
func (f *faults) restarts(ctx context.Context) {
	n := 3
	if f.full {
		n = 20
	}
	for _, sig := range []string{"SIGTERM", "SIGKILL"} {
		f.run(fmt.Sprintf("%d %s restarts", n, sig), func(t *testing.T, s *scenario) {
			delay := filepath.Join(f.ctl, "delay")
			if err := os.WriteFile(delay, []byte("0.4"), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(delay)
			defer f.restartStd(t)
			hits := 0
			var downs []time.Duration
			for i := range n {
				if i%2 == 0 {
					// During an apply: make one, wait for its begin, stop somewhere inside the delay.
					begun := applyBegins(f.ctl)
					if err := f.flipChurn(ctx); err != nil {
						t.Fatal(err)
					}
					if !waitFor(10*time.Second, func() bool { return applyBegins(f.ctl) > begun }) {
						t.Fatalf("restart %d: no apply began within 10s of a change", i)
					}
					time.Sleep(time.Duration(rand.Int64N(int64(300 * time.Millisecond))))
				} else {
					time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
				}
				if _, err := os.Stat(filepath.Join(f.ctl, "applying")); err == nil {
					hits++
				}
				down := time.Now()
				var err error
				if sig == "SIGKILL" {
					err = f.c.KillAgent("node-1")
				} else {
					err = f.c.StopAgent("node-1")
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := f.c.StartAgentWith("node-1", f.std); err != nil {
					t.Fatal(err)
				}
				downs = append(downs, time.Since(down))
			}
			if err := f.c.WaitEnforced(ctx); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(f.ctl, "overlaps")); err == nil {
				t.Errorf("applies overlapped:\n%s", b)
			}
			orphans, _ := os.ReadFile(filepath.Join(f.ctl, "orphans"))
			if len(orphans) > 0 {
				t.Logf("applies of a new agent that began while a killed agent's apply still ran:\n%s", orphans)
			}
			s.note("%d of %d restarts hit an apply in flight; %d first applies overlapped a killed agent's; stop to ready %v",
				hits, n, strings.Count(string(orphans), "\n"), spread(downs))
		})
	}
}

// spread formats durations as min–max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%v–%v", lo.Round(10*time.Millisecond), hi.Round(10*time.Millisecond))
}

// Scenario 2: a crash loop: the agent is killed as soon as its log shows its first apply, again
// and again, with a change to apply each time. Nothing may be lost or let in.
func (f *faults) crashLoop(ctx context.Context) {
	n := 3
	if f.full {
		n = 10
	}
	f.run(fmt.Sprintf("crash loop (%d kills after the first apply)", n), func(t *testing.T, s *scenario) {
		defer f.restartStd(t)
		var firsts []time.Duration
		for i := range n {
			if f.n1.AgentRunning() {
				if err := f.c.KillAgent("node-1"); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.flipChurn(ctx); err != nil {
				t.Fatal(err)
			}
			started := time.Now()
			ns := f.std
			ns.NoWait = true
			if err := f.c.StartAgentWith("node-1", ns); err != nil {
				t.Fatal(err)
			}
			if !waitFor(60*time.Second, func() bool { return f.logCount(logApplied) > 0 }) {
				log, _ := f.n1.AgentLog()
				t.Fatalf("crash %d: no apply within 60s of the start:\n%s", i, log)
			}
			firsts = append(firsts, time.Since(started))
			if err := f.c.KillAgent("node-1"); err != nil {
				t.Fatal(err)
			}
		}
		f.restartStd(t)
		if err := f.c.WaitEnforced(ctx); err != nil {
			t.Fatal(err)
		}
		s.note("start to first apply %v", spread(firsts))
	})
}

// Scenario 3a: nft missing. The agent stays up and unready, says why, and the table stays.
func (f *faults) nftMissing(ctx context.Context) {
	f.run("nft missing", func(t *testing.T, s *scenario) {
		defer f.restartStd(t)
		before, err := f.n1.KernelDigest()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.c.StopAgent("node-1"); err != nil {
			t.Fatal(err)
		}
		missing := "/nonexistent/flock-faults/nft"
		st := cluster.AgentStart{Args: []string{"--nft", missing, "--nft-timeout", faultNFTTimeout.String()}, Kubeconfig: f.std.Kubeconfig, NoWait: true}
		if err := f.c.StartAgentWith("node-1", st); err != nil {
			t.Fatal(err)
		}
		if err := f.flipChurn(ctx); err != nil {
			t.Fatal(err)
		}
		if !waitFor(30*time.Second, func() bool { return f.logCount(logApplyFailed) >= 2 }) {
			log, _ := f.n1.AgentLog()
			t.Fatalf("no failed apply logged within 30s:\n%s", log)
		}
		if !f.n1.AgentRunning() {
			t.Fatal("the agent exited")
		}
		if err := f.n1.AgentReady(); err == nil {
			t.Error("the agent reports ready without nft")
		} else {
			t.Logf("/readyz: %v", err)
		}
		line := firstLine(f.n1, logApplyFailed)
		if !strings.Contains(line, missing) || !strings.Contains(line, "not found") {
			t.Errorf("the failed apply's log line does not name the missing command and why:\n%s", line)
		}
		t.Logf("agent: %s", line)
		if now, err := f.n1.KernelDigest(); err != nil || now != before {
			t.Errorf("the table changed without nft: digest %q, before %q (err %v)", now, before, err)
		}
		if err := f.c.StopAgent("node-1"); err != nil {
			t.Error(err)
		}
		f.restartStd(t)
		if err := f.c.WaitEnforced(ctx); err != nil {
			t.Fatal(err)
		}
		s.note("table kept; unready; log names the command")
	})
}

// Scenario 3b: nft hanging. Each apply is killed at --nft-timeout, the agent stays alive and
// unready, applies never overlap, and the table stays; once nft answers again the agent catches
// up.
func (f *faults) nftHanging(ctx context.Context) {
	f.run("nft hanging", func(t *testing.T, s *scenario) {
		defer f.restartStd(t)
		hang := filepath.Join(f.ctl, "hang")
		defer os.Remove(hang)
		before, err := f.n1.KernelDigest()
		if err != nil {
			t.Fatal(err)
		}
		failed := f.logCount(logApplyFailed)
		if err := os.WriteFile(hang, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		begun := applyBegins(f.ctl)
		if err := f.flipChurn(ctx); err != nil {
			t.Fatal(err)
		}
		if !waitFor(10*time.Second, func() bool { return applyBegins(f.ctl) > begun }) {
			t.Fatal("no apply began within 10s of a change")
		}
		hung := time.Now()
		if !waitFor(faultNFTTimeout+10*time.Second, func() bool { return f.logCount(logApplyFailed) > failed }) {
			t.Fatalf("the hanging apply was not given up within %v", faultNFTTimeout+10*time.Second)
		}
		killedAfter := time.Since(hung)
		// Let it retry into the hang a few more times.
		time.Sleep(2*faultNFTTimeout + time.Second)
		if !f.n1.AgentRunning() {
			t.Fatal("the agent exited")
		}
		if err := f.n1.AgentReady(); err == nil {
			t.Error("the agent reports ready while nft hangs")
		}
		line := firstLineAfter(f.n1, logApplyFailed, failed)
		if !strings.Contains(line, "deadline") && !strings.Contains(line, "timed out") && !strings.Contains(line, "timeout") {
			t.Errorf("the failed apply's log line does not say it timed out:\n%s", line)
		}
		t.Logf("agent: %s", line)
		if now, err := f.n1.KernelDigest(); err != nil || now != before {
			t.Errorf("the table changed while nft hung: digest %q, before %q (err %v)", now, before, err)
		}
		attempts := applyBegins(f.ctl) - begun
		os.Remove(hang)
		resumed := time.Now()
		if err := f.c.WaitEnforced(ctx); err != nil {
			t.Fatal(err)
		}
		caughtUp := time.Since(resumed)
		if !waitFor(5*time.Second, func() bool { return f.n1.AgentReady() == nil }) {
			t.Errorf("not ready after nft came back: %v", f.n1.AgentReady())
		}
		if b, err := os.ReadFile(filepath.Join(f.ctl, "overlaps")); err == nil {
			t.Errorf("applies overlapped:\n%s", b)
		}
		s.note("apply killed %v after it began (--nft-timeout %v); %d hung attempts, none overlapping; applied %v after nft answered",
			killedAfter.Round(10*time.Millisecond), faultNFTTimeout, attempts, caughtUp.Round(10*time.Millisecond))
	})
}

// Scenario 3c: nft refuses the part of the script of one policy (one that would let ext reach
// a1). The previous table stays in force (so ext stays out), the agent is unready and its log
// carries nft's error, which names the policy; deleting the policy makes applies succeed again.
func (f *faults) nftRejecting(ctx context.Context) {
	f.run("nft rejecting one policy", func(t *testing.T, s *scenario) {
		defer f.restartStd(t)
		reject := filepath.Join(f.ctl, "reject")
		defer os.Remove(reject)
		if err := os.WriteFile(reject, []byte("x/allow-ext"), 0o644); err != nil {
			t.Fatal(err)
		}
		before, err := f.n1.KernelDigest()
		if err != nil {
			t.Fatal(err)
		}
		failed := f.logCount(logApplyFailed)
		allowExt := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "allow-ext"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.200.0.0/16"}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "fd00:200::/64"}},
				}}},
			},
		}
		if err := f.c.ApplyPolicy(ctx, allowExt); err != nil {
			t.Fatal(err)
		}
		if !waitFor(15*time.Second, func() bool { return f.logCount(logApplyFailed) > failed }) {
			t.Fatal("no failed apply logged within 15s of the policy")
		}
		time.Sleep(3 * time.Second) // the prober checks that ext stays out
		if err := f.n1.AgentReady(); err == nil {
			t.Error("the agent reports ready while nft refuses its script")
		}
		line := firstLineAfter(f.n1, logApplyFailed, failed)
		if !strings.Contains(line, "allow-ext") {
			t.Errorf("the failed apply's log line does not name the refused policy:\n%s", line)
		}
		t.Logf("agent: %s", line)
		if now, err := f.n1.KernelDigest(); err != nil || now != before {
			t.Errorf("the table changed although nft refused the script: digest %q, before %q (err %v)", now, before, err)
		}
		if err := f.c.DeletePolicy(ctx, "x", "allow-ext"); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		if err := f.c.WaitEnforced(ctx); err != nil {
			t.Fatal(err)
		}
		if !waitFor(5*time.Second, func() bool { return f.n1.AgentReady() == nil }) {
			t.Errorf("not ready after the policy was deleted: %v", f.n1.AgentReady())
		}
		s.note("table kept, log names the policy; applied %v after the policy was deleted", time.Since(deleted).Round(10*time.Millisecond))
	})
}

// Scenario 4: node-1's agent loses the API server, refused (as when the server stops) or
// black-holed, while the cluster changes. The table stays as it was, the agent stays alive and
// nearly idle, and once the server is back it applies what changed meanwhile.
func (f *faults) apiOutage(ctx context.Context, mode string) {
	outage := 20 * time.Second
	if f.full {
		outage = 10 * time.Minute
	}
	what := map[string]string{"refused": "API server unreachable", "blackhole": "API server black-holed"}[mode]
	f.run(fmt.Sprintf("%s %v", what, outage), func(t *testing.T, s *scenario) {
		defer f.restartStd(t)
		before, err := f.n1.KernelDigest()
		if err != nil {
			t.Fatal(err)
		}
		pid := f.n1.AgentPID()
		ticks0, err := cpuTicks(pid)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if mode == "refused" {
			f.api.Down()
		} else {
			f.api.Blackhole()
		}
		time.Sleep(2 * time.Second)
		if err := f.flipChurn(ctx); err != nil { // a change the agent cannot see yet
			t.Fatal(err)
		}
		for time.Since(began) < outage {
			time.Sleep(time.Second)
			if !f.n1.AgentRunning() {
				t.Fatal("the agent exited during the outage")
			}
			if now, err := f.n1.KernelDigest(); err != nil || now != before {
				t.Fatalf("the table changed during the outage: digest %q, before %q (err %v)", now, before, err)
			}
		}
		ticks1, err := cpuTicks(pid)
		if err != nil {
			t.Fatal(err)
		}
		cpu := float64(ticks1-ticks0) / 100 / time.Since(began).Seconds()
		if cpu > 0.05 {
			t.Errorf("the agent used %.1f%% of a CPU during the outage", 100*cpu)
		}
		if err := f.api.Up(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if err := f.c.WaitEnforced(wctx); err != nil {
			t.Fatal(err)
		}
		s.note("table kept; agent CPU %.2f%% of a core; change made meanwhile applied %v after the server returned",
			100*cpu, time.Since(back).Round(10*time.Millisecond))
	})
}

// Scenario 5: the table tampered with while traffic flows (a rule deleted, an accept rule
// inserted, a set flushed), each repaired by the agent; and a foreign table at another priority
// that accepts everything, which must not open anything (an accept ends only its own base
// chain: the packet still goes through ours).
func (f *faults) tamper(ctx context.Context) {
	f.run("table tampered with (3 changes)", func(t *testing.T, s *scenario) {
		rules, err := f.n1.Ruleset()
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`chain (pod-in-[A-Z0-9]+-x/a1) \{`).FindStringSubmatch(rules)
		if m == nil {
			t.Fatalf("no ingress chain of x/a1 on node-1:\n%s", rules)
		}
		podIn := m[1]
		// The table as a set of objects: a repair replaces it whole, which lists its objects in
		// another order than the updates in place that built it.
		listing := func() string {
			out, _ := f.n1.NS.Run("", "nft", "-s", "-j", "list", "table", "inet", cluster.Table)
			canon, err := testenv.CanonicalTable([]byte(out))
			if err != nil {
				return err.Error() + out
			}
			return canon
		}
		dropHandle := func() []string {
			out, err := f.n1.NS.Run("", "nft", "-a", "list", "chain", "inet", cluster.Table, podIn)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, " drop") {
					if i := strings.Index(l, "# handle "); i >= 0 {
						return []string{"delete", "rule", "inet", cluster.Table, podIn, "handle", strings.TrimSpace(l[i+len("# handle "):])}
					}
				}
			}
			t.Fatalf("no drop rule in %s:\n%s", podIn, out)
			return nil
		}
		for _, tc := range []struct {
			what   string
			change func() []string
		}{
			{"delete the drop rule of x/a1's ingress chain", dropHandle},
			{"insert an accept rule into it", func() []string {
				return []string{"insert", "rule", "inet", cluster.Table, podIn, "accept"}
			}},
			{"flush set local-pods-v4", func() []string {
				return []string{"flush", "set", "inet", cluster.Table, "local-pods-v4"}
			}},
		} {
			want := listing()
			change := tc.change()
			changed := time.Now() // the change takes effect while nft runs
			if out, err := f.n1.NS.Run("", "nft", change...); err != nil {
				t.Fatalf("%s: %v: %s", tc.what, err, out)
			}
			if !waitFor(10*time.Second, func() bool { return listing() == want }) {
				t.Fatalf("%s: not repaired within 10s", tc.what)
			}
			repaired := time.Since(changed)
			// The change opened (or closed) flows until the repair: let-ins and losses in that
			// window are the repair time at work, not a fault of the rules.
			s.excuse(changed, changed.Add(repaired), true, tc.what)
			s.note("%s: %v", strings.SplitN(tc.what, " ", 2)[0], repaired.Round(time.Millisecond))
			time.Sleep(time.Second)
		}
		if err := f.c.WaitEnforced(ctx); err != nil {
			t.Fatal(err)
		}
	})
	f.run("foreign table accepting everything", func(t *testing.T, s *scenario) {
		repairs := f.logCount(logRepair)
		foreign := "table inet faults-foreign {\n\tchain allowall {\n\t\ttype filter hook forward priority -10; policy accept;\n\t\taccept\n\t}\n}\n"
		if out, err := f.n1.NS.Run(foreign, "nft", "-f", "-"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer func() {
			if out, err := f.n1.NS.Run("", "nft", "delete", "table", "inet", "faults-foreign"); err != nil {
				t.Errorf("%v: %s", err, out)
			}
		}()
		time.Sleep(5 * time.Second)
		if n := f.logCount(logRepair); n != repairs {
			t.Errorf("the agent repaired its table %d times for a change to another table", n-repairs)
		}
		s.note("our drops hold; no repair")
	})
}

// Scenario 6: node-1 reboots: its agent dies, every table is gone (nft flush ruleset, conntrack
// empty), and the agent starts again. Until its bootstrap table is in, the node is open (the
// window "from the kernel's start to the agent's start"); from then until its first full apply
// the node's pod ranges are closed; then policy holds again. The agent is held (it may read its
// Node but not the rest) for 2 s, so that the bootstrap window is long enough to be seen.
func (f *faults) reboot(ctx context.Context) {
	f.run("node reboot (ruleset flushed, agent restarted)", func(t *testing.T, s *scenario) {
		if err := f.c.KillAgent("node-1"); err != nil {
			t.Fatal(err)
		}
		flushed := time.Now() // the flush takes effect while nft runs
		if out, err := f.n1.NS.Run("", "nft", "flush", "ruleset"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if err := f.n1.NS.FlushConntrack(); err != nil {
			t.Fatal(err)
		}
		release, err := f.c.StartAgentHeld("node-1")
		if err != nil {
			t.Fatal(err)
		}
		// By the agent's word, not by polling the table: nft 1.0.6 can list a table that is
		// being created as an empty one, before its rules are in.
		if err := waitLog(f.n1, logBootstrap, 0, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		booted := time.Now()
		time.Sleep(2 * time.Second)
		if err := release(); err != nil {
			t.Fatal(err)
		}
		if err := f.c.WaitEnforced(ctx); err != nil {
			t.Fatal(err)
		}
		applied := time.Now()
		s.excuse(flushed, booted, true, "no table: flush to bootstrap table")
		s.excuse(flushed, applied, false, "bootstrap table: node-1's pod ranges closed")
		s.note("open (no table) %v; closed by the bootstrap table %v (2 s of it held); first full apply %v after the flush",
			booted.Sub(flushed).Round(time.Millisecond), applied.Sub(booted).Round(time.Millisecond), applied.Sub(flushed).Round(time.Millisecond))
	})
}

// The agent's log lines the fault tests look for (besides logRepair).
const (
	logApplied     = "applied rules"
	logApplyFailed = "apply failed; the previous rules stay in force"
)

// firstLine returns the first line of node's current agent log that contains s.
func firstLine(n *cluster.Node, s string) string { return firstLineAfter(n, s, 0) }

// firstLineAfter returns the line of node's current agent log that is the (skip+1)-th to contain s.
func firstLineAfter(n *cluster.Node, s string, skip int) string {
	log, _ := n.AgentLog()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			if skip == 0 {
				return l
			}
			skip--
		}
	}
	return ""
}
