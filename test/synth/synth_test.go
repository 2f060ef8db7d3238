package synth

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

var (
	podPrefix4  = netip.MustParsePrefix("10.0.0.0/8")
	podPrefix6  = netip.MustParsePrefix("fd00::/8")
	nodePrefix4 = netip.MustParsePrefix("172.16.0.0/12")
)

func input(c Cluster) translate.Input {
	return translate.Input{Node: c.LocalNode, Policies: c.Policies, Namespaces: c.Namespaces, Pods: compact.NewPods(c.Pods)}
}

// ownsAddress mirrors the translator's rule: hostNetwork and finished pods own no address.
func ownsAddress(p *corev1.Pod) bool {
	return !p.Spec.HostNetwork && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func TestGenerateIsDeterministic(t *testing.T) {
	cfg := Config{Seed: 7, Pods: 3000, Policies: 400}
	a, b := Generate(cfg), Generate(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two clusters generated from the same Config differ")
	}
	// Deep equality of the objects should imply equal scripts; check the bytes anyway, since
	// byte-identical output is what benchmark comparisons rely on.
	rsA, _ := translate.Translate(input(a))
	rsB, _ := translate.Translate(input(b))
	if !bytes.Equal(render.Render(rsA, render.Options{}).Text, render.Render(rsB, render.Options{}).Text) {
		t.Error("scripts rendered from two generations of the same Config differ")
	}
	if other := Generate(Config{Seed: 8, Pods: 3000, Policies: 400}); reflect.DeepEqual(a, other) {
		t.Error("a different seed gave the same cluster")
	}
}

func TestPolicyCountLeavesPodsAlone(t *testing.T) {
	few := Generate(Config{Seed: 3, Pods: 2000, Policies: 10})
	many := Generate(Config{Seed: 3, Pods: 2000, Policies: 500})
	if !reflect.DeepEqual(few.Pods, many.Pods) || !reflect.DeepEqual(few.Namespaces, many.Namespaces) {
		t.Error("changing Policies changed the namespaces or pods")
	}
	if !reflect.DeepEqual(few.Policies, many.Policies[:10]) {
		t.Error("the first policies differ between the two policy counts")
	}
}

func TestGenerateMatchesConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		// want after defaulting
		namespaces, nodes, localPods int
	}{
		{"defaults", Config{Seed: 1, Pods: 500, Policies: 50}, 10, 5, 110},
		{"10k", Config{Seed: 2, Pods: 10000, Namespaces: 200, Nodes: 91, Policies: 1000}, 200, 91, 110},
		{"explicit local node", Config{Seed: 3, Pods: 4000, Namespaces: 60, Nodes: 40, Policies: 100, LocalNode: "node-01", LocalPods: 250, LocalNamespaces: 3}, 60, 40, 250},
		{"one node", Config{Seed: 4, Pods: 80, Nodes: 1, LocalPods: 80, Policies: 5}, 1, 1, 80},
		{"fewer pods than namespaces", Config{Seed: 5, Pods: 300, Namespaces: 400, Policies: 100}, 400, 3, 110},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := Generate(c.cfg)
			if len(cl.Pods) != c.cfg.Pods || len(cl.Namespaces) != c.namespaces || len(cl.Policies) != c.cfg.Policies {
				t.Fatalf("got %d pods, %d namespaces, %d policies; want %d, %d, %d",
					len(cl.Pods), len(cl.Namespaces), len(cl.Policies), c.cfg.Pods, c.namespaces, c.cfg.Policies)
			}
			if len(cl.Nodes) != c.nodes || cl.Nodes[0] != cl.LocalNode {
				t.Errorf("nodes = %d starting with %q, want %d starting with the local node %q", len(cl.Nodes), cl.Nodes[0], c.nodes, cl.LocalNode)
			}
			if want := c.cfg.LocalNode; want != "" && cl.LocalNode != want {
				t.Errorf("LocalNode = %q, want %q", cl.LocalNode, want)
			}

			perNode := map[string]int{}
			localNS := map[string]bool{}
			for _, p := range cl.Pods {
				perNode[p.Spec.NodeName]++
				if p.Spec.NodeName == cl.LocalNode {
					localNS[p.Namespace] = true
				}
			}
			if got := perNode[cl.LocalNode]; got != c.localPods {
				t.Errorf("local node has %d pods, want %d", got, c.localPods)
			}
			if len(perNode) != len(cl.Nodes) {
				t.Errorf("pods are on %d nodes, want every one of the %d", len(perNode), len(cl.Nodes))
			}
			for _, n := range cl.Nodes {
				if _, ok := perNode[n]; !ok {
					t.Errorf("node %q has no pods", n)
				}
			}
			if c.namespaces > 1 && len(localNS) < 2 {
				t.Errorf("local pods come from %d namespace(s), want several", len(localNS))
			}
			checkUniqueNames(t, cl)
		})
	}
}

func checkUniqueNames(t *testing.T, cl Cluster) {
	t.Helper()
	seen := map[string]bool{}
	for _, ns := range cl.Namespaces {
		if seen["ns "+ns.Name] {
			t.Errorf("namespace %s twice", ns.Name)
		}
		seen["ns "+ns.Name] = true
		if ns.Labels[namespaceNameLabel] != ns.Name || ns.Labels["team"] == "" || ns.Labels["env"] == "" {
			t.Errorf("namespace %s labels = %v", ns.Name, ns.Labels)
		}
	}
	for _, p := range cl.Pods {
		id := "pod " + p.Namespace + "/" + p.Name
		if seen[id] || !seen["ns "+p.Namespace] {
			t.Errorf("%s is a duplicate or in an unknown namespace", id)
		}
		seen[id] = true
	}
	for _, np := range cl.Policies {
		id := "policy " + np.Namespace + "/" + np.Name
		if seen[id] || !seen["ns "+np.Namespace] {
			t.Errorf("%s is a duplicate or in an unknown namespace", id)
		}
		seen[id] = true
	}
}

func TestPodAddresses(t *testing.T) {
	cl := Generate(Config{Seed: 11, Pods: 10000, Policies: 0})
	owner := map[netip.Addr]string{}
	var live, hostNet, finished, dual int
	for _, p := range cl.Pods {
		id := p.Namespace + "/" + p.Name
		if len(p.Status.PodIPs) == 0 || p.Status.PodIP != p.Status.PodIPs[0].IP {
			t.Fatalf("%s: podIP %q, podIPs %v", id, p.Status.PodIP, p.Status.PodIPs)
		}
		if p.Spec.HostNetwork {
			hostNet++
			if a := netip.MustParseAddr(p.Status.PodIP); !nodePrefix4.Contains(a) || p.Status.PodIP != p.Status.HostIP {
				t.Errorf("hostNetwork pod %s has %s, want its node's address %s", id, a, p.Status.HostIP)
			}
			continue
		}
		if ownsAddress(p) {
			live++
		} else {
			finished++
		}
		if len(p.Status.PodIPs) == 2 {
			dual++
		}
		for i, ip := range p.Status.PodIPs {
			a := netip.MustParseAddr(ip.IP)
			if want := []netip.Prefix{podPrefix4, podPrefix6}[i]; !want.Contains(a) {
				t.Errorf("%s: address %d is %s, outside %s", id, i, a, want)
			}
			// Finished pods are checked too: they must not hold an address of a live pod, and
			// live pods none of each other's.
			if o, dup := owner[a]; dup {
				t.Errorf("%s and %s share %s", o, id, a)
			}
			owner[a] = id
		}
	}
	// The mix the package doc promises, with generous bounds for a 10k-pod draw.
	n := len(cl.Pods)
	for _, c := range []struct {
		what        string
		got, lo, hi int
	}{
		{"hostNetwork", hostNet, 1, n / 10},
		{"finished", finished, n / 100, n / 20},
		{"dual-stack", dual, n / 6, n / 3},
		{"live", live, n * 8 / 10, n},
	} {
		if c.got < c.lo || c.got > c.hi {
			t.Errorf("%d %s pods of %d, want %d to %d", c.got, c.what, n, c.lo, c.hi)
		}
	}
}

func TestTranslateRenderSmallClusterHasNoProblems(t *testing.T) {
	cl := Generate(Config{Seed: 5, Pods: 2000, Policies: 400})
	rs, problems := translate.Translate(input(cl))
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	if len(rs.Targets) == 0 || len(rs.Policies) == 0 {
		t.Fatalf("rule set isolates %d pods with %d policies; want some of each", len(rs.Targets), len(rs.Policies))
	}
	script := string(render.Render(rs, render.Options{}).Text)
	for _, want := range []string{"add rule ", "add set ", "\n\t", "ip saddr vmap @egress-pods-v4"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
}

// TestPoliciesUseEveryFeature checks that a moderately sized cluster exercises every policy
// feature the benchmark is meant to cover.
func TestPoliciesUseEveryFeature(t *testing.T) {
	cl := Generate(Config{Seed: 9, Pods: 10000, Policies: 1000})
	found := map[string]bool{}
	sel := func(s *metav1.LabelSelector) {
		if s == nil {
			return
		}
		for _, e := range s.MatchExpressions {
			found["op "+string(e.Operator)] = true
		}
	}
	peers := func(ps []networkingv1.NetworkPolicyPeer) {
		for _, p := range ps {
			sel(p.PodSelector)
			sel(p.NamespaceSelector)
			switch {
			case p.IPBlock != nil && len(p.IPBlock.Except) > 0:
				found["ipBlock except"] = true
			case p.PodSelector != nil && p.NamespaceSelector != nil:
				found["pod+namespace selector"] = true
			case p.NamespaceSelector != nil:
				found["namespace selector"] = true
			}
		}
	}
	ports := func(ps []networkingv1.NetworkPolicyPort) {
		for _, p := range ps {
			switch {
			case p.EndPort != nil:
				found["endPort"] = true
			case p.Port != nil && p.Port.Type == intstr.String:
				found["named port"] = true
			case p.Port != nil:
				found["numeric port"] = true
			}
		}
	}
	for _, np := range cl.Policies {
		if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) == 0 && len(np.Spec.Ingress)+len(np.Spec.Egress) == 0 {
			found["default deny"] = true
		}
		sel(&np.Spec.PodSelector)
		for _, r := range np.Spec.Ingress {
			peers(r.From)
			ports(r.Ports)
		}
		for _, r := range np.Spec.Egress {
			peers(r.To)
			ports(r.Ports)
			if len(r.Ports) > 0 && r.Ports[0].Port != nil && r.Ports[0].Port.IntValue() == 53 {
				found["egress DNS"] = true
			}
		}
	}
	for _, want := range []string{
		"default deny", "namespace selector", "pod+namespace selector", "ipBlock except",
		"numeric port", "endPort", "named port", "egress DNS",
		"op In", "op NotIn", "op Exists", "op DoesNotExist",
	} {
		if !found[want] {
			t.Errorf("no policy uses %s", want)
		}
	}
}

func TestImpossibleConfigPanics(t *testing.T) {
	for _, cfg := range []Config{
		{Pods: 10, LocalPods: 20},
		{Pods: 200, Nodes: 1, LocalPods: 100},
		{Pods: -1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Generate(%+v) did not panic", cfg)
				}
			}()
			Generate(cfg)
		}()
	}
}
