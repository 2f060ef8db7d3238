package objects

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// ClusterPolicyOption changes a ClusterNetworkPolicy under construction.
type ClusterPolicyOption func(*v1alpha2.ClusterNetworkPolicy)

// The rule actions, short.
const (
	Accept = v1alpha2.ClusterNetworkPolicyRuleActionAccept
	Deny   = v1alpha2.ClusterNetworkPolicyRuleActionDeny
	Pass   = v1alpha2.ClusterNetworkPolicyRuleActionPass
)

// AdminPolicy is the Admin tier ClusterNetworkPolicy name at priority whose subject is the pods
// of the namespaces subject selects (Selector() for every namespace), with opts applied in order.
func AdminPolicy(name string, priority int32, subject *metav1.LabelSelector, opts ...ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	return ClusterPolicy(name, v1alpha2.AdminTier, priority, subject, opts...)
}

// BaselinePolicy is the same in the Baseline tier.
func BaselinePolicy(name string, priority int32, subject *metav1.LabelSelector, opts ...ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	return ClusterPolicy(name, v1alpha2.BaselineTier, priority, subject, opts...)
}

// ClusterPolicy is a ClusterNetworkPolicy in any tier (an unknown one too).
func ClusterPolicy(name string, tier v1alpha2.Tier, priority int32, subject *metav1.LabelSelector, opts ...ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha2.ClusterNetworkPolicySpec{Tier: tier, Priority: priority, Subject: v1alpha2.ClusterNetworkPolicySubject{Namespaces: subject}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

// SubjectPods sets the subject to the pods podSel selects in the namespaces nsSel selects.
func SubjectPods(nsSel, podSel *metav1.LabelSelector) ClusterPolicyOption {
	return func(p *v1alpha2.ClusterNetworkPolicy) {
		p.Spec.Subject = v1alpha2.ClusterNetworkPolicySubject{Pods: &v1alpha2.NamespacedPod{NamespaceSelector: *nsSel, PodSelector: *podSel}}
	}
}

// ClusterIngress appends an ingress rule; of the peers only namespaces and pods are kept (the
// only ingress peer types).
func ClusterIngress(a v1alpha2.ClusterNetworkPolicyRuleAction, from []v1alpha2.ClusterNetworkPolicyEgressPeer, protocols ...v1alpha2.ClusterNetworkPolicyProtocol) ClusterPolicyOption {
	return func(p *v1alpha2.ClusterNetworkPolicy) {
		r := v1alpha2.ClusterNetworkPolicyIngressRule{Action: a, Protocols: protocols}
		for _, f := range from {
			r.From = append(r.From, v1alpha2.ClusterNetworkPolicyIngressPeer{Namespaces: f.Namespaces, Pods: f.Pods})
		}
		p.Spec.Ingress = append(p.Spec.Ingress, r)
	}
}

// ClusterEgress appends an egress rule.
func ClusterEgress(a v1alpha2.ClusterNetworkPolicyRuleAction, to []v1alpha2.ClusterNetworkPolicyEgressPeer, protocols ...v1alpha2.ClusterNetworkPolicyProtocol) ClusterPolicyOption {
	return func(p *v1alpha2.ClusterNetworkPolicy) {
		p.Spec.Egress = append(p.Spec.Egress, v1alpha2.ClusterNetworkPolicyEgressRule{Action: a, To: to, Protocols: protocols})
	}
}

// RuleName gives the rules that rule (ClusterIngress, ClusterEgress) appends the name name.
func RuleName(name string, rule ClusterPolicyOption) ClusterPolicyOption {
	return func(p *v1alpha2.ClusterNetworkPolicy) {
		in, out := len(p.Spec.Ingress), len(p.Spec.Egress)
		rule(p)
		for i := in; i < len(p.Spec.Ingress); i++ {
			p.Spec.Ingress[i].Name = name
		}
		for i := out; i < len(p.Spec.Egress); i++ {
			p.Spec.Egress[i].Name = name
		}
	}
}

// Peers. Each returns a one-element peer list; join lists with append for several peers.

// NamespacesPeer is every pod of the namespaces sel selects.
func NamespacesPeer(sel *metav1.LabelSelector) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return []v1alpha2.ClusterNetworkPolicyEgressPeer{{Namespaces: sel}}
}

// PodsPeer is the pods podSel selects in the namespaces nsSel selects.
func PodsPeer(nsSel, podSel *metav1.LabelSelector) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return []v1alpha2.ClusterNetworkPolicyEgressPeer{{Pods: &v1alpha2.NamespacedPod{NamespaceSelector: *nsSel, PodSelector: *podSel}}}
}

// NetworksPeer is the CIDRs.
func NetworksPeer(cidrs ...string) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	var p v1alpha2.ClusterNetworkPolicyEgressPeer
	for _, c := range cidrs {
		p.Networks = append(p.Networks, v1alpha2.CIDR(c))
	}
	return []v1alpha2.ClusterNetworkPolicyEgressPeer{p}
}

// NodesPeer is the addresses of the Nodes sel selects.
func NodesPeer(sel *metav1.LabelSelector) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return []v1alpha2.ClusterNetworkPolicyEgressPeer{{Nodes: sel}}
}

// DomainNamesPeer is domain names (which the agent does not support: the rule fails closed).
func DomainNamesPeer(names ...string) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	var p v1alpha2.ClusterNetworkPolicyEgressPeer
	for _, n := range names {
		p.DomainNames = append(p.DomainNames, v1alpha2.DomainName(n))
	}
	return []v1alpha2.ClusterNetworkPolicyEgressPeer{p}
}

// Protocols.

// TCPPort is TCP destination port n; TCPPort(0) is every TCP port.
func TCPPort(n int32) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: port(n)}}
}

// UDPPort is UDP destination port n; UDPPort(0) is every UDP port.
func UDPPort(n int32) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: port(n)}}
}

// SCTPPort is SCTP destination port n; SCTPPort(0) is every SCTP port.
func SCTPPort(n int32) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{SCTP: &v1alpha2.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port(n)}}
}

// UDPRange is UDP destination ports first to last.
func UDPRange(first, last int32) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{
		DestinationPort: portRange(first, last)}}
}

// TCPRange is TCP destination ports first to last.
func TCPRange(first, last int32) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{
		DestinationPort: portRange(first, last)}}
}

// SCTPRange is SCTP destination ports first to last.
func SCTPRange(first, last int32) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{SCTP: &v1alpha2.ClusterNetworkPolicyProtocolSCTP{
		DestinationPort: portRange(first, last)}}
}

func portRange(first, last int32) *v1alpha2.Port {
	return &v1alpha2.Port{Range: &v1alpha2.PortRange{Start: first, End: last}}
}

// NamedDestination is the destination's container port called name.
func NamedDestination(name string) v1alpha2.ClusterNetworkPolicyProtocol {
	return v1alpha2.ClusterNetworkPolicyProtocol{DestinationNamedPort: name}
}

func port(n int32) *v1alpha2.Port {
	if n == 0 {
		return nil
	}
	return &v1alpha2.Port{Number: n}
}

// Node is a Node labelled kv with the InternalIP addresses given (and its name as Hostname).
func Node(name string, labels []string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: LabelMap(labels...)}}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}
