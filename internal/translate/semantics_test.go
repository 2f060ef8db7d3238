package translate

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

// flow is one connection attempt and the verdict the rule under test requires. Endpoints are
// pods of the address plan ("x/a") or "out", an address no pod owns.
type flow struct {
	from, to string
	proto    ruleset.Protocol
	port     uint16
	want     bool
}

func allowed(from, to string, proto ruleset.Protocol, port uint16) flow {
	return flow{from, to, proto, port, true}
}

func denied(from, to string, proto ruleset.Protocol, port uint16) flow {
	return flow{from, to, proto, port, false}
}

func endpoint(id string, v6 bool) netip.Addr {
	if id == "out" {
		if v6 {
			return outside6
		}
		return outside4
	}
	return addr(id, v6)
}

type semanticsCase struct {
	name     string // the rule the case pins
	policies []*networkingv1.NetworkPolicy
	// pods replaces the standard pods when set; tweak modifies them instead.
	pods       []*corev1.Pod
	tweak      map[string][]objects.PodOption
	namespaces []*corev1.Namespace
	flows      []flow
	// v4Only skips the IPv6 run (cases whose pods have hand-written addresses).
	v4Only bool
	// cluster are ClusterNetworkPolicies, nodes the Nodes their nodes peers select.
	cluster []*v1alpha2.ClusterNetworkPolicy
	nodes   []*corev1.Node
}

func (c semanticsCase) input() Input {
	in := Input{Node: localNode, Policies: c.policies, Namespaces: c.namespaces, Pods: compact.NewPods(c.pods),
		ClusterPolicies: c.cluster, Nodes: c.nodes}
	if in.Namespaces == nil {
		in.Namespaces = standardNamespaces()
	}
	if c.pods == nil {
		for _, p := range standardPods() {
			for _, o := range c.tweak[p.Namespace+"/"+p.Name] {
				o(p)
			}
			in.Pods = append(in.Pods, compact.NewPod(p))
		}
	}
	return in
}

func runSemantics(t *testing.T, cases []semanticsCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, _ := Translate(c.input())
			for _, v6 := range []bool{false, true} {
				if v6 && c.v4Only {
					continue
				}
				for _, f := range c.flows {
					fl := ruleset.Flow{Src: endpoint(f.from, v6), Dst: endpoint(f.to, v6), Protocol: f.proto, Port: f.port}
					if got := rs.Allows(fl); got != f.want {
						t.Errorf("%s -> %s %s/%d (ipv6=%v): allowed=%v, want %v", f.from, f.to, f.proto, f.port, v6, got, f.want)
					}
				}
			}
		})
	}
}

func TestSelectors(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{
			name:  "no policy: nothing is isolated",
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), allowed("x/a", "out", "udp", 53), allowed("z/c", "y/a", "icmp", 0)},
		},
		{
			name:     "podSelector {} selects every pod in the policy's namespace, and only there",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny")},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("z/c", "x/b", "udp", 81), allowed("x/a", "y/a", "tcp", 80)},
		},
		{
			name:     "spec.podSelector matchLabels selects only matching pods",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny-a", objects.Selecting("pod", "a"))},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), allowed("y/b", "x/b", "tcp", 80)},
		},
		{
			name: "spec.podSelector matchExpressions NotIn matches pods without the key",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.PodSelector(&metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web"}}},
			}))},
			tweak: map[string][]objects.PodOption{"x/b": {objects.Labels("pod", "b", "tier", "web")}},
			flows: []flow{denied("y/b", "x/a", "tcp", 80), allowed("y/b", "x/b", "tcp", 80)},
		},
		{
			name:     "a peer podSelector alone means pods in the policy's namespace",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/from-b", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"))))},
			flows:    []flow{allowed("x/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80), denied("x/c", "x/a", "tcp", 80)},
		},
		{
			name:     "namespaceSelector {} means every namespace",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/from-all-ns", objects.Ingress(objects.From(objects.NamespacesLabelled())))},
			flows:    []flow{allowed("x/b", "x/a", "tcp", 80), allowed("y/b", "x/a", "udp", 81), allowed("z/c", "x/a", "icmp", 0), denied("out", "x/a", "tcp", 80)},
		},
		{
			name:     "namespaceSelector alone allows every pod of matching namespaces",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/from-y", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y"))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), allowed("y/c", "x/a", "tcp", 80), denied("x/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name:     "podSelector and namespaceSelector in one peer are ANDed",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/and", objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "y"}))))},
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80), denied("x/b", "x/a", "tcp", 80)},
		},
		{
			name:     "two peers in one list are ORed",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/or", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"), objects.NamespacesLabelled("ns", "y"))))},
			flows:    []flow{allowed("x/b", "x/a", "tcp", 80), allowed("y/c", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80), denied("x/c", "x/a", "tcp", 80)},
		},
		{
			name:       "namespace labels come from the Namespace object, never from pod labels",
			policies:   []*networkingv1.NetworkPolicy{objects.Policy("x/from-team-blue", objects.Ingress(objects.From(objects.NamespacesLabelled("team", "blue"))))},
			namespaces: []*corev1.Namespace{objects.Namespace("x"), objects.Namespace("y", "team", "blue"), objects.Namespace("z")},
			tweak:      map[string][]objects.PodOption{"z/a": {objects.Labels("pod", "a", "team", "blue", "kubernetes.io/metadata.name", "y")}},
			flows:      []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name:       "kubernetes.io/metadata.name is a namespace label even when the object lacks it",
			policies:   []*networkingv1.NetworkPolicy{objects.Policy("x/from-z", objects.Ingress(objects.From(objects.NamespacesLabelled("kubernetes.io/metadata.name", "z"))))},
			namespaces: []*corev1.Namespace{objects.Namespace("x"), objects.Namespace("y"), objects.Namespace("z")},
			flows:      []flow{allowed("z/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80)},
		},
		{
			name:       "a pod whose Namespace object is unknown still has its name label",
			policies:   []*networkingv1.NetworkPolicy{objects.Policy("x/from-z", objects.Ingress(objects.From(objects.NamespacesLabelled("kubernetes.io/metadata.name", "z"))))},
			namespaces: []*corev1.Namespace{},
			flows:      []flow{allowed("z/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80)},
		},
		{
			name: "matchExpressions Exists and DoesNotExist in a peer",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/expr", objects.Ingress(objects.From(networkingv1.NetworkPolicyPeer{
				PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "role", Operator: metav1.LabelSelectorOpExists},
					{Key: "blocked", Operator: metav1.LabelSelectorOpDoesNotExist},
				}},
				NamespaceSelector: &metav1.LabelSelector{},
			})))},
			tweak: map[string][]objects.PodOption{
				"y/b": {objects.Labels("role", "client")},
				"y/c": {objects.Labels("role", "client", "blocked", "yes")},
			},
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80)},
		},
	})
}

func TestPolicyTypesAndRuleShapes(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{
			name:     "policyTypes omitted: ingress isolated, egress not when egress is absent",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p")},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), allowed("x/a", "z/a", "tcp", 80), allowed("x/a", "out", "udp", 53)},
		},
		{
			name:     "policyTypes omitted: egress isolated when egress rules are present",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Egress(objects.Ports(objects.Port(udp, 53))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), allowed("x/a", "out", "udp", 53), denied("x/a", "out", "tcp", 80)},
		},
		{
			name:     "policyTypes [Egress] with an empty egress list denies all egress and leaves ingress open",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Types(networkingv1.PolicyTypeEgress), objects.NoIngress())},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("x/a", "out", "udp", 53), denied("x/a", "z/c", "tcp", 80)},
		},
		{
			name:     "policyTypes [Egress] ignores ingress rules for isolation",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Types(networkingv1.PolicyTypeEgress), objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"))))},
			flows:    []flow{allowed("z/c", "x/a", "tcp", 80)},
		},
		{
			name:     "ingress: [] isolates and allows nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.NoIngress())},
			flows:    []flow{denied("x/b", "x/a", "tcp", 80), denied("out", "x/a", "udp", 53), denied("y/a", "x/a", "icmp", 0)},
		},
		{
			name:     "ingress: [{}] allows everything",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress())},
			flows:    []flow{allowed("x/b", "x/a", "tcp", 80), allowed("out", "x/a", "udp", 53), allowed("y/a", "x/a", "icmp", 0)},
		},
		{
			name:     "egress: [{}] allows everything",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Types(networkingv1.PolicyTypeEgress), objects.Egress())},
			flows:    []flow{allowed("x/a", "out", "tcp", 443), allowed("x/a", "z/c", "udp", 81)},
		},
		{
			name:     "from absent with ports: every source on those ports",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Port(tcp, 80))))},
			flows:    []flow{allowed("out", "x/a", "tcp", 80), allowed("z/c", "x/a", "tcp", 80), denied("z/c", "x/a", "tcp", 81)},
		},
		{
			name:     "policies are additive: the union of all policies selecting a pod",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny"), objects.Policy("x/allow-b", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.PodsLabelled("pod", "b")))), objects.Policy("x/allow-y", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")), objects.Ports(objects.Port(tcp, 81))))},
			flows:    []flow{allowed("x/b", "x/a", "tcp", 80), allowed("y/c", "x/a", "tcp", 81), denied("y/c", "x/a", "tcp", 80), denied("x/a", "x/b", "tcp", 80), allowed("y/c", "x/b", "tcp", 81)},
		},
		{
			name: "a connection between local pods needs the source's egress and the destination's ingress",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/a-egress", objects.Selecting("pod", "a"), objects.Types(networkingv1.PolicyTypeEgress), objects.Egress(objects.To(objects.PodsLabelled("pod", "b")))),
				objects.Policy("x/b-ingress", objects.Selecting("pod", "b"), objects.Ingress(objects.From(objects.PodsLabelled("pod", "c")))),
			},
			flows: []flow{denied("x/a", "x/b", "tcp", 80), allowed("x/c", "x/b", "tcp", 80), denied("x/a", "x/c", "tcp", 80)},
		},
		{
			name: "egress of a local pod to a remote pod is decided here, its ingress on the remote node",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/a-egress", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.PodsLabelled("pod", "c")))),
				objects.Policy("x/c-ingress", objects.Selecting("pod", "c"), objects.NoIngress()),
			},
			flows: []flow{allowed("x/a", "x/c", "tcp", 80), denied("x/a", "x/b", "tcp", 80)},
		},
		{
			name:     "a pod can always reach itself",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))},
			flows:    []flow{allowed("x/a", "x/a", "tcp", 80), allowed("x/a", "x/a", "udp", 53), denied("x/a", "x/b", "tcp", 80)},
		},
	})
}

func TestPorts(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{
			name:     "ports absent: every port and protocol, ICMP included",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y"))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 1), allowed("y/a", "x/a", "udp", 65535), allowed("y/a", "x/a", "sctp", 9), allowed("y/a", "x/a", "icmp", 0)},
		},
		{
			name:     "ports given: only those, and never ICMP",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Port(tcp, 80), objects.Port(udp, 53))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), allowed("y/a", "x/a", "udp", 53), denied("y/a", "x/a", "udp", 80), denied("y/a", "x/a", "tcp", 53), denied("y/a", "x/a", "icmp", 0)},
		},
		{
			name:     "protocol defaults to TCP",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.TCPDefault(80))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("y/a", "x/a", "udp", 80), denied("y/a", "x/a", "sctp", 80)},
		},
		{
			name:     "SCTP is never TCP",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Port(sctp, 80))))},
			flows:    []flow{allowed("y/a", "x/a", "sctp", 80), denied("y/a", "x/a", "tcp", 80), denied("y/a", "x/a", "udp", 80)},
		},
		{
			name:     "a protocol without a port means every port of that protocol",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.AnyPortOf(udp))))},
			flows:    []flow{allowed("y/a", "x/a", "udp", 1), allowed("y/a", "x/a", "udp", 65535), denied("y/a", "x/a", "tcp", 80)},
		},
		{
			name:     "endPort makes an inclusive range",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.PortRange(tcp, 8000, 8002))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 7999), allowed("y/a", "x/a", "tcp", 8000), allowed("y/a", "x/a", "tcp", 8002), denied("y/a", "x/a", "tcp", 8003), denied("y/a", "x/a", "udp", 8001)},
		},
		{
			name:     "egress ports apply to the destination port",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Types(networkingv1.PolicyTypeEgress), objects.Egress(objects.To(objects.NamespacesLabelled("ns", "z")), objects.Ports(objects.Port(tcp, 81))))},
			flows:    []flow{allowed("x/a", "z/b", "tcp", 81), denied("x/a", "z/b", "tcp", 80), denied("x/a", "y/b", "tcp", 81)},
		},
	})
}

func TestNamedPorts(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{
			name:     "ingress named port resolves on each target pod, which may map it to different numbers",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Named(tcp, "http"))))},
			tweak: map[string][]objects.PodOption{
				"x/a": {objects.NamedPort("http", tcp, 8080)},
				"x/b": {objects.NamedPort("http", tcp, 9090)},
			},
			flows: []flow{
				allowed("y/a", "x/a", "tcp", 8080), denied("y/a", "x/a", "tcp", 9090),
				allowed("y/a", "x/b", "tcp", 9090), denied("y/a", "x/b", "tcp", 8080),
			},
		},
		{
			name:     "a named port matches name and protocol",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Named(udp, "dns"))))},
			tweak: map[string][]objects.PodOption{
				"x/a": {objects.NamedPort("dns", tcp, 53)},
				"x/b": {objects.NamedPort("dns", udp, 5353)},
			},
			flows: []flow{denied("y/a", "x/a", "tcp", 53), denied("y/a", "x/a", "udp", 53), allowed("y/a", "x/b", "udp", 5353), denied("y/a", "x/b", "tcp", 5353)},
		},
		{
			name:     "named ports of every container count, restartable init containers too, other init containers not",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Named(tcp, "sidecar"), objects.Named(tcp, "setup"))))},
			tweak: map[string][]objects.PodOption{
				"x/a": {
					objects.Sidecar("init-sidecar", objects.ContainerPort("sidecar", objects.NoProtocol, 15000)),
					objects.InitContainer("init-setup", objects.ContainerPort("setup", objects.NoProtocol, 16000)),
				},
			},
			flows: []flow{allowed("y/a", "x/a", "tcp", 15000), denied("y/a", "x/a", "tcp", 16000)},
		},
		{
			name:     "a named port nobody defines allows nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Named(tcp, "nope"))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
		},
		{
			name:     "egress named port resolves on each destination pod",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.NamespacesLabelled("ns", "z")), objects.Ports(objects.Named(tcp, "http"))))},
			tweak: map[string][]objects.PodOption{
				"z/a": {objects.NamedPort("http", tcp, 8080)},
				"z/b": {objects.NamedPort("http", tcp, 9090)},
				"y/c": {objects.NamedPort("http", tcp, 8080)},
			},
			flows: []flow{allowed("x/a", "z/a", "tcp", 8080), denied("x/a", "z/a", "tcp", 9090), allowed("x/a", "z/b", "tcp", 9090), denied("x/a", "y/c", "tcp", 8080)},
		},
		{
			name:     "egress named port without peers resolves on every pod of the cluster",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(objects.Ports(objects.Named(tcp, "http"))))},
			tweak:    map[string][]objects.PodOption{"y/c": {objects.NamedPort("http", tcp, 8080)}},
			flows:    []flow{allowed("x/a", "y/c", "tcp", 8080), denied("x/a", "y/b", "tcp", 8080), denied("x/a", "out", "tcp", 8080)},
		},
		{
			name: "egress named port with an ipBlock peer resolves on the destination pod that owns the address",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(
				objects.To(objects.IPBlock("10.0.0.0/8", "10.0.3.2/32"), objects.IPBlock("fd00::/8", "fd00::3:2/128"), objects.IPBlock("10.200.0.0/16"), objects.IPBlock("fd00:200::/64")),
				objects.Ports(objects.Named(tcp, "http")),
			))},
			tweak: map[string][]objects.PodOption{
				"z/a": {objects.NamedPort("http", tcp, 8080)},
				"z/b": {objects.NamedPort("http", tcp, 8080)}, // its address is an except
				"z/c": {objects.NamedPort("http", tcp, 9090)},
				"y/c": {objects.NamedPort("http", udp, 8080)},
			},
			flows: []flow{
				allowed("x/a", "z/a", "tcp", 8080), denied("x/a", "z/a", "tcp", 9090), // a pod with the port, at its number
				allowed("x/a", "z/c", "tcp", 9090), denied("x/a", "z/c", "tcp", 8080), // another pod, another number
				denied("x/a", "z/b", "tcp", 8080),                                    // removed by except
				denied("x/a", "y/c", "tcp", 8080), denied("x/a", "y/b", "tcp", 8080), // the name with another protocol; no such port
				denied("x/a", "out", "tcp", 8080), denied("x/a", "out", "tcp", 9090), // an address no pod owns
			},
		},
		{
			name: "egress named port to every pod or anywhere reaches pods of every namespace",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Types(networkingv1.PolicyTypeEgress), objects.Egress(
				objects.To(objects.PodsLabelled(), objects.IPBlock("0.0.0.0/0"), objects.IPBlock("::/0")),
				objects.Ports(objects.Named(tcp, "serve-81-tcp")),
			))},
			tweak: map[string][]objects.PodOption{"x/b": {objects.NamedPort("serve-81-tcp", tcp, 81)}, "y/b": {objects.NamedPort("serve-81-tcp", tcp, 81)}, "z/c": {objects.NamedPort("serve-81-tcp", tcp, 81)}},
			flows: []flow{
				allowed("y/a", "x/b", "tcp", 81), allowed("y/a", "y/b", "tcp", 81), allowed("y/a", "z/c", "tcp", 81),
				denied("y/a", "x/a", "tcp", 81), denied("y/a", "out", "tcp", 81), denied("y/a", "x/b", "tcp", 80),
			},
		},
		{
			name: "ingress named port with an ipBlock peer resolves on the target pod, whatever the source",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(
				objects.From(objects.IPBlock("10.0.2.0/24", "10.0.2.3/32"), objects.IPBlock("fd00::2:0/112", "fd00::2:3/128"), objects.IPBlock("10.200.0.0/16"), objects.IPBlock("fd00:200::/64")),
				objects.Ports(objects.Named(tcp, "http")),
			))},
			tweak: map[string][]objects.PodOption{"x/a": {objects.NamedPort("http", tcp, 8080)}, "x/b": {objects.NamedPort("http", tcp, 9090)}},
			flows: []flow{
				allowed("y/b", "x/a", "tcp", 8080), denied("y/b", "x/a", "tcp", 9090),
				allowed("y/b", "x/b", "tcp", 9090), denied("y/b", "x/b", "tcp", 8080), // two pods, two numbers
				allowed("out", "x/a", "tcp", 8080), // a source no pod owns
				denied("y/c", "x/a", "tcp", 8080),  // removed by except
				denied("z/b", "x/a", "tcp", 8080),  // outside the block
			},
		},
		{
			name:     "numeric and named ports in one rule",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")), objects.Ports(objects.Port(tcp, 81), objects.Named(tcp, "http"))))},
			tweak:    map[string][]objects.PodOption{"x/a": {objects.NamedPort("http", tcp, 8080)}},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 81), allowed("y/a", "x/a", "tcp", 8080), denied("z/a", "x/a", "tcp", 8080), denied("y/a", "x/a", "tcp", 80)},
		},
	})
}

func TestIPBlocks(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{
			name:     "ipBlock matches any address, pod addresses included",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("10.0.2.0/24"), objects.IPBlock("fd00::2:0/112"))))},
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80), denied("out", "x/a", "tcp", 80)},
		},
		{
			name:     "ipBlock allows outside addresses",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.IPBlock("10.200.0.0/16"), objects.IPBlock("fd00:200::/64"))))},
			flows:    []flow{allowed("x/a", "out", "tcp", 443), denied("x/a", "y/b", "tcp", 80)},
		},
		{
			name:     "except narrows its own ipBlock",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("10.0.0.0/8", "10.0.2.2/32"), objects.IPBlock("fd00::/8", "fd00::2:2/128"))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80), allowed("y/c", "x/a", "tcp", 80)},
		},
		{
			name: "except narrows only its own peer: another peer may still allow the address",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(
				objects.IPBlock("10.0.0.0/8", "10.0.2.0/24"), objects.IPBlock("fd00::/8", "fd00::2:0/112"), objects.PodsLabelled("pod", "b"), objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "y"}),
			)))},
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), allowed("z/c", "x/a", "tcp", 80)},
		},
		{
			name: "except narrows only its own policy: another policy may still allow the address",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/block", objects.Ingress(objects.From(objects.IPBlock("10.0.0.0/8", "10.0.2.0/24"), objects.IPBlock("fd00::/8", "fd00::2:0/112")))),
				objects.Policy("x/pods", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")), objects.Ports(objects.Port(tcp, 81)))),
			},
			flows: []flow{denied("y/b", "x/a", "tcp", 80), allowed("y/b", "x/a", "tcp", 81), allowed("z/b", "x/a", "tcp", 80)},
		},
		{
			name:     "host bits in cidr and except are masked",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("10.0.2.77/24", "10.0.2.3/31"), objects.IPBlock("fd00::2:77/112", "fd00::2:3/127"))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		},
		{
			name:     "an IPv4 ipBlock never matches IPv6 and the reverse",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("0.0.0.0/0"))))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80)},
			v4Only:   true,
		},
	})
	rs, _ := Translate(semanticsCase{policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("0.0.0.0/0"))))}}.input())
	if rs.Allows(ruleset.Flow{Src: addr("y/a", true), Dst: addr("x/a", true), Protocol: "tcp", Port: 80}) {
		t.Errorf("an IPv4 ipBlock 0.0.0.0/0 allowed IPv6 traffic")
	}
}

// A dual-stack pod reached through an ipBlock of one family matches the named port only at the
// address inside the block.
func TestNamedPortIPBlockOnlyAtAddressesInTheBlock(t *testing.T) {
	c := semanticsCase{
		policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.IPBlock("10.0.3.0/24")), objects.Ports(objects.Named(tcp, "http"))))},
		tweak:    map[string][]objects.PodOption{"z/a": {objects.NamedPort("http", tcp, 8080)}},
	}
	rs, _ := Translate(c.input())
	for _, v6 := range []bool{false, true} {
		got := rs.Allows(ruleset.Flow{Src: addr("x/a", v6), Dst: addr("z/a", v6), Protocol: "tcp", Port: 8080})
		if got != !v6 {
			t.Errorf("x/a -> z/a tcp/8080 (ipv6=%v): allowed=%v, want %v", v6, got, !v6)
		}
	}
	want := []ruleset.Endpoint{{Addr: addr("z/a", false), Protocol: ruleset.TCP, Port: 8080}}
	if got := rs.Policies[0].Egress[0].NamedPorts; !slices.Equal(got, want) {
		t.Errorf("named-port endpoints = %v, want %v", got, want)
	}
}

func TestPodIdentity(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{
			name:     "a finished pod owns no address: it is neither target nor peer",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"))))},
			tweak:    map[string][]objects.PodOption{"x/b": {objects.Phase(corev1.PodSucceeded)}, "x/a": {objects.Phase(corev1.PodFailed)}},
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80)},
		},
		{
			name:     "a finished pod's address belongs to the new pod that reuses it, with its own policies only",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny-old", objects.Selecting("pod", "old"))},
			pods: []*corev1.Pod{
				makePod("x/a", objects.Labels("pod", "old"), objects.Phase(corev1.PodSucceeded)),
				makePod("x/b", objects.Labels("pod", "new"), objects.IPs("10.0.1.1", "fd00::1:1")),
				makePod("y/b"),
			},
			flows: []flow{allowed("y/b", "x/a", "tcp", 80)},
		},
		{
			name:     "a terminating pod keeps its addresses until it is deleted",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p")},
			tweak: map[string][]objects.PodOption{"x/a": {func(p *corev1.Pod) {
				now := metav1.Now()
				p.DeletionTimestamp = &now
			}}},
			flows: []flow{denied("y/b", "x/a", "tcp", 80)},
		},
		{
			name:     "hostNetwork pods are neither targets nor peers",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled())))},
			tweak: map[string][]objects.PodOption{
				"x/a": {objects.HostNetwork()},
				"x/c": {objects.HostNetwork()},
			},
			// x/a is not enforced as a target; neither x/a's nor x/c's address is a peer (their
			// traffic leaves from the node itself, which is never policed).
			flows: []flow{allowed("z/a", "x/a", "tcp", 80), denied("x/c", "x/b", "tcp", 80), denied("x/a", "x/b", "tcp", 80), allowed("x/b", "x/b", "tcp", 80)},
		},
		{
			name:     "a pod without an address contributes nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "c"))))},
			tweak:    map[string][]objects.PodOption{"x/c": {objects.IPs()}},
			flows:    []flow{denied("x/c", "x/a", "tcp", 80)},
		},
		{
			name:     "status.podIP is used when podIPs is empty",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "c"))))},
			tweak: map[string][]objects.PodOption{"x/c": {objects.IPs(), func(p *corev1.Pod) {
				p.Status.PodIP = "10.0.1.3"
			}}},
			flows:  []flow{allowed("x/c", "x/a", "tcp", 80), denied("x/b", "x/a", "tcp", 80)},
			v4Only: true,
		},
		{
			name:     "pods on other nodes are only peers, never enforced here",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("z/p")},
			flows:    []flow{allowed("x/a", "z/a", "tcp", 80)},
		},
		{
			name:     "pod labels never say which namespace a pod is in",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"))))},
			tweak:    map[string][]objects.PodOption{"y/b": {objects.Labels("pod", "b", "kubernetes.io/metadata.name", "x")}},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), allowed("x/b", "x/a", "tcp", 80)},
		},
	})
}

// TestBadValuesFailClosed pins the rule that values which passed (or predate) API validation but
// cannot be honoured make their peer, port or rule match nothing, while the policy still isolates
// its targets and every other policy keeps working.
func TestBadValuesFailClosed(t *testing.T) {
	badSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpIn}}}
	bogus := corev1.Protocol("ICMP")
	cases := []struct {
		semanticsCase
		problem string // a substring of the one problem reported
	}{
		{semanticsCase{
			name:     "an unparsable cidr makes its peer match nothing; the other peer still works",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("10.0.0.0/33"), objects.PodsLabelled("pod", "b"))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), allowed("x/b", "x/a", "tcp", 80), denied("out", "x/a", "tcp", 80)},
		}, "invalid ipBlock.cidr"},
		{semanticsCase{
			name:     "an except outside its cidr makes its peer match nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("10.0.0.0/16", "10.1.0.0/24"))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
		}, "not inside cidr"},
		{semanticsCase{
			name:     "an except of the other family makes its peer match nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.IPBlock("10.0.0.0/8", "fd00::/8"))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
		}, "not inside cidr"},
		{semanticsCase{
			name:     "an invalid peer selector matches nothing, never everything",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(networkingv1.NetworkPolicyPeer{PodSelector: badSel})))},
			flows:    []flow{denied("x/b", "x/a", "tcp", 80), denied("y/a", "x/a", "tcp", 80)},
		}, "invalid podSelector"},
		{semanticsCase{
			name:     "an invalid namespaceSelector matches nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(networkingv1.NetworkPolicyPeer{NamespaceSelector: badSel})))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
		}, "invalid namespaceSelector"},
		{semanticsCase{
			name:     "an empty peer matches nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(networkingv1.NetworkPolicyPeer{})))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
		}, "names no podSelector"},
		{semanticsCase{
			name: "an ipBlock combined with a selector matches nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(networkingv1.NetworkPolicyPeer{
				IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}, PodSelector: &metav1.LabelSelector{},
			})))},
			flows: []flow{denied("y/a", "x/a", "tcp", 80)},
		}, "cannot be combined"},
		{semanticsCase{
			name:     "an unknown protocol makes its port entry match nothing, not every port",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(networkingv1.NetworkPolicyPort{Protocol: &bogus})))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), denied("y/a", "x/a", "icmp", 0)},
		}, "unsupported protocol"},
		{semanticsCase{
			name:     "endPort below port matches nothing; the rule's other ports still work",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.PortRange(tcp, 90, 80), objects.Port(tcp, 81))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 85), allowed("y/a", "x/a", "tcp", 81)},
		}, "endPort 80"},
		{semanticsCase{
			name:     "a port out of range matches nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.Ports(objects.Port(tcp, 70000))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 4464)},
		}, "out of range"},
		{semanticsCase{
			name:     "an invalid target selector isolates the whole namespace and allows nothing from that policy",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.PodSelector(badSel), objects.Ingress()), objects.Policy("y/ok", objects.Ingress(objects.Ports(objects.Port(tcp, 80))))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), denied("y/a", "x/b", "tcp", 80), allowed("x/a", "y/a", "tcp", 80), denied("x/a", "y/a", "tcp", 81)},
		}, "invalid spec.podSelector"},
		{semanticsCase{
			name:     "an unknown policyType isolates both directions",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Types("Sideways"), objects.Ingress())},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("x/a", "y/a", "tcp", 80)},
		}, "unknown policyType"},
		{semanticsCase{
			name:     "an unparsable pod address is ignored; the pod's other address still counts",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"))))},
			tweak:    map[string][]objects.PodOption{"x/b": {objects.IPs("10.0.1.2", "not-an-ip")}},
			flows:    []flow{allowed("x/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80)},
			v4Only:   true,
		}, "unparsable pod IP"},
	}
	for _, c := range cases {
		runSemantics(t, []semanticsCase{c.semanticsCase})
		_, problems := Translate(c.input())
		if len(problems) != 1 || !strings.Contains(problems[0].String(), c.problem) {
			t.Errorf("%s: problems = %v, want one containing %q", c.name, problems, c.problem)
		}
	}
}
