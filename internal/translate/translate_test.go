package translate

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

func TestRuleSetListsOnlyIsolatedLocalPodsAndTheirPolicies(t *testing.T) {
	in := semanticsCase{policies: []*networkingv1.NetworkPolicy{
		objects.Policy("x/ingress-a", objects.Selecting("pod", "a")),
		objects.Policy("x/egress-all", objects.Types(networkingv1.PolicyTypeEgress)),
		objects.Policy("z/remote-only"), // z has no local pods
	}}.input()
	rs, problems := Translate(in)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	var got []string
	for _, p := range rs.Targets {
		got = append(got, p.Namespace+"/"+p.Name+" in="+joined(p.IngressPolicies)+" out="+joined(p.EgressPolicies))
	}
	want := []string{
		"x/a in=x/ingress-a out=x/egress-all",
		"x/b in= out=x/egress-all",
	}
	if !slices.Equal(got, want) {
		t.Errorf("pods:\n got %q\nwant %q", got, want)
	}
	var pols []string
	for _, p := range rs.Policies {
		pols = append(pols, p.Key.String())
	}
	if want := []string{"x/egress-all", "x/ingress-a"}; !slices.Equal(pols, want) {
		t.Errorf("policies = %v, want %v", pols, want)
	}
	if ips := rs.Targets[0].IPs; !slices.Equal(ips, []netip.Addr{addr("x/a", false), addr("x/a", true)}) {
		t.Errorf("x/a IPs = %v, want both families, IPv4 first", ips)
	}
}

// joined lists values comma-separated, for comparing with a wanted string.
func joined[T fmt.Stringer](xs []T) string {
	var s []string
	for _, x := range xs {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func TestTranslateDoesNotMutateItsInput(t *testing.T) {
	in := semanticsCase{policies: []*networkingv1.NetworkPolicy{
		objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"), objects.IPBlock("10.0.0.9/8", "10.1.0.0/16")), objects.Ports(objects.Named(tcp, "http"), objects.TCPDefault(80)))),
		objects.Policy("x/q", objects.Egress(objects.To(objects.NamespacesLabelled()))),
	}, tweak: map[string][]objects.PodOption{"x/a": {objects.NamedPort("http", "", 8080)}}}.input()
	before := deepCopy(in)
	Translate(in)
	if !reflect.DeepEqual(before, deepCopy(in)) {
		t.Errorf("Translate changed its input")
	}
}

// snapshot is a deep copy of everything Translate reads, for telling whether it changed.
type snapshot struct {
	policies   []*networkingv1.NetworkPolicy
	namespaces []*corev1.Namespace
	pods       []podState
}

type podState struct {
	namespace, name string
	labels          map[string]string
	ips             []netip.Addr
	badIPs          []string
	ports           []compact.NamedPort
	owns            bool
}

func deepCopy(in Input) snapshot {
	var out snapshot
	for _, p := range in.Policies {
		out.policies = append(out.policies, p.DeepCopy())
	}
	for _, n := range in.Namespaces {
		out.namespaces = append(out.namespaces, n.DeepCopy())
	}
	for _, p := range in.Pods {
		out.pods = append(out.pods, podState{p.Namespace(), p.Name(), p.GetLabels(), p.AppendIPs(nil),
			slices.Clone(p.BadIPs()), slices.Clone(p.Ports()), p.OwnsAddresses()})
	}
	return out
}

// TestSameObjectsInAnyOrderGiveTheSameRuleSet pins determinism at the translator: object order
// (the order of cache lists) never shows in the result.
func TestSameObjectsInAnyOrderGiveTheSameRuleSet(t *testing.T) {
	in := semanticsCase{policies: []*networkingv1.NetworkPolicy{
		objects.Policy("x/p", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b"), objects.NamespacesLabelled("ns", "z"), objects.IPBlock("10.200.0.0/16")), objects.Ports(objects.Named(tcp, "http"), objects.Port(udp, 53)))),
		objects.Policy("x/q", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.NamespacesLabelled()), objects.Ports(objects.Named(tcp, "http")))),
		objects.Policy("y/r", objects.Ingress()),
	}, tweak: map[string][]objects.PodOption{
		"x/a": {objects.NamedPort("http", "", 8080)}, "z/b": {objects.NamedPort("http", "", 9090)}, "y/c": {objects.NamedPort("http", "", 80)},
	}}.input()
	want, wantProblems := Translate(in)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		shuffled := Input{Node: in.Node, Policies: slices.Clone(in.Policies), Namespaces: slices.Clone(in.Namespaces), Pods: slices.Clone(in.Pods)}
		rng.Shuffle(len(shuffled.Policies), func(a, b int) {
			shuffled.Policies[a], shuffled.Policies[b] = shuffled.Policies[b], shuffled.Policies[a]
		})
		rng.Shuffle(len(shuffled.Pods), func(a, b int) { shuffled.Pods[a], shuffled.Pods[b] = shuffled.Pods[b], shuffled.Pods[a] })
		rng.Shuffle(len(shuffled.Namespaces), func(a, b int) {
			shuffled.Namespaces[a], shuffled.Namespaces[b] = shuffled.Namespaces[b], shuffled.Namespaces[a]
		})
		got, gotProblems := Translate(shuffled)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotProblems, wantProblems) {
			t.Fatalf("shuffle %d changed the rule set", i)
		}
	}
}

// TestLargeInputsGiveTheSameResultInAnyOrder covers inputs large enough for loadPods to read the
// pods in many batches: pods of a namespace that has no Namespace object and pods with bad
// addresses, in any order, give the same rule set and problems.
func TestLargeInputsGiveTheSameResultInAnyOrder(t *testing.T) {
	pod := func(ns, name, ip string) *corev1.Pod {
		p := makePod("x/b", objects.IPs(ip), objects.OnNode(remoteNode), objects.Labels("pod", name))
		p.Namespace, p.Name = ns, name
		return p
	}
	var pods []*corev1.Pod
	for i := range 5000 {
		ns := "y"
		if i%7 == 0 {
			ns = "ghost" // no Namespace object
		}
		pods = append(pods, pod(ns, fmt.Sprintf("p%d", i), fmt.Sprintf("10.1.%d.%d", i/256, i%256)))
	}
	pods[10].Status.PodIPs[0].IP = "10.1.0.bad"
	pods[len(pods)-10].Status.PodIPs[0].IP = "not-an-ip"
	local := pod("x", "a", "10.0.1.1")
	local.Spec.NodeName = localNode
	pods = append(pods, local)
	in := Input{Node: localNode, Namespaces: standardNamespaces(), Pods: compact.NewPods(pods), Policies: []*networkingv1.NetworkPolicy{
		objects.Policy("x/from-ghost", objects.Ingress(objects.From(objects.NamespacesLabelled(namespaceNameLabel, "ghost")))),
	}}

	want, wantProblems := Translate(in)
	if len(wantProblems) != 2 {
		t.Errorf("problems = %v, want the two bad addresses", wantProblems)
	}
	ghost, other := netip.MustParseAddr("10.1.0.7"), netip.MustParseAddr("10.1.0.8")
	dst := netip.MustParseAddr("10.0.1.1")
	if !want.Allows(ruleset.Flow{Src: ghost, Dst: dst, Protocol: ruleset.TCP, Port: 80}) ||
		want.Allows(ruleset.Flow{Src: other, Dst: dst, Protocol: ruleset.TCP, Port: 80}) {
		t.Errorf("the ghost namespace's pods are not exactly the allowed peers")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 3 {
		shuffled := in
		shuffled.Pods = slices.Clone(in.Pods)
		rng.Shuffle(len(shuffled.Pods), func(a, b int) { shuffled.Pods[a], shuffled.Pods[b] = shuffled.Pods[b], shuffled.Pods[a] })
		got, gotProblems := Translate(shuffled)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotProblems, wantProblems) {
			t.Fatalf("shuffle %d changed the result", i)
		}
	}
}
