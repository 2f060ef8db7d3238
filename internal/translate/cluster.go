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
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) is translated onto the same rules as
// NetworkPolicy: its peers become NetworkPolicy-style peers (namespaces: every pod of the
// selected namespaces; pods: both selectors; networks: one ipBlock per CIDR) resolved by the same
// memoised peer code, plus the addresses of the selected Nodes; its protocols become port
// entries (a destinationNamedPort is the name for each of TCP, UDP and SCTP: the name resolves to
// whatever protocol the destination's container port declares).
//
// What the translator cannot honour fails closed as the API prescribes for peers it does not
// know: an Accept rule matches nothing, a Deny or Pass rule becomes "Deny all" (every peer,
// every port, action Deny). That covers a peer with no known field set (a newer CRD), a
// `domainNames` peer (not supported yet), and values API validation should have refused (an
// invalid selector or CIDR, a protocol entry with no or several protocols, a port out of range,
// an unknown action).

// tierRank orders the tiers: Admin is evaluated before Baseline.
func tierRank(t ruleset.Tier) int {
	if t == ruleset.BaselineTier {
		return 1
	}
	return 0
}

// clusterPolicies translates the ClusterNetworkPolicies that have a local subject, adds their
// subjects to targets (creating Targets for pods no NetworkPolicy selects) and returns them in
// evaluation order.
func (t *translator) clusterPolicies(cnps []*v1alpha2.ClusterNetworkPolicy, targets map[*indexedPod]*ruleset.Target, newTarget func(*indexedPod) *ruleset.Target) []ruleset.ClusterPolicy {
	type translated struct {
		pol      ruleset.ClusterPolicy
		subjects []*indexedPod
	}
	var all []translated
	for _, cnp := range cnps {
		obj := "ClusterNetworkPolicy " + cnp.Name
		tier := ruleset.Tier(cnp.Spec.Tier)
		broken := false // the policy cannot be honoured as written: only its Deny rules act
		if tier != ruleset.AdminTier && tier != ruleset.BaselineTier {
			t.report(obj, "unknown tier %q, evaluating it in the Admin tier with its Accept and Pass rules matching nothing", cnp.Spec.Tier)
			tier, broken = ruleset.AdminTier, true
		}
		subjects, ok := t.subjects(obj, &cnp.Spec.Subject)
		broken = broken || !ok
		if len(subjects) == 0 {
			continue
		}
		pol := ruleset.ClusterPolicy{Name: cnp.Name, Tier: tier, Priority: cnp.Spec.Priority}
		for i := range cnp.Spec.Ingress {
			r := &cnp.Spec.Ingress[i]
			peers := make([]v1alpha2.ClusterNetworkPolicyEgressPeer, len(r.From))
			for j, p := range r.From {
				peers[j] = v1alpha2.ClusterNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods}
			}
			pol.Ingress = append(pol.Ingress, t.clusterRule(obj, fmt.Sprintf("spec.ingress[%d]", i), i, r.Name, r.Action, peers, r.Protocols, subjects, false, broken))
		}
		for i := range cnp.Spec.Egress {
			r := &cnp.Spec.Egress[i]
			pol.Egress = append(pol.Egress, t.clusterRule(obj, fmt.Sprintf("spec.egress[%d]", i), i, r.Name, r.Action, r.To, r.Protocols, subjects, true, broken))
		}
		all = append(all, translated{pol, subjects})
	}
	slices.SortFunc(all, func(a, b translated) int {
		return cmp.Or(cmp.Compare(tierRank(a.pol.Tier), tierRank(b.pol.Tier)),
			cmp.Compare(a.pol.Priority, b.pol.Priority), cmp.Compare(a.pol.Name, b.pol.Name))
	})
	out := make([]ruleset.ClusterPolicy, 0, len(all))
	for _, c := range all {
		out = append(out, c.pol)
		for _, p := range c.subjects {
			tg := targets[p]
			if tg == nil {
				tg = newTarget(p)
				targets[p] = tg
			}
			in, eg := &tg.AdminIngress, &tg.AdminEgress
			if c.pol.Tier == ruleset.BaselineTier {
				in, eg = &tg.BaselineIngress, &tg.BaselineEgress
			}
			// A policy with no rules in a direction does not affect it (the API).
			if len(c.pol.Ingress) > 0 {
				*in = append(*in, c.pol.Name)
			}
			if len(c.pol.Egress) > 0 {
				*eg = append(*eg, c.pol.Name)
			}
		}
	}
	return out
}

// subjects returns the local pods a subject selects. An invalid subject (bad selector, or no
// known field set) is reported and selects every local pod, with ok false: the caller then lets
// only the policy's Deny rules act, the closed reading of a policy we cannot read.
func (t *translator) subjects(obj string, s *v1alpha2.ClusterNetworkPolicySubject) (pods []*indexedPod, ok bool) {
	var nsSel, podSel labels.Selector
	var err error
	switch {
	case s.Namespaces != nil && s.Pods == nil:
		nsSel, err = asSelector(s.Namespaces)
		podSel = labels.Everything()
	case s.Pods != nil && s.Namespaces == nil:
		nsSel, err = asSelector(&s.Pods.NamespaceSelector)
		if err == nil {
			podSel, err = asSelector(&s.Pods.PodSelector)
		}
	default:
		err = fmt.Errorf("exactly one of namespaces and pods must be set")
	}
	if err != nil {
		t.report(obj, "invalid spec.subject, selecting every local pod and acting only on its Deny rules: %v", err)
		nsSel, podSel = labels.Everything(), labels.Everything()
	}
	for _, p := range t.local {
		if p.src.NumIPs() > 0 && nsSel.Matches(p.ns) && podSel.Matches(p.labels()) {
			pods = append(pods, p)
		}
	}
	return pods, err == nil
}

// clusterRule translates one rule. Ingress peers are passed as egress peers with only
// namespaces and pods set (the two types share those fields).
func (t *translator) clusterRule(obj, path string, index int, name string, action v1alpha2.ClusterNetworkPolicyRuleAction,
	peers []v1alpha2.ClusterNetworkPolicyEgressPeer, protocols []v1alpha2.ClusterNetworkPolicyProtocol,
	subjects []*indexedPod, egress, broken bool) ruleset.ClusterRule {
	act := ruleset.Action(action)
	switch act {
	case ruleset.Accept, ruleset.Deny, ruleset.Pass:
	default:
		t.report(obj, "%s: unknown action %q, denying what the rule matches", path, action)
		act = ruleset.Deny
	}
	closed := func(format string, args ...any) ruleset.ClusterRule {
		what := "an Accept rule matches nothing"
		r := ruleset.ClusterRule{Rule: ruleset.Rule{Index: index}, Action: act, Name: name}
		if act != ruleset.Accept {
			what = "a " + string(act) + " rule denies everything"
			r.Action, r.AnyPeer, r.AnyPort = ruleset.Deny, true, true
		}
		t.report(obj, "%s: failing closed (%s)", fmt.Sprintf(format, args...), what)
		return r
	}
	if broken && act != ruleset.Deny {
		return ruleset.ClusterRule{Rule: ruleset.Rule{Index: index}, Action: act, Name: name} // matches nothing
	}
	field := "from"
	if egress {
		field = "to"
	}
	if len(peers) == 0 {
		return closed("%s.%s is empty", path, field)
	}

	var results []peerResult
	for i := range peers {
		p := &peers[i]
		set := 0
		for _, has := range []bool{p.Namespaces != nil, p.Pods != nil, p.Nodes != nil, len(p.Networks) > 0, len(p.DomainNames) > 0} {
			if has {
				set++
			}
		}
		where := fmt.Sprintf("%s.%s[%d]", path, field, i)
		switch {
		case set != 1:
			return closed("%s sets %d peer types, want exactly one (a newer API version?)", where, set)
		case len(p.DomainNames) > 0:
			return closed("%s: domainNames peers are not supported", where)
		case p.Nodes != nil:
			res, err := t.nodePeer(p.Nodes)
			if err != nil {
				return closed("%s: %v", where, err)
			}
			results = append(results, res)
			continue
		}
		var nps []networkingv1.NetworkPolicyPeer
		switch {
		case p.Namespaces != nil:
			nps = []networkingv1.NetworkPolicyPeer{{NamespaceSelector: p.Namespaces}}
		case p.Pods != nil:
			nps = []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &p.Pods.NamespaceSelector, PodSelector: &p.Pods.PodSelector}}
		default:
			for _, c := range p.Networks {
				nps = append(nps, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: string(c)}})
			}
		}
		for j := range nps {
			res, err := t.peer("", &nps[j])
			if err != nil {
				return closed("%s: %v", where, err)
			}
			results = append(results, res)
		}
	}

	ports, err := clusterPorts(protocols)
	if err != nil {
		return closed("%s.protocols%v", path, err)
	}
	return ruleset.ClusterRule{Rule: t.ruleOf(obj, path, index, false, results, ports, subjects, egress), Action: act, Name: name}
}

// namedPortProtocols are the protocols a destinationNamedPort may resolve to.
var namedPortProtocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

// clusterPorts converts a rule's protocols to NetworkPolicy port entries; none means every port
// of every protocol, as in a NetworkPolicy.
func clusterPorts(protocols []v1alpha2.ClusterNetworkPolicyProtocol) ([]networkingv1.NetworkPolicyPort, error) {
	var out []networkingv1.NetworkPolicyPort
	for i, p := range protocols {
		type entry struct {
			proto corev1.Protocol
			port  *v1alpha2.Port
		}
		var set []entry
		if p.TCP != nil {
			set = append(set, entry{corev1.ProtocolTCP, p.TCP.DestinationPort})
		}
		if p.UDP != nil {
			set = append(set, entry{corev1.ProtocolUDP, p.UDP.DestinationPort})
		}
		if p.SCTP != nil {
			set = append(set, entry{corev1.ProtocolSCTP, p.SCTP.DestinationPort})
		}
		n := len(set)
		if p.DestinationNamedPort != "" {
			n++
		}
		if n != 1 {
			return nil, fmt.Errorf("[%d] sets %d of tcp, udp, sctp and destinationNamedPort, want exactly one", i, n)
		}
		if name := strings.TrimSpace(p.DestinationNamedPort); name != "" {
			for _, pr := range namedPortProtocols {
				out = append(out, networkingv1.NetworkPolicyPort{Protocol: &pr, Port: namedPort(name)})
			}
			continue
		}
		proto, port := set[0].proto, set[0].port
		np := networkingv1.NetworkPolicyPort{Protocol: &proto}
		switch {
		case port == nil:
			// every port of the protocol
		case port.Range != nil && port.Number == 0:
			if port.Range.Start < 1 || port.Range.End > 65535 || port.Range.End < port.Range.Start {
				return nil, fmt.Errorf("[%d] port range %d-%d is not within 1-65535 in order", i, port.Range.Start, port.Range.End)
			}
			np.Port, np.EndPort = numberedPort(port.Range.Start), &port.Range.End
		case port.Range == nil && port.Number >= 1 && port.Number <= 65535:
			np.Port = numberedPort(port.Number)
		default:
			return nil, fmt.Errorf("[%d] destinationPort wants a number in 1-65535 or a range", i)
		}
		out = append(out, np)
	}
	return out, nil
}

func namedPort(name string) *intstr.IntOrString {
	v := intstr.FromString(name)
	return &v
}

func numberedPort(n int32) *intstr.IntOrString {
	v := intstr.FromInt32(n)
	return &v
}

// nodeAddrs returns the addresses of the Node called name, sorted.
func nodeAddrs(nodes []*corev1.Node, name string) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		if n.Name == name {
			out = appendNodeAddrs(out, n)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// appendNodeAddrs appends every address of a Node's status.addresses that is an IP
// (InternalIP, ExternalIP; host names are not).
func appendNodeAddrs(dst []netip.Addr, n *corev1.Node) []netip.Addr {
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(strings.TrimSpace(a.Address)); err == nil {
			dst = append(dst, ip.Unmap())
		}
	}
	return dst
}

// nodePeer returns the addresses of the Nodes the selector matches.
func (t *translator) nodePeer(sel *metav1.LabelSelector) (peerResult, error) {
	s, err := asSelector(sel)
	if err != nil {
		return peerResult{}, fmt.Errorf("invalid nodes selector: %w", err)
	}
	var b ruleset.Builder
	var addrs []netip.Addr
	for _, n := range t.nodes {
		if s.Matches(labels.Set(n.Labels)) {
			addrs = appendNodeAddrs(addrs[:0], n)
			for _, a := range addrs {
				b.AddAddr(a)
			}
		}
	}
	return peerResult{addrs: b.Set()}, nil
}
