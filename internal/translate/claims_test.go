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

// The rule these tests pin: an address claimed by more than one live pod (not finished, not
// hostNetwork; local or remote) is enforced with the stricter result of its claimants, whatever
// their names: it is isolated if any claimant is, traffic to or from it must pass every isolating
// claimant's policies, it joins a peer set only if every claimant matches the peer, and a named
// port resolves at it only if every claimant gives the name the same protocol and number.
//
// claims(victim, by...) makes each pod of by claim victim's planned addresses (both families) in
// place of its own, so flows to and from "victim" use the shared address.

func claims(victim string, by ...string) map[string][]objects.PodOption {
	m := map[string][]objects.PodOption{}
	for _, id := range by {
		m[id] = []objects.PodOption{objects.IPs(addr(victim, false).String(), addr(victim, true).String())}
	}
	return m
}

// withPorts adds named ports to the pods of a tweak map.
func withPorts(m map[string][]objects.PodOption, ports map[string][]objects.PodOption) map[string][]objects.PodOption {
	for id, opts := range ports {
		m[id] = append(m[id], opts...)
	}
	return m
}

func TestAnAddressSeveralPodsClaimJoinsAPeerSetOnlyIfEveryClaimantMatches(t *testing.T) {
	fromZ := func(podKV ...string) *networkingv1.NetworkPolicy {
		return objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.PodsInNamespaces(podKV, []string{"ns", "z"}))))
	}
	runSemantics(t, []semanticsCase{
		{
			name:     "remote/remote: only the claimant sorting first (z/a) matches the peer: the address is not a peer",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "a"}, []string{"ns", "z"}), objects.PodsInNamespaces([]string{"pod", "c"}, []string{"ns", "z"}))))},
			tweak:    claims("z/a", "z/b"),
			flows:    []flow{denied("z/a", "y/a", "tcp", 80), allowed("z/c", "y/a", "tcp", 80)},
		},
		{
			name:     "remote/remote: only the claimant sorting last (z/b) matches the peer: the address is not a peer",
			policies: []*networkingv1.NetworkPolicy{fromZ("pod", "b")},
			tweak:    claims("z/a", "z/b"),
			flows:    []flow{denied("z/a", "y/a", "tcp", 80)},
		},
		{
			name:     "remote/remote: both claimants match the peer: the address is a peer",
			policies: []*networkingv1.NetworkPolicy{fromZ()},
			tweak:    claims("z/a", "z/b"),
			flows:    []flow{allowed("z/a", "y/a", "tcp", 80), allowed("z/c", "y/a", "tcp", 80)},
		},
		{
			name:     "local/remote: the local claimant matches a peer of its own namespace, the remote one (z/c) does not",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "x"))))},
			tweak:    claims("x/a", "z/c"),
			flows:    []flow{denied("x/a", "y/a", "tcp", 80), allowed("x/b", "y/a", "tcp", 80)},
		},
		{
			name:     "local/remote: the remote claimant matches the peer, the local one does not",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "z"))))},
			tweak:    claims("x/a", "z/c"),
			flows:    []flow{denied("x/a", "y/a", "tcp", 80), allowed("z/b", "y/a", "tcp", 80)},
		},
		{
			name:     "local/remote: both claimants match namespaceSelector {}: the address is a peer",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.NamespacesLabelled())))},
			tweak:    claims("x/a", "z/c"),
			flows:    []flow{allowed("x/a", "y/a", "tcp", 80)},
		},
		{
			name:     "a podSelector-only peer: a claimant in another namespace does not match it",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "b"), objects.Ingress(objects.From(objects.PodsLabelled())))},
			tweak:    claims("x/a", "y/c"),
			flows:    []flow{denied("x/a", "x/b", "tcp", 80)},
		},
		{
			name:     "egress: the destination address joins the peer set only if every claimant matches",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.PodsInNamespaces([]string{"pod", "a"}, []string{"ns", "z"}))))},
			tweak:    claims("z/a", "z/b"),
			flows:    []flow{denied("x/a", "z/a", "tcp", 80)},
		},
		{
			name: "an ipBlock peer is about addresses: a claimed address inside it is a peer",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(
				objects.IPBlock("10.0.3.0/24"), objects.IPBlock("fd00::3:0/112"))))},
			tweak: claims("z/a", "z/b"),
			flows: []flow{allowed("z/a", "y/a", "tcp", 80), denied("x/b", "y/a", "tcp", 80)},
		},
	})
}

func TestAnAddressSeveralLocalPodsClaimIsIsolatedIfAnyClaimantIs(t *testing.T) {
	twoPolicies := func(first, second string) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{
			objects.Policy("x/from-y", objects.Selecting("pod", first), objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")))),
			objects.Policy("x/from-b", objects.Selecting("pod", second), objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "b"}, nil)))),
		}
	}
	runSemantics(t, []semanticsCase{
		{
			name:  "no claimant isolated: not isolated",
			tweak: claims("x/a", "x/b"),
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), allowed("x/a", "z/c", "tcp", 80)},
		},
		{
			name:     "only the claimant sorting first (x/a) isolated for ingress: the address is isolated",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "a"))},
			tweak:    claims("x/a", "x/b"),
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), denied("z/c", "x/a", "udp", 53), allowed("x/a", "z/c", "tcp", 80)},
		},
		{
			name:     "only the claimant sorting last (x/b) isolated for ingress: the address is isolated",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "b"))},
			tweak:    claims("x/a", "x/b"),
			flows:    []flow{denied("y/b", "x/a", "tcp", 80), allowed("x/a", "z/c", "tcp", 80)},
		},
		{
			name:     "only the claimant sorting last isolated for egress: traffic from the address is isolated",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "b"), objects.IsolateEgress())},
			tweak:    claims("x/a", "x/b"),
			flows:    []flow{denied("x/a", "z/c", "tcp", 80), allowed("y/b", "x/a", "tcp", 80)},
		},
		{
			name:     "local/remote: a remote claimant's namespace policies do not isolate a local address",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("z/deny")},
			tweak:    claims("x/a", "z/c"),
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80)},
		},
		{
			name:     "two isolated claimants (x/a from y, x/b from pods b): a packet must pass one policy of each",
			policies: twoPolicies("a", "b"),
			tweak:    claims("x/a", "x/b"),
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80), denied("z/c", "x/a", "tcp", 80)},
		},
		{
			name:     "two isolated claimants, the policies swapped between them: the same verdicts",
			policies: twoPolicies("b", "a"),
			tweak:    claims("x/a", "x/b"),
			flows:    []flow{allowed("y/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/b", "x/a", "tcp", 80)},
		},
		{
			name: "one claimant with two policies: either of them, AND the other claimant's",
			policies: append(twoPolicies("a", "b"),
				objects.Policy("x/from-z", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "z"))))),
			tweak: claims("x/a", "x/b"),
			flows: []flow{allowed("y/b", "x/a", "tcp", 80), allowed("z/b", "x/a", "tcp", 80), denied("y/c", "x/a", "tcp", 80), denied("z/c", "x/a", "tcp", 80)},
		},
		{
			name: "two claimants isolated for egress: a packet from the address must pass one policy of each",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/to-y", objects.Selecting("pod", "a"), objects.Types(networkingv1.PolicyTypeEgress), objects.Egress(objects.To(objects.NamespacesLabelled("ns", "y")))),
				objects.Policy("x/to-b", objects.Selecting("pod", "b"), objects.Types(networkingv1.PolicyTypeEgress), objects.Egress(objects.To(objects.PodsInNamespaces([]string{"pod", "b"}, nil)))),
			},
			tweak: claims("x/a", "x/b"),
			flows: []flow{allowed("x/a", "y/b", "tcp", 80), denied("x/a", "y/c", "tcp", 80), denied("x/a", "z/b", "tcp", 80)},
		},
		{
			name:     "the address can always reach itself",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Selecting("pod", "a"), objects.IsolateEgress()), objects.Policy("x/deny-b", objects.Selecting("pod", "b"))},
			tweak:    claims("x/a", "x/b"),
			flows:    []flow{allowed("x/a", "x/a", "tcp", 80)},
		},
	})
}

func TestANamedPortResolvesAtAClaimedAddressOnlyIfEveryClaimantAgrees(t *testing.T) {
	toZHTTP := []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.NamespacesLabelled("ns", "z")), objects.Ports(objects.Named(tcp, "http"))))}
	toBlockHTTP := []*networkingv1.NetworkPolicy{objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Egress(objects.To(objects.IPBlock("10.0.3.0/24"), objects.IPBlock("fd00::3:0/112")), objects.Ports(objects.Named(tcp, "http"))))}
	intoHTTP := func(selected string) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{objects.Policy("x/p", objects.Selecting("pod", selected), objects.Ingress(objects.Ports(objects.Named(tcp, "http"))))}
	}
	http := func(n int32) []objects.PodOption { return []objects.PodOption{objects.NamedPort("http", "", n)} }
	runSemantics(t, []semanticsCase{
		{
			name:     "egress, remote claimants agree on the number: it resolves",
			policies: toZHTTP,
			tweak:    withPorts(claims("z/a", "z/b"), map[string][]objects.PodOption{"z/a": http(8080), "z/b": http(8080)}),
			flows:    []flow{allowed("y/a", "z/a", "tcp", 8080), denied("y/a", "z/a", "tcp", 9090)},
		},
		{
			name:     "egress, remote claimants disagree on the number: neither resolves",
			policies: toZHTTP,
			tweak:    withPorts(claims("z/a", "z/b"), map[string][]objects.PodOption{"z/a": http(8080), "z/b": http(9090)}),
			flows:    []flow{denied("y/a", "z/a", "tcp", 8080), denied("y/a", "z/a", "tcp", 9090)},
		},
		{
			name:     "egress, the claimant sorting last lacks the port: it does not resolve",
			policies: toZHTTP,
			tweak:    withPorts(claims("z/a", "z/b"), map[string][]objects.PodOption{"z/a": http(8080)}),
			flows:    []flow{denied("y/a", "z/a", "tcp", 8080)},
		},
		{
			name:     "egress, the claimant sorting first lacks the port: it does not resolve",
			policies: toZHTTP,
			tweak:    withPorts(claims("z/a", "z/b"), map[string][]objects.PodOption{"z/b": http(8080)}),
			flows:    []flow{denied("y/a", "z/a", "tcp", 8080)},
		},
		{
			name:     "egress to an ipBlock: claimants that disagree resolve nothing at the address",
			policies: toBlockHTTP,
			tweak:    withPorts(claims("z/a", "z/b"), map[string][]objects.PodOption{"z/a": http(8080), "z/b": http(9090), "z/c": http(8080)}),
			flows:    []flow{denied("y/a", "z/a", "tcp", 8080), denied("y/a", "z/a", "tcp", 9090), allowed("y/a", "z/c", "tcp", 8080)},
		},
		{
			name:     "ingress, local claimants agree: it resolves",
			policies: intoHTTP("a"),
			tweak:    withPorts(claims("x/a", "x/b"), map[string][]objects.PodOption{"x/a": http(8080), "x/b": http(8080)}),
			flows:    []flow{allowed("y/b", "x/a", "tcp", 8080), denied("y/b", "x/a", "tcp", 9090)},
		},
		{
			name:     "ingress, local claimants disagree (the isolated one sorting first): nothing resolves",
			policies: intoHTTP("a"),
			tweak:    withPorts(claims("x/a", "x/b"), map[string][]objects.PodOption{"x/a": http(8080), "x/b": http(9090)}),
			flows:    []flow{denied("y/b", "x/a", "tcp", 8080), denied("y/b", "x/a", "tcp", 9090)},
		},
		{
			name:     "ingress, local claimants disagree (the isolated one sorting last): nothing resolves",
			policies: intoHTTP("b"),
			tweak:    withPorts(claims("x/a", "x/b"), map[string][]objects.PodOption{"x/a": http(8080), "x/b": http(9090)}),
			flows:    []flow{denied("y/b", "x/a", "tcp", 8080), denied("y/b", "x/a", "tcp", 9090)},
		},
		{
			name:     "ingress, a remote claimant disagrees: nothing resolves",
			policies: intoHTTP("a"),
			tweak:    withPorts(claims("x/a", "z/c"), map[string][]objects.PodOption{"x/a": http(8080), "z/c": http(9090)}),
			flows:    []flow{denied("y/b", "x/a", "tcp", 8080)},
		},
	})
}

// TestSeveralLocalPodsClaimingOneAddressShareIt replaces the rule that the first pod in name
// order kept the address: the address is listed as a Claim of every local claimant, in both
// orders of the input, reported as a problem naming them, and kept in the node's known addresses.
func TestSeveralLocalPodsClaimingOneAddressShareIt(t *testing.T) {
	shared := netip.MustParseAddr("10.0.1.9")
	in := Input{Node: localNode, Namespaces: standardNamespaces(), PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, Policies: []*networkingv1.NetworkPolicy{
		objects.Policy("x/p", objects.Selecting("pod", "b")),
		objects.Policy("x/q", objects.IsolateEgress()),
	}, Pods: compact.NewPods([]*corev1.Pod{
		makePod("x/b", objects.IPs("10.0.1.9", "fd00::1:2")),
		makePod("x/a", objects.IPs("10.0.1.9")),
		makePod("z/c", objects.IPs("10.0.1.9")),
		makePod("z/a"),
	})}
	rs, problems := Translate(in)

	want := []ruleset.Claim{{
		Addr: shared, Claimants: []string{"x/a", "x/b"},
		Ingress: []ruleset.ClaimantPolicies{{Pod: "x/b", Policies: []ruleset.PolicyKey{{Namespace: "x", Name: "p"}}}},
		Egress: []ruleset.ClaimantPolicies{
			{Pod: "x/a", Policies: []ruleset.PolicyKey{{Namespace: "x", Name: "q"}}},
			{Pod: "x/b", Policies: []ruleset.PolicyKey{{Namespace: "x", Name: "q"}}},
		},
	}}
	if !reflect.DeepEqual(rs.Claims, want) {
		t.Errorf("Claims = %+v\nwant %+v", rs.Claims, want)
	}
	var targets []string
	for _, tg := range rs.Targets {
		targets = append(targets, tg.Namespace+"/"+tg.Name+" "+joined(tg.IPs))
	}
	if want := []string{"x/a ", "x/b fd00::1:2"}; !slices.Equal(targets, want) {
		t.Errorf("targets = %q, want %q (the shared address in no target's IPs)", targets, want)
	}
	if !slices.Contains(rs.Edges.LocalPods, shared) || rs.Edges.Closed(shared) {
		t.Errorf("LocalPods = %v, want the shared address listed", rs.Edges.LocalPods)
	}
	if len(problems) != 1 || problems[0].Object != "Pod x/a" ||
		!strings.Contains(problems[0].Message, "address 10.0.1.9 is claimed by 3 live pods: x/a (local), x/b (local), z/c (remote)") ||
		!strings.Contains(problems[0].Message, "enforced with the stricter result of its claimants") {
		t.Errorf("problems = %v, want one naming the claimants", problems)
	}

	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 10 {
		shuffled := in
		shuffled.Pods = slices.Clone(in.Pods)
		rng.Shuffle(len(shuffled.Pods), func(a, b int) { shuffled.Pods[a], shuffled.Pods[b] = shuffled.Pods[b], shuffled.Pods[a] })
		got, gotProblems := Translate(shuffled)
		if !reflect.DeepEqual(got, rs) || !reflect.DeepEqual(gotProblems, problems) {
			t.Fatalf("shuffle %d changed the result", i)
		}
	}
}

// TestFinishedAndHostNetworkPodsClaimNothing pins that only live pods count as claimants: a
// finished pod or a hostNetwork pod with the same address is no conflict.
func TestFinishedAndHostNetworkPodsClaimNothing(t *testing.T) {
	in := Input{Node: localNode, Namespaces: standardNamespaces(), Policies: []*networkingv1.NetworkPolicy{
		objects.Policy("y/p", objects.Selecting("pod", "a"), objects.Ingress(objects.From(objects.PodsInNamespaces([]string{"pod", "a"}, []string{"ns", "z"})))),
	}, Pods: compact.NewPods([]*corev1.Pod{
		makePod("y/a"),
		makePod("z/a"),
		makePod("z/b", objects.IPs(addr("z/a", false).String()), objects.Phase(corev1.PodSucceeded)),
		makePod("z/c", objects.IPs(addr("z/a", false).String()), objects.HostNetwork()),
	})}
	rs, problems := Translate(in)
	if len(problems) != 0 || len(rs.Claims) != 0 {
		t.Errorf("problems = %v, claims = %v, want none", problems, rs.Claims)
	}
	if !rs.Allows(ruleset.Flow{Src: addr("z/a", false), Dst: addr("y/a", false), Protocol: ruleset.TCP, Port: 80}) {
		t.Errorf("z/a is not a peer")
	}
}

// TestManyPodsFindConflictsThroughTheRadixSort covers inputs large enough for the filter of
// claimCandidates (6,000 keys) and the radix sort, in both families, with a conflict among
// thousands of distinct addresses.
func TestManyPodsFindConflictsThroughTheRadixSort(t *testing.T) {
	var pods []*corev1.Pod
	for i := range 3000 {
		p := makePod("z/c", objects.IPs(netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)}).String(), netip.AddrFrom16([16]byte{0: 0xfd, 6: byte(i >> 8), 7: byte(i), 15: 1}).String()))
		p.Name = fmt.Sprintf("p%04d", i)
		pods = append(pods, p)
	}
	pods[2999].Status.PodIPs = pods[17].Status.PodIPs // p2999 claims p0017's addresses
	in := Input{Node: localNode, Namespaces: standardNamespaces(), Pods: compact.NewPods(pods)}
	_, problems := Translate(in)
	if len(problems) != 2 {
		t.Fatalf("problems = %v, want the two addresses of z/p0017", problems)
	}
	for _, p := range problems {
		if p.Object != "Pod z/p0017" || !strings.Contains(p.Message, "z/p0017 (remote), z/p2999 (remote)") {
			t.Errorf("problem %v", p)
		}
	}
}
