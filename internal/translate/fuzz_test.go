package translate

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/fuzzbytes"
	"github.com/flock-net/flock-netpol/test/nftcheck"
)

// The vocabulary of the generated objects: few values, so that selectors and addresses meet, and
// some that never pass API validation.
var (
	fuzzNamespaces = []string{"x", "y", "z"}
	fuzzKeys       = []string{"app", "tier", "-bad", namespaceNameLabel}
	fuzzValues     = []string{"a", "b", "x", "y", "bad value!"}
	// fuzzAddrs are pod addresses; two pods may draw the same one (a claimed address).
	fuzzAddrs = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "10.0.1.2", "fd00::1", "fd00::2", "fd00::1:1", "::ffff:10.0.0.4", "010.0.0.5", "bad"}
	// fuzzFlowAddrs are the addresses flows use: the pods' and a few no pod owns.
	fuzzFlowAddrs = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.1.1", "10.0.1.2", "10.9.9.9", "fd00::1", "fd00::2", "fd00::1:1", "fd00::9"}
	fuzzCIDRs     = []string{"10.0.0.0/24", "10.0.0.2/31", "10.0.0.0/8", "10.0.1.0/24", "0.0.0.0/0", "fd00::/64", "fd00::/16", "::/0",
		"::ffff:10.0.0.0/120", "010.0.0.0/24", "10.0.0.0/33", " 10.0.0.1/32", "10.0.0.1/32", "fd00::1/128", "junk"}
	fuzzPortNames = []string{"http", "dns", ""}
	fuzzProtocols = []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP, "ICMP"}
)

// fuzzBytes builds values out of the fuzzer's bytes (fuzzbytes).
type fuzzBytes struct{ *fuzzbytes.Reader }

func (r *fuzzBytes) labelMap() map[string]string {
	m := map[string]string{}
	for range r.N(3) {
		m[fuzzbytes.Pick(r.Reader, fuzzKeys...)] = fuzzbytes.Pick(r.Reader, fuzzValues...)
	}
	return m
}

func (r *fuzzBytes) selector() *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	if r.N(2) == 0 {
		s.MatchLabels = r.labelMap()
	}
	for range r.N(2) {
		op := fuzzbytes.Pick(r.Reader, metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist, "Like")
		req := metav1.LabelSelectorRequirement{Key: fuzzbytes.Pick(r.Reader, fuzzKeys...), Operator: op}
		for range r.N(3) {
			req.Values = append(req.Values, fuzzbytes.Pick(r.Reader, fuzzValues...))
		}
		s.MatchExpressions = append(s.MatchExpressions, req)
	}
	return s
}

func (r *fuzzBytes) peer() networkingv1.NetworkPolicyPeer {
	var p networkingv1.NetworkPolicyPeer
	switch r.N(6) {
	case 0:
		p.PodSelector = r.selector()
	case 1:
		p.NamespaceSelector = r.selector()
	case 2:
		p.PodSelector, p.NamespaceSelector = r.selector(), r.selector()
	case 3, 4:
		p.IPBlock = &networkingv1.IPBlock{CIDR: fuzzbytes.Pick(r.Reader, fuzzCIDRs...)}
		for range r.N(3) {
			p.IPBlock.Except = append(p.IPBlock.Except, fuzzbytes.Pick(r.Reader, fuzzCIDRs...))
		}
		if r.N(8) == 0 {
			p.PodSelector = r.selector()
		}
	}
	return p
}

// rules gives np policy types, some valid and some not, and ingress and egress rules.
func (r *fuzzBytes) rules(np *networkingv1.NetworkPolicy) {
	for range r.N(3) {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, fuzzbytes.Pick[networkingv1.PolicyType](r.Reader, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress, "Sideways"))
	}
	for range r.N(3) {
		var rule networkingv1.NetworkPolicyIngressRule
		for range r.N(3) {
			rule.From = append(rule.From, r.peer())
		}
		for range r.N(3) {
			rule.Ports = append(rule.Ports, r.port())
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rule)
	}
	for range r.N(3) {
		var rule networkingv1.NetworkPolicyEgressRule
		for range r.N(3) {
			rule.To = append(rule.To, r.peer())
		}
		for range r.N(3) {
			rule.Ports = append(rule.Ports, r.port())
		}
		np.Spec.Egress = append(np.Spec.Egress, rule)
	}
}

func (r *fuzzBytes) port() networkingv1.NetworkPolicyPort {
	var p networkingv1.NetworkPolicyPort
	if proto := fuzzbytes.Pick(r.Reader, fuzzProtocols...); proto != "" {
		p.Protocol = &proto
	}
	switch r.N(4) {
	case 1, 2:
		v := intstr.FromInt32(fuzzbytes.Pick[int32](r.Reader, 53, 80, 81, 8080, 0, 70000))
		p.Port = &v
	case 3:
		v := intstr.FromString(fuzzbytes.Pick(r.Reader, fuzzPortNames...))
		p.Port = &v
	}
	if r.N(4) == 0 {
		e := fuzzbytes.Pick[int32](r.Reader, 79, 81, 90, 65536)
		p.EndPort = &e
	}
	return p
}

// fuzzInput builds a cluster from the fuzzer's bytes: the namespaces x, y, z, up to eight pods
// (local or remote, live or not, with good, bad or shared addresses and named ports) and up to
// four policies whose selectors, peers and ports may hold anything the API types can.
func fuzzInput(data []byte) Input {
	r := &fuzzBytes{fuzzbytes.New(data)}
	in := Input{Node: localNode}
	for _, ns := range fuzzNamespaces {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: r.labelMap()}}
		in.Namespaces = append(in.Namespaces, n)
	}
	var pods []*corev1.Pod
	for i := range 1 + r.N(8) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: fuzzbytes.Pick(r.Reader, fuzzNamespaces...), Name: fmt.Sprintf("p%d", i), Labels: r.labelMap()}}
		p.Spec.NodeName = fuzzbytes.Pick(r.Reader, localNode, localNode, remoteNode)
		p.Status.Phase = fuzzbytes.Pick(r.Reader, corev1.PodRunning, corev1.PodRunning, corev1.PodRunning, corev1.PodSucceeded)
		p.Spec.HostNetwork = r.N(8) == 0
		for range 1 + r.N(2) {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: fuzzbytes.Pick(r.Reader, fuzzAddrs...)})
		}
		c := corev1.Container{Name: "main"}
		for range r.N(3) {
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: fuzzbytes.Pick(r.Reader, fuzzPortNames...), Protocol: fuzzbytes.Pick(r.Reader, fuzzProtocols...), ContainerPort: fuzzbytes.Pick[int32](r.Reader, 53, 80, 8080, 9090, 0)})
		}
		p.Spec.Containers = []corev1.Container{c}
		pods = append(pods, p)
	}
	in.Pods = compact.NewPods(pods)
	for i := range r.N(5) {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: fuzzbytes.Pick(r.Reader, fuzzNamespaces...), Name: fmt.Sprintf("np%d", i)}}
		np.Spec.PodSelector = *r.selector()
		r.rules(np)
		in.Policies = append(in.Policies, np)
	}
	if r.N(3) == 0 {
		in.PodCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30"), netip.MustParsePrefix("fd00::/126")}
	}
	return in
}

// oracle is NetworkPolicy semantics stated directly over the API objects, independently of the
// translator's indexes and of package ruleset, for inputs where no address is claimed by two live
// pods: the reference the fuzz target holds the translator and the evaluator to.
type oracle struct {
	in    Input
	owner map[netip.Addr]*compact.Pod
	nsLbl map[string]labels.Set
}

func newOracle(in Input) (*oracle, bool) {
	o := &oracle{in: in, owner: map[netip.Addr]*compact.Pod{}, nsLbl: map[string]labels.Set{}}
	for _, ns := range in.Namespaces {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[namespaceNameLabel] = ns.Name
		o.nsLbl[ns.Name] = l
	}
	for _, p := range in.Pods {
		if !p.OwnsAddresses() {
			continue
		}
		for a := range p.IPs() {
			if o.owner[a] != nil {
				return nil, false // a claimed address: Claim's rules, not modelled here
			}
			o.owner[a] = p
		}
	}
	return o, true
}

func podLabels(p *compact.Pod) labels.Set {
	return labels.Set(p.LabelSet().Map())
}

func (o *oracle) allows(f ruleset.Flow) bool {
	for _, a := range []netip.Addr{f.Src, f.Dst} {
		for _, c := range o.in.PodCIDRs {
			if c.Contains(a) {
				if p := o.owner[a]; p == nil || p.NodeHandle() != compact.Intern(o.in.Node) {
					return false
				}
			}
		}
	}
	if f.Src == f.Dst {
		return true
	}
	return o.direction(f, f.Src, true) && o.direction(f, f.Dst, false)
}

// direction reports whether the local pod at addr (the source for egress, the destination for
// ingress), if any, lets the flow through.
func (o *oracle) direction(f ruleset.Flow, addr netip.Addr, egress bool) bool {
	p := o.owner[addr]
	if p == nil || p.NodeHandle() != compact.Intern(o.in.Node) {
		return true
	}
	isolated := false
	for _, np := range o.in.Policies {
		if np.Namespace != p.Namespace() {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err == nil && !sel.Matches(podLabels(p)) {
			continue
		}
		in, eg := len(np.Spec.PolicyTypes) == 0, len(np.Spec.PolicyTypes) == 0 && len(np.Spec.Egress) > 0
		for _, t := range np.Spec.PolicyTypes {
			switch t {
			case networkingv1.PolicyTypeIngress:
				in = true
			case networkingv1.PolicyTypeEgress:
				eg = true
			default:
				in, eg = true, true
			}
		}
		if (egress && !eg) || (!egress && !in) {
			continue
		}
		isolated = true
		if err != nil {
			continue // an invalid target selector: isolation only
		}
		if egress {
			for _, r := range np.Spec.Egress {
				if o.rule(np.Namespace, r.To, r.Ports, f, f.Dst) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Ingress {
				if o.rule(np.Namespace, r.From, r.Ports, f, f.Src) {
					return true
				}
			}
		}
	}
	return !isolated
}

func (o *oracle) rule(ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, f ruleset.Flow, peerAddr netip.Addr) bool {
	if len(peers) > 0 && !slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool { return o.peer(ns, &p, peerAddr) }) {
		return false
	}
	if len(ports) == 0 {
		return true
	}
	return slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool { return o.port(&p, f) })
}

func parseCIDR(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return p, false
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

func (o *oracle) peer(ns string, p *networkingv1.NetworkPolicyPeer, a netip.Addr) bool {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return false
		}
		cidr, ok := parseCIDR(p.IPBlock.CIDR)
		if !ok {
			return false
		}
		in := cidr.Contains(a)
		for _, e := range p.IPBlock.Except {
			ex, ok := parseCIDR(e)
			if !ok || ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() < cidr.Bits() || !cidr.Contains(ex.Addr()) {
				return false
			}
			in = in && !ex.Contains(a)
		}
		return in
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return false
	}
	podSel, nsSel := labels.Everything(), labels.Selector(nil)
	var err error
	if p.PodSelector != nil {
		if podSel, err = metav1.LabelSelectorAsSelector(p.PodSelector); err != nil {
			return false
		}
	}
	if p.NamespaceSelector != nil {
		if nsSel, err = metav1.LabelSelectorAsSelector(p.NamespaceSelector); err != nil {
			return false
		}
	}
	q := o.owner[a]
	if q == nil || !podSel.Matches(podLabels(q)) {
		return false
	}
	if nsSel == nil {
		return q.Namespace() == ns
	}
	return nsSel.Matches(o.nsLbl[q.Namespace()])
}

func (o *oracle) port(p *networkingv1.NetworkPolicyPort, f ruleset.Flow) bool {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	rp, ok := compact.ProtocolOf(proto)
	if !ok || proto == "" || rp != f.Protocol {
		return false
	}
	if p.Port == nil {
		return p.EndPort == nil
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil || p.Port.StrVal == "" {
			return false
		}
		q := o.owner[f.Dst]
		return q != nil && slices.ContainsFunc(q.Ports(), func(np compact.NamedPort) bool {
			return np.Name.Value() == p.Port.StrVal && np.Protocol() == rp && np.Number == f.Port
		})
	}
	first, last := p.Port.IntVal, p.Port.IntVal
	if p.EndPort != nil {
		last = *p.EndPort
	}
	if first < 1 || first > 65535 || last < first || last > 65535 {
		return false
	}
	return int32(f.Port) >= first && int32(f.Port) <= last
}

// FuzzTranslate translates random clusters: the translator never panics, gives the same rule set
// for the same input, the reference evaluator (RuleSet.Allows) agrees with the oracle above on
// every flow between the addresses of the vocabulary (when no address is claimed twice), and the
// rendered script is one `nft -c -f -` accepts (as root). The seeds run with every `go test`;
// `make fuzz` explores further.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x03\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"))
	f.Add(bytes.Repeat([]byte{0x02, 0x07, 0x01, 0x03, 0x04, 0x00, 0x05, 0x03}, 30))
	f.Add(bytes.Repeat([]byte{0x04, 0x01, 0x03, 0x02, 0x00, 0x06, 0x01}, 50))
	checker := nftcheck.Client(f)
	flowAddrs := make([]netip.Addr, len(fuzzFlowAddrs))
	for i, s := range fuzzFlowAddrs {
		flowAddrs[i] = netip.MustParseAddr(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzInput(data)
		rs, problems := Translate(in)
		again, _ := Translate(in)
		if !equalRuleSets(rs, again) {
			t.Fatal("two translations of one input differ")
		}
		if o, ok := newOracle(in); ok {
			for _, src := range flowAddrs {
				for _, dst := range flowAddrs {
					if src.Is4() != dst.Is4() {
						continue
					}
					for _, fl := range []ruleset.Flow{{Protocol: ruleset.TCP, Port: 80}, {Protocol: ruleset.UDP, Port: 53}, {Protocol: ruleset.TCP, Port: 8080}, {Protocol: "icmp"}} {
						fl.Src, fl.Dst = src, dst
						if got, want := rs.Allows(fl), o.allows(fl); got != want {
							t.Fatalf("%v -> %v %s/%d: allowed=%v, the oracle says %v\nproblems: %v\npolicies: %v", src, dst, fl.Protocol, fl.Port, got, want, problems, describe(in))
						}
					}
				}
			}
		}
		if checker != nil {
			if err := checker.Check(context.Background(), render.Render(rs, render.Options{}).Text); err != nil {
				t.Fatalf("nft -c rejects the script: %v", err)
			}
		}
	})
}

func equalRuleSets(a, b ruleset.RuleSet) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func describe(in Input) string {
	var b strings.Builder
	for _, p := range in.Pods {
		fmt.Fprintf(&b, "\n pod %s/%s node=%v live=%v labels=%v ips=%v bad=%v ports=%v", p.Namespace(), p.Name(), p.NodeHandle().Value(), p.OwnsAddresses(), podLabels(p), p.AppendIPs(nil), p.BadIPs(), p.Ports())
	}
	for _, ns := range in.Namespaces {
		fmt.Fprintf(&b, "\n ns %s %v", ns.Name, ns.Labels)
	}
	for _, np := range in.Policies {
		fmt.Fprintf(&b, "\n policy %s/%s %+v", np.Namespace, np.Name, np.Spec)
	}
	fmt.Fprintf(&b, "\n podCIDRs %v", in.PodCIDRs)
	return b.String()
}
