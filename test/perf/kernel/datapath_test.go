//go:build linux

package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// Address plan. The bed (test/netns) has one node, "router", with three pods: the server, the
// client and the intruder; every packet between them is routed, and so filtered, by the router.
// The translator sees a cluster of the server plus n client pods on other nodes, spread evenly
// over peerRange with gaps (so the renderer cannot merge neighbours into ranges and the peer set
// really has n entries); the bed's client owns the address of the middle one. The intruder's
// address is the client's plus one: inside the same range, never in the set.
var (
	serverAddr = netip.MustParseAddrPort("10.1.0.1:8080")
	peerRange  = netip.MustParsePrefix("10.64.0.0/10")
)

const (
	routerNode    = "router"
	serverNS      = "srv"
	clientNS      = "clients"
	clientsLabel  = "team"
	clientsValue  = "clients"
	nftTable      = render.DefaultTable
	baselineTable = "flock-perf-baseline"
)

// peerAddr returns the address of client pod i of n.
func peerAddr(i, n int) netip.Addr {
	gap := uint32(1) << (32 - peerRange.Bits()) / uint32(n)
	base := peerRange.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(i)*gap + 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// datapathInput is the cluster the router enforces: the server (app=server in namespace srv,
// on the router) isolated by one policy that allows TCP to its port from every pod of the
// namespaces labelled team=clients, which hold n pods.
func datapathInput(n int) translate.Input {
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		l := map[string]string{"kubernetes.io/metadata.name": name}
		for k, v := range labels {
			l[k] = v
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	pod := func(namespace, name, node string, addr netip.Addr, labels map[string]string) *compact.Pod {
		return compact.NewPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
			Spec:       corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{
				Phase:  corev1.PodRunning,
				PodIP:  addr.String(),
				PodIPs: []corev1.PodIP{{IP: addr.String()}},
			},
		})
	}
	in := translate.Input{
		Node: routerNode,
		// The router's pod range holds the server: its closed-edge rules run on every packet.
		PodCIDRs:   []netip.Prefix{netip.PrefixFrom(serverAddr.Addr(), 24).Masked()},
		Namespaces: []*corev1.Namespace{ns(serverNS, nil), ns(clientNS, map[string]string{clientsLabel: clientsValue})},
		Pods:       []*compact.Pod{pod(serverNS, "server", routerNode, serverAddr.Addr(), map[string]string{"app": "server"})},
	}
	clientLabels := map[string]string{"app": "client"}
	for i := range n {
		// 110 pods per node, like the kubelet's default.
		in.Pods = append(in.Pods, pod(clientNS, fmt.Sprintf("client-%d", i), fmt.Sprintf("node-%d", i/110), peerAddr(i, n), clientLabels))
	}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(int32(serverAddr.Port()))
	in.Policies = []*networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: serverNS, Name: "allow-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{clientsLabel: clientsValue}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}}
	return in
}

// withClusterPolicies adds k ClusterNetworkPolicies in the Admin tier whose subject is the
// server's namespace, the worst case for a new connection, which walks all of them: k-1 deny
// TCP from the pods of a namespace of their own (two pods each, on other nodes: the client's
// connection matches none of them), and the last, at the highest priority value, passes the
// clients' namespace on to NetworkPolicy, whose policy then allows it. The Baseline tier is not
// consulted for a pod that NetworkPolicy isolates, so putting policies there would cost nothing.
func withClusterPolicies(in *translate.Input, k int) {
	subject := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": serverNS}}
	for i := range k - 1 {
		name := fmt.Sprintf("blocked-%d", i)
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/metadata.name": name, "team": name}}})
		for j := range 2 {
			a := netip.AddrFrom4([4]byte{10, 32, byte(i), byte(j + 1)})
			in.Pods = append(in.Pods, compact.NewPod(&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: fmt.Sprintf("p-%d", j)},
				Spec:       corev1.PodSpec{NodeName: "elsewhere"},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: a.String(), PodIPs: []corev1.PodIP{{IP: a.String()}}},
			}))
		}
		in.ClusterPolicies = append(in.ClusterPolicies, objects.AdminPolicy(name, int32(i), subject,
			objects.ClusterIngress(objects.Deny, objects.NamespacesPeer(&metav1.LabelSelector{MatchLabels: map[string]string{"team": name}}), objects.TCPPort(0))))
	}
	in.ClusterPolicies = append(in.ClusterPolicies, objects.AdminPolicy("pass-clients", int32(k), subject,
		objects.ClusterIngress(objects.Pass, objects.NamespacesPeer(&metav1.LabelSelector{MatchLabels: map[string]string{clientsLabel: clientsValue}}),
			objects.TCPPort(int32(serverAddr.Port())))))
}

// bench is the three-namespace set-up: client and intruder pods, the router, the server pod,
// the rendered ruleset and the scripts that switch between it and the baseline.
type bench struct {
	tb       testing.TB
	bed      *netns.Bed
	router   *netns.Node
	client   *netns.Pod
	intruder *netns.Pod
	srv      *server
	script   []byte
	podChain string // the server's ingress chain
	peers    int    // element lines of the script that are addresses in peerRange
	// toBaseline swaps the ruleset's forward base chain for the baseline table; toRuleset swaps
	// back. The ruleset's sets, maps and regular chains stay loaded throughout: a chain that no
	// hook reaches costs nothing per packet, and swapping two base chains is instant, where
	// re-applying 150k elements each round would take seconds.
	toBaseline, toRuleset []byte
	baseline              bool            // the baseline is in place
	switches              []time.Duration // how long each switch took, for the log
}

// newBench builds the topology for n peers and applies the rendered ruleset on the router.
func newBench(tb testing.TB, n int) *bench { return newBenchWith(tb, n, 0) }

// newBenchWith is newBench with cnps ClusterNetworkPolicies selecting the server (see
// withClusterPolicies).
func newBenchWith(tb testing.TB, n, cnps int) *bench {
	tb.Helper()
	tb = requireKernel(tb, "perf/kernel datapath")
	clientAddr := peerAddr(n/2, n)
	intruderAddr := clientAddr.Next()

	in := datapathInput(n)
	if cnps > 0 {
		withClusterPolicies(&in, cnps)
	}
	rs, problems := translate.Translate(in)
	if len(problems) > 0 {
		tb.Fatalf("%d translation problems, first: %v", len(problems), problems[0])
	}
	// Rendered as the agent renders by default: anti-spoofing on.
	script := render.Render(rs, render.Options{AntiSpoofing: true}).Text
	b := &bench{tb: tb, script: script}
	if err := b.parseScript(); err != nil {
		tb.Fatal(err)
	}
	want := n
	if cnps > 0 {
		want = 2 * n // the passing ClusterNetworkPolicy's peer set holds the clients too
	}
	if b.peers != want {
		tb.Fatalf("the rendered script has %d element lines holding a client address, want %d (one per client pod and peer set): did the renderer merge neighbours?", b.peers, want)
	}

	b.bed = netns.NewBed(tb)
	b.router = b.bed.AddNode(routerNode)
	srvPod := b.bed.AddPod(b.router, "server", serverAddr.Addr())
	b.client = b.bed.AddPod(b.router, "client", clientAddr)
	b.intruder = b.bed.AddPod(b.router, "intruder", intruderAddr)

	// Only inside the client's namespace: the widest ephemeral port range. With SO_LINGER 0 no
	// port is held in TIME_WAIT, but a wide range keeps the reuse of a port (and of its 4-tuple)
	// far apart in time.
	if err := writeSysctls(b.client.Namespace(), map[string]string{"ipv4/ip_local_port_range": "1024 65535"}); err != nil {
		tb.Fatal(err)
	}
	if err := applyScript(b.router.Namespace(), script); err != nil {
		tb.Fatal(err)
	}
	// Conntrack now runs in the router (the ruleset matches ct state). A closed connection's
	// entry lingers for nf_conntrack_tcp_timeout_close (10 s); at tens of thousands of
	// connections a second that fills the table and makes reused 4-tuples hit stale entries.
	// One second is plenty for the RST to pass. Per namespace, so the host is not affected.
	if err := writeSysctls(b.router.Namespace(), map[string]string{"netfilter/nf_conntrack_tcp_timeout_close": "1"}); err != nil {
		tb.Fatal(err)
	}

	srv, err := startServer(srvPod.Namespace(), serverAddr)
	if err != nil {
		tb.Fatal(err)
	}
	b.srv = srv
	// Registered after the bed's own cleanup, so it runs first: the handlers end before the
	// namespaces go.
	tb.Cleanup(srv.close)
	return b
}

var (
	forwardLine  = regexp.MustCompile(`^add (chain|rule) inet ` + regexp.QuoteMeta(nftTable) + ` filter-forward( |$)`)
	podChainLine = regexp.MustCompile(`^add chain inet ` + regexp.QuoteMeta(nftTable) + ` (pod-in-\S+) `)
)

// parseScript finds the base chain, the server's pod chain and the size of the peer set in the
// rendered script, and builds the switch scripts. The peer set's size is the number of element
// lines (the renderer writes one element per tab-indented line) that are a single client
// address, wherever they are: that holds whatever the set is called and however it is declared.
func (b *bench) parseScript() error {
	var forward []string
	for line := range strings.Lines(string(b.script)) {
		line = strings.TrimSuffix(line, "\n")
		switch {
		case forwardLine.MatchString(line):
			forward = append(forward, line)
		case podChainLine.MatchString(line):
			if b.podChain != "" {
				return fmt.Errorf("more than one pod chain in the script: %s and %s", b.podChain, podChainLine.FindStringSubmatch(line)[1])
			}
			b.podChain = podChainLine.FindStringSubmatch(line)[1]
		case strings.HasPrefix(line, "\t"):
			if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimSpace(line), ",")); err == nil && peerRange.Contains(a) {
				b.peers++
			}
		}
	}
	if len(forward) < 2 || !strings.HasPrefix(forward[0], "add chain") || b.podChain == "" {
		return fmt.Errorf("the rendered script lacks the forward base chain or the server's pod chain:\n%s", head(b.script, 40))
	}
	b.toBaseline = fmt.Appendf(nil, `delete chain inet %s filter-forward
add table inet %s
add chain inet %s forward { type filter hook forward priority filter; policy accept; }
add rule inet %s forward ct state established,related accept
`, nftTable, baselineTable, baselineTable, baselineTable)
	b.toRuleset = fmt.Appendf(nil, "delete table inet %s\n%s\n", baselineTable, strings.Join(forward, "\n"))
	return nil
}

// head returns the first n lines of a script, for error messages.
func head(script []byte, n int) string {
	lines := strings.SplitAfterN(string(script), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "")
}

// writeSysctls writes /proc/sys/net entries inside namespace ns.
func writeSysctls(ns string, kv map[string]string) error {
	return netns.Do(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// setMode switches the router to the ruleset or to the baseline.
func (b *bench) setMode(ruleset bool) {
	b.tb.Helper()
	if b.baseline != ruleset {
		return // already there
	}
	script := b.toBaseline
	if ruleset {
		script = b.toRuleset
	}
	start := time.Now()
	if err := applyScript(b.router.Namespace(), script); err != nil {
		b.tb.Fatal(err)
	}
	b.switches = append(b.switches, time.Since(start))
	b.baseline = !ruleset
}

// nft runs an nft command in the router and returns its output.
func (b *bench) nft(args ...string) string {
	b.tb.Helper()
	var out bytes.Buffer
	cmd := nftCommand(b.router.Namespace(), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.tb.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ # handle (\d+)`)

// checkEnforced verifies, with the ruleset in place, that the measurement measures the
// ruleset: the client gets through, the intruder does not, and every new connection's first
// packet is evaluated in the server's pod chain. For the last point a counter rule is inserted
// at the head of the pod chain for k connections and removed again; conntrack lets only a
// connection's first packet reach the chain (the rest match ct state established first), so it
// must count exactly one packet per connection. It returns what the counter saw.
func (b *bench) checkEnforced(k int) (counted int64, err error) {
	b.tb.Helper()
	dst := sockaddr(serverAddr)
	if err := b.intruder.Do(func() error { return dialOnce(dst, 300*time.Millisecond) }); err == nil {
		return 0, errors.New("the intruder, whose address is not in the peer set, got through the ruleset")
	}
	b.nft("insert", "rule", "inet", nftTable, b.podChain, "counter")
	var errs []error
	if err := b.client.Do(func() error {
		for range k {
			if err := dialOnce(dst, time.Second); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		errs = append(errs, fmt.Errorf("the client, whose address is in the peer set, was refused: %w", err))
	}
	listed := b.nft("-a", "list", "chain", "inet", nftTable, b.podChain)
	m := counterRE.FindStringSubmatch(listed)
	if m == nil {
		b.tb.Fatalf("no counter in the pod chain:\n%s", listed)
	}
	counted, _ = strconv.ParseInt(m[1], 10, 64)
	b.nft("delete", "rule", "inet", nftTable, b.podChain, "handle", m[2])
	if counted < int64(k) {
		errs = append(errs, fmt.Errorf("%d connections, but only %d packets reached the pod chain %s: conntrack or a rule ahead of it lets new connections skip the ruleset", k, counted, b.podChain))
	}
	return counted, errors.Join(errs...)
}

// Measurement shape. The machine is shared, so its spare capacity drifts by more than the few
// per cent to be measured, over seconds. The load therefore runs continuously while the router
// is switched between the baseline and the ruleset every slice: each pair of neighbouring slices
// sees nearly the same machine. Pairs alternate their order (ABBA), so neither side always runs
// right after a switch. The first guard of every slice is not counted: it holds the switch (an
// nft run of a few milliseconds) and the connections that straddle it.
const (
	dpConnPairs   = 70
	dpBulkPairs   = 60 // one stream swings more from slice to slice than the connection rate
	dpSlice       = 150 * time.Millisecond
	dpGuard       = 25 * time.Millisecond
	dpWorkers     = 8
	dpMaxFailures = 0.001 // of the connections made: more means something drops, not slows
)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// alternate switches the router between baseline and ruleset for pairs pairs of slices while a
// load runs, and returns the rate of counter in each ruleset and each baseline slice.
func (b *bench) alternate(pairs int, counter func() int64) (rules, base []float64) {
	b.tb.Helper()
	for p := range pairs {
		for _, ruleset := range []bool{p%2 == 1, p%2 == 0} {
			b.setMode(ruleset)
			time.Sleep(dpGuard)
			r := rateOver(counter, dpSlice-dpGuard)
			if ruleset {
				rules = append(rules, r)
			} else {
				base = append(base, r)
			}
		}
	}
	return rules, base
}

// datapathFigures are the per-slice rates of one sub-benchmark.
type datapathFigures struct {
	conn, baseConn []float64 // connections per second
	mbit, baseMbit []float64 // Mbit/s
}

// measure runs the connection-rate phase and then the bulk phase.
func (b *bench) measure() datapathFigures {
	b.tb.Helper()
	var f datapathFigures
	conns := startConnLoad(b.client.Namespace(), serverAddr, dpWorkers)
	// Stopped here, or by the cleanup when a Fatal cuts the measurement short (cleanups run
	// last in, first out: before the server and the namespaces go).
	stopConns := sync.OnceValue(conns.Stop)
	b.tb.Cleanup(func() { _ = stopConns() })
	time.Sleep(dpGuard) // ramp up
	f.conn, f.baseConn = b.alternate(dpConnPairs, conns.ok.Load)
	if err := stopConns(); err != nil {
		b.tb.Fatal(err)
	}
	if ok, failed := conns.ok.Load(), conns.failed.Load(); float64(failed) > dpMaxFailures*float64(ok+failed) {
		b.tb.Fatalf("%d of %d connections failed", failed, ok+failed)
	}
	bulk, err := startBulkLoad(b.client.Namespace(), serverAddr)
	if err != nil {
		b.tb.Fatal(err)
	}
	stopBulk := sync.OnceValue(bulk.Stop)
	b.tb.Cleanup(func() { _ = stopBulk() })
	time.Sleep(dpGuard)
	bytesRules, bytesBase := b.alternate(dpBulkPairs, b.srv.bulk.Load)
	if err := stopBulk(); err != nil {
		b.tb.Fatal(err)
	}
	toMbit := func(xs []float64) []float64 {
		for i := range xs {
			xs[i] *= 8 / 1e6
		}
		return xs
	}
	f.mbit, f.baseMbit = toMbit(bytesRules), toMbit(bytesBase)
	return f
}

// BenchmarkDatapath measures what the agent's ruleset costs forwarded traffic: the rate of new
// TCP connections and the throughput of one bulk TCP connection through a router holding the
// ruleset for a pod whose ingress peer set has n entries, against the same router with only a
// `ct state established,related accept` forward chain. See the package doc.
func BenchmarkDatapath(b *testing.B) {
	type shape struct{ peers, cnps int }
	for _, sh := range []shape{{1000, 0}, {10000, 0}, {50000, 0}, {50000, 10}, {50000, 100}, {150000, 0}} {
		name := fmt.Sprintf("peers=%d", sh.peers)
		if sh.cnps > 0 {
			name += fmt.Sprintf(",clusterpolicies=%d", sh.cnps)
		}
		n := sh.peers
		b.Run(name, func(b *testing.B) {
			bn := newBenchWith(b, n, sh.cnps)
			if _, err := bn.checkEnforced(200); err != nil {
				b.Fatal(err)
			}
			var f datapathFigures
			measured := false
			for b.Loop() {
				// One measurement however many iterations the framework asks for: it is
				// already a long series of interleaved slices.
				if !measured {
					f = bn.measure()
					measured = true
				}
			}
			// The rounds ended on either side; check the enforcement once more with the
			// ruleset in place, so a ruleset broken during the run cannot go unnoticed.
			bn.setMode(true)
			counted, err := bn.checkEnforced(500)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("peers=%d: %d elements in the peer set; pod chain counted %d packets for 500 connections", n, bn.peers, counted)
			sw := make([]float64, len(bn.switches))
			for i, d := range bn.switches {
				sw[i] = float64(d) / float64(time.Millisecond)
			}
			b.Logf("%d switches between baseline and ruleset: median %.1f ms, max %.1f ms", len(sw), median(sw), slices.Max(sw))
			b.Logf("conn/s  ruleset %v", round(f.conn))
			b.Logf("conn/s  base    %v", round(f.baseConn))
			b.Logf("Mbit/s  ruleset %v", round(f.mbit))
			b.Logf("Mbit/s  base    %v", round(f.baseMbit))
			// The reported ratios are ratios of medians; the median of the per-pair ratios
			// (neighbouring slices) is logged as a cross-check.
			b.Logf("median of per-pair ratios: conn %.3f, tput %.3f", median(ratios(f.conn, f.baseConn)), median(ratios(f.mbit, f.baseMbit)))
			conn, baseConn := median(f.conn), median(f.baseConn)
			mbit, baseMbit := median(f.mbit), median(f.baseMbit)
			b.ReportMetric(conn, "conn/s")
			b.ReportMetric(baseConn, "base-conn/s")
			b.ReportMetric(conn/baseConn, "conn-ratio")
			b.ReportMetric(mbit, "Mbit/s")
			b.ReportMetric(baseMbit, "base-Mbit/s")
			b.ReportMetric(mbit/baseMbit, "tput-ratio")
		})
	}
}

// ratios divides xs by ys element by element.
func ratios(xs, ys []float64) []float64 {
	out := make([]float64, len(xs))
	for i := range xs {
		out[i] = xs[i] / ys[i]
	}
	return out
}

// round rounds figures for the log.
func round(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
