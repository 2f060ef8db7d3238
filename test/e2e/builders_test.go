//go:build linux

package e2e

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flock-net/flock-netpol/test/objects"
)

// NetworkPolicies are written as scenario data with package test/objects. Namespaces are logical
// (x, y, z); a selector value "$y" stands for the actual name of namespace y in the running
// scenario (for kubernetes.io/metadata.name selectors) and is resolved when the policy is
// created.

const nameLabel = "kubernetes.io/metadata.name"

// hostCIDRs are two ipBlock peers: the pod's IPv4 /32 and IPv6 /128.
func hostCIDRs(id string) []networkingv1.NetworkPolicyPeer {
	v4, v6 := podAddrs(id)
	return []networkingv1.NetworkPolicyPeer{objects.IPBlock(v4.String() + "/32"), objects.IPBlock(v6.String() + "/128")}
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
