package objects

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PolicyOption changes a NetworkPolicy under construction.
type PolicyOption func(*networkingv1.NetworkPolicy)

// Policy is the NetworkPolicy "namespace/name" with opts applied in order. Without options it is
// what the API stores for a minimal manifest: podSelector {} (every pod of its namespace), no
// policyTypes, no ingress or egress rules (both absent).
func Policy(id string, opts ...PolicyOption) *networkingv1.NetworkPolicy {
	ns, name := split(id)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, o := range opts {
		o(np)
	}
	return np
}

// Selecting sets spec.podSelector to matchLabels kv.
func Selecting(kv ...string) PolicyOption {
	return PodSelector(Selector(kv...))
}

// PodSelector sets spec.podSelector to s; nil is `{}`.
func PodSelector(s *metav1.LabelSelector) PolicyOption {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PodSelector = metav1.LabelSelector{}
		if s != nil {
			np.Spec.PodSelector = *s
		}
	}
}

// Types appends to spec.policyTypes.
func Types(ts ...networkingv1.PolicyType) PolicyOption {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, ts...) }
}

// Ingress appends one ingress rule. Ingress() is the rule `{}`, which allows every source on
// every port.
func Ingress(opts ...RuleOption) PolicyOption {
	return func(np *networkingv1.NetworkPolicy) {
		r := newRule(opts)
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: r.ports})
	}
}

// Egress appends one egress rule. Egress() is the rule `{}`, which allows every destination on
// every port.
func Egress(opts ...RuleOption) PolicyOption {
	return func(np *networkingv1.NetworkPolicy) {
		r := newRule(opts)
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: r.ports})
	}
}

// NoIngress sets `ingress: []`: present and empty, dropping rules added before.
func NoIngress() PolicyOption {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{} }
}

// NoEgress sets `egress: []`: present and empty, dropping rules added before.
func NoEgress() PolicyOption {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{} }
}

// IsolateIngress appends Ingress to spec.policyTypes and makes the ingress rules exactly rules
// (Ingress options; none: `ingress: []`, which allows nothing), as the upstream e2e tests'
// SetSpecIngressRules does.
func IsolateIngress(rules ...PolicyOption) PolicyOption {
	return isolate(networkingv1.PolicyTypeIngress, NoIngress(), rules)
}

// IsolateEgress is IsolateIngress for egress.
func IsolateEgress(rules ...PolicyOption) PolicyOption {
	return isolate(networkingv1.PolicyTypeEgress, NoEgress(), rules)
}

func isolate(t networkingv1.PolicyType, clear PolicyOption, rules []PolicyOption) PolicyOption {
	return func(np *networkingv1.NetworkPolicy) {
		Types(t)(np)
		clear(np)
		for _, r := range rules {
			r(np)
		}
	}
}

// rule is an ingress or egress rule under construction.
type rule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

func newRule(opts []RuleOption) rule {
	var r rule
	for _, o := range opts {
		o(&r)
	}
	return r
}

// RuleOption changes an ingress or egress rule under construction.
type RuleOption func(*rule)

// From appends peers to an ingress rule's from list (To is the same for egress). With no peers
// at all the list stays absent: every source.
func From(peers ...networkingv1.NetworkPolicyPeer) RuleOption {
	return func(r *rule) { r.peers = append(r.peers, peers...) }
}

// To appends peers to an egress rule's to list; it is From under the name egress rules use.
func To(peers ...networkingv1.NetworkPolicyPeer) RuleOption { return From(peers...) }

// Ports appends port entries to a rule. With none at all the list stays absent: every port and
// protocol.
func Ports(ports ...networkingv1.NetworkPolicyPort) RuleOption {
	return func(r *rule) { r.ports = append(r.ports, ports...) }
}

// Peer is a peer with the given selectors; nil leaves a selector out.
func Peer(pods, namespaces *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: pods, NamespaceSelector: namespaces}
}

// PodsLabelled is a peer with only a podSelector (matchLabels kv): pods of the policy's own
// namespace; no labels means every pod there.
func PodsLabelled(kv ...string) networkingv1.NetworkPolicyPeer { return Peer(Selector(kv...), nil) }

// NamespacesLabelled is a peer with only a namespaceSelector (matchLabels kv); no labels means
// every namespace.
func NamespacesLabelled(kv ...string) networkingv1.NetworkPolicyPeer {
	return Peer(nil, Selector(kv...))
}

// PodsInNamespaces is a peer with both selectors (ANDed): pods labelled podKV in namespaces
// labelled nsKV.
func PodsInNamespaces(podKV, nsKV []string) networkingv1.NetworkPolicyPeer {
	return Peer(Selector(podKV...), Selector(nsKV...))
}

// IPBlock is an ipBlock peer.
func IPBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// NoProtocol, as the proto of a port entry, leaves spec...ports[].protocol out (the API server
// defaults it to TCP; the agent must do the same).
const NoProtocol corev1.Protocol = ""

func protocol(p corev1.Protocol) *corev1.Protocol {
	if p == NoProtocol {
		return nil
	}
	return &p
}

// Port is a numeric port entry; proto NoProtocol leaves the protocol out.
func Port(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: protocol(proto), Port: &p}
}

// TCPDefault is a numeric port entry without a protocol (the API default is TCP).
func TCPDefault(n int32) networkingv1.NetworkPolicyPort { return Port(NoProtocol, n) }

// PortRange is the range first..last (port and endPort); proto NoProtocol leaves the protocol
// out.
func PortRange(proto corev1.Protocol, first, last int32) networkingv1.NetworkPolicyPort {
	p := Port(proto, first)
	p.EndPort = &last
	return p
}

// AnyPortOf is a port entry with a protocol and no port: every port of that protocol.
func AnyPortOf(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: protocol(proto)}
}

// Named is a named port entry, resolved on each pod the rule reaches; proto NoProtocol leaves the
// protocol out.
func Named(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: protocol(proto), Port: &p}
}

// Annotated sets an annotation of the policy (its mode, for one).
func Annotated(key, value string) PolicyOption {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Annotations == nil {
			np.Annotations = map[string]string{}
		}
		np.Annotations[key] = value
	}
}
