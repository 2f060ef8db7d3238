//go:build linux

package datapath

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// The established tests keep connections open while the rules change under them, and check that
// a live connection follows policy: cut at its next packet when the new rules deny it, untouched
// when they still allow it. Rules are applied as the agent applies them (translate, epoch.Next on
// the previous apply, render, `nft -f -`), and conntrack is never flushed in between: that is the
// point. x/a serves an echo (package netns's EchoServer) on echoPort, TCP and UDP; clients hold
// their connections open (netns.Stream) and exchange one numbered line per check.
//
// The Service tests add a DNAT table of their own to a node, as kube-proxy would:
//
//	svcVIP4:svcPort, [svcVIP6]:svcPort -> x/a:echoPort, TCP and UDP (no pod or node owns the VIPs)
const echoPort = 82

var (
	svcVIP4 = netip.MustParseAddr("10.96.0.10")
	svcVIP6 = netip.MustParseAddr("fd00:96::10")
)

const svcPort = 8080

// Timing. A check that must pass gets arriveTimeout (it takes milliseconds unless the machine is
// loaded); a check that must fail waits stallTimeout, long enough for a packet that is let through
// to come back many times over.
const (
	arriveTimeout = 8 * time.Second
	stallTimeout  = 1500 * time.Millisecond
)

// agent applies rule sets to the nodes the way the agent does, keeping per node the epoch state and
// the rule set of the last apply. It never flushes conntrack.
type agent struct {
	c           *cluster
	established render.Established
	nodes       map[string]*nodeApply
	// logDrops turns drop logs on for every pod (--drop-log), to logGroup.
	logDrops bool
	logGroup uint16
	// cluster are the ClusterNetworkPolicies of the next apply, nodes the Node objects.
	cluster     []*v1alpha2.ClusterNetworkPolicy
	nodeObjects []*corev1.Node
}

// nodeApply is what the agent remembers of a node's last apply.
type nodeApply struct {
	st       epoch.State
	rs       ruleset.RuleSet
	script   string
	counters []render.Counter
}

func (c *cluster) newAgent(t *testing.T, established render.Established) *agent {
	a := &agent{c: c, established: established, nodes: map[string]*nodeApply{}}
	for _, n := range nodeNames {
		a.nodes[n] = &nodeApply{}
	}
	// On failure, show what the kernel held: the tables and the live connections of each node.
	t.Cleanup(func() {
		if t.Failed() {
			a.dump(t)
		}
	})
	return a
}

// apply translates and renders the policies and pods for every node and applies them, in the
// order the agent's loop would: rs := Translate; st = epoch.Next(prev, &prevRS, &rs); Render with
// st; nft -f -.
func (a *agent) apply(t *testing.T, policies []*networkingv1.NetworkPolicy, pods []*corev1.Pod) {
	t.Helper()
	for _, n := range nodeNames {
		prev := a.nodes[n]
		rs, problems := translate.Translate(translate.Input{Node: n, Policies: policies, Namespaces: namespaceObjects(), Pods: compact.NewPods(pods), LogDrops: a.logDrops,
			ClusterPolicies: a.cluster, Nodes: a.nodeObjects})
		for _, p := range problems {
			t.Errorf("translate for %s reported a problem: %s", n, p)
		}
		st := epoch.Next(prev.st, &prev.rs, &rs)
		out := render.Render(rs, render.Options{Established: a.established, Epochs: st, AntiSpoofing: true, LogGroup: a.logGroup})
		script := string(out.Text)
		if out, err := a.c.nodes[n].Run(script, "nft", "-f", "-"); err != nil {
			t.Fatalf("%s: nft rejected the rendered script: %v\n%s\n%s", n, err, out, script)
		}
		*prev = nodeApply{st: st, rs: rs, script: script, counters: out.Counters}
	}
}

func (a *agent) dump(t *testing.T) {
	for _, n := range nodeNames {
		node := a.c.nodes[n]
		st := a.nodes[n].st
		out, err := node.Run("", "nft", "list", "ruleset")
		if err != nil {
			out = err.Error()
		}
		var ct string
		_ = node.Do(func() error {
			b, err := os.ReadFile("/proc/thread-self/net/nf_conntrack")
			ct = string(b)
			if err != nil {
				ct = err.Error()
			}
			return nil
		})
		t.Logf("%s: epochs %+v\n`nft list ruleset`:\n%s\nconntrack:\n%s", n, st, out, ct)
	}
}

// podObjects are the cluster's pods as objects, minus those named in without, plus extra.
func podObjects(without []string, extra ...*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range podDefs {
		if !slices.Contains(without, podDefs[i].id()) {
			out = append(out, podDefs[i].object())
		}
	}
	return append(out, extra...)
}

// liveConn is one long-lived connection of a test: its client, where the client dials (a pod, or
// a Service address), and the client end once open.
type liveConn struct {
	from  netns.Endpoint
	proto string
	to    netip.AddrPort
	s     *netns.Stream
	seq   int // lines echoed so far, numbering the next one
}

func (l *liveConn) String() string {
	return fmt.Sprintf("%s %s -> %v", l.proto, l.from.Name(), l.to)
}

// conns lists a connection from each of froms to the address of each family that to gives, for
// each protocol.
func conns(froms []netns.Endpoint, protos []string, to func(v6 bool) netip.AddrPort) []*liveConn {
	var out []*liveConn
	for _, from := range froms {
		for _, proto := range protos {
			for _, v6 := range []bool{false, true} {
				out = append(out, &liveConn{from: from, proto: proto, to: to(v6)})
			}
		}
	}
	return out
}

// toPod is the address of pod e on echoPort; toService the Service address.
func toPod(e netns.Endpoint) func(v6 bool) netip.AddrPort {
	return func(v6 bool) netip.AddrPort { return netip.AddrPortFrom(e.Addr(v6), echoPort) }
}

func toService(v6 bool) netip.AddrPort {
	if v6 {
		return netip.AddrPortFrom(svcVIP6, svcPort)
	}
	return netip.AddrPortFrom(svcVIP4, svcPort)
}

// concurrently runs f for each connection at once and returns the errors by connection.
func concurrently(ls []*liveConn, f func(l *liveConn) error) []error {
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Go(func() { errs[i] = f(l) })
	}
	wg.Wait()
	return errs
}

// both runs two checks at once (each reports with t.Errorf).
func both(f, g func()) {
	var wg sync.WaitGroup
	wg.Go(f)
	wg.Go(g)
	wg.Wait()
}

// dialWorking opens a stream that carries an echo, trying again until arriveTimeout has passed
// (a fresh connection on a loaded machine, or a neighbour entry still being resolved).
func (c *cluster) dialWorking(l *liveConn) (*netns.Stream, error) {
	deadline := time.Now().Add(arriveTimeout)
	for {
		left := time.Until(deadline)
		s, err := c.bed.DialStream(l.from, l.proto, l.to, left)
		if err == nil {
			if err = s.Echo("hello", min(left, 2*time.Second)); err == nil {
				return s, nil
			}
			s.Close()
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// open opens every connection and proves it carries data; it ends the test if one cannot.
func (c *cluster) open(t *testing.T, ls ...*liveConn) {
	t.Helper()
	errs := concurrently(ls, func(l *liveConn) error {
		s, err := c.dialWorking(l)
		l.s = s
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%v: a connection the rules allow does not work: %v", ls[i], err)
		}
	}
}

// echo exchanges the connection's next numbered line within timeout.
func (l *liveConn) echo(timeout time.Duration) error {
	l.seq++
	return l.s.Echo(fmt.Sprintf("line %d", l.seq), timeout)
}

// expectFlowing checks that every connection still carries data, in order.
func expectFlowing(t *testing.T, step string, ls ...*liveConn) {
	t.Helper()
	for i, err := range concurrently(ls, func(l *liveConn) error { return l.echo(arriveTimeout) }) {
		if err != nil {
			t.Errorf("%s: %v: the live connection stopped: %v", step, ls[i], err)
		}
	}
}

// expectCut checks that no connection's next line comes back within stallTimeout.
func expectCut(t *testing.T, step string, ls ...*liveConn) {
	t.Helper()
	for i, err := range concurrently(ls, func(l *liveConn) error { return l.echo(stallTimeout) }) {
		if err == nil {
			t.Errorf("%s: %v: the live connection still carries data", step, ls[i])
		}
	}
}

// expectNew checks whether a new connection like each of ls works (within arriveTimeout) or not
// (nothing within stallTimeout).
func (c *cluster) expectNew(t *testing.T, step string, works bool, ls ...*liveConn) {
	t.Helper()
	errs := concurrently(ls, func(l *liveConn) error {
		if works {
			s, err := c.dialWorking(l)
			if err == nil {
				s.Close()
			}
			return err
		}
		start := time.Now()
		s, err := c.bed.DialStream(l.from, l.proto, l.to, stallTimeout)
		if err != nil {
			return nil // refused or timed out: as it should
		}
		defer s.Close()
		if err := s.Echo("new", max(stallTimeout-time.Since(start), 100*time.Millisecond)); err != nil {
			return nil
		}
		return fmt.Errorf("connected and echoed")
	})
	for i, err := range errs {
		switch {
		case works && err != nil:
			t.Errorf("%s: %v: a new connection does not work: %v", step, ls[i], err)
		case !works && err != nil:
			t.Errorf("%s: %v: a new connection works: %v", step, ls[i], err)
		}
	}
}

// Policy shorthands.

// podsNamed is the peer "pods of the policy's namespace labelled pod in names".
func podsNamed(names ...string) networkingv1.NetworkPolicyPeer {
	return objects.Peer(objects.Expression("pod", metav1.LabelSelectorOpIn, names...), nil)
}

// allowInto isolates the pods labelled pod=target (in namespace x) for ingress and allows what
// the rules allow.
func allowInto(name, target string, rules ...objects.PolicyOption) *networkingv1.NetworkPolicy {
	return objects.Policy("x/"+name, objects.Selecting("pod", target), objects.IsolateIngress(rules...))
}

// allowOutOf isolates the pods labelled pod=source (in namespace x) for egress and allows what
// the rules allow.
func allowOutOf(name, source string, rules ...objects.PolicyOption) *networkingv1.NetworkPolicy {
	return objects.Policy("x/"+name, objects.Selecting("pod", source), objects.IsolateEgress(rules...))
}

func echoPorts(ports ...int32) objects.RuleOption {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range ports {
		out = append(out, objects.Port(tcp, p), objects.Port(udp, p))
	}
	return objects.Ports(out...)
}

// TestEstablishedConnectionIsCutWhenPolicyDeniesIt pins the default, --established=revalidate: a
// live TCP connection that a policy change denies stops at its next packet, without any conntrack
// flush, and a new one is refused. Once on the destination's node (x/b -> x/a, node-1: x/a's
// ingress narrowed) and once on the source's node for a connection across nodes (x/c -> x/a:
// x/c's egress denied on node-2, while x/a's ingress on node-1 still allows it).
func TestEstablishedConnectionIsCutWhenPolicyDeniesIt(t *testing.T) {
	denyLiveConnections(t, render.Revalidate)
}

// TestEstablishedKeepLetsLiveConnectionsRun pins --established=keep (decisions at connection
// setup only) with the scenario of TestEstablishedConnectionIsCutWhenPolicyDeniesIt: the same live
// connections go on carrying data after the deny, while new ones are refused. It also shows that
// the revalidate test would fail against the old behaviour.
func TestEstablishedKeepLetsLiveConnectionsRun(t *testing.T) {
	denyLiveConnections(t, render.Keep)
}

func denyLiveConnections(t *testing.T, established render.Established) {
	c := newCluster(t)
	xa, xb, xc := c.endpoint("x-a"), c.endpoint("x-b"), c.endpoint("x-c")
	c.bed.ServeEcho(xa, echoPort)
	ag := c.newAgent(t, established)

	allowed := []*networkingv1.NetworkPolicy{
		allowInto("allow-to-a", "a", objects.Ingress(objects.From(podsNamed("b", "c")), echoPorts(echoPort))),
	}
	ag.apply(t, allowed, podObjects(nil))
	local := conns([]netns.Endpoint{xb}, []string{"tcp"}, toPod(xa))
	across := conns([]netns.Endpoint{xc}, []string{"tcp"}, toPod(xa))
	live := append(slices.Clone(local), across...)
	c.open(t, live...)
	expectFlowing(t, "allowed", live...)

	// x/b leaves x/a's peers (node-1); x/c loses all egress (node-2) but stays x/a's peer.
	denied := []*networkingv1.NetworkPolicy{
		allowInto("allow-to-a", "a", objects.Ingress(objects.From(podsNamed("c")), echoPorts(echoPort))),
		allowOutOf("deny-from-c", "c"),
	}
	ag.apply(t, denied, podObjects(nil))
	both(func() {
		if established == render.Keep {
			expectFlowing(t, "denied, keep", live...)
		} else {
			expectCut(t, "denied", live...)
		}
	}, func() { c.expectNew(t, "denied", false, live...) })

	ag.apply(t, nil, podObjects(nil))
	c.expectNew(t, "policies removed", true, live...)
}

// TestEstablishedAllowedConnectionSurvivesChanges pins that a connection allowed before and after
// a change never notices it: 100 changes applied back to back, with one echo on every live
// connection after each, no line lost or reordered and no reset. The changes add and remove pods
// of namespace z, a peer of the policies that allow the connections (removing one narrows x/a's
// ingress and x/b's egress, so their connections are judged again, and allowed), isolate and free
// y/a on the same node, and add and remove a port of x/a's rule.
func TestEstablishedAllowedConnectionSurvivesChanges(t *testing.T) {
	c := newCluster(t)
	xa, xb, xc := c.endpoint("x-a"), c.endpoint("x-b"), c.endpoint("x-c")
	c.bed.ServeEcho(xa, echoPort)
	ag := c.newAgent(t, render.Revalidate)

	zPeers := objects.NamespacesLabelled("ns", "z")
	policies := func(extraPort, isolateYA bool) []*networkingv1.NetworkPolicy {
		ports := []int32{echoPort}
		if extraPort {
			ports = append(ports, 9999)
		}
		ps := []*networkingv1.NetworkPolicy{
			allowInto("allow-to-a", "a",
				objects.Ingress(objects.From(podsNamed("b", "c")), echoPorts(ports...)),
				objects.Ingress(objects.From(zPeers))),
			allowOutOf("allow-from-b", "b",
				objects.Egress(objects.To(podsNamed("a")), echoPorts(echoPort)),
				objects.Egress(objects.To(zPeers))),
		}
		if isolateYA {
			ps = append(ps, objects.Policy("y/deny-a", objects.Selecting("pod", "a"), objects.IsolateIngress()))
		}
		return ps
	}
	// zPod is the k-th extra pod of namespace z; it has no network namespace, only an object.
	zPod := func(k int) *corev1.Pod {
		node := nodeNames[k%2]
		return objects.Pod(fmt.Sprintf("z/p%d", k), objects.Labels("pod", "p"), objects.OnNode(node),
			objects.Container("main"), objects.Phase(corev1.PodRunning),
			objects.IPs(fmt.Sprintf("10.1.3.%d", 100+k), fmt.Sprintf("fd00:1::3:%x", 0x100+k)))
	}

	extraPort, isolateYA := false, false
	var zPods []int
	next := 0
	pods := func() []*corev1.Pod {
		var extra []*corev1.Pod
		for _, k := range zPods {
			extra = append(extra, zPod(k))
		}
		return podObjects(nil, extra...)
	}
	ag.apply(t, policies(extraPort, isolateYA), pods())
	live := conns([]netns.Endpoint{xb}, []string{"tcp", "udp"}, toPod(xa))
	live = append(live, conns([]netns.Endpoint{xc}, []string{"tcp"}, toPod(xa))...)
	c.open(t, live...)

	xaAddr := podDefs[0].addr(false)
	since := func() uint32 {
		a, _ := ag.nodes[node1].st.Lookup(xaAddr)
		return a.Since[epoch.Ingress]
	}
	start, rejudged := time.Now(), 0
	for i := range 100 {
		before := since()
		var what string
		switch i % 5 {
		case 0, 1:
			zPods = append(zPods, next)
			next++
			what = "z pod added"
		case 2:
			if len(zPods) > 0 {
				zPods = zPods[1:]
			}
			what = "z pod removed"
		case 3:
			isolateYA = !isolateYA
			what = fmt.Sprintf("y/a isolated=%v", isolateYA)
		case 4:
			extraPort = !extraPort
			what = fmt.Sprintf("x/a's extra port=%v", extraPort)
		}
		ag.apply(t, policies(extraPort, isolateYA), pods())
		if since() != before {
			rejudged++
		}
		expectFlowing(t, fmt.Sprintf("change %d (%s)", i+1, what), live...)
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("100 changes in %v; x/a's ingress flows judged again after %d of them", time.Since(start).Round(time.Millisecond), rejudged)
	if rejudged == 0 {
		t.Error("no change moved x/a's ingress epoch: the test judged nothing again")
	}
}

// TestEstablishedRepliesAreJudgedAsTheirConnection pins that every packet of a connection is
// judged on the connection's tuple (source ct original saddr, destination ct reply saddr, port ct
// reply proto-src), packets in the reply direction too. A UDP flow and a TCP connection x/b -> x/a
// are allowed. First x/a loses all egress: its connection's replies (x/a -> x/b, the server
// pushing without being asked) must still arrive, since the connection is x/b's to x/a, which x/a's
// ingress allows; then x/b is denied: the server's pushes must be dropped, and the UDP flow (and
// the TCP connection) stops. New flows are refused.
func TestEstablishedRepliesAreJudgedAsTheirConnection(t *testing.T) {
	c := newCluster(t)
	xa, xb := c.endpoint("x-a"), c.endpoint("x-b")
	srv := c.bed.ServeEcho(xa, echoPort)
	ag := c.newAgent(t, render.Revalidate)

	allow := allowInto("allow-to-a", "a", objects.Ingress(objects.From(podsNamed("b")), echoPorts(echoPort)))
	ag.apply(t, []*networkingv1.NetworkPolicy{allow}, podObjects(nil))
	live := conns([]netns.Endpoint{xb}, []string{"udp", "tcp"}, toPod(xa))
	c.open(t, live...)

	push := func(step string, arrive bool) {
		t.Helper()
		timeout := stallTimeout
		if arrive {
			timeout = arriveTimeout
		}
		errs := concurrently(live, func(l *liveConn) error {
			msg := "pushed: " + step
			if err := srv.Push(l.proto, l.s.Local(), msg); err != nil {
				return fmt.Errorf("push: %w", err)
			}
			return l.s.Receive(msg, timeout)
		})
		for i, err := range errs {
			switch {
			case arrive && err != nil:
				t.Errorf("%s: %v: the server's push did not arrive: %v", step, live[i], err)
			case !arrive && err == nil:
				t.Errorf("%s: %v: the server's push arrived", step, live[i])
			}
		}
	}
	push("allowed", true)

	// x/a is isolated for egress (x/a's egress epoch moves on node-1): the replies of x/b's
	// connection are still the connection's, which x/a's ingress allows.
	noEgress := allowOutOf("no-egress-from-a", "a")
	ag.apply(t, []*networkingv1.NetworkPolicy{allow, noEgress}, podObjects(nil))
	push("x/a without egress", true)
	expectFlowing(t, "x/a without egress", live...)

	// x/b is no longer x/a's peer: the replies alone, before anything in the original
	// direction, are dropped.
	deny := allowInto("allow-to-a", "a", objects.Ingress(objects.From(podsNamed("c")), echoPorts(echoPort)))
	ag.apply(t, []*networkingv1.NetworkPolicy{deny, noEgress}, podObjects(nil))
	push("x/b denied", false)
	both(func() { expectCut(t, "x/b denied", live...) }, func() { c.expectNew(t, "x/b denied", false, live...) })
}

// TestEstablishedServiceConnectionIsJudgedOnTheEndpoint pins that a connection made through a
// Service address (DNAT by another table at priority dstnat, as kube-proxy does) is judged again
// on the endpoint pod and port, not the Service address and port. Ingress on node-1: x/b reaches x/a
// through the Service while x/a's ingress allows the echo port; the change allows only the
// Service port (8080), which the endpoint tuple does not match, and cuts the connections. Egress
// on node-2: x/c reaches x/a through the Service (DNAT on x/c's node) while its egress allows x/a
// on the echo port; the change allows the Service address on every port and x/a only on 8080,
// which again only the Service tuple would match.
func TestEstablishedServiceConnectionIsJudgedOnTheEndpoint(t *testing.T) {
	c := newCluster(t)
	xa, xb, xc := c.endpoint("x-a"), c.endpoint("x-b"), c.endpoint("x-c")
	c.bed.ServeEcho(xa, echoPort)
	var dnat strings.Builder
	for _, f := range []struct {
		family  string
		vip, ep string
	}{{"ip", svcVIP4.String(), xa.Addr(false).String()}, {"ip6", svcVIP6.String(), "[" + xa.Addr(true).String() + "]"}} {
		fmt.Fprintf(&dnat, "add table %s kube-proxy-test\n", f.family)
		fmt.Fprintf(&dnat, "add chain %s kube-proxy-test services { type nat hook prerouting priority dstnat; }\n", f.family)
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(&dnat, "add rule %s kube-proxy-test services %s daddr %s %s dport %d dnat to %s:%d\n",
				f.family, f.family, f.vip, proto, svcPort, f.ep, echoPort)
		}
	}
	for _, n := range nodeNames {
		c.nodes[n].MustRun(dnat.String(), "nft", "-f", "-")
	}
	ag := c.newAgent(t, render.Revalidate)

	intoA := func(ports ...int32) *networkingv1.NetworkPolicy {
		return allowInto("allow-to-a", "a", objects.Ingress(echoPorts(ports...)))
	}
	outOfC := func(rules ...objects.PolicyOption) *networkingv1.NetworkPolicy {
		return allowOutOf("allow-from-c", "c", rules...)
	}
	cToA := outOfC(objects.Egress(objects.To(podsNamed("a")), echoPorts(echoPort)))
	ag.apply(t, []*networkingv1.NetworkPolicy{intoA(echoPort), cToA}, podObjects(nil))
	local := conns([]netns.Endpoint{xb}, []string{"tcp", "udp"}, toService)
	c.open(t, local...)

	ag.apply(t, []*networkingv1.NetworkPolicy{intoA(svcPort), cToA}, podObjects(nil))
	both(func() { expectCut(t, "x/a allows only the Service port", local...) },
		func() { c.expectNew(t, "x/a allows only the Service port", false, local...) })
	if t.Failed() {
		return
	}

	ag.apply(t, []*networkingv1.NetworkPolicy{intoA(echoPort), cToA}, podObjects(nil))
	across := conns([]netns.Endpoint{xc}, []string{"tcp", "udp"}, toService)
	c.open(t, across...)
	cToService := outOfC(
		objects.Egress(objects.To(objects.IPBlock(svcVIP4.String()+"/32"), objects.IPBlock(svcVIP6.String()+"/128"))),
		objects.Egress(objects.To(podsNamed("a")), echoPorts(svcPort)))
	ag.apply(t, []*networkingv1.NetworkPolicy{intoA(echoPort), cToService}, podObjects(nil))
	both(func() { expectCut(t, "x/c allowed only the Service tuple", across...) },
		func() { c.expectNew(t, "x/c allowed only the Service tuple", false, across...) })
}

// TestEstablishedConnectionDoesNotOutliveItsPod pins address reuse: x/b's connections to x/a are
// allowed; then x/a's Pod object is deleted and a new pod, x/a2, owns its addresses (in the bed
// the network namespace stays: only the objects change) and is isolated with nothing allowed. The
// old connections must not carry on, and new ones are refused.
func TestEstablishedConnectionDoesNotOutliveItsPod(t *testing.T) {
	c := newCluster(t)
	xa, xb := c.endpoint("x-a"), c.endpoint("x-b")
	c.bed.ServeEcho(xa, echoPort)
	ag := c.newAgent(t, render.Revalidate)

	policies := []*networkingv1.NetworkPolicy{
		allowInto("allow-to-a", "a", objects.Ingress(objects.From(podsNamed("b")))),
		allowInto("deny-to-a2", "a2"),
	}
	ag.apply(t, policies, podObjects(nil))
	live := conns([]netns.Endpoint{xb}, []string{"tcp", "udp"}, toPod(xa))
	c.open(t, live...)
	expectFlowing(t, "x/a", live...)

	a2 := objects.Pod("x/a2", objects.Labels("pod", "a2"), objects.OnNode(node1), objects.Container("main"),
		objects.Phase(corev1.PodRunning), objects.IPs(xa.Addr(false).String(), xa.Addr(true).String()))
	ag.apply(t, policies, podObjects([]string{"x/a"}, a2))
	both(func() { expectCut(t, "x/a2 owns x/a's addresses", live...) },
		func() { c.expectNew(t, "x/a2 owns x/a's addresses", false, live...) })
}

// TestEstablishedCutByAClusterNetworkPolicyDeny pins that live connections follow the Admin
// tier like NetworkPolicy: an Admin Deny added for x/b into namespace x cuts x/b's live
// connections to x/a (same node) at their next packet, and leaves y/b's (another node) alone.
func TestEstablishedCutByAClusterNetworkPolicyDeny(t *testing.T) {
	c := newCluster(t)
	xa, xb, yb := c.endpoint("x-a"), c.endpoint("x-b"), c.endpoint("y-b")
	c.bed.ServeEcho(xa, echoPort)
	ag := c.newAgent(t, render.Revalidate)
	ag.apply(t, nil, podObjects(nil))
	cut := conns([]netns.Endpoint{xb}, []string{"udp", "tcp"}, toPod(xa))
	kept := conns([]netns.Endpoint{yb}, []string{"udp", "tcp"}, toPod(xa))
	c.open(t, append(cut, kept...)...)

	ag.cluster = []*v1alpha2.ClusterNetworkPolicy{objects.AdminPolicy("no-x-b", 1, objects.Selector("ns", "x"),
		objects.ClusterIngress(objects.Deny, objects.PodsPeer(objects.Selector("ns", "x"), objects.Selector("pod", "b"))))}
	ag.apply(t, nil, podObjects(nil))
	both(func() { expectCut(t, "admin deny", cut...) }, func() { expectFlowing(t, "admin deny", kept...) })
	c.expectNew(t, "admin deny", false, cut...)

	// x/a becomes isolated by NetworkPolicy with nothing allowed (a narrowing change: y/b's
	// connections are judged again), while an Admin Accept from namespace y keeps them: the
	// established twin chains accept what the new-connection chains would.
	ag.cluster = append(ag.cluster, objects.AdminPolicy("from-y", 2, objects.Selector("ns", "x"),
		objects.ClusterIngress(objects.Accept, objects.NamespacesPeer(objects.Selector("ns", "y")))))
	ag.apply(t, []*networkingv1.NetworkPolicy{objects.Policy("x/deny-all-in")}, podObjects(nil))
	expectFlowing(t, "admin accept over isolation", kept...)
	c.expectNew(t, "admin accept over isolation", true, kept...)
}
