//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// TestClosedEdges pins the closed edges of a node (README, "How it enforces"; docs/operations.md,
// "Closed edges" and "Changes made by others") at the agent level, with real packets: the real
// agents, their Node objects carrying spec.podCIDRs, pods that the agents have not seen, agents
// stopped and started, a fresh node, and changes to the table by another process. One cluster
// serves the subtests, which run in order and add to one state: namespace x has a
// default-deny-ingress policy, namespace y none; every pod serves port 80.
//
//	node-1  pod ranges 10.1.1.0/24, fd00:1:1::/64   pods x/a, and those the subtests add
//	node-2  pod ranges 10.1.2.0/24, fd00:1:2::/64   pod y/b
//	ext     10.200.0.10, fd00:200::10                outside the cluster
func TestClosedEdges(t *testing.T) {
	start := time.Now()
	addr := netip.MustParseAddr
	c := cluster.Start(t, cluster.Options{PodCIDRs: map[string][]string{
		"node-1": {"10.1.1.0/24", "fd00:1:1::/64"},
		"node-2": {"10.1.2.0/24", "fd00:1:2::/64"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1 := c.Node("node-1")

	e := &edges{c: c, isolatedIn: map[netns.Endpoint]bool{}}
	a := c.AddPod("node-1", "a", []netip.Addr{addr("10.1.1.1"), addr("fd00:1:1::1")}, 80)
	b := c.AddPod("node-2", "b", []netip.Addr{addr("10.1.2.1"), addr("fd00:1:2::1")}, 80)
	ext := c.AddExternal("ext", []netip.Addr{addr("10.200.0.10"), addr("fd00:200::10")}, 80)
	e.eps = []netns.Endpoint{a, b, ext}
	for _, ns := range []string{"x", "y"} {
		if err := c.CreateNamespace(ctx, ns, map[string]string{"team": ns}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []cluster.PodObject{
		{Namespace: "x", Name: "a", Endpoint: a, Labels: map[string]string{"app": "a"}},
		{Namespace: "y", Name: "b", Endpoint: b, Labels: map[string]string{"app": "b"}},
	} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WarmUp(e.eps, func(netns.Endpoint) uint16 { return 80 }); err != nil {
		t.Fatal(err)
	}
	denyIngress := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-ingress"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	if err := c.ApplyPolicy(ctx, denyIngress); err != nil {
		t.Fatal(err)
	}
	e.isolatedIn[a] = true
	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	e.check(t, "default deny ingress in x", nil)
	t.Logf("setup %v", time.Since(start).Round(time.Millisecond))

	// Rule: filter-forward `ip saddr <pod range> ip saddr != @local-pods-v4 drop` and its daddr
	// and IPv6 twins: an address of the node's pod ranges that no known local pod owns can neither
	// send nor receive, whether the pod has no API object yet or one without an address; once the
	// agent enforces its status.podIPs, policy alone decides.
	t.Run("a pod whose address the agent has not seen is closed both ways", func(t *testing.T) {
		p := c.AddPod("node-1", "unseen", []netip.Addr{addr("10.1.1.11"), addr("fd00:1:1::11")}, 80)
		e.eps = append(e.eps, p)
		unseen := func(ep netns.Endpoint) bool { return ep == p }
		if err := c.Enforce(ctx); err != nil {
			t.Fatal(err)
		}
		e.check(t, "no Pod object", unseen)

		if _, err := c.CreatePod(ctx, cluster.PodObject{Namespace: "x", Name: "unseen", Node: "node-1", Phase: corev1.PodPending}); err != nil {
			t.Fatal(err)
		}
		if err := c.Enforce(ctx); err != nil {
			t.Fatal(err)
		}
		e.check(t, "Pod object without an address", unseen)

		if err := c.SetPodIPs(ctx, "x", "unseen", p.Addrs()); err != nil {
			t.Fatal(err)
		}
		e.isolatedIn[p] = true // x's default deny
		if err := c.Enforce(ctx); err != nil {
			t.Fatal(err)
		}
		// Its egress is open, its ingress closed by x's default deny.
		e.check(t, "Pod object with its address", nil)
	})

	// Rule: the same drop, with the agent down: the table in the kernel is the last applied one,
	// which does not know the address of a pod created meanwhile, so the pod is closed both ways
	// until the new agent's first full apply (and that agent installs no bootstrap table: the
	// node has one of ours).
	t.Run("a pod created while the agent is stopped stays closed until the new agent's first apply", func(t *testing.T) {
		before, err := n1.KernelDigest()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.StopAgent("node-1"); err != nil {
			t.Fatal(err)
		}
		restarted := false
		t.Cleanup(func() {
			if !restarted && !n1.AgentRunning() {
				_ = c.StartAgent("node-1")
			}
		})
		p := c.AddPod("node-1", "late", []netip.Addr{addr("10.1.1.12"), addr("fd00:1:1::12")}, 80)
		e.eps = append(e.eps, p)
		if _, err := c.CreatePod(ctx, cluster.PodObject{Namespace: "y", Name: "late", Endpoint: p}); err != nil {
			t.Fatal(err)
		}
		if err := c.FlushConntrack(); err != nil {
			t.Fatal(err)
		}
		e.check(t, "agent stopped", func(ep netns.Endpoint) bool { return ep == p })
		if now, err := n1.KernelDigest(); err != nil || now != before {
			t.Errorf("with the agent stopped the table changed: digest %q, before %q (err %v)", now, before, err)
		}

		if err := c.StartAgent("node-1"); err != nil {
			t.Fatal(err)
		}
		restarted = true
		if err := c.Enforce(ctx); err != nil {
			t.Fatal(err)
		}
		e.check(t, "new agent's first apply", nil) // y has no policy: open both ways
		if log, err := n1.AgentLog(); err != nil || strings.Contains(log, logBootstrap) {
			t.Errorf("the new agent installed a bootstrap table over an existing one (err %v):\n%s", err, log)
		}
	})

	// Rule: the bootstrap table. A node without a table of ours is open; an agent starting there
	// installs, before its caches sync, a table that drops forwarded traffic from and to the
	// node's pod ranges (its rules name them; no pod chains), and its first full apply replaces
	// it. The agent is started held (StartAgentHeld: it reads its Node but cannot list Pods,
	// Namespaces or NetworkPolicies), so the window between the two is as long as the probes take.
	t.Run("a fresh node is closed by the bootstrap table until the first full apply", func(t *testing.T) {
		if err := c.StopAgent("node-1"); err != nil {
			t.Fatal(err)
		}
		started := false
		t.Cleanup(func() {
			if !started && !n1.AgentRunning() {
				_ = c.StartAgent("node-1")
			}
		})
		if err := n1.DeleteTable(); err != nil {
			t.Fatal(err)
		}
		if err := c.FlushConntrack(); err != nil {
			t.Fatal(err)
		}
		e.checkWant(t, "no table: the node is open", func(_, _ netns.Endpoint) bool { return true })

		release, err := c.StartAgentHeld("node-1")
		if err != nil {
			t.Fatal(err)
		}
		started = true
		// The table is read once the agent says it is in: nft 1.0.6 can list a table that a
		// concurrent transaction is creating as an empty one (no chains, no sets), so a table
		// polled for while the bootstrap goes in is not yet the one to judge. The agent is held,
		// so nothing replaces the bootstrap table afterwards.
		if err := waitLog(n1, logBootstrap, 0, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		boot, err := n1.Ruleset()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ip saddr 10.1.1.0/24 ip saddr != @local-pods-v4", "ip6 daddr fd00:1:1::/64 ip6 daddr != @local-pods-v6"} {
			if !strings.Contains(boot, want) {
				t.Errorf("the first table on the fresh node lacks %q:\n%s", want, boot)
			}
		}
		if strings.Contains(boot, "pod-in-") || strings.Contains(boot, "10.1.2.0/24") {
			t.Errorf("the first table on the fresh node is not the bootstrap table:\n%s", boot)
		}
		bootDigest, err := n1.KernelDigest()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.FlushConntrack(); err != nil {
			t.Fatal(err)
		}
		onNode1 := func(ep netns.Endpoint) bool {
			p, ok := ep.(*netns.Pod)
			return ok && p.Node() == n1.NS
		}
		e.checkWant(t, "bootstrap table", func(from, to netns.Endpoint) bool { return !onNode1(from) && !onNode1(to) })
		if now, err := n1.KernelDigest(); err != nil || now != bootDigest {
			t.Fatalf("the bootstrap table was replaced while the agent was held: digest %q, bootstrap %q (err %v)", now, bootDigest, err)
		}

		if err := release(); err != nil {
			t.Fatal(err)
		}
		if err := c.Enforce(ctx); err != nil {
			t.Fatal(err)
		}
		e.check(t, "first full apply", nil)
	})

	// Rule: drift repair (docs/operations.md, "Changes made by others"): any change to the table
	// by another process, seen through the kernel's notifications, is repaired by a full apply; within a second
	// a flow the policy denies is denied again and one it allows passes.
	t.Run("a change to the table by another process is repaired, with traffic", func(t *testing.T) {
		allow := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "allow-from-y"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y"}},
				}}}},
			},
		}
		if err := c.ApplyPolicy(ctx, allow); err != nil {
			t.Fatal(err)
		}
		if err := c.Enforce(ctx); err != nil {
			t.Fatal(err)
		}
		// b (y) -> a: allowed by allow-from-y; ext -> a: denied.
		var flows []netns.Flow
		var want []bool
		for _, k := range netns.AllKinds {
			flows = append(flows, netns.Flow{From: b, To: a.Addr(k.IPv6()), Proto: k.Proto(), Port: 80})
			want = append(want, true)
			flows = append(flows, netns.Flow{From: ext, To: a.Addr(k.IPv6()), Proto: k.Proto(), Port: 80})
			want = append(want, false)
		}
		holds := func() (bool, string) {
			var sb strings.Builder
			ok := true
			for i, r := range c.Bed.Probe(flows) {
				if r.OK != want[i] {
					ok = false
					fmt.Fprintf(&sb, "\n  %v: passed %v, want %v (%v)", r.Flow, r.OK, want[i], r.Err)
				}
			}
			return ok, sb.String()
		}
		if ok, why := holds(); !ok {
			t.Fatalf("before any change:%s", why)
		}
		// Short rounds: an allowed flow slower than this fails its round, which the loop below
		// repeats anyway.
		saved := c.Bed.ProbeTimeout
		c.Bed.ProbeTimeout = 200 * time.Millisecond
		defer func() { c.Bed.ProbeTimeout = saved }()

		rules, err := n1.Ruleset()
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`chain (pod-in-[A-Z0-9]+-x/a) \{`).FindStringSubmatch(rules)
		if m == nil {
			t.Fatalf("no ingress chain of x/a on node-1:\n%s", rules)
		}
		podIn := m[1]
		for _, tc := range []struct {
			change []string
			shows  string // in the first line the agent's monitor prints of it
		}{
			// The kernel notifies a deleted table as the deletion of everything in it.
			{[]string{"delete", "table", "inet", cluster.Table}, "delete "},
			{[]string{"flush", "chain", "inet", cluster.Table, podIn}, "delete rule inet " + cluster.Table + " " + podIn},
			{[]string{"insert", "rule", "inet", cluster.Table, podIn, "accept"}, "insert rule inet " + cluster.Table + " " + podIn + " "},
		} {
			change := tc.change
			what := "nft " + strings.Join(change, " ")
			log, err := n1.AgentLog()
			if err != nil {
				t.Fatal(err)
			}
			seen := strings.Count(log, logRepair)
			if out, err := n1.NS.Run("", "nft", change...); err != nil {
				t.Fatalf("%s: %v: %s", what, err, out)
			}
			// The policy must hold again in a probe round that starts within 1s of the change.
			// Rounds are short (a denied flow costs the probe timeout), and a round that
			// straddles the repair fails, so the next one starts soon after.
			changed := time.Now()
			var failed []string
			for {
				round := time.Now()
				ok, why := holds()
				if ok {
					t.Logf("%s: the policy holds again in the probe round that started %v after the change, after %d rounds in which it did not",
						what, round.Sub(changed).Round(time.Millisecond), len(failed))
					break
				}
				failed = append(failed, fmt.Sprintf("round at %v:%s", round.Sub(changed).Round(time.Millisecond), why))
				if round.Sub(changed) > time.Second {
					t.Errorf("%s: the policy does not hold 1s after the change (%d rounds; the last ones):\n%s",
						what, len(failed), strings.Join(failed[max(0, len(failed)-5):], "\n"))
					break
				}
			}
			// The agent saw this change: its log names the first line its monitor showed of it.
			if err := waitLog(n1, logRepair, seen, 5*time.Second); err != nil {
				t.Errorf("%s: %v", what, err)
			} else {
				log, _ := n1.AgentLog()
				var repairs []string
				for _, l := range strings.Split(log, "\n") {
					if strings.Contains(l, logRepair) {
						repairs = append(repairs, l)
					}
				}
				line := repairs[seen]
				if !strings.Contains(line, `"change": "`+tc.shows) {
					t.Errorf("%s: the agent's repair names another change:\n%s", what, line)
				}
				t.Logf("%s: agent: %s", what, line)
			}
			if err := c.Enforce(ctx); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// The agent's log lines the tests look for.
const (
	logBootstrap = "installed the bootstrap table"
	logRepair    = "another process changed the table; repairing it"
)

// edges is TestClosedEdges's state: the endpoints so far and which of them are isolated for
// ingress (namespace x's default deny); nothing is isolated for egress.
type edges struct {
	c          *cluster.Cluster
	eps        []netns.Endpoint
	isolatedIn map[netns.Endpoint]bool
}

// check probes port 80 between every two endpoints (TCP and UDP, IPv4 and IPv6) and expects what
// the policies say, except that every flow from or to an endpoint that closed reports is blocked.
func (e *edges) check(t *testing.T, what string, closed func(netns.Endpoint) bool) {
	t.Helper()
	e.checkWant(t, what, func(from, to netns.Endpoint) bool {
		if closed != nil && (closed(from) || closed(to)) {
			return false
		}
		return !e.isolatedIn[to]
	})
}

// checkWant probes port 80 between every two endpoints and compares with reachable. A flow that
// should pass but timed out is probed again with a generous timeout before it counts as blocked:
// the first packets of a new pod can be slow on a loaded machine. A flow that should be blocked
// gets no second chance.
func (e *edges) checkWant(t *testing.T, what string, reachable func(from, to netns.Endpoint) bool) {
	t.Helper()
	got := e.c.Probe(80, e.eps, e.eps)
	want := got.Expect(func(from, to netns.Endpoint, _ netns.Kind) bool { return reachable(from, to) })
	d := got.Diff(want)
	if d == "" {
		t.Logf("%s:\n%s", what, got)
		return
	}
	var retry []netns.Flow
	wrong := false
	for _, from := range e.eps {
		for _, to := range e.eps {
			for _, k := range netns.AllKinds {
				g, w := got.Get(from, to, k), want.Get(from, to, k)
				switch {
				case g == w:
				case g == netns.Blocked && w == netns.Reachable:
					retry = append(retry, netns.Flow{From: from, To: to.Addr(k.IPv6()), Proto: k.Proto(), Port: 80})
				default:
					wrong = true
				}
			}
		}
	}
	if !wrong {
		saved := e.c.Bed.ProbeTimeout
		e.c.Bed.ProbeTimeout = 3 * time.Second
		results := e.c.Bed.Probe(retry)
		e.c.Bed.ProbeTimeout = saved
		wrong = slices.ContainsFunc(results, func(r netns.Result) bool { return !r.OK })
	}
	if wrong {
		t.Errorf("%s:\n%s", what, d)
	} else {
		t.Logf("%s: %d flows that should pass were slow and passed when probed again:\n%s", what, len(retry), got)
	}
}

// waitLog waits until the agent's current log holds more than seen occurrences of line.
func waitLog(n *cluster.Node, line string, seen int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		log, err := n.AgentLog()
		if err == nil && strings.Count(log, line) > seen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent of %s did not log %q within %v (err %v):\n%s", n.Name, line, timeout, err, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
