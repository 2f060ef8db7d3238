//go:build linux

package e2e

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Builders for NetworkPolicies written as scenario data. Namespaces are logical (x, y, z); a
// selector value "$y" stands for the actual name of namespace y in the running scenario (for
// kubernetes.io/metadata.name selectors) and is resolved when the policy is created.

const nameLabel = "kubernetes.io/metadata.name"

type npOpt func(*networkingv1.NetworkPolicy)

// policy is a NetworkPolicy in logical namespace ns selecting target (nil: every pod, `{}`).
func policy(ns, name string, target *metav1.LabelSelector, opts ...npOpt) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if target != nil {
		np.Spec.PodSelector = *target
	}
	for _, o := range opts {
		o(np)
	}
	return np
}

// ingress adds Ingress to policyTypes and sets the ingress rules; with no rules the policy
// isolates its targets for ingress and allows nothing (`ingress: []`), as upstream's
// SetSpecIngressRules() does.
func ingress(rules ...networkingv1.NetworkPolicyIngressRule) npOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		np.Spec.Ingress = append([]networkingv1.NetworkPolicyIngressRule{}, rules...)
	}
}

// egress is ingress for egress.
func egress(rules ...networkingv1.NetworkPolicyEgressRule) npOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		np.Spec.Egress = append([]networkingv1.NetworkPolicyEgressRule{}, rules...)
	}
}

// in is an ingress rule; nil peers means every source.
func in(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

// out is an egress rule; nil peers means every destination.
func out(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }

// labels is a matchLabels selector from key, value pairs; labels() is `{}`.
func labels(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	if len(kv) > 0 {
		s.MatchLabels = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

// expr is a selector with one matchExpressions requirement.
func expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func podsWith(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func namespacesWith(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

// podsIn is one peer with both selectors: the pods matching pod in the namespaces matching ns.
func podsIn(ns, pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
}

func cidr(c string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c, Except: except}}
}

// hostCIDRs are two ipBlock peers: the pod's IPv4 /32 and IPv6 /128.
func hostCIDRs(id string) []networkingv1.NetworkPolicyPeer {
	v4, v6 := podAddrs(id)
	return peers(cidr(v4.String()+"/32"), cidr(v6.String()+"/128"))
}

func proto(p corev1.Protocol) *corev1.Protocol { return &p }

// port is a numeric port with a protocol; portOnly leaves the protocol out (the API default is TCP).
func port(p corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: proto(p), Port: &v}
}

func portOnly(n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

// portRange is first..last (endPort) without a protocol (TCP by default).
func portRange(first, last int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(first)
	return networkingv1.NetworkPolicyPort{Port: &v, EndPort: &last}
}

// named is a named port without a protocol; namedProto with one.
func named(name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

func namedProto(p corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	np := named(name)
	np.Protocol = proto(p)
	return np
}

// anyPortOf is a protocol with no port: every port of that protocol.
func anyPortOf(p corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: proto(p)}
}

const (
	TCP  = corev1.ProtocolTCP
	UDP  = corev1.ProtocolUDP
	SCTP = corev1.ProtocolSCTP
)

// resolve returns a copy of np for the running scenario: its namespace and every "$ns" selector
// value replaced by actual namespace names.
func resolve(np *networkingv1.NetworkPolicy, nsName func(string) string) *networkingv1.NetworkPolicy {
	np = np.DeepCopy()
	np.Namespace = nsName(np.Namespace)
	fix := func(s *metav1.LabelSelector) {
		if s == nil {
			return
		}
		for k, v := range s.MatchLabels {
			if name, ok := strings.CutPrefix(v, "$"); ok {
				s.MatchLabels[k] = nsName(name)
			}
		}
		for i := range s.MatchExpressions {
			for j, v := range s.MatchExpressions[i].Values {
				if name, ok := strings.CutPrefix(v, "$"); ok {
					s.MatchExpressions[i].Values[j] = nsName(name)
				}
			}
		}
	}
	fixPeers := func(ps []networkingv1.NetworkPolicyPeer) {
		for i := range ps {
			fix(ps[i].PodSelector)
			fix(ps[i].NamespaceSelector)
		}
	}
	fix(&np.Spec.PodSelector)
	for i := range np.Spec.Ingress {
		fixPeers(np.Spec.Ingress[i].From)
	}
	for i := range np.Spec.Egress {
		fixPeers(np.Spec.Egress[i].To)
	}
	return np
}
