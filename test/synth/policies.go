package synth

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// policyShape is one kind of NetworkPolicy found in real clusters. build fills in the spec of a
// policy in ns and returns the policy's base name.
type policyShape struct {
	weight int
	build  func(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string
}

// shapes and their relative frequencies. Default-deny and DNS egress are the most common
// policies in practice; broad selectors (every prod namespace, the whole cluster) are kept rare
// because each one that reaches a local pod puts a sizeable fraction of all pod addresses into a
// set.
var shapes = []policyShape{
	{8, shapeDefaultDenyIngress},
	{3, shapeDefaultDenyAll},
	{10, shapeAllowSameTier},
	{8, shapeAllowFromTeam},
	{8, shapeAllowPrometheus},
	{6, shapeAllowIngressController},
	{5, shapeAllowVPC},
	{10, shapeEgressDNS},
	{5, shapeEgressInternet},
	{5, shapeEgressCIDRs},
	{8, shapeMatchExpressions},
	{6, shapeEgressGRPC},
	{5, shapeAllowNamespace},
	{5, shapeDBAccess},
	{3, shapePortRanges},
	{1, shapeAllowAll},
	{3, shapeEgressNamespace},
}

// policyGen draws policies. Policies go into namespaces uniformly at random; shapes that target
// an app pick one of the namespace's apps, so that most policies select pods.
type policyGen struct {
	rng        *rand.Rand
	namespaces []*namespace
	total      int // sum of shape weights
	names      map[string]bool
}

func newPolicyGen(g *generator, rng *rand.Rand) *policyGen {
	pg := &policyGen{rng: rng, namespaces: g.namespaces, names: map[string]bool{}}
	for _, s := range shapes {
		pg.total += s.weight
	}
	return pg
}

func (pg *policyGen) generate(n int) []*networkingv1.NetworkPolicy {
	out := make([]*networkingv1.NetworkPolicy, 0, n)
	for range n {
		ns := pickOne(pg.rng, pg.namespaces)
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns.name}}
		base := pg.shape().build(pg, ns, &np.Spec)
		// Names must be unique within the namespace; repeats of a shape get a number.
		np.Name = base
		for k := 2; pg.names[ns.name+"/"+np.Name]; k++ {
			np.Name = base + "-" + strconv.Itoa(k)
		}
		pg.names[ns.name+"/"+np.Name] = true
		out = append(out, np)
	}
	return out
}

func (pg *policyGen) shape() policyShape {
	n := pg.rng.IntN(pg.total)
	for _, s := range shapes {
		if n < s.weight {
			return s
		}
		n -= s.weight
	}
	panic("unreachable")
}

// app picks one of the namespace's apps, preferring those with a port of one of the given names
// (any app when names is empty). A namespace without pods yields a made-up app: the policy then
// selects nothing, as a stale policy does.
func (pg *policyGen) app(ns *namespace, portNames ...string) *app {
	var fit []*app
	for _, a := range ns.apps {
		if len(portNames) == 0 || slices.ContainsFunc(a.portNames(), func(n string) bool { return slices.Contains(portNames, n) }) {
			fit = append(fit, a)
		}
	}
	if len(fit) == 0 {
		fit = ns.apps
	}
	if len(fit) == 0 {
		return &app{name: "api", tier: tierBackend}
	}
	return pickOne(pg.rng, fit)
}

// The shapes.

// podSelector: {}, isolating every pod of the namespace for ingress, allowing nothing.
func shapeDefaultDenyIngress(_ *policyGen, _ *namespace, spec *networkingv1.NetworkPolicySpec) string {
	spec.PolicyTypes = types(networkingv1.PolicyTypeIngress)
	return "default-deny-ingress"
}

func shapeDefaultDenyAll(_ *policyGen, _ *namespace, spec *networkingv1.NetworkPolicySpec) string {
	spec.PolicyTypes = types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	return "default-deny-all"
}

// Pods of the same tier in the namespace may reach the app on its first named port. policyTypes
// is left out, as many users do, so the translator's defaulting is exercised.
func shapeAllowSameTier(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	spec.PodSelector = matchLabels("app", a.name)
	var ports []networkingv1.NetworkPolicyPort
	if names := a.portNames(); len(names) > 0 {
		ports = append(ports, namedPort(corev1.ProtocolTCP, names[0]))
	}
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: matchLabelsPtr("tier", a.tier)}},
		Ports: ports,
	}}
	return "allow-same-tier-" + a.name
}

// Every pod of one team's namespaces may reach the app on 8080.
func shapeAllowFromTeam(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns, "http")
	team := pickOne(pg.rng, teams)
	spec.PodSelector = matchLabels("app", a.name)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: matchLabelsPtr("team", team)}},
		Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 8080)},
	}}
	return "allow-from-" + team + "-to-" + a.name
}

// Prometheus scrapes the named metrics port: a combined pod+namespace selector.
func shapeAllowPrometheus(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	name := "allow-prometheus"
	if chance(pg.rng, 50) {
		a := pg.app(ns, "metrics")
		spec.PodSelector = matchLabels("app", a.name)
		name += "-" + a.name
	}
	spec.PolicyTypes = types(networkingv1.PolicyTypeIngress)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: matchLabelsPtr(namespaceNameLabel, "monitoring"),
			PodSelector:       matchLabelsPtr("app", "prometheus"),
		}},
		Ports: []networkingv1.NetworkPolicyPort{namedPort(corev1.ProtocolTCP, "metrics")},
	}}
	return name
}

// The ingress controller reaches the frontends on their http port and on 8443.
func shapeAllowIngressController(_ *policyGen, _ *namespace, spec *networkingv1.NetworkPolicySpec) string {
	spec.PodSelector = matchLabels("tier", tierFrontend)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: matchLabelsPtr(namespaceNameLabel, "ingress-nginx"),
			PodSelector:       matchLabelsPtr("app.kubernetes.io/name", "ingress-nginx"),
		}},
		Ports: []networkingv1.NetworkPolicyPort{namedPort(corev1.ProtocolTCP, "http"), port(corev1.ProtocolTCP, 8443)},
	}}
	return "allow-ingress-controller"
}

// The whole VPC except one or two carved-out ranges, on a port and a port range.
func shapeAllowVPC(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	except := []string{fmt.Sprintf("10.%d.0.0/16", pg.rng.IntN(256))}
	if chance(pg.rng, 50) {
		except = append(except, fmt.Sprintf("10.%d.%d.0/24", pg.rng.IntN(256), pg.rng.IntN(256)))
	}
	spec.PodSelector = matchLabels("app", a.name)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{ipBlock("10.0.0.0/8", except...)},
		Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 8080), portRange(corev1.ProtocolTCP, 8000, 8999)},
	}}
	return "allow-vpc-" + a.name
}

// Every pod may query CoreDNS, by number or, less often, by the port names CoreDNS declares.
func shapeEgressDNS(pg *policyGen, _ *namespace, spec *networkingv1.NetworkPolicySpec) string {
	spec.PolicyTypes = types(networkingv1.PolicyTypeEgress)
	ports := []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 53), port(corev1.ProtocolTCP, 53)}
	name := "allow-dns"
	if chance(pg.rng, 30) {
		ports = []networkingv1.NetworkPolicyPort{namedPort(corev1.ProtocolUDP, "dns"), namedPort(corev1.ProtocolTCP, "dns-tcp")}
		name = "allow-dns-named"
	}
	spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: matchLabelsPtr(namespaceNameLabel, "kube-system"),
			PodSelector:       matchLabelsPtr("k8s-app", "kube-dns"),
		}},
		Ports: ports,
	}}
	return name
}

// The internet, but neither the cloud metadata service nor private ranges, in both families.
func shapeEgressInternet(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	spec.PodSelector = matchLabels("app", a.name)
	spec.PolicyTypes = types(networkingv1.PolicyTypeEgress)
	spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{
			ipBlock("0.0.0.0/0", "169.254.169.254/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
			ipBlock("::/0", "fd00::/8"),
		},
		Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 443), port(corev1.ProtocolTCP, 80)},
	}}
	return "allow-internet-" + a.name
}

// A handful of partner and on-premises networks, one with a hole, on database, HTTPS and
// node-port ranges.
func shapeEgressCIDRs(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	spec.PodSelector = matchLabels("app", a.name)
	spec.PolicyTypes = types(networkingv1.PolicyTypeEgress)
	spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{
			ipBlock(fmt.Sprintf("192.168.%d.0/24", pg.rng.IntN(256))),
			ipBlock("203.0.113.0/24"),
			ipBlock("172.20.0.0/14", fmt.Sprintf("172.21.%d.0/24", pg.rng.IntN(256))),
			ipBlock(fmt.Sprintf("2001:db8:%x::/48", pg.rng.IntN(1<<16))),
		},
		Ports: []networkingv1.NetworkPolicyPort{
			port(corev1.ProtocolTCP, 5432), port(corev1.ProtocolTCP, 443), portRange(corev1.ProtocolTCP, 30000, 32767),
		},
	}}
	return "allow-partners-" + a.name
}

// Set-based selectors: backends and databases accept gRPC from the non-dev, non-canary frontends
// and backends of two teams.
func shapeMatchExpressions(pg *policyGen, _ *namespace, spec *networkingv1.NetworkPolicySpec) string {
	t1 := pickOne(pg.rng, teams)
	t2 := pickOne(pg.rng, teams)
	spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{tierBackend, tierDB}},
	}}
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{t1, t2}},
				{Key: "env", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev", "qa"}},
			}},
			PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpExists},
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{tierFrontend, tierBackend}},
				{Key: "canary", Operator: metav1.LabelSelectorOpDoesNotExist},
			}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{namedPort(corev1.ProtocolTCP, "grpc"), port(corev1.ProtocolTCP, 8080)},
	}}
	return "allow-grpc-from-" + t1 + "-" + t2
}

// The app calls backends of its own namespace and of one team's namespaces on their named grpc
// port, which resolves on the destination pods, and on 8080.
func shapeEgressGRPC(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	team := pickOne(pg.rng, teams)
	spec.PodSelector = matchLabels("app", a.name)
	spec.PolicyTypes = types(networkingv1.PolicyTypeEgress)
	spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{
			{PodSelector: matchLabelsPtr("tier", tierBackend)},
			{NamespaceSelector: matchLabelsPtr("team", team), PodSelector: matchLabelsPtr("tier", tierBackend)},
		},
		Ports: []networkingv1.NetworkPolicyPort{namedPort(corev1.ProtocolTCP, "grpc"), port(corev1.ProtocolTCP, 8080)},
	}}
	return "allow-grpc-to-" + team + "-from-" + a.name
}

// Every pod of the namespace may reach the app, on any port.
func shapeAllowNamespace(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	spec.PodSelector = matchLabels("app", a.name)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
	}}
	return "allow-same-namespace-" + a.name
}

// Databases and caches accept the namespace's backends and every pod of sibling namespaces (same
// team and env), on the named data ports and their numbers.
func shapeDBAccess(_ *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{tierDB, tierCache}},
	}}
	spec.PolicyTypes = types(networkingv1.PolicyTypeIngress)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{
			{PodSelector: matchLabelsPtr("tier", tierBackend)},
			{NamespaceSelector: matchLabelsPtr("team", ns.team, "env", ns.env)},
		},
		Ports: []networkingv1.NetworkPolicyPort{
			namedPort(corev1.ProtocolTCP, "postgres"), namedPort(corev1.ProtocolTCP, "mysql"),
			port(corev1.ProtocolTCP, 6379),
		},
	}}
	return "allow-db-access"
}

// One env's namespaces may reach the app on port ranges of three protocols, and on any UDP port.
func shapePortRanges(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	env := envs.pick(pg.rng)
	first := int32(8000 + 100*pg.rng.IntN(10))
	spec.PodSelector = matchLabels("app", a.name)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: matchLabelsPtr("env", env)}},
		Ports: []networkingv1.NetworkPolicyPort{
			portRange(corev1.ProtocolTCP, first, first+99),
			portRange(corev1.ProtocolUDP, 5000, 5010),
			port(corev1.ProtocolSCTP, 3868),
			{Protocol: protocol(corev1.ProtocolUDP)},
		},
	}}
	return "allow-ranges-from-" + env + "-to-" + a.name
}

// ingress: [{}]: the app accepts everything, yet stays isolated for egress by other policies.
func shapeAllowAll(pg *policyGen, ns *namespace, spec *networkingv1.NetworkPolicySpec) string {
	a := pg.app(ns)
	spec.PodSelector = matchLabels("app", a.name)
	spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
	return "allow-all-" + a.name
}

// Egress confined to the namespace itself.
func shapeEgressNamespace(_ *policyGen, _ *namespace, spec *networkingv1.NetworkPolicySpec) string {
	spec.PolicyTypes = types(networkingv1.PolicyTypeEgress)
	spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
	}}
	return "allow-egress-same-namespace"
}

// Constructors for spec fields.

func types(ts ...networkingv1.PolicyType) []networkingv1.PolicyType { return ts }

func matchLabels(kv ...string) metav1.LabelSelector {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return metav1.LabelSelector{MatchLabels: m}
}

func matchLabelsPtr(kv ...string) *metav1.LabelSelector {
	s := matchLabels(kv...)
	return &s
}

func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func protocol(p corev1.Protocol) *corev1.Protocol { return &p }

func port(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: protocol(proto), Port: &v}
}

func portRange(proto corev1.Protocol, first, last int32) networkingv1.NetworkPolicyPort {
	p := port(proto, first)
	p.EndPort = &last
	return p
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: protocol(proto), Port: &v}
}
