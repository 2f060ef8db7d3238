//go:build linux

package datapath

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// ClusterNetworkPolicy scenarios: tiers rendered as chains, judged by real packets against the
// model (ruleset.Explain per node crossed), with spot checks written from the API's doc
// comments. Subjects and peers select namespaces by their ns label (x, y, z).
var clusterScenarios = []modelScenario{
	{
		name:     "cnp-admin-deny-over-networkpolicy-allow",
		policies: []*networkingv1.NetworkPolicy{objects.Policy("x/allow-all", objects.IsolateIngress(objects.Ingress()))},
		cluster:  []*v1alpha2.ClusterNetworkPolicy{cnp("no-y-80", v1alpha2.AdminTier, 1, "x", objects.ClusterIngress(objects.Deny, nsPeer("y"), objects.TCPPort(80)))},
		spots: []string{
			"y-a -> x-a tcp/80 deny", "y-a -> x-a tcp/81 allow", "y-b -> x-c tcp/80 deny", "y-a -> x-c udp/80 allow",
			"z-b -> x-a tcp/80 allow", "ext -> x-b tcp/80 allow",
		},
	},
	{
		name:     "cnp-admin-accept-over-networkpolicy-isolation",
		policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny")},
		cluster:  []*v1alpha2.ClusterNetworkPolicy{cnp("from-z", v1alpha2.AdminTier, 1, "x", objects.ClusterIngress(objects.Accept, nsPeer("z")))},
		spots:    []string{"z-b -> x-a tcp/80 allow", "z-b -> x-c udp/81 allow", "y-a -> x-a tcp/80 deny", "ext -> x-c tcp/80 deny"},
	},
	{
		// Pass hands y's traffic to NetworkPolicy (x/a admits only y/a; x/b is not isolated);
		// everything else from a pod is denied by the next Admin policy.
		name: "cnp-pass-to-networkpolicy",
		policies: []*networkingv1.NetworkPolicy{objects.Policy("x/a-from-y-a", objects.Selecting("pod", "a"),
			objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "a"}, []string{"ns", "y"}))))},
		cluster: []*v1alpha2.ClusterNetworkPolicy{
			cnp("pass-y", v1alpha2.AdminTier, 1, "x", objects.ClusterIngress(objects.Pass, nsPeer("y"))),
			cnp("deny-pods", v1alpha2.AdminTier, 2, "x", objects.ClusterIngress(objects.Deny, nsPeer(""))),
		},
		spots: []string{
			"y-a -> x-a tcp/80 allow", "y-b -> x-a tcp/80 deny", "y-b -> x-b tcp/81 allow", "y-a -> x-c udp/80 allow",
			"z-b -> x-b tcp/80 deny", "x-c -> x-a tcp/80 deny", "ext -> x-b tcp/80 allow",
		},
	},
	{
		// Baseline denies every pod, except where NetworkPolicy isolates (x/a admits z).
		name:     "cnp-baseline-under-networkpolicy",
		policies: []*networkingv1.NetworkPolicy{objects.Policy("x/a-from-z", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "z"))))},
		cluster:  []*v1alpha2.ClusterNetworkPolicy{cnp("baseline-deny", v1alpha2.BaselineTier, 1, "x", objects.ClusterIngress(objects.Deny, nsPeer("")))},
		spots: []string{
			"z-b -> x-a tcp/80 allow", "y-a -> x-a tcp/80 deny", "y-a -> x-b tcp/80 deny", "y-b -> x-c udp/81 deny",
			"ext -> x-b tcp/80 allow",
		},
	},
	{
		// y may reach the outside on TCP 80 only; networks match pod addresses too, so y reaches
		// no pod either (the subject itself excepted: a pod may reach itself).
		name: "cnp-egress-networks-by-priority",
		cluster: []*v1alpha2.ClusterNetworkPolicy{
			cnp("ext-80", v1alpha2.AdminTier, 1, "y", objects.ClusterEgress(objects.Accept, objects.NetworksPeer("10.200.0.0/16", "fd00:200::/32"), objects.TCPPort(80))),
			cnp("no-egress", v1alpha2.AdminTier, 2, "y", objects.ClusterEgress(objects.Deny, objects.NetworksPeer("0.0.0.0/0", "::/0"))),
		},
		spots: []string{
			"y-a -> ext tcp/80 allow", "y-b -> ext tcp/80 allow", "y-a -> ext tcp/81 deny", "y-a -> ext udp/80 deny",
			"y-a -> x-a tcp/80 deny", "y-b -> z-b tcp/80 deny", "y-a -> y-b udp/81 deny", "x-a -> y-a tcp/80 allow",
		},
	},
	{
		name:     "cnp-egress-accept-still-needs-ingress",
		policies: []*networkingv1.NetworkPolicy{objects.Policy("y/deny")},
		cluster: []*v1alpha2.ClusterNetworkPolicy{
			cnp("x-out", v1alpha2.AdminTier, 1, "x", objects.ClusterEgress(objects.Accept, nsPeer(""))),
		},
		spots: []string{"x-a -> y-a tcp/80 deny", "x-c -> y-b tcp/80 deny", "x-a -> z-b tcp/80 allow", "z-b -> y-b tcp/80 deny"},
	},
	{
		// "web" is TCP 80 on x/a and x/c, TCP 81 on x/b; x/c's "dns" is UDP 80.
		name: "cnp-named-port",
		cluster: []*v1alpha2.ClusterNetworkPolicy{cnp("no-web", v1alpha2.AdminTier, 1, "x",
			objects.ClusterIngress(objects.Deny, nsPeer(""), objects.NamedDestination("web")))},
		spots: []string{
			"y-a -> x-a tcp/80 deny", "y-a -> x-a tcp/81 allow", "y-a -> x-b tcp/81 deny", "y-a -> x-b tcp/80 allow",
			"z-b -> x-c tcp/80 deny", "z-b -> x-c udp/80 allow", "ext -> x-a tcp/80 allow",
		},
	},
	{
		// Six Admin policies on y's egress: the peers of all but one are addresses, so the pod's
		// chain looks the destination up once and walks only the policies that hold it; the
		// networks one (too wide to spell out) is walked by every packet, in its place in the
		// order (it covers the pods too: TCP 81 to x is denied before x is passed on). x is
		// passed on to NetworkPolicy, whose y/a may reach x/a only.
		name: "cnp-admin-dispatch-by-peer",
		policies: []*networkingv1.NetworkPolicy{objects.Policy("y/a-to-x-a", objects.Selecting("pod", "a"),
			objects.IsolateEgress(objects.Egress(objects.To(objects.PodsInNamespaces([]string{"pod", "a"}, []string{"ns", "x"})))))},
		cluster: []*v1alpha2.ClusterNetworkPolicy{
			cnp("x-b-80", v1alpha2.AdminTier, 1, "y", objects.ClusterEgress(objects.Deny,
				objects.PodsPeer(nsSelector("x"), objects.Selector("pod", "b")), objects.TCPPort(80))),
			cnp("z-81", v1alpha2.AdminTier, 2, "y", objects.ClusterEgress(objects.Accept, nsPeer("z"), objects.TCPPort(81))),
			cnp("ext-81", v1alpha2.AdminTier, 3, "y", objects.ClusterEgress(objects.Deny,
				objects.NetworksPeer("10.200.0.0/16", "10.1.0.0/16", "fd00:200::/32", "fd00:1::/64"), objects.TCPPort(81))),
			cnp("pass-x", v1alpha2.AdminTier, 4, "y", objects.ClusterEgress(objects.Pass, nsPeer("x"))),
			cnp("pods-80", v1alpha2.AdminTier, 5, "y", objects.ClusterEgress(objects.Deny, nsPeer(""), objects.TCPPort(80))),
			cnp("z-udp", v1alpha2.AdminTier, 6, "y", objects.ClusterEgress(objects.Accept, nsPeer("z"), objects.UDPPort(0))),
		},
		spots: []string{
			"y-b -> x-b tcp/80 deny", "y-b -> x-a tcp/80 allow", "y-a -> x-a tcp/80 allow", "y-a -> x-c tcp/80 deny",
			"y-a -> z-b tcp/81 allow", "y-a -> z-b tcp/80 deny", "y-b -> z-b udp/80 allow", "y-a -> ext tcp/81 deny",
			"y-b -> ext tcp/80 allow", "y-a -> ext tcp/80 deny", "y-b -> y-a tcp/80 deny", "x-a -> y-a tcp/80 allow",
			"y-b -> x-b tcp/81 deny", "y-b -> x-b udp/81 allow",
		},
	},
	{
		// The kernel here has no SCTP: what matters is that an SCTP rule does not catch TCP or UDP.
		name: "cnp-sctp-is-not-tcp",
		cluster: []*v1alpha2.ClusterNetworkPolicy{cnp("no-sctp", v1alpha2.AdminTier, 1, "x",
			objects.ClusterIngress(objects.Deny, nsPeer(""), objects.SCTPPort(0)),
			objects.ClusterIngress(objects.Deny, nsPeer("z"), objects.TCPPort(81)))},
		spots: []string{"y-a -> x-a tcp/80 allow", "y-a -> x-c udp/80 allow", "z-b -> x-a tcp/81 deny", "z-b -> x-a tcp/80 allow"},
	},
}

// The scenarios' label scheme: subjects and peers name namespaces by their ns label; "" is every
// namespace.
func nsSelector(v string) *metav1.LabelSelector {
	if v == "" {
		return objects.Selector()
	}
	return objects.Selector("ns", v)
}

func cnp(name string, tier v1alpha2.Tier, priority int32, subject string, opts ...objects.ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	return objects.ClusterPolicy(name, tier, priority, nsSelector(subject), opts...)
}

func nsPeer(v string) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return objects.NamespacesPeer(nsSelector(v))
}

// TestClusterNetworkPolicyPolicesThePodsOwnNode pins the input hook: a pod's traffic to its own
// node, which NetworkPolicy never polices, follows the pod's ClusterNetworkPolicy egress tiers
// (a nodes peer names the node), while NetworkPolicy egress isolation still never blocks it.
// Each node serves in its own namespace on its underlay addresses (a hostNetwork server).
func TestClusterNetworkPolicyPolicesThePodsOwnNode(t *testing.T) {
	c := newCluster(t)
	hosts := map[string]*netns.HostNet{}
	var nodes []*corev1.Node
	for _, n := range nodeNames {
		h := c.bed.AddHostNet(c.nodes[n], n+"-host")
		h.Serve(probePorts...)
		hosts[n] = h
		nodes = append(nodes, objects.Node(n, []string{"role", "worker"}, h.Addr(false).String(), h.Addr(true).String()))
	}
	xa, ya := c.endpoint("x-a"), c.endpoint("y-a") // both on node-1
	type flow struct {
		from  netns.Endpoint
		host  string
		proto string
		port  uint16
		want  bool
	}
	check := func(step string, flows []flow, rs ruleset.RuleSet) {
		t.Helper()
		for _, f := range flows {
			for _, v6 := range []bool{false, true} {
				to := hosts[f.host].Addr(v6)
				if got := c.bed.Reachable(f.from, to, f.proto, f.port); got != f.want {
					t.Errorf("%s: %s -> %s (%s) %s/%d: reachable=%v, want %v", step, f.from.Name(), f.host, to, f.proto, f.port, got, f.want)
				}
				model := rs.Allows(ruleset.Flow{Src: f.from.Addr(v6), Dst: to, Protocol: ruleset.Protocol(f.proto), Port: f.port})
				if f.host == node1 && model != f.want {
					t.Errorf("%s: the model of node-1 says %s -> %s %s/%d allowed=%v, want %v", step, f.from.Name(), to, f.proto, f.port, model, f.want)
				}
			}
		}
	}

	ag := c.newAgent(t, render.Revalidate)
	ag.nodeObjects = nodes
	// x's pods may send nothing (NetworkPolicy), and may not reach any node on port 81 (Admin).
	denyOut := objects.Policy("x/deny-egress", objects.IsolateEgress())
	ag.cluster = []*v1alpha2.ClusterNetworkPolicy{objects.AdminPolicy("no-node-81", 1, objects.Selector("ns", "x"),
		objects.ClusterEgress(objects.Deny, objects.NodesPeer(objects.Selector()), objects.TCPPort(81)))}
	ag.apply(t, []*networkingv1.NetworkPolicy{denyOut}, podObjects(nil))
	check("admin deny of nodes on tcp/81", []flow{
		{xa, node1, "tcp", 81, false}, // own node, input hook: the Admin tier denies
		{xa, node1, "tcp", 80, true},  // own node: NetworkPolicy never blocks it
		{xa, node1, "udp", 81, true},
		{xa, node2, "tcp", 81, false}, // another node, forward hook: denied by the Admin tier...
		{xa, node2, "tcp", 80, false}, // ...and by NetworkPolicy egress isolation
		{ya, node1, "tcp", 81, true},  // not a subject
	}, ag.nodes[node1].rs)

	// Without ClusterNetworkPolicies the input hook chain goes, and the own node is open again.
	ag.cluster = nil
	ag.apply(t, []*networkingv1.NetworkPolicy{denyOut}, podObjects(nil))
	check("no ClusterNetworkPolicy", []flow{{xa, node1, "tcp", 81, true}, {xa, node2, "tcp", 81, false}}, ag.nodes[node1].rs)
}
