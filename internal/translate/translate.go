package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Input is the cluster state the translator reads. Objects may arrive undefaulted and in any
// order; none of them is modified.
type Input struct {
	// Node is the name of the node whose pods are enforced (spec.nodeName of local pods).
	Node       string
	Policies   []*networkingv1.NetworkPolicy
	Namespaces []*corev1.Namespace
	Pods       []*Pod // NewPods converts API objects
}

// Problem is a value the translator could not honour. The element holding it matches nothing.
type Problem struct {
	// Object names the object, e.g. "NetworkPolicy team-a/allow-web".
	Object  string
	Message string
}

func (p Problem) String() string { return p.Object + ": " + p.Message }

// namespaceNameLabel is set on every Namespace by the API server; objects read from files may
// lack it, so the translator adds it, as the API server would.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// Translate computes the rule set for in.Node. Problems are sorted.
func Translate(in Input) (ruleset.RuleSet, []Problem) {
	t := &translator{
		namespaces: map[string]*nsView{},
		nsByLabel:  map[string]map[string][]*nsView{},
		nsSelected: map[string][]*nsView{},
		peers:      map[string]peerResult{},
	}
	t.loadNamespaces(in.Namespaces)
	t.loadPods(in.Pods, in.Node)

	// A policy selects pods of its own namespace only: policies of namespaces without a local
	// pod cannot isolate anything here.
	var policies []*networkingv1.NetworkPolicy
	for _, np := range in.Policies {
		if ns := t.namespaces[np.Namespace]; ns != nil && len(ns.local) > 0 {
			policies = append(policies, np)
		}
	}
	slices.SortFunc(policies, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	isolated := map[*pod]*ruleset.Pod{}
	var rs ruleset.RuleSet
	for _, np := range policies {
		pol, targets, ok := t.policy(np)
		if !ok {
			continue
		}
		rs.Policies = append(rs.Policies, pol)
		for _, p := range targets {
			rp := isolated[p]
			if rp == nil {
				rp = &ruleset.Pod{Namespace: p.ns.name, Name: p.src.name, IPs: slices.Clone(p.ips)} // the rule set owns its slices
				isolated[p] = rp
			}
			if pol.Ingress != nil {
				rp.IngressPolicies = append(rp.IngressPolicies, pol.Key)
			}
			if pol.Egress != nil {
				rp.EgressPolicies = append(rp.EgressPolicies, pol.Key)
			}
		}
	}
	for _, rp := range isolated {
		rs.Pods = append(rs.Pods, *rp)
	}
	slices.SortFunc(rs.Pods, func(a, b ruleset.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(t.problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Object, b.Object), cmp.Compare(a.Message, b.Message))
	})
	return rs, slices.Compact(t.problems)
}

type translator struct {
	namespaces map[string]*nsView              // every namespace named by a Namespace object or a pod
	nsNames    []*nsView                       // the namespaces that hold a pod owning an address, sorted
	nsByLabel  map[string]map[string][]*nsView // label key -> value -> namespaces; filled per key on first use
	nsSelected map[string][]*nsView            // namespaceSelector (String form) -> the namespaces it matches
	pods       []pod                           // every pod that owns an address, in input order
	peers      map[string]peerResult
	builder    ruleset.Builder // reused for every peer: its memory grows to the largest one
	problems   []Problem
}

func (t *translator) report(object, format string, args ...any) {
	t.problems = append(t.problems, Problem{Object: object, Message: fmt.Sprintf(format, args...)})
}

// policy translates one NetworkPolicy. It returns ok=false when the policy selects no local pod
// that owns an address.
func (t *translator) policy(np *networkingv1.NetworkPolicy) (ruleset.Policy, []*pod, bool) {
	obj := "NetworkPolicy " + np.Namespace + "/" + np.Name
	key := ruleset.PolicyKey{Namespace: np.Namespace, Name: np.Name}

	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	validTargets := err == nil
	if !validTargets {
		// We cannot tell which pods the policy meant; isolating every pod of its namespace with no
		// allowances from this policy is the closed failure.
		t.report(obj, "invalid spec.podSelector, isolating every pod in the namespace and allowing nothing: %v", err)
		sel = labels.Everything()
	}
	var targets []*pod
	for _, p := range t.namespaces[np.Namespace].local {
		if len(p.ips) > 0 && sel.Matches(p.labels()) {
			targets = append(targets, p)
		}
	}
	if len(targets) == 0 {
		return ruleset.Policy{}, nil, false
	}

	ingress, egress := t.policyTypes(obj, np)
	pol := ruleset.Policy{Key: key}
	if ingress {
		pol.Ingress = []ruleset.Rule{}
		for i, r := range np.Spec.Ingress {
			if validTargets {
				pol.Ingress = append(pol.Ingress, t.rule(obj, fmt.Sprintf("spec.ingress[%d]", i), np.Namespace, i, r.From, r.Ports, targets, false))
			}
		}
	}
	if egress {
		pol.Egress = []ruleset.Rule{}
		for i, r := range np.Spec.Egress {
			if validTargets {
				pol.Egress = append(pol.Egress, t.rule(obj, fmt.Sprintf("spec.egress[%d]", i), np.Namespace, i, r.To, r.Ports, targets, true))
			}
		}
	}
	return pol, targets, true
}

// policyTypes applies the API's defaulting: without policyTypes a policy isolates for ingress
// always and for egress only when it has egress rules. An unknown type cannot be honoured; the
// closed failure is to isolate both directions.
func (t *translator) policyTypes(obj string, np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, pt := range np.Spec.PolicyTypes {
		switch pt {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			t.report(obj, "unknown policyType %q, isolating for both ingress and egress", pt)
			return true, true
		}
	}
	return ingress, egress
}

// rule translates one ingress (from) or egress (to) rule.
func (t *translator) rule(obj, path, ns string, index int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, targets []*pod, egress bool) ruleset.Rule {
	r := ruleset.Rule{Index: index, AnyPeer: len(peers) == 0, AnyPort: len(ports) == 0}

	peerField := "from"
	if egress {
		peerField = "to"
	}
	var sets []ruleset.AddrSet
	var dests []peerResult // egress: what each peer matched, for the pods that own named ports
	for i := range peers {
		res, err := t.peer(ns, &peers[i])
		if err != nil {
			t.report(obj, "%s.%s[%d] matches nothing: %v", path, peerField, i, err)
			continue
		}
		sets = append(sets, res.addrs)
		if egress {
			dests = append(dests, res)
		}
	}
	if len(sets) == 1 {
		r.Peers = sets[0] // already canonical: no need to merge it again
	} else {
		var b ruleset.Builder
		for _, set := range sets {
			b.AddSet(set)
		}
		r.Peers = b.Set()
	}

	var owners []*pod
	ownersKnown := false
	for i := range ports {
		pr, name, err := portEntry(&ports[i])
		if err != nil {
			t.report(obj, "%s.ports[%d] matches nothing: %v", path, i, err)
			continue
		}
		if name == "" {
			if !slices.Contains(r.Ports, pr) {
				r.Ports = append(r.Ports, pr)
			}
			continue
		}
		if !ownersKnown {
			owners, ownersKnown = t.namedPortOwners(targets, dests, egress, r.AnyPeer), true
		}
		for _, p := range owners {
			r.NamedPorts = appendEndpoints(r.NamedPorts, p, name, pr.Protocol, nil)
		}
		// An ipBlock destination resolves the name on the pod that owns the address, whichever
		// peer matched (the upstream reference and cyclonus agree): only the pod's addresses
		// inside the block, excepts removed, and an address no pod owns matches no named port.
		for i := range dests {
			if block := &dests[i]; block.isBlock() {
				for j := range t.pods {
					r.NamedPorts = appendEndpoints(r.NamedPorts, &t.pods[j], name, pr.Protocol, block.addrs.Contains)
				}
			}
		}
	}
	slices.SortFunc(r.NamedPorts, compareEndpoints)
	r.NamedPorts = slices.Compact(r.NamedPorts)
	return r
}

// namedPortOwners returns the pods whose named ports a rule may match at every address they
// own: for ingress the policy's local targets; for egress the destination pods that a
// pod-selecting peer matches, or every pod when the rule names no peer. (The pods an ipBlock
// peer reaches match only at their addresses inside the block; the caller adds those.)
func (t *translator) namedPortOwners(targets []*pod, dests []peerResult, egress, anyPeer bool) []*pod {
	if !egress {
		return targets
	}
	var owners []*pod
	if anyPeer {
		owners = make([]*pod, len(t.pods))
		for i := range t.pods {
			owners[i] = &t.pods[i]
		}
	}
	for i := range dests {
		owners = dests[i].appendPods(owners)
	}
	return owners
}

// compareEndpoints orders endpoints by address, protocol and port. It compares the protocols
// only for equal addresses: a rule may resolve a named port on thousands of pods.
func compareEndpoints(a, b ruleset.Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}

// portEntry translates one port entry into a numeric range, or a protocol and a port name.
func portEntry(p *networkingv1.NetworkPolicyPort) (ruleset.PortRange, string, error) {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	rp, ok := protocolOf(proto)
	if !ok || proto == "" {
		return ruleset.PortRange{}, "", fmt.Errorf("unsupported protocol %q", proto)
	}
	pr := ruleset.PortRange{Protocol: rp}
	if p.Port == nil {
		if p.EndPort != nil {
			return pr, "", fmt.Errorf("endPort %d without port", *p.EndPort)
		}
		return pr, "", nil // every port of the protocol
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil {
			return pr, "", fmt.Errorf("endPort cannot be used with named port %q", p.Port.StrVal)
		}
		if p.Port.StrVal == "" {
			return pr, "", fmt.Errorf("empty port name")
		}
		return pr, p.Port.StrVal, nil
	}
	first := p.Port.IntVal
	if first < 1 || first > 65535 {
		return pr, "", fmt.Errorf("port %d out of range 1-65535", first)
	}
	last := first
	if p.EndPort != nil {
		last = *p.EndPort
		if last < first || last > 65535 {
			return pr, "", fmt.Errorf("endPort %d must be between port %d and 65535", last, first)
		}
	}
	pr.First, pr.Last = uint16(first), uint16(last)
	return pr, "", nil
}

// peerResult is what one peer matches: addresses, and where its pods are (for named ports).
type peerResult struct {
	addrs ruleset.AddrSet
	// The pods are those of nss that podSel matches. They are listed again only for egress named
	// ports, so they are not kept: a broad peer matches a large part of the cluster.
	nss    []*nsView
	podSel labels.Selector
}

// isBlock reports whether the peer is an ipBlock: it matches addresses, not pods.
func (r *peerResult) isBlock() bool { return r.podSel == nil }

// appendPods appends the pods the peer matches; none for an ipBlock.
func (r *peerResult) appendPods(dst []*pod) []*pod {
	for _, ns := range r.nss {
		for _, p := range ns.pods {
			if r.podSel.Matches(p.labels()) {
				dst = append(dst, p)
			}
		}
	}
	return dst
}

// peer translates one peer of a rule in namespace ns. Results of selector peers are memoised for
// the duration of one Translate call, since many policies share the same peers.
func (t *translator) peer(ns string, peer *networkingv1.NetworkPolicyPeer) (peerResult, error) {
	if peer.IPBlock != nil {
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			return peerResult{}, fmt.Errorf("ipBlock cannot be combined with a selector")
		}
		set, err := ipBlock(peer.IPBlock)
		return peerResult{addrs: set}, err
	}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return peerResult{}, fmt.Errorf("peer names no podSelector, namespaceSelector or ipBlock")
	}

	var key strings.Builder
	podSel, nsSel := labels.Everything(), labels.Selector(nil)
	if peer.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil {
			return peerResult{}, fmt.Errorf("invalid podSelector: %w", err)
		}
		podSel = s
	}
	if peer.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if err != nil {
			return peerResult{}, fmt.Errorf("invalid namespaceSelector: %w", err)
		}
		nsSel = s
		key.WriteString("ns:" + s.String())
	} else {
		// A podSelector alone means the policy's own namespace.
		key.WriteString("in:" + ns)
	}
	key.WriteString("\x00" + podSel.String())
	if res, ok := t.peers[key.String()]; ok {
		return res, nil
	}

	res := peerResult{podSel: podSel}
	if nsSel == nil {
		if v := t.namespaces[ns]; v != nil {
			res.nss = []*nsView{v}
		}
	} else {
		res.nss = t.selectNamespaces(nsSel)
	}
	b := &t.builder
	b.Reset()
	everyPod := podSel.Empty()
	for _, n := range res.nss {
		for _, p := range n.pods {
			if everyPod || podSel.Matches(p.labels()) {
				for _, a := range p.ips {
					b.AddAddr(a)
				}
			}
		}
	}
	res.addrs = b.Set()
	t.peers[key.String()] = res
	return res, nil
}

// ipBlock returns the addresses of cidr minus its excepts. Host bits are masked. An except that
// does not parse, or that lies outside its cidr, makes the whole peer match nothing: guessing
// what it meant could widen the allowance.
func ipBlock(b *networkingv1.IPBlock) (ruleset.AddrSet, error) {
	cidr, err := netip.ParsePrefix(strings.TrimSpace(b.CIDR))
	if err != nil {
		return ruleset.AddrSet{}, fmt.Errorf("invalid ipBlock.cidr %q: %w", b.CIDR, err)
	}
	cidr = unmapPrefix(cidr).Masked()
	whole := ruleset.PrefixRange(cidr)
	var holes []ruleset.AddrRange
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(strings.TrimSpace(e))
		if err != nil {
			return ruleset.AddrSet{}, fmt.Errorf("invalid ipBlock.except %q: %w", e, err)
		}
		ex = unmapPrefix(ex).Masked()
		if ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() < cidr.Bits() || !cidr.Contains(ex.Addr()) {
			return ruleset.AddrSet{}, fmt.Errorf("ipBlock.except %q is not inside cidr %q", e, b.CIDR)
		}
		holes = append(holes, ruleset.PrefixRange(ex))
	}
	var bld ruleset.Builder
	for _, r := range ruleset.Subtract(whole, holes) {
		bld.AddRange(r)
	}
	return bld.Set(), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96), the way pod addresses are
// compared; other prefixes are returned as they are.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
