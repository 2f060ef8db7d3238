package translate

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/nftcheck"
	"github.com/flock-net/flock-netpol/test/objects"
)

// hostileCase is one entry of the hostile corpus: objects that the API server would reject, or
// that predate its validation, written straight into etcd. Every case isolates x/a (local) with a
// policy of namespace x, and runs beside the guard policy y/guard, which must keep working.
type hostileCase struct {
	semanticsCase
	// podCIDRs are the node's pod ranges (none by default).
	podCIDRs []netip.Prefix
	// problem, when set, is a substring of one of the problems the translator reports.
	problem string
}

// guard is the good policy of another namespace: y/a (local) accepts x/c (remote, untouched by
// every case) on tcp/80 only.
var guard = objects.Policy("y/guard", objects.Selecting("pod", "a"),
	objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "c"}, []string{"ns", "x"})), objects.Ports(objects.Port(tcp, 80))))

// guardFlows are what every case must still allow and deny: the guard works, and nothing turned
// x/a's isolation into "allow all".
var guardFlows = []flow{
	allowed("x/c", "y/a", "tcp", 80), denied("x/c", "y/a", "tcp", 81), denied("z/a", "y/a", "tcp", 80),
	denied("out", "x/a", "tcp", 9999), denied("out", "x/a", "udp", 9999), denied("out", "x/a", "icmp", 0),
}

// hostileEndpoint is endpoint, or the address itself when id is one (v4Only cases).
func hostileEndpoint(id string, v6 bool) netip.Addr {
	if a, err := netip.ParseAddr(id); err == nil {
		return a
	}
	return endpoint(id, v6)
}

func manyLabels(n int, kv ...string) map[string]string {
	m := objects.LabelMap(kv...)
	for i := range n {
		m[fmt.Sprintf("l%d.example.com/k-%d", i%7, i)] = fmt.Sprintf("v%d", i)
	}
	return m
}

func port(p networkingv1.NetworkPolicyPort, tweak func(*networkingv1.NetworkPolicyPort)) networkingv1.NetworkPolicyPort {
	tweak(&p)
	return p
}

func ptr[T any](v T) *T { return &v }

// hostileCorpus is the corpus of bad objects (issue 16). The expected outcome of each is the
// fail-closed rule (DESIGN.md, "Faults and bad input"): the bad peer, port or rule matches
// nothing, its policy still isolates its targets, every other policy keeps working.
func hostileCorpus() []hostileCase {
	fromA := func(peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(peers...)))
	}
	onPorts := func(ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
		return objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Ingress(objects.Ports(ports...)))
	}
	invalidValue := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b!"}}
	invalidKey := &metav1.LabelSelector{MatchLabels: map[string]string{"-pod": "b"}}
	existsWithValues := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpExists, Values: []string{"b"}}}}
	unknownOp := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: "Like", Values: []string{"b"}}}}

	// 5,000 policies select x/a: policy i allows 10.200.(i/256).(i%256) on tcp/(80 + i%10); one of
	// them has an unparsable cidr.
	var many []*networkingv1.NetworkPolicy
	for i := range 5000 {
		cidr := fmt.Sprintf("10.200.%d.%d/32", i/256, i%256)
		if i == 2500 {
			cidr = "10.200.9.196/33"
		}
		many = append(many, objects.Policy(fmt.Sprintf("x/p%04d", i), objects.Selecting("pod", "a"),
			objects.Ingress(objects.From(objects.IPBlock(cidr)), objects.Ports(objects.Port(tcp, int32(80+i%10))))))
	}
	// 20,000 ipBlocks in one rule (every other address of 10.100.0.0/16, so that none merge),
	// y/a's address among them, and one unparsable.
	blocks := []networkingv1.NetworkPolicyPeer{objects.IPBlock("10.0.2.1/32"), objects.IPBlock("10.0.2.0/33")}
	for i := range 20000 {
		blocks = append(blocks, objects.IPBlock(fmt.Sprintf("10.100.%d.%d/32", i*2/256, i*2%256)))
	}
	// 200 named ports over 20 containers: every name twice, with two numbers.
	var containers []corev1.Container
	for c := range 20 {
		ctr := corev1.Container{Name: fmt.Sprintf("c%d", c)}
		for p := range 10 {
			k := (c%10)*10 + p // names p0..p99, each in container c and c+10
			ctr.Ports = append(ctr.Ports, corev1.ContainerPort{Name: fmt.Sprintf("p%d", k), Protocol: tcp, ContainerPort: int32(1000*(1+c/10) + k)})
		}
		containers = append(containers, ctr)
	}
	containers[0].Ports = append(containers[0].Ports, corev1.ContainerPort{Name: "p7", Protocol: udp, ContainerPort: 3007})

	return []hostileCase{
		{semanticsCase: semanticsCase{
			name:     "host bits in cidr and except are masked (the API's legacy meaning), never widened",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("10.0.2.77/24", "10.0.2.2/31"), objects.IPBlock("fd00::2:77/112", "fd00::2:2/127"))},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		}},
		{semanticsCase: semanticsCase{
			name:     "leading zeros in a cidr's address make its peer match nothing; the rule's other peer works",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("010.000.002.000/24"), objects.PodsLabelled("pod", "b"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), allowed("x/b", "x/a", "tcp", 80)},
			v4Only:   true,
		}, problem: "leading zero"},
		{semanticsCase: semanticsCase{
			name:     "leading zeros in a prefix length make the peer match nothing",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("10.0.2.0/024"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
			v4Only:   true,
		}, problem: "bad bits"},
		{semanticsCase: semanticsCase{
			name:     "leading zeros in an except make the whole peer match nothing, not the cidr without its hole",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("10.0.0.0/8", "010.0.2.0/24"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
			v4Only:   true,
		}, problem: "invalid ipBlock.except"},
		{semanticsCase: semanticsCase{
			name:     "an except outside its cidr makes the peer match nothing",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("10.0.2.0/24", "10.0.3.0/24"), objects.IPBlock("fd00::2:0/112", "fd00::3:0/112"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), denied("z/a", "x/a", "tcp", 80)},
		}, problem: "not inside cidr"},
		{semanticsCase: semanticsCase{
			name:     "an except wider than its cidr makes the peer match nothing",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("10.0.2.0/24", "10.0.0.0/8"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
			v4Only:   true,
		}, problem: "not inside cidr"},
		{semanticsCase: semanticsCase{
			name:     "an except equal to its cidr leaves nothing to match",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("10.0.2.0/24", "10.0.2.0/24"), objects.IPBlock("fd00::2:0/112", "fd00::2:0/112"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80)},
		}},
		{semanticsCase: semanticsCase{
			name:     "::ffff:-mapped cidr and except mean their IPv4 range",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("::ffff:10.0.0.0/110", "::ffff:10.0.2.0/120"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80), allowed("z/a", "x/a", "tcp", 80), denied("out", "x/a", "tcp", 80)},
			v4Only:   true,
		}},
		{semanticsCase: semanticsCase{
			name:     "a ::ffff:-mapped cidr matches its IPv4 range, never IPv6 addresses",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("::ffff:10.0.2.0/120"))},
			flows:    []flow{allowed("10.0.2.2", "x/a", "tcp", 80), denied("fd00::2:2", "x/a", "tcp", 80), denied("::ffff:10.0.3.1", "x/a", "tcp", 80)},
			v4Only:   true,
		}},
		{semanticsCase: semanticsCase{
			name:     "a zone in a cidr makes the peer match nothing",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.IPBlock("fd00::2:0%eth0/112"))},
			flows:    []flow{denied("y/a", "x/a", "tcp", 80)},
		}, problem: "zones"},
		{semanticsCase: semanticsCase{
			name:     "an invalid label value in a peer's podSelector matches nothing, never everything",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.Peer(invalidValue, nil))},
			flows:    []flow{denied("x/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80)},
		}, problem: "invalid podSelector"},
		{semanticsCase: semanticsCase{
			name:     "an invalid label key in a peer's namespaceSelector matches nothing",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.Peer(nil, invalidKey))},
			flows:    []flow{denied("x/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80)},
		}, problem: "invalid namespaceSelector"},
		{semanticsCase: semanticsCase{
			name:     "Exists with values, or an unknown operator, matches nothing; the rule's good peer works",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.Peer(existsWithValues, nil), objects.Peer(unknownOp, objects.Selector()), objects.PodsInNamespaces([]string{"pod", "b"}, []string{"ns", "y"}))},
			flows:    []flow{denied("x/b", "x/a", "tcp", 80), allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80)},
		}, problem: "invalid podSelector"},
		{semanticsCase: semanticsCase{
			name:     "an invalid spec.podSelector isolates every pod of its namespace and allows nothing",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.PodSelector(invalidValue), objects.Ingress())},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("y/b", "x/b", "tcp", 80), denied("x/b", "x/a", "tcp", 80)},
		}, problem: "invalid spec.podSelector"},
		{semanticsCase: semanticsCase{
			name: "1,000 labels on a pod: selectors still match exactly",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("l3.example.com/k-3", "v3"),
				objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"l5.example.com/k-999", "v999"}, nil))))},
			tweak: map[string][]objects.PodOption{
				"x/a": {func(p *corev1.Pod) { p.Labels = manyLabels(1000, "pod", "a") }},
				"y/b": {func(p *corev1.Pod) { p.Labels = manyLabels(1000, "pod", "b") }},
			},
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), allowed("y/b", "x/b", "tcp", 80)},
		}},
		{semanticsCase: semanticsCase{
			name:     "5,000 policies select one pod; the one with a bad cidr matches nothing, the others work",
			policies: many,
			flows:    []flow{allowed("10.200.0.1", "x/a", "tcp", 81), denied("10.200.0.1", "x/a", "tcp", 80), denied("10.200.9.196", "x/a", "tcp", 80), allowed("10.200.19.135", "x/a", "tcp", 89), denied("10.200.19.135", "x/a", "tcp", 88)},
			v4Only:   true,
		}, problem: "x/p2500: spec.ingress[0].from[0] matches nothing"},
		{semanticsCase: semanticsCase{
			name:     "200 named ports over 20 containers with conflicting numbers: the name means each number the pod gives it, for its protocol, and nothing else",
			policies: []*networkingv1.NetworkPolicy{onPorts(objects.Named(tcp, "p7"))},
			tweak:    map[string][]objects.PodOption{"x/a": {func(p *corev1.Pod) { p.Spec.Containers = containers }}},
			flows:    []flow{allowed("y/b", "x/a", "tcp", 1007), allowed("y/b", "x/a", "tcp", 2007), denied("y/b", "x/a", "tcp", 1008), denied("y/b", "x/a", "udp", 3007), denied("y/b", "x/a", "tcp", 3007)},
		}},
		{semanticsCase: semanticsCase{
			name:     "endPort below port matches nothing; the rule's other port works",
			policies: []*networkingv1.NetworkPolicy{onPorts(objects.PortRange(tcp, 90, 80), objects.Port(udp, 53))},
			flows:    []flow{denied("y/b", "x/a", "tcp", 85), denied("y/b", "x/a", "tcp", 90), allowed("y/b", "x/a", "udp", 53)},
		}, problem: "endPort 80 must be between"},
		{semanticsCase: semanticsCase{
			name:     "port 0 matches nothing, not every port",
			policies: []*networkingv1.NetworkPolicy{onPorts(objects.Port(tcp, 0))},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 0)},
		}, problem: "port 0 out of range"},
		{semanticsCase: semanticsCase{
			name:     "a negative port, an endPort past 65535, an endPort without port match nothing",
			policies: []*networkingv1.NetworkPolicy{onPorts(objects.Port(tcp, -80), objects.PortRange(tcp, 80, 70000), port(objects.AnyPortOf(udp), func(p *networkingv1.NetworkPolicyPort) { p.EndPort = ptr[int32](90) }))},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("y/b", "x/a", "udp", 85)},
		}, problem: "endPort 90 without port"},
		{semanticsCase: semanticsCase{
			name:     "unknown protocols (ICMP, lower-case tcp) match nothing, not every port",
			policies: []*networkingv1.NetworkPolicy{onPorts(objects.Port("ICMP", 80), objects.Port("tcp", 80), objects.AnyPortOf("ALL"))},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("y/b", "x/a", "icmp", 0), denied("y/b", "x/a", "udp", 80)},
		}, problem: "unsupported protocol"},
		{semanticsCase: semanticsCase{
			name: "a named port with endPort, or an empty name, matches nothing",
			policies: []*networkingv1.NetworkPolicy{onPorts(port(objects.Named(tcp, "http"), func(p *networkingv1.NetworkPolicyPort) { p.EndPort = ptr[int32](9000) }),
				networkingv1.NetworkPolicyPort{Port: ptr(intstr.FromString(""))})},
			tweak: map[string][]objects.PodOption{"x/a": {objects.NamedPort("http", tcp, 8080)}},
			flows: []flow{denied("y/b", "x/a", "tcp", 8080), denied("y/b", "x/a", "tcp", 8500)},
		}, problem: "endPort cannot be used with named port"},
		{semanticsCase: semanticsCase{
			name:     "an unknown policyType isolates both directions, with no allowance from the policy",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Types("Sideways"))},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("x/a", "y/b", "tcp", 80), allowed("y/b", "x/b", "tcp", 80)},
		}, problem: "unknown policyType"},
		{semanticsCase: semanticsCase{
			name:     "an ipBlock with a selector, and an empty peer, match nothing",
			policies: []*networkingv1.NetworkPolicy{fromA(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}, NamespaceSelector: &metav1.LabelSelector{}}, networkingv1.NetworkPolicyPeer{})},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("out", "x/a", "tcp", 80)},
		}, problem: "cannot be combined"},
		{semanticsCase: semanticsCase{
			name:     "duplicate, ::ffff:-mapped and unparsable podIPs: the target keeps its real addresses, isolated",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.PodsLabelled("pod", "b"))},
			tweak:    map[string][]objects.PodOption{"x/a": {objects.IPs("10.0.1.1", "10.0.1.1", "::ffff:10.0.1.1", "fd00::1:1", "fd00::1:1", "not-an-ip")}},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), allowed("x/b", "x/a", "tcp", 80)},
		}, problem: "not-an-ip"},
		{semanticsCase: semanticsCase{
			name:     "a peer pod whose IPv4 podIP has leading zeros is a peer at its IPv6 address only",
			policies: []*networkingv1.NetworkPolicy{fromA(objects.PodsLabelled("pod", "b"))},
			tweak:    map[string][]objects.PodOption{"x/b": {objects.IPs("010.000.001.002", "fd00::1:2")}},
			flows:    []flow{denied("x/b", "x/a", "tcp", 80)},
			v4Only:   true,
		}, problem: "010.000.001.002"},
		{semanticsCase: semanticsCase{
			name:     "a local pod whose every podIP is unparsable owns no address: the node's pod range closes it both ways",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"))},
			tweak:    map[string][]objects.PodOption{"x/a": {objects.IPs("10.0.1.bad", "fd00::1:1::1")}},
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("x/a", "y/b", "tcp", 80), allowed("y/b", "x/b", "tcp", 80)},
		}, podCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/31"), netip.MustParsePrefix("fd00::1:0/127")}, problem: "10.0.1.bad"},
		{semanticsCase: semanticsCase{
			name:     "20,000 ipBlocks in one rule, one of them unparsable: the others work",
			policies: []*networkingv1.NetworkPolicy{fromA(blocks...)},
			flows:    []flow{allowed("y/a", "x/a", "tcp", 80), denied("y/b", "x/a", "tcp", 80), allowed("10.100.0.2", "x/a", "tcp", 80), denied("10.100.0.3", "x/a", "tcp", 80), allowed("10.100.156.62", "x/a", "tcp", 80), denied("10.100.156.64", "x/a", "tcp", 80)},
			v4Only:   true,
		}, problem: `invalid ipBlock.cidr "10.0.2.0/33"`},
		{semanticsCase: semanticsCase{
			name: "names the API server would reject (quotes, blanks, NUL, non-ASCII) still render",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/bad\"name; {} \x00é", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.PodsLabelled("pod", "b")))),
			},
			tweak: map[string][]objects.PodOption{"x/a": {func(p *corev1.Pod) { p.Name = "a b\"\n\x00ü" }}},
			flows: []flow{denied("y/b", "x/a", "tcp", 80), allowed("x/b", "x/a", "tcp", 80)},
		}},
	}
}

// TestHostileInputFailsClosed runs the hostile corpus through the translator, the reference
// evaluator and the renderer, and (as root) `nft -c -f -`: nothing panics, each case's own flows
// and the guard's hold, and every script is one nft accepts.
func TestHostileInputFailsClosed(t *testing.T) {
	checker := nftcheck.Client(t)
	for _, c := range hostileCorpus() {
		t.Run(c.name, func(t *testing.T) {
			c.policies = append(slices.Clone(c.policies), guard)
			c.flows = append(slices.Clone(c.flows), guardFlows...)
			in := c.input()
			in.PodCIDRs = c.podCIDRs
			rs, problems := Translate(in)
			for _, v6 := range []bool{false, true} {
				if v6 && c.v4Only {
					continue
				}
				for _, f := range c.flows {
					fl := ruleset.Flow{Src: hostileEndpoint(f.from, v6), Dst: hostileEndpoint(f.to, v6), Protocol: f.proto, Port: f.port}
					if got := rs.Allows(fl); got != f.want {
						t.Errorf("%s -> %s %s/%d (ipv6=%v): allowed=%v, want %v", f.from, f.to, f.proto, f.port, v6, got, f.want)
					}
				}
			}
			if c.problem != "" && !slices.ContainsFunc(problems, func(p Problem) bool { return strings.Contains(p.String(), c.problem) }) {
				t.Errorf("problems = %v, want one containing %q", problems, c.problem)
			}
			for _, p := range problems {
				if strings.Contains(p.Object, "y/guard") {
					t.Errorf("the guard policy has a problem: %v", p)
				}
			}
			script := render.Render(rs, render.Options{})
			if checker != nil {
				if err := checker.Check(context.Background(), script.Text); err != nil {
					t.Errorf("nft -c rejects the script (%d bytes): %v", len(script.Text), err)
				}
			}
		})
	}
}
