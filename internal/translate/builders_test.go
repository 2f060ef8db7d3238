package translate

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Address plan for these tests (all inside 10.0.0.0/8 and fd00::/8):
//
//	pods:     namespace x, y, z -> 10.0.1.n, 10.0.2.n, 10.0.3.n and fd00::1:n, fd00::2:n, fd00::3:n
//	          where n is 1, 2, 3 for pods a, b, c
//	nodes:    pods x/a, x/b, y/a are on localNode; every other pod on remoteNode
//	outside:  10.200.0.1 and fd00:200::1 belong to no pod
const (
	localNode  = "node-a"
	remoteNode = "node-b"
)

var (
	outside4 = netip.MustParseAddr("10.200.0.1")
	outside6 = netip.MustParseAddr("fd00:200::1")
)

// addr returns the planned address of pod "ns/name" ("x/a") in one family.
func addr(id string, v6 bool) netip.Addr {
	ns, name, _ := strings.Cut(id, "/")
	nsN := map[string]int{"x": 1, "y": 2, "z": 3}[ns]
	podN := int(name[0]-'a') + 1
	if nsN == 0 || podN < 1 || podN > 3 {
		panic("no planned address for " + id)
	}
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00::%d:%d", nsN, podN))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", nsN, podN))
}

func namespace(name string, kv ...string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labelMap(kv)}}
}

// standardNamespaces are x, y and z, each labelled ns=<name>.
func standardNamespaces() []*corev1.Namespace {
	return []*corev1.Namespace{namespace("x", "ns", "x"), namespace("y", "ns", "y"), namespace("z", "ns", "z")}
}

// standardPods are the nine pods of the plan, labelled pod=<name>, dual-stack, running.
func standardPods() []*corev1.Pod {
	var pods []*corev1.Pod
	for _, ns := range []string{"x", "y", "z"} {
		for _, name := range []string{"a", "b", "c"} {
			pods = append(pods, makePod(ns+"/"+name))
		}
	}
	return pods
}

type podOpt func(*corev1.Pod)

// makePod returns a running dual-stack pod with the planned addresses and label pod=<name>.
func makePod(id string, opts ...podOpt) *corev1.Pod {
	ns, name, _ := strings.Cut(id, "/")
	node := remoteNode
	if id == "x/a" || id == "x/b" || id == "y/a" {
		node = localNode
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main"}}},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIPs: []corev1.PodIP{{IP: addr(id, false).String()}, {IP: addr(id, true).String()}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withLabels(kv ...string) podOpt { return func(p *corev1.Pod) { p.Labels = labelMap(kv) } }
func onNode(n string) podOpt         { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func inPhase(ph corev1.PodPhase) podOpt {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}
func hostNetwork() podOpt { return func(p *corev1.Pod) { p.Spec.HostNetwork = true } }
func withIPs(ips ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.PodIPs = nil
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
}

// withPort adds a named container port to the pod's first container.
func withPort(name string, proto corev1.Protocol, number int32) podOpt {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: number})
	}
}

// withInitPort adds an init container with a named port; restartable makes it a sidecar.
func withInitPort(restartable bool, name string, number int32) podOpt {
	return func(p *corev1.Pod) {
		c := corev1.Container{Name: "init-" + name, Ports: []corev1.ContainerPort{{Name: name, ContainerPort: number}}}
		if restartable {
			always := corev1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

func labelMap(kv []string) map[string]string {
	if len(kv)%2 != 0 {
		panic("odd label list")
	}
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

type policyOpt func(*networkingv1.NetworkPolicy)

// makePolicy returns a policy in ns selecting every pod (podSelector: {}), with no rules and no
// policyTypes; options add to it.
func makePolicy(id string, opts ...policyOpt) *networkingv1.NetworkPolicy {
	ns, name, _ := strings.Cut(id, "/")
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, o := range opts {
		o(np)
	}
	return np
}

func selecting(kv ...string) policyOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: labelMap(kv)}
	}
}

func selectingSel(s *metav1.LabelSelector) policyOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PodSelector = *s }
}

func types(ts ...networkingv1.PolicyType) policyOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = ts }
}

// rule is an ingress or egress rule: peers and ports.
type rule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

func ingressRules(rs ...rule) policyOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
		for _, r := range rs {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: r.ports})
		}
	}
}

func egressRules(rs ...rule) policyOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
		for _, r := range rs {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: r.ports})
		}
	}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }
func ports(ps ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return ps }

func podPeer(kv ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: labelMap(kv)}}
}

func nsPeer(kv ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: labelMap(kv)}}
}

func bothPeer(podKV, nsKV []string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		PodSelector:       &metav1.LabelSelector{MatchLabels: labelMap(podKV)},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: labelMap(nsKV)},
	}
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto corev1.Protocol, p int) networkingv1.NetworkPolicyPort {
	pp := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &pp}
}

// tcpDefault is a port entry without a protocol (the API default is TCP).
func tcpDefault(p int) networkingv1.NetworkPolicyPort {
	pp := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Port: &pp}
}

func portRange(proto corev1.Protocol, first, last int) networkingv1.NetworkPolicyPort {
	np := port(proto, first)
	end := int32(last)
	np.EndPort = &end
	return np
}

func protoOnly(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

func named(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	pp := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &pp}
}
