//go:build linux

package datapath

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/test/netns"
)

// Small builders for NetworkPolicy objects. A policy starts as the API would store a minimal
// manifest: podSelector {} (every pod of its namespace), no policyTypes, no rules; options add to
// it. Nothing is defaulted here: the translator must do that itself.

type policyOpt func(*networkingv1.NetworkPolicy)

type (
	peer = networkingv1.NetworkPolicyPeer
	port = networkingv1.NetworkPolicyPort
)

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

// policy returns the NetworkPolicy "ns/name".
func policy(id string, opts ...policyOpt) *networkingv1.NetworkPolicy {
	ns, name, ok := strings.Cut(id, "/")
	if !ok {
		panic("policy id must be ns/name: " + id)
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, o := range opts {
		o(np)
	}
	return np
}

// selecting sets spec.podSelector to matchLabels kv.
func selecting(kv ...string) policyOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: labels(kv)}
	}
}

func policyTypes(ts ...networkingv1.PolicyType) policyOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = ts }
}

const (
	ingressType = networkingv1.PolicyTypeIngress
	egressType  = networkingv1.PolicyTypeEgress
)

// ingressRule appends an ingress rule; nil peers means `from` absent (every source), no ports
// means every port and protocol. ingressRule(nil) is `ingress: [{}]`.
func ingressRule(from []peer, ports ...port) policyOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: from, Ports: ports})
	}
}

// egressRule appends an egress rule, like ingressRule.
func egressRule(to []peer, ports ...port) policyOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports})
	}
}

// noEgressRules sets `egress: []` (present but empty).
func noEgressRules() policyOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{} }
}

func peers(ps ...peer) []peer { return ps }

// podsLabelled is a peer with only a podSelector: pods of the policy's own namespace.
func podsLabelled(kv ...string) peer {
	return peer{PodSelector: &metav1.LabelSelector{MatchLabels: labels(kv)}}
}

// namespacesLabelled is a peer with only a namespaceSelector; no labels means every namespace.
func namespacesLabelled(kv ...string) peer {
	return peer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels(kv)}}
}

// podsInNamespaces is a peer with both selectors (ANDed).
func podsInNamespaces(podKV, nsKV []string) peer {
	return peer{
		PodSelector:       &metav1.LabelSelector{MatchLabels: labels(podKV)},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels(nsKV)},
	}
}

func ipBlock(cidr string, except ...string) peer {
	return peer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// portOf is a numeric port entry with an explicit protocol.
func portOf(proto corev1.Protocol, n int32) port {
	p := intstr.FromInt32(n)
	return port{Protocol: &proto, Port: &p}
}

// tcpDefault is a numeric port entry without a protocol (the API default is TCP).
func tcpDefault(n int32) port {
	p := intstr.FromInt32(n)
	return port{Port: &p}
}

func portRange(proto corev1.Protocol, first, last int32) port {
	p := portOf(proto, first)
	p.EndPort = &last
	return p
}

// allPortsOf is a port entry with a protocol and no port: every port of that protocol.
func allPortsOf(proto corev1.Protocol) port { return port{Protocol: &proto} }

func namedPort(proto corev1.Protocol, name string) port {
	p := intstr.FromString(name)
	return port{Protocol: &proto, Port: &p}
}

func labels(kv []string) map[string]string {
	if len(kv)%2 != 0 {
		panic("odd label list")
	}
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// truthTable parses a hand-written reachability table in the layout the bed prints (and the
// Kubernetes network policy e2e tests use): a header row of destination names, then one row per
// source, each cell one character per kind in kinds order ('.' reachable, 'X' blocked) and
// "----" on the diagonal. Every endpoint must appear exactly once as a row and as a column.
// Text after '#' on a line is a comment.
func truthTable(eps []netns.Endpoint, kinds []netns.Kind, text string) (func(from, to netns.Endpoint, k netns.Kind) bool, error) {
	var names []string
	for _, e := range eps {
		names = append(names, e.Name())
	}
	var lines [][]string
	for _, l := range strings.Split(text, "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, f)
		}
	}
	if len(lines) == 0 || lines[0][0] != `from\to` {
		return nil, fmt.Errorf(`table must start with a "from\to" header row`)
	}
	cols := lines[0][1:]
	if !sameNames(cols, names) {
		return nil, fmt.Errorf("columns %v, want each of %v once", cols, names)
	}
	cells := map[[2]string]string{}
	var rows []string
	for _, row := range lines[1:] {
		from := row[0]
		rows = append(rows, from)
		if len(row)-1 != len(cols) {
			return nil, fmt.Errorf("row %s has %d cells, want %d", from, len(row)-1, len(cols))
		}
		for i, cell := range row[1:] {
			to := cols[i]
			if len(cell) != len(kinds) {
				return nil, fmt.Errorf("cell %s -> %s is %q, want %d characters", from, to, cell, len(kinds))
			}
			if from == to {
				if cell != strings.Repeat("-", len(kinds)) {
					return nil, fmt.Errorf("cell %s -> %s is %q, want dashes (never probed)", from, to, cell)
				}
				continue
			}
			if strings.Trim(cell, ".X") != "" {
				return nil, fmt.Errorf("cell %s -> %s is %q, want only '.' and 'X'", from, to, cell)
			}
			cells[[2]string{from, to}] = cell
		}
	}
	if !sameNames(rows, names) {
		return nil, fmt.Errorf("rows %v, want each of %v once", rows, names)
	}
	return func(from, to netns.Endpoint, k netns.Kind) bool {
		cell, ok := cells[[2]string{from.Name(), to.Name()}]
		i := slices.Index(kinds, k)
		if !ok || i < 0 {
			panic(fmt.Sprintf("truth table has no cell for %s -> %s %s", from.Name(), to.Name(), k))
		}
		return cell[i] == '.'
	}, nil
}

func sameNames(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}
