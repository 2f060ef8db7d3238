package objects_test

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/flock-net/flock-netpol/test/objects"
)

// TestPolicyShapes pins the shapes whose difference is the point of a NetworkPolicy test: absent
// versus empty rule lists, absent versus explicit protocols.
func TestPolicyShapes(t *testing.T) {
	cases := []struct {
		name string
		got  *networkingv1.NetworkPolicy
		want networkingv1.NetworkPolicySpec
	}{
		{"minimal manifest", objects.Policy("x/p"), networkingv1.NetworkPolicySpec{}},
		{"IsolateIngress without rules is ingress: []", objects.Policy("x/p", objects.IsolateIngress()),
			networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress"}, Ingress: []networkingv1.NetworkPolicyIngressRule{}}},
		{"Ingress() is ingress: [{}]", objects.Policy("x/p", objects.Ingress()),
			networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}},
		{"ports with and without a protocol", objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(
			objects.To(objects.IPBlock("10.0.0.0/8", "10.1.0.0/16")),
			objects.Ports(objects.TCPDefault(80), objects.PortRange(objects.NoProtocol, 81, 82), objects.Named(corev1.ProtocolUDP, "dns")),
		)), networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}},
				Ports: []networkingv1.NetworkPolicyPort{
					{Port: ptr.To(intstr.FromInt32(80))},
					{Port: ptr.To(intstr.FromInt32(81)), EndPort: ptr.To[int32](82)},
					{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromString("dns"))},
				},
			}},
		}},
	}
	for _, c := range cases {
		if c.got.Namespace != "x" || c.got.Name != "p" || !reflect.DeepEqual(c.got.Spec, c.want) {
			t.Errorf("%s: got %s/%s %+v, want x/p %+v", c.name, c.got.Namespace, c.got.Name, c.got.Spec, c.want)
		}
	}
}

func TestPodStartsBare(t *testing.T) {
	want := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a"}}
	if got := objects.Pod("x/a"); !reflect.DeepEqual(got, want) {
		t.Errorf("Pod(x/a) = %+v, want only namespace and name", got)
	}
	p := objects.Pod("x/a", objects.NamedPort("http", corev1.ProtocolTCP, 80))
	if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Name != "main" || p.Spec.Containers[0].Ports[0].Name != "http" {
		t.Errorf("NamedPort on a pod without containers: %+v", p.Spec.Containers)
	}
}

// TestClusterPolicyRuleNamesAndRanges pins RuleName (it names the rules its option appends, in
// either direction) and the range protocols.
func TestClusterPolicyRuleNamesAndRanges(t *testing.T) {
	all := objects.Selector()
	p := objects.AdminPolicy("p", 1, all,
		objects.ClusterIngress(objects.Deny, objects.NamespacesPeer(all)),
		objects.RuleName("out", objects.ClusterEgress(objects.Accept, objects.NamespacesPeer(all),
			objects.TCPRange(80, 8080), objects.SCTPRange(9003, 9005))),
		objects.RuleName("in", objects.ClusterIngress(objects.Pass, objects.NamespacesPeer(all))))
	if p.Spec.Ingress[0].Name != "" || p.Spec.Ingress[1].Name != "in" || p.Spec.Egress[0].Name != "out" {
		t.Errorf("rule names: ingress %q %q, egress %q", p.Spec.Ingress[0].Name, p.Spec.Ingress[1].Name, p.Spec.Egress[0].Name)
	}
	ps := p.Spec.Egress[0].Protocols
	if r := ps[0].TCP.DestinationPort.Range; r == nil || r.Start != 80 || r.End != 8080 || ps[0].UDP != nil {
		t.Errorf("TCPRange(80, 8080) = %+v", ps[0])
	}
	if r := ps[1].SCTP.DestinationPort.Range; r == nil || r.Start != 9003 || r.End != 9005 {
		t.Errorf("SCTPRange(9003, 9005) = %+v", ps[1])
	}
}
