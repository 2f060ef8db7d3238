package translate

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/test/objects"
)

// The plan's label scheme for ClusterNetworkPolicies: subjects and peers name namespaces by
// their ns label; "*" is every namespace.
func nsSel(v string) *metav1.LabelSelector {
	if v == "*" {
		return objects.Selector()
	}
	return objects.Selector("ns", v)
}

func admin(name string, priority int32, subject string, opts ...objects.ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	return objects.AdminPolicy(name, priority, nsSel(subject), opts...)
}

func baseline(name string, priority int32, subject string, opts ...objects.ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	return objects.BaselinePolicy(name, priority, nsSel(subject), opts...)
}

func nsPeer(v string) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return objects.NamespacesPeer(nsSel(v))
}

var (
	inRule  = objects.ClusterIngress
	outRule = objects.ClusterEgress
)

const (
	accept = objects.Accept
	deny   = objects.Deny
	pass   = objects.Pass
)

// Local pods of the plan: x/a, x/b, y/a. Every case runs for IPv4 and IPv6.
func TestClusterNetworkPolicyTiers(t *testing.T) {
	allowAllIngressX := objects.Policy("x/allow-all", objects.IsolateIngress(objects.Ingress()))
	denyIngressX := objects.Policy("x/deny", objects.IsolateIngress())
	runSemantics(t, []semanticsCase{
		{
			name:     "admin Deny overrides a NetworkPolicy allow",
			policies: policies(allowAllIngressX),
			cluster:  clusterPolicies(admin("no-y", 1, "x", inRule(deny, nsPeer("y")))),
			flows: []flow{
				denied("y/a", "x/a", "tcp", 80), denied("y/b", "x/b", "udp", 53),
				allowed("z/a", "x/a", "tcp", 80), allowed("out", "x/a", "tcp", 80),
				allowed("y/b", "y/a", "tcp", 80), // y/a is no subject
			},
		},
		{
			name:     "admin Accept ends evaluation: NetworkPolicy isolation is not consulted",
			policies: policies(denyIngressX),
			cluster:  clusterPolicies(admin("from-y", 1, "x", inRule(accept, nsPeer("y")))),
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name: "the Admin tier is evaluated by ascending priority",
			cluster: clusterPolicies(
				admin("accept-y", 10, "x", inRule(accept, nsPeer("y"))),
				admin("deny-all", 5, "x", inRule(deny, nsPeer("*")))),
			flows: []flow{denied("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name: "lower priority first, the other way round",
			cluster: clusterPolicies(
				admin("accept-y", 5, "x", inRule(accept, nsPeer("y"))),
				admin("deny-all", 10, "x", inRule(deny, nsPeer("*")))),
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name: "within one priority, policies are evaluated by name",
			cluster: clusterPolicies(
				admin("b-accept", 5, "x", inRule(accept, nsPeer("y"))),
				admin("a-deny", 5, "x", inRule(deny, nsPeer("y")))),
			flows: []flow{denied("y/b", "x/a", "tcp", 80)},
		},
		{
			name: "within one policy, rules are evaluated in order",
			cluster: clusterPolicies(admin("mixed", 5, "x",
				inRule(accept, objects.PodsPeer(nsSel("y"), objects.Selector("pod", "b"))), inRule(deny, nsPeer("y")))),
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80)},
		},
		{
			name: "Pass skips the rest of the Admin tier: NetworkPolicy decides, here not isolating",
			cluster: clusterPolicies(
				admin("pass-y", 1, "x", inRule(pass, nsPeer("y"))),
				admin("deny-all", 2, "x", inRule(deny, nsPeer("*")))),
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name:     "after a Pass, NetworkPolicy isolation applies",
			policies: policies(denyIngressX),
			cluster:  clusterPolicies(admin("pass-y", 1, "x", inRule(pass, nsPeer("y")))),
			flows:    []flow{denied("y/b", "x/a", "tcp", 80)},
		},
		{
			name: "the Baseline tier judges only what NetworkPolicy does not isolate",
			policies: policies(objects.Policy("x/a-from-y", objects.Selecting("pod", "a"),
				objects.IsolateIngress(objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")))))),
			cluster: clusterPolicies(baseline("deny-all", 1, "x", inRule(deny, nsPeer("*")))),
			flows: []flow{
				allowed("y/b", "x/a", "tcp", 80), // NetworkPolicy allows: Baseline is not consulted
				denied("z/a", "x/a", "tcp", 80),  // NetworkPolicy isolates and refuses
				denied("y/b", "x/b", "tcp", 80),  // x/b is not isolated: Baseline denies
			},
		},
		{
			name: "the Baseline tier by priority; a Pass there allows (the default after it)",
			cluster: clusterPolicies(
				baseline("deny-all", 2, "x", inRule(deny, nsPeer("*"))),
				baseline("pass-y", 1, "x", inRule(pass, nsPeer("y"))),
			),
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name:    "a Baseline policy judges only its subjects",
			cluster: clusterPolicies(baseline("deny-y", 1, "y", inRule(deny, nsPeer("*")))),
			flows:   []flow{denied("z/a", "y/a", "tcp", 80), allowed("z/a", "x/a", "tcp", 80)},
		},
		{
			name:    "an Admin tier Pass reaches the Baseline tier when NetworkPolicy does not isolate",
			cluster: clusterPolicies(admin("pass-all", 1, "x", inRule(pass, nsPeer("*"))), baseline("deny-z", 1, "x", inRule(deny, nsPeer("z")))),
			flows:   []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name:     "an egress Accept still needs the destination's ingress",
			policies: policies(objects.Policy("y/deny", objects.IsolateIngress())),
			cluster:  clusterPolicies(admin("out-all", 1, "x", outRule(accept, nsPeer("*")))),
			flows:    []flow{denied("x/a", "y/a", "tcp", 80), allowed("x/a", "z/a", "tcp", 80)},
		},
		{
			name:     "an egress Accept ends the source's evaluation: its NetworkPolicy egress isolation is not consulted",
			policies: policies(objects.Policy("x/deny-out", objects.IsolateEgress())),
			cluster:  clusterPolicies(admin("out-z", 1, "x", outRule(accept, nsPeer("z")))),
			flows:    []flow{allowed("x/a", "z/a", "tcp", 80), denied("x/a", "y/b", "tcp", 80)},
		},
		{
			name:    "networks peers match any address, pod addresses included",
			cluster: clusterPolicies(admin("no-z-net", 1, "x", outRule(deny, objects.NetworksPeer("10.0.3.0/24", "fd00::3:0/112", "10.200.0.0/16", "fd00:200::/32")))),
			flows:   []flow{denied("x/a", "z/a", "tcp", 80), denied("x/a", "out", "tcp", 80), allowed("x/a", "y/b", "tcp", 80)},
		},
		{
			name:    "nodes peers are the addresses of the selected Nodes",
			cluster: clusterPolicies(admin("no-cp", 1, "x", outRule(deny, objects.NodesPeer(objects.Selector("role", "control-plane"))))),
			nodes: []*corev1.Node{
				objects.Node("cp-1", []string{"role", "control-plane"}, outside4.String(), outside6.String()),
				objects.Node("worker-1", []string{"role", "worker"}, "10.0.3.1", "fd00::3:1"), // not selected (a pod's address here: the peer is the node's)
			},
			flows: []flow{denied("x/a", "out", "tcp", 80), allowed("x/a", "z/a", "tcp", 80), allowed("x/a", "y/b", "tcp", 80)},
		},
		{
			name: "protocols: a port, a range, every port of a protocol; SCTP is never TCP",
			cluster: clusterPolicies(admin("ports", 1, "x",
				inRule(deny, nsPeer("y"), objects.TCPPort(80),
					objects.UDPRange(50, 60), objects.SCTPPort(0)))),
			flows: []flow{
				denied("y/b", "x/a", "tcp", 80), allowed("y/b", "x/a", "tcp", 81),
				denied("y/b", "x/a", "udp", 53), allowed("y/b", "x/a", "udp", 61),
				denied("y/b", "x/a", "sctp", 9000), allowed("y/b", "x/a", "tcp", 9000),
				allowed("y/b", "x/a", "icmp", 0),
			},
		},
		{
			name:    "no protocols means all traffic",
			cluster: clusterPolicies(admin("all", 1, "x", inRule(deny, nsPeer("y")))),
			flows:   []flow{denied("y/b", "x/a", "icmp", 0), denied("y/b", "x/a", "sctp", 1)},
		},
		{
			name: "a destinationNamedPort resolves on the destination pod, whatever its protocol",
			tweak: map[string][]objects.PodOption{
				"y/b": {objects.NamedPort("web", tcp, 8080)},
				"z/a": {objects.NamedPort("web", udp, 5353)},
			},
			cluster: clusterPolicies(admin("no-web", 1, "x", outRule(deny, nsPeer("*"),
				objects.NamedDestination("web")))),
			flows: []flow{
				denied("x/a", "y/b", "tcp", 8080), allowed("x/a", "y/b", "tcp", 80), allowed("x/a", "y/c", "tcp", 8080),
				denied("x/a", "z/a", "udp", 5353), allowed("x/a", "z/a", "tcp", 5353),
			},
		},
		{
			name: "an ingress destinationNamedPort resolves on the subject",
			tweak: map[string][]objects.PodOption{
				"x/a": {objects.NamedPort("web", tcp, 8080)},
			},
			cluster: clusterPolicies(admin("no-web-in", 1, "x", inRule(deny, nsPeer("*"),
				objects.NamedDestination("web")))),
			flows: []flow{denied("z/a", "x/a", "tcp", 8080), allowed("z/a", "x/b", "tcp", 8080), allowed("z/a", "x/a", "tcp", 80)},
		},
		{
			name: "subject pods: namespace and pod selectors together",
			cluster: clusterPolicies(admin("only-x-a", 1, "x", inRule(deny, nsPeer("*")),
				objects.SubjectPods(nsSel("x"), objects.Selector("pod", "a")))),
			flows: []flow{denied("z/a", "x/a", "tcp", 80), allowed("z/a", "x/b", "tcp", 80)},
		},
		{
			name:     "a policy without ingress rules does not affect ingress",
			policies: policies(denyIngressX),
			cluster:  clusterPolicies(admin("out-only", 1, "x", outRule(accept, nsPeer("*")))),
			flows:    []flow{denied("z/a", "x/a", "tcp", 80), allowed("x/a", "z/a", "tcp", 80)},
		},
		{
			name: "hostNetwork pods are neither subjects nor peers",
			tweak: map[string][]objects.PodOption{
				"x/b": {objects.HostNetwork()},
			},
			cluster: clusterPolicies(admin("deny-all", 1, "x", inRule(deny, nsPeer("*")))),
			flows:   []flow{denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name: "an address two local pods claim allows nothing new where ClusterNetworkPolicies select a claimant",
			tweak: map[string][]objects.PodOption{
				"x/b": {objects.IPs(addr("x/a", false).String(), addr("x/a", true).String())},
			},
			cluster: clusterPolicies(admin("accept-all", 1, "x", inRule(accept, nsPeer("*")))),
			flows:   []flow{denied("z/a", "x/a", "tcp", 80), allowed("x/a", "z/a", "tcp", 80)},
		},
		{
			name:    "a pod may always reach itself",
			cluster: clusterPolicies(admin("deny-all", 1, "x", inRule(deny, nsPeer("*")), outRule(deny, nsPeer("*")))),
			flows:   []flow{allowed("x/a", "x/a", "tcp", 80), denied("x/b", "x/a", "tcp", 80)},
		},
	})
}

// A pod's traffic to its own node takes the node's input hook: NetworkPolicy never polices it
// (the upstream rule), but a nodes or networks peer of a ClusterNetworkPolicy can name the node,
// and the API's user story is to block pods from ports of cluster nodes (NPEP-126). Here the
// local node's address is the plan's "out" address.
func TestClusterNetworkPolicyPoliceTrafficToTheOwnNode(t *testing.T) {
	ownNode := []*corev1.Node{objects.Node(localNode, []string{"role", "worker"}, outside4.String(), outside6.String())}
	denyOutX := objects.Policy("x/deny-out", objects.IsolateEgress())
	runSemantics(t, []semanticsCase{
		{
			name:     "NetworkPolicy egress isolation never blocks a pod's own node",
			policies: policies(denyOutX),
			nodes:    ownNode,
			flows:    []flow{allowed("x/a", "out", "tcp", 10250), denied("x/a", "z/a", "tcp", 80)},
		},
		{
			name:     "an Admin tier Deny of nodes peers blocks the pod's own node",
			policies: policies(denyOutX),
			nodes:    ownNode,
			cluster:  clusterPolicies(admin("no-kubelet", 1, "x", outRule(deny, objects.NodesPeer(objects.Selector()), objects.TCPPort(10250)))),
			flows:    []flow{denied("x/a", "out", "tcp", 10250), allowed("x/a", "out", "tcp", 53), allowed("y/a", "out", "tcp", 10250)},
		},
		{
			name:     "after an Admin Pass, NetworkPolicy allows the own node: Baseline is not consulted for an isolated pod",
			policies: policies(denyOutX),
			nodes:    ownNode,
			cluster: clusterPolicies(admin("pass-nodes", 1, "x", outRule(pass, objects.NodesPeer(objects.Selector()))),
				baseline("no-nodes", 1, "x", outRule(deny, objects.NodesPeer(objects.Selector())))),
			flows: []flow{allowed("x/a", "out", "tcp", 10250)},
		},
		{
			name:    "a pod NetworkPolicy does not isolate meets the Baseline tier on the way to its own node",
			nodes:   ownNode,
			cluster: clusterPolicies(baseline("no-node-net", 1, "x", outRule(deny, objects.NetworksPeer("10.200.0.0/16", "fd00:200::/32")))),
			flows:   []flow{denied("x/a", "out", "udp", 53), allowed("y/a", "out", "udp", 53)},
		},
	})
}

// The API: a peer the implementation does not know (no field set, or one it does not support)
// fails closed: an Accept rule matches nothing, a Deny or Pass rule is a "Deny all" rule.
func TestClusterNetworkPolicyUnknownPeersFailClosed(t *testing.T) {
	domains := objects.DomainNamesPeer("example.com")
	empty := []v1alpha2.ClusterNetworkPolicyEgressPeer{{}}
	runSemantics(t, []semanticsCase{
		{
			name:     "an Accept rule with a domainNames peer matches nothing",
			policies: policies(objects.Policy("x/deny-out", objects.IsolateEgress())),
			cluster:  clusterPolicies(admin("fqdn", 1, "x", outRule(accept, domains))),
			flows:    []flow{denied("x/a", "out", "tcp", 443)},
		},
		{
			name:    "a Deny rule with a domainNames peer denies everything",
			cluster: clusterPolicies(admin("fqdn", 1, "x", outRule(deny, domains, objects.TCPPort(443)))),
			flows:   []flow{denied("x/a", "out", "udp", 53), denied("x/a", "z/a", "tcp", 80)},
		},
		{
			name:    "a Pass rule with a peer of no known type denies everything",
			cluster: clusterPolicies(admin("unknown", 1, "x", outRule(pass, empty))),
			flows:   []flow{denied("x/a", "z/a", "tcp", 80)},
		},
		{
			name:    "an Accept rule with a peer of no known type matches nothing, the next rule still applies",
			cluster: clusterPolicies(admin("unknown", 1, "x", inRule(accept, empty), inRule(deny, nsPeer("z")))),
			flows:   []flow{denied("z/a", "x/a", "tcp", 80), allowed("y/b", "x/a", "tcp", 80)},
		},
		{
			name:    "an invalid CIDR in a Deny rule denies everything",
			cluster: clusterPolicies(admin("bad-cidr", 1, "x", outRule(deny, objects.NetworksPeer("10.0.0.0/33")))),
			flows:   []flow{denied("x/a", "y/b", "tcp", 80)},
		},
		{
			name:    "a protocol entry with no protocol in a Deny rule denies everything",
			cluster: clusterPolicies(admin("bad-proto", 1, "x", inRule(deny, nsPeer("z"), v1alpha2.ClusterNetworkPolicyProtocol{}))),
			flows:   []flow{denied("y/b", "x/a", "tcp", 80)},
		},
		{
			name: "a policy in an unknown tier acts only on its Deny rules, in the Admin tier",
			cluster: clusterPolicies(
				objects.ClusterPolicy("future", "Future", 1, nsSel("x"), inRule(accept, nsPeer("y")), inRule(deny, nsPeer("z"))),
				baseline("deny-y", 1, "x", inRule(deny, nsPeer("y")))),
			flows: []flow{denied("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
	})
}

// TestClusterNetworkPolicyProblemsAreReported pins that each fail-closed reading says so.
func TestClusterNetworkPolicyProblemsAreReported(t *testing.T) {
	in := semanticsCase{cluster: clusterPolicies(
		admin("fqdn", 1, "x", outRule(accept, objects.DomainNamesPeer("example.com"))),
		admin("bad", 1, "x", inRule("Drop", nsPeer("z"))),
	)}.input()
	_, problems := Translate(in)
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	for _, want := range []string{
		"ClusterNetworkPolicy fqdn: spec.egress[0].to[0]: domainNames peers are not supported: failing closed (an Accept rule matches nothing)",
		`ClusterNetworkPolicy bad: spec.ingress[0]: unknown action "Drop", denying what the rule matches`,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// TestClusterNetworkPolicyOrderAndTargets pins the rule set's shape: evaluation order, and
// subjects listed per tier and direction.
func TestClusterNetworkPolicyOrderAndTargets(t *testing.T) {
	in := semanticsCase{cluster: clusterPolicies(
		baseline("base", 0, "x", inRule(deny, nsPeer("z"))),
		admin("b", 3, "x", inRule(deny, nsPeer("z")), outRule(deny, nsPeer("z"))),
		admin("a", 3, "x", outRule(deny, nsPeer("z"))),
		admin("first", 0, "y", inRule(deny, nsPeer("z"))),
		admin("nobody", 0, "z", inRule(deny, nsPeer("z"))), // no local subject
	)}.input()
	rs, _ := Translate(in)
	var order []string
	for _, p := range rs.ClusterPolicies {
		order = append(order, p.Name)
	}
	if want := []string{"first", "a", "b", "base"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	for _, tg := range rs.Targets {
		if tg.Namespace+"/"+tg.Name != "x/a" {
			continue
		}
		if !slices.Equal(tg.AdminIngress, []string{"b"}) || !slices.Equal(tg.AdminEgress, []string{"a", "b"}) ||
			!slices.Equal(tg.BaselineIngress, []string{"base"}) || tg.BaselineEgress != nil || len(tg.IngressPolicies) != 0 {
			t.Errorf("x/a: %+v", tg)
		}
		return
	}
	t.Error("x/a is not a target")
}

func clusterPolicies(ps ...*v1alpha2.ClusterNetworkPolicy) []*v1alpha2.ClusterNetworkPolicy {
	return ps
}

func policies(ps ...*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy { return ps }
