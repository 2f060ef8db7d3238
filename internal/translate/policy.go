package translate

import (
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// policy translates one NetworkPolicy. It returns ok=false when the policy selects no local pod
// that owns an address.
func (t *translator) policy(np *networkingv1.NetworkPolicy) (ruleset.Policy, []*indexedPod, bool) {
	obj := "NetworkPolicy " + np.Namespace + "/" + np.Name
	key := ruleset.PolicyKey{Namespace: np.Namespace, Name: np.Name}

	targets, err := t.policyTargets(np)
	validTargets := err == nil
	if !validTargets {
		// We cannot tell which pods the policy meant; isolating every pod of its namespace with no
		// allowances from this policy is the closed failure.
		t.report(obj, "invalid spec.podSelector, isolating every pod in the namespace and allowing nothing: %v", err)
	}
	if len(targets) == 0 {
		return ruleset.Policy{}, nil, false
	}

	ingress, egress, unknown := policyTypes(np)
	if unknown != "" {
		t.report(obj, "unknown policyType %q, isolating for both ingress and egress", unknown)
	}
	pol := ruleset.Policy{Key: key, Audit: t.auditMode(obj, np)}
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

// policyTargets returns the local pods np selects in its namespace. A podSelector that does not
// parse selects them all (and comes with its error).
func (t *translator) policyTargets(np *networkingv1.NetworkPolicy) ([]*indexedPod, error) {
	sel, err := asSelector(&np.Spec.PodSelector)
	if err != nil {
		sel = labels.Everything()
	}
	var targets []*indexedPod
	if ns := t.namespaces[np.Namespace]; ns != nil {
		for _, p := range ns.local {
			if p.src.NumIPs() > 0 && sel.Matches(p.labels()) {
				targets = append(targets, p)
			}
		}
	}
	return targets, err
}

// policyTypes applies the API's defaulting: without policyTypes a policy isolates for ingress
// always and for egress only when it has egress rules. An unknown type cannot be honoured; the
// closed failure is to isolate both directions (unknown names the type, for the caller to report).
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool, unknown networkingv1.PolicyType) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0, ""
	}
	for _, pt := range np.Spec.PolicyTypes {
		switch pt {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			return true, true, pt
		}
	}
	return ingress, egress, ""
}

// rule translates one ingress (from) or egress (to) rule.
func (t *translator) rule(obj, path, ns string, index int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, targets []*indexedPod, egress bool) ruleset.Rule {
	peerField := "from"
	if egress {
		peerField = "to"
	}
	var results []peerResult
	for i := range peers {
		res, err := t.peer(ns, &peers[i])
		if err != nil {
			t.report(obj, "%s.%s[%d] matches nothing: %v", path, peerField, i, err)
			continue
		}
		results = append(results, res)
	}
	return t.ruleOf(obj, path, index, len(peers) == 0, results, ports, targets, egress)
}

// ruleOf builds a rule from what its peers match (anyPeer: the rule names none) and its port
// entries. targets are the pods the rule's policy selects (the owners of ingress named ports).
func (t *translator) ruleOf(obj, path string, index int, anyPeer bool, results []peerResult, ports []networkingv1.NetworkPolicyPort, targets []*indexedPod, egress bool) ruleset.Rule {
	r := ruleset.Rule{Index: index, AnyPeer: anyPeer, AnyPort: len(ports) == 0}
	var dests []peerResult // egress: what each peer matched, for the pods that own named ports
	if egress {
		dests = results
	}
	if len(results) == 1 {
		r.Peers = results[0].addrs // already canonical: no need to merge it again
	} else {
		var b ruleset.Builder
		for _, res := range results {
			b.AddSet(res.addrs)
		}
		r.Peers = b.Set()
	}

	var owners []*indexedPod
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
			owners, ownersKnown = t.namedPortOwners(targets, egress, r.AnyPeer), true
		}
		if egress && (r.AnyPeer || slices.ContainsFunc(dests, func(d peerResult) bool { return d.isBlock() })) {
			// The name resolves on pods anywhere in the cluster, not only on those of
			// memoised peers: any pod with a port of that name can change the rule.
			t.resolvesEverywhere(name)
		}
		for _, p := range owners {
			r.NamedPorts = t.appendEndpoints(r.NamedPorts, p, name, pr.Protocol, nil)
		}
		for i := range dests {
			if !dests[i].isBlock() {
				r.NamedPorts = append(r.NamedPorts, t.peerEndpoints(&dests[i], name, pr.Protocol)...)
			}
		}
		// An ipBlock destination resolves the name on the pod that owns the address, whichever
		// peer matched (the upstream reference and cyclonus agree): only the pod's addresses
		// inside the block, excepts removed, and an address no pod owns matches no named port.
		for i := range dests {
			if block := &dests[i]; block.isBlock() {
				for p := range t.everyPod {
					r.NamedPorts = t.appendEndpoints(r.NamedPorts, p, name, pr.Protocol, block.addrs.Contains)
				}
			}
		}
	}
	sortEndpoints(r.NamedPorts)
	r.NamedPorts = slices.Compact(r.NamedPorts)
	return r
}

// resolvesEverywhere records that the policy being translated (Incremental only) resolves the
// port name on every pod of the cluster.
func (t *translator) resolvesEverywhere(name string) {
	if t.inc != nil {
		t.inc.resolvesEverywhere(name)
	}
}
