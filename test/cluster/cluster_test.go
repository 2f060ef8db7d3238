//go:build linux

package cluster_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// TestHarness is the harness's own smoke test: two pods on two nodes and an external host, no
// policy (everything reachable), then a default-deny-ingress policy in the namespace of one pod,
// then its deletion; each state enforced through WaitEnforced and checked with real packets.
func TestHarness(t *testing.T) {
	start := time.Now()
	c := cluster.Start(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := netip.MustParseAddr

	a := c.AddPod("node-1", "a", []netip.Addr{addr("10.1.0.1"), addr("fd00:1::1")}, 80)
	b := c.AddPod("node-2", "b", []netip.Addr{addr("10.1.1.1"), addr("fd00:1::1:1")}, 80)
	ext := c.AddExternal("ext", []netip.Addr{addr("10.200.0.10"), addr("fd00:200::10")}, 80)
	eps := []netns.Endpoint{a, b, ext}
	for _, ns := range []string{"ns-a", "ns-b"} {
		if err := c.CreateNamespace(ctx, ns, map[string]string{"team": ns}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []cluster.PodObject{
		{Namespace: "ns-a", Name: "a", Endpoint: a, Labels: map[string]string{"app": "a"},
			Containers: []corev1.Container{{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}},
		{Namespace: "ns-b", Name: "b", Endpoint: b},
	} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	check := func(what string, reachable func(from, to netns.Endpoint) bool) {
		t.Helper()
		if err := c.Enforce(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := c.Probe(80, eps, eps)
		want := got.Expect(func(from, to netns.Endpoint, _ netns.Kind) bool { return reachable(from, to) })
		if d := got.Diff(want); d != "" {
			t.Errorf("%s:\n%s", what, d)
		} else {
			t.Logf("%s:\n%s", what, got)
		}
	}
	check("no policy", func(_, _ netns.Endpoint) bool { return true })

	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns-a", Name: "deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	if err := c.ApplyPolicy(ctx, deny); err != nil {
		t.Fatal(err)
	}
	check("default deny ingress in ns-a", func(_, to netns.Endpoint) bool { return to != a })

	rules, err := c.Node("node-1").Ruleset()
	if err != nil || !strings.Contains(rules, "pod-in-") || !strings.Contains(rules, "ns-a/a") {
		t.Errorf("node-1 ruleset does not isolate ns-a/a (err %v):\n%s", err, rules)
	}
	if err := c.DeletePolicy(ctx, "ns-a", "deny"); err != nil {
		t.Fatal(err)
	}
	check("policy deleted", func(_, _ netns.Endpoint) bool { return true })

	for _, n := range c.Nodes() {
		if _, err := os.Stat(n.LogPath()); err != nil {
			t.Errorf("agent log of %s: %v", n.Name, err)
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}
