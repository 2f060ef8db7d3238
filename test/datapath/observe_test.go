//go:build linux

package datapath

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/droplog"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// The observability tests read the table's named counters (render.Counter) around real traffic:
// which rule let a connection through, which pod's chain dropped one, what a policy in audit mode
// would have done. Every probe is one new connection: a TCP connect (its SYN is the only new
// packet), or one UDP datagram sent with sendOne.

// counters reads node-1's named counters as the agent does.
func (c *cluster) counters(t *testing.T) map[string]nft.Counter {
	t.Helper()
	got, err := c.counterReader(t, node1).Counters(context.Background(), "inet", render.DefaultTable)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// counterReader is the agent's counter reader in node's namespace.
func (c *cluster) counterReader(t *testing.T, node string) nft.NetlinkCounters {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + c.nodes[node].Namespace())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return nft.NetlinkCounters{NetNS: int(f.Fd())}
}

// counterOf returns the name of the counter the last apply on node-1 declared for what match
// selects, failing when there is not exactly one.
func (a *agent) counterOf(t *testing.T, match func(render.Counter) bool) string {
	t.Helper()
	var names []string
	for _, k := range a.nodes[node1].counters {
		if match(k) {
			names = append(names, k.Name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("%d counters match, want 1: %v", len(names), names)
	}
	return names[0]
}

// ingressRule selects the counter of one ingress rule of a policy.
func ingressRule(policy string, rule int) func(render.Counter) bool {
	return func(k render.Counter) bool {
		return k.Kind == render.CounterRule && k.Namespace+"/"+k.Object == policy && !k.Egress && k.Rule == rule
	}
}

// xaIngress selects x/a's ingress counter of a kind.
func xaIngress(kind render.CounterKind) func(render.Counter) bool {
	return func(k render.Counter) bool { return k.Kind == kind && k.Namespace+"/"+k.Object == "x/a" && !k.Egress }
}

// expectCounts runs step and checks that exactly the counters named in want moved, by exactly
// the packets given, on node-1.
func (c *cluster) expectCounts(t *testing.T, step string, want map[string]uint64, do func()) {
	t.Helper()
	before := c.counters(t)
	do()
	after := c.counters(t)
	moved := map[string]uint64{}
	for name, v := range after {
		if d := v.Packets - before[name].Packets; d != 0 {
			moved[name] = d
		}
	}
	for name, n := range want {
		if moved[name] != n {
			t.Errorf("%s: counter %s moved by %d, want %d", step, name, moved[name], n)
		}
	}
	for name, n := range moved {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: counter %s moved by %d, want no change", step, name, n)
		}
	}
}

// connect opens one TCP connection and reports whether it worked.
func (c *cluster) connect(from netns.Endpoint, to netip.AddrPort) bool {
	return c.bed.Probe([]netns.Flow{{From: from, To: to.Addr(), Proto: "tcp", Port: to.Port()}})[0].OK
}

// sendOne sends a single UDP datagram from an endpoint (a new connection of one packet), from
// the given source port, so that a drop is counted once.
func sendOne(from netns.Endpoint, to netip.AddrPort, srcPort uint16) error {
	return netns.Do(from.Namespace(), func() error {
		src := netip.AddrPortFrom(from.Addr(to.Addr().Is6()), srcPort)
		conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("one"))
		return err
	})
}

// TestCountersCountConnectionsPerRule pins the per-rule and per-pod counters with real traffic,
// IPv4 and IPv6: the counter of the rule that allowed a connection moves by one per connection
// and no other counter does; data on the established connection does not count; a denied
// datagram moves the pod's denied counter by one; a live connection judged again after a narrowing
// change does not count again; and the metrics the agent exports from them carry the policy's and
// the pod's names.
func TestCountersCountConnectionsPerRule(t *testing.T) {
	c := newCluster(t)
	a := c.newAgent(t, render.Revalidate)
	xa, yb, zb := c.endpoint("x-a"), c.endpoint("y-b"), c.endpoint("z-b")
	c.bed.ServeEcho(xa, echoPort)
	fromYB := objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "y"})), objects.Ports(objects.Port(tcp, 80)))
	policies := []*networkingv1.NetworkPolicy{
		// x/a: rule 0 from y (pods b) on 80, rule 1 from anyone on 81.
		objects.Policy("x/allow", objects.Selecting("pod", "a"), objects.IsolateIngress(fromYB, objects.Ingress(objects.Ports(objects.Port(tcp, 81))))),
	}
	a.apply(t, policies, podObjects(nil))
	rule0 := a.counterOf(t, ingressRule("x/allow", 0))
	rule1 := a.counterOf(t, ingressRule("x/allow", 1))
	denied := a.counterOf(t, xaIngress(render.CounterDenied))

	for _, v6 := range []bool{false, true} {
		family := map[bool]string{false: "IPv4", true: "IPv6"}[v6]
		to := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(xa.Addr(v6), port) }
		c.expectCounts(t, family+": y/b -> x/a:80 allowed by rule 0", map[string]uint64{rule0: 1}, func() {
			if !c.connect(yb, to(80)) {
				t.Errorf("%s: y/b -> x/a:80 was refused", family)
			}
		})
		c.expectCounts(t, family+": z/b -> x/a:81 allowed by rule 1, twice", map[string]uint64{rule1: 2}, func() {
			for range 2 {
				if !c.connect(zb, to(81)) {
					t.Errorf("%s: z/b -> x/a:81 was refused", family)
				}
			}
		})
		c.expectCounts(t, family+": z/b -> x/a:80 denied", map[string]uint64{denied: 1}, func() {
			if err := sendOne(zb, to(80), 40000); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		})
	}

	// Data on a live connection is not a new connection.
	l := &liveConn{from: yb, proto: "tcp", to: netip.AddrPortFrom(xa.Addr(false), echoPort)}
	a.apply(t, append(policies, allowInto("echo", "a", objects.Ingress(objects.From(objects.NamespacesLabelled()), echoPorts(echoPort)))), podObjects(nil))
	echoRule := a.counterOf(t, ingressRule("x/echo", 0))
	c.expectCounts(t, "one echo connection with ten exchanges", map[string]uint64{echoRule: 1}, func() {
		c.open(t, l)
		for range 10 {
			if err := l.echo(arriveTimeout); err != nil {
				t.Fatalf("echo: %v", err)
			}
		}
	})
	// A narrowing change (x/allow loses rule 1) makes x/a's epoch move: the connection's next
	// packet is judged again, allowed by the same rule, and not counted as a new connection.
	before := a.nodes[node1].st
	a.apply(t, []*networkingv1.NetworkPolicy{objects.Policy("x/allow", objects.Selecting("pod", "a"), objects.IsolateIngress(fromYB)), allowInto("echo", "a", objects.Ingress(objects.From(objects.NamespacesLabelled()), echoPorts(echoPort)))}, podObjects(nil))
	if a.nodes[node1].st.Current == before.Current {
		t.Fatal("the narrowing change did not move the epoch: nothing is judged again")
	}
	// The apply replaced the table: its counters start from zero, and any packet of the live
	// connection since (a delayed ACK included) was judged again.
	for range 3 {
		if err := l.echo(arriveTimeout); err != nil {
			t.Fatalf("echo after the change: %v", err)
		}
	}
	if n := c.counters(t)[echoRule].Packets; n != 0 {
		t.Errorf("the live connection judged again after a narrowing change counted %d times in %s, want 0", n, echoRule)
	}

	// The metrics: the agent's exporter over this node's counters.
	exp := controller.NewRuleCounters(c.counterReader(t, node1), render.DefaultTable, logr.Discard())
	exp.Applied(a.nodes[node1].counters)
	exp.Replacing(context.Background()) // reads the kernel's counters, as before a replace
	exp.Replaced()                      // and carries them on: the metrics now hold them
	want := fmt.Sprintf(`
# HELP flocknetpol_pod_denied_packets_total New packets a local pod's policies dropped: no rule of the policies isolating it allowed them.
# TYPE flocknetpol_pod_denied_packets_total counter
flocknetpol_pod_denied_packets_total{direction="ingress",namespace="x",pod="a"} %d
`, c.counters(t)[denied].Packets)
	if err := testutil.CollectAndCompare(exp, strings.NewReader(want), "flocknetpol_pod_denied_packets_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(exp, "flocknetpol_rule_packets_total"); n != 2 {
		t.Errorf("%d rule series, want 2: x/allow ingress rule 0, x/echo ingress rule 0", n)
	}
}

// TestAuditModeReportsAndDoesNotEnforce pins audit mode with real traffic: a default-deny in
// audit mode lets connections through and counts them as would-drop; turning the annotation to
// enforce denies them (and cuts the established ones); with an enforced policy and an audit one on
// the same pod, the enforced one decides and the audit rule counts what it would allow.
func TestAuditModeReportsAndDoesNotEnforce(t *testing.T) {
	c := newCluster(t)
	a := c.newAgent(t, render.Revalidate)
	xa, yb, zb := c.endpoint("x-a"), c.endpoint("y-b"), c.endpoint("z-b")
	c.bed.ServeEcho(xa, echoPort)
	to80 := netip.AddrPortFrom(xa.Addr(false), 80)
	audit := objects.Annotated(translate.ModeAnnotation, translate.ModeAudit)
	enforce := objects.Annotated(translate.ModeAnnotation, translate.ModeEnforce)

	a.apply(t, []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "a"), audit)}, podObjects(nil))
	wouldDrop := a.counterOf(t, xaIngress(render.CounterAuditDenied))
	c.expectCounts(t, "audit default-deny: z/b -> x/a:80 goes through, counted as would-drop", map[string]uint64{wouldDrop: 1}, func() {
		if !c.connect(zb, to80) {
			t.Error("a default-deny in audit mode refused z/b -> x/a:80")
		}
	})
	l := &liveConn{from: yb, proto: "tcp", to: netip.AddrPortFrom(xa.Addr(false), echoPort)}
	c.open(t, l)
	expectFlowing(t, "audit mode", l)

	a.apply(t, []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "a"), enforce)}, podObjects(nil))
	denied := a.counterOf(t, xaIngress(render.CounterDenied))
	c.expectCounts(t, "enforced: z/b -> x/a:80 denied", map[string]uint64{denied: 1}, func() {
		if err := sendOne(zb, to80, 40001); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	})
	expectCut(t, "the annotation turned to enforce", l)

	// Mixed: x/from-y-b enforced (y/b on 80), x/from-z-b in audit mode (z/b on 80); TCP and UDP.
	a.apply(t, []*networkingv1.NetworkPolicy{
		objects.Policy("x/from-y-b", objects.Selecting("pod", "a"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "y"})), echoPorts(80)))),
		objects.Policy("x/from-z-b", objects.Selecting("pod", "a"), audit, objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "z"})), echoPorts(80)))),
	}, podObjects(nil))
	enforced := a.counterOf(t, ingressRule("x/from-y-b", 0))
	audited := a.counterOf(t, ingressRule("x/from-z-b", 0))
	denied = a.counterOf(t, xaIngress(render.CounterDenied))
	c.expectCounts(t, "mixed: y/b -> x/a:80 allowed by the enforced rule", map[string]uint64{enforced: 1}, func() {
		if !c.connect(yb, to80) {
			t.Error("y/b -> x/a:80 was refused")
		}
	})
	c.expectCounts(t, "mixed: z/b -> x/a:80 denied; the audit rule would allow it", map[string]uint64{audited: 1, denied: 1}, func() {
		if err := sendOne(zb, to80, 40002); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	})
	if got := a.nodes[node1].counters; !slices.ContainsFunc(got, xaIngress(render.CounterDenied)) {
		t.Error("x/a has no denied counter while an enforced policy isolates it")
	}
}

// logLines collects the structured lines a droplog.Reader writes.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (l *logLines) add(obj string) {
	var m map[string]any
	if json.Unmarshal([]byte(obj), &m) == nil {
		l.mu.Lock()
		l.lines = append(l.lines, m)
		l.mu.Unlock()
	}
}

func (l *logLines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func (l *logLines) take() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// readDropLogs runs the agent's drop-log reader in node's namespace until the test ends, naming
// pods and policies from the agent's last apply there.
func (c *cluster) readDropLogs(t *testing.T, a *agent, node string) *logLines {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + c.nodes[node].Namespace())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := droplog.Open(a.logGroup, int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	res := &droplog.RuleSetResolver{
		RuleSet: func() *ruleset.RuleSet { return &a.nodes[node].rs },
		Pods:    func() ([]*compact.Pod, error) { return compact.NewPods(podObjects(nil)), nil },
	}
	lines := &logLines{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, res, funcr.NewJSON(lines.add, funcr.Options{}), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("drop-log reader: %v", err)
		}
	})
	return lines
}

// TestDropLogsNameThePodAndPolicies pins drop logs with real packets: a denied connection (here
// three datagrams of one UDP flow, as a client retrying would send) produces exactly one line,
// which names the 5-tuple, both pods and the policies that isolate the destination; a policy in
// audit mode produces one "would be dropped" line and lets the flow through; and a burst of
// 10,000 denied connections produces no more lines than the kernel's rate limit lets through,
// without growing the reader's memory.
func TestDropLogsNameThePodAndPolicies(t *testing.T) {
	c := newCluster(t)
	a := c.newAgent(t, render.Revalidate)
	a.logDrops, a.logGroup = true, 7
	xa, zb := c.endpoint("x-a"), c.endpoint("z-b")
	policies := []*networkingv1.NetworkPolicy{
		objects.Policy("x/deny", objects.Selecting("pod", "a")),
		allowInto("allow-web", "a", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")), objects.Ports(objects.Port(tcp, 80)))),
	}
	a.apply(t, policies, podObjects(nil))
	lines := c.readDropLogs(t, a, node1)

	to := netip.AddrPortFrom(xa.Addr(false), 81)
	for range 3 {
		if err := sendOne(zb, to, 40100); err != nil {
			t.Fatal(err)
		}
	}
	waitLines := func(n int) []map[string]any {
		for deadline := time.Now().Add(3 * time.Second); lines.count() < n && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // the kernel batches NFLOG messages for up to 100 ms
		return lines.take()
	}
	got := waitLines(1)
	want := map[string]any{"msg": "connection dropped", "direction": "ingress", "protocol": "udp",
		"src": netip.AddrPortFrom(zb.Addr(false), 40100).String(), "dst": to.String(), "srcPod": "z/b", "dstPod": "x/a",
		"pod": "x/a", "policies": "x/allow-web, x/deny", "reason": "no ingress rule of x/allow-web, x/deny matched"}
	if len(got) != 1 {
		t.Fatalf("%d log lines for one denied flow, want 1: %v", len(got), got)
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("log line %s = %v, want %v (line: %v)", k, got[0][k], v, got[0])
		}
	}

	// Audit mode: the flow goes through, and is logged as what would be dropped.
	a.apply(t, []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "a"),
		objects.Annotated(translate.ModeAnnotation, translate.ModeAudit))}, podObjects(nil))
	if !c.connect(zb, to) {
		t.Error("a default-deny in audit mode refused z/b -> x/a:81")
	}
	got = waitLines(1)
	if len(got) != 1 || got[0]["msg"] != "connection would be dropped (audit)" || got[0]["pod"] != "x/a" || got[0]["policies"] != "x/deny" {
		t.Errorf("audit mode: log lines %v, want one would-be-dropped line for x/a by x/deny", got)
	}

	// A burst: 10,000 denied connections (one datagram to each of 10,000 ports), as fast as the
	// sender goes. The limit lets through a burst of 2*DefaultLogRate, then DefaultLogRate a
	// second.
	a.apply(t, policies, podObjects(nil))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := netns.Do(zb.Namespace(), func() error {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(zb.Addr(false), 0)))
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range 10000 {
			if _, err := conn.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(xa.Addr(false), uint16(10000+i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got = waitLines(2 * render.DefaultLogRate)
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	limit := 2*render.DefaultLogRate + int(elapsed.Seconds()*render.DefaultLogRate) + 5
	t.Logf("burst of 10,000 denied connections: %d log lines in %v (limit %d); heap in use %d -> %d KiB",
		len(got), elapsed.Round(time.Millisecond), limit, before.HeapInuse>>10, after.HeapInuse>>10)
	if len(got) == 0 || len(got) > limit {
		t.Errorf("%d log lines for the burst, want 1..%d", len(got), limit)
	}
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 8<<20 {
		t.Errorf("the heap grew by %d KiB during the burst", grown>>10)
	}
}
