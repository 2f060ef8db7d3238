package translate

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Input is the cluster state the translator reads. Objects may arrive undefaulted and in any
// order; none of them is modified.
type Input struct {
	// Node is the name of the node whose pods are enforced (spec.nodeName of local pods).
	Node       string
	Policies   []*networkingv1.NetworkPolicy
	Namespaces []*corev1.Namespace
	Pods       []*compact.Pod // compact.NewPods converts API objects
	// PodCIDRs are the node's pod ranges (the Node's spec.podCIDRs, or the operator's override).
	// Traffic from or to an address inside them that no local pod owns is closed (see
	// ruleset.Edges). Empty means no such check.
	PodCIDRs []netip.Prefix
	// LogDrops turns on drop logs for every local pod (ruleset.Target.LogDrops); without it,
	// only the pods of namespaces annotated with DropLogAnnotation log their drops.
	LogDrops bool
	// ClusterPolicies are the cluster's ClusterNetworkPolicies (policy.networking.k8s.io
	// v1alpha2); empty when the CRD is not installed.
	ClusterPolicies []*v1alpha2.ClusterNetworkPolicy
	// Nodes are the cluster's Nodes, for the `nodes` egress peers of ClusterNetworkPolicies: only
	// their names, labels and status.addresses are read.
	Nodes []*corev1.Node
}

// Problem is a value the translator could not honour. The message says what is enforced instead,
// always the closed reading: a NetworkPolicy peer or port that matches nothing, a
// ClusterNetworkPolicy rule that fails as the API prescribes for peers it does not know.
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
	t := newTranslator()
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
	t.resolvePeersAhead(policies)
	translated := make([]translatedPolicy, 0, len(policies))
	for _, np := range policies {
		if pol, targets, ok := t.policy(np); ok {
			translated = append(translated, translatedPolicy{pol, targets})
		}
	}
	return t.ruleSet(translated, &in)
}

func newTranslator() *translator {
	return &translator{
		namespaces: map[string]*nsView{},
		nsByLabel:  map[string]map[string][]*nsView{},
		nsSelected: map[string][]*nsView{},
		peers:      map[string]*peerEntry{},
	}
}

// translatedPolicy is a NetworkPolicy that selects local pods, with those pods.
type translatedPolicy struct {
	pol     ruleset.Policy
	targets []*indexedPod
}

// ruleSet assembles the rule set from the translated NetworkPolicies (sorted by namespace, then
// name) and what the indexes hold; of in it reads only the settings, the ClusterNetworkPolicies
// and the Nodes. It sorts t.problems and returns them.
func (t *translator) ruleSet(policies []translatedPolicy, in *Input) (ruleset.RuleSet, []Problem) {
	var rs ruleset.RuleSet
	if t.inc != nil {
		rs.Policies = t.inc.policyList(policies)
	} else {
		rs.Policies = policyList(policies)
	}
	var isolated map[*indexedPod]*ruleset.Target
	if t.inc != nil && len(in.ClusterPolicies) == 0 {
		// The Targets of the pods whose policies did not change are those of the last call.
		rs.Targets = t.inc.targets(policies, in.LogDrops)
		if len(t.conflicts) > 0 {
			isolated = t.inc.isolated(rs.Targets)
		}
	} else {
		isolated = t.isolate(policies, in, &rs)
	}
	rs.NodeAddrs = nodeAddrs(in.Nodes, in.Node)
	rs.Claims = t.ruleSetClaims(isolated)
	if t.inc != nil {
		rs.Edges, rs.Local = t.inc.localParts(in.PodCIDRs)
	} else {
		rs.Edges = t.edges(in.PodCIDRs)
		rs.Local = t.localAddrs()
	}
	slices.SortFunc(t.problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Object, b.Object), cmp.Compare(a.Message, b.Message))
	})
	return rs, slices.Compact(t.problems)
}

// policyList returns the policies of the rule set.
func policyList(policies []translatedPolicy) []ruleset.Policy {
	if len(policies) == 0 {
		return nil
	}
	out := make([]ruleset.Policy, 0, len(policies))
	for _, tp := range policies {
		out = append(out, tp.pol)
	}
	return out
}

// isolate fills rs.Targets and rs.ClusterPolicies from the translated NetworkPolicies and the
// ClusterNetworkPolicies, and returns the Targets by pod.
func (t *translator) isolate(policies []translatedPolicy, in *Input, rs *ruleset.RuleSet) map[*indexedPod]*ruleset.Target {
	isolated := map[*indexedPod]*ruleset.Target{}
	newTarget := func(p *indexedPod) *ruleset.Target {
		return &ruleset.Target{Namespace: p.ns.name, Name: p.src.Name(), IPs: t.ownIPs(p), // the rule set owns its slices
			LogDrops: in.LogDrops || p.ns.dropLogs}
	}
	for _, tp := range policies {
		pol := &tp.pol
		for _, p := range tp.targets {
			rp := isolated[p]
			if rp == nil {
				rp = newTarget(p)
				isolated[p] = rp
			}
			addPolicy(rp, pol.Key, pol.Audit, pol.Ingress != nil, pol.Egress != nil)
		}
	}
	if len(in.ClusterPolicies) > 0 {
		t.nodes = in.Nodes
		rs.ClusterPolicies = t.clusterPolicies(in.ClusterPolicies, isolated, newTarget)
	}
	for _, rp := range isolated {
		rs.Targets = append(rs.Targets, *rp)
	}
	slices.SortFunc(rs.Targets, func(a, b ruleset.Target) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return isolated
}

// addPolicy lists a NetworkPolicy that selects the target's pod in the directions it isolates.
func addPolicy(rp *ruleset.Target, key ruleset.PolicyKey, audit, ingress, egress bool) {
	in, out := &rp.IngressPolicies, &rp.EgressPolicies
	if audit {
		in, out = &rp.AuditIngress, &rp.AuditEgress
	}
	if ingress {
		*in = append(*in, key)
	}
	if egress {
		*out = append(*out, key)
	}
}

type translator struct {
	namespaces map[string]*nsView              // every namespace named by a Namespace object or a pod
	nsNames    []*nsView                       // the namespaces that hold a pod owning an address, sorted
	nsByLabel  map[string]map[string][]*nsView // label key -> value -> namespaces; filled per key on first use
	nsSelected map[string][]*nsView            // namespaceSelector (String form) -> the namespaces it matches
	pods       []indexedPod                    // every pod that owns an address, in input order
	local      []*indexedPod                   // the local ones among them, in input order
	claims     map[netip.Addr][]*indexedPod    // address -> its claimants when more than one pod claims it, by namespace and name; nil without conflicts
	conflicts  []netip.Addr                    // the keys of claims, sorted
	peers      map[string]*peerEntry
	builder    ruleset.Builder // reused for every peer: its memory grows to the largest one
	nodes      []*corev1.Node  // for the nodes peers of ClusterNetworkPolicies
	problems   []Problem
	// inc is the Incremental that keeps this translator's indexes across recomputes; nil in
	// Translate.
	inc *Incremental
}

func (t *translator) report(object, format string, args ...any) {
	t.problems = append(t.problems, Problem{Object: object, Message: fmt.Sprintf(format, args...)})
}

// edges returns the node's pod ranges and the addresses of every local pod that owns one.
func (t *translator) edges(cidrs []netip.Prefix) ruleset.Edges {
	if len(cidrs) == 0 {
		return ruleset.Edges{}
	}
	var e ruleset.Edges
	for _, c := range cidrs {
		if c.IsValid() {
			e.PodCIDRs = append(e.PodCIDRs, unmapPrefix(c).Masked())
		}
	}
	slices.SortFunc(e.PodCIDRs, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	e.PodCIDRs = slices.Compact(e.PodCIDRs)
	for _, p := range t.local {
		e.LocalPods = p.src.AppendIPs(e.LocalPods)
	}
	slices.SortFunc(e.LocalPods, netip.Addr.Compare)
	e.LocalPods = slices.Compact(e.LocalPods)
	return e
}

// localAddrs returns the address of every live local pod with its owner, sorted, each once.
func (t *translator) localAddrs() []ruleset.LocalAddr {
	var out []ruleset.LocalAddr
	for _, p := range t.local {
		for a := range p.src.IPs() {
			owner := p.src.Namespace() + "/" + p.src.Name()
			if claimants := t.claims[a]; claimants != nil {
				names := make([]string, len(claimants))
				for i, c := range claimants {
					names[i] = c.src.Namespace() + "/" + c.src.Name()
				}
				owner = strings.Join(names, ",")
			}
			out = append(out, ruleset.LocalAddr{Addr: a, Pod: owner})
		}
	}
	slices.SortFunc(out, func(a, b ruleset.LocalAddr) int { return a.Addr.Compare(b.Addr) })
	return slices.CompactFunc(out, func(a, b ruleset.LocalAddr) bool { return a.Addr == b.Addr })
}

// NodePodCIDRs returns the pod ranges of a Node: spec.podCIDRs, or the older spec.podCIDR when
// that is empty. A range that does not parse is left out and reported in the error (the other
// ranges still close what they cover).
func NodePodCIDRs(node *corev1.Node) ([]netip.Prefix, error) {
	raw := node.Spec.PodCIDRs
	if len(raw) == 0 && node.Spec.PodCIDR != "" {
		raw = []string{node.Spec.PodCIDR}
	}
	var (
		out  []netip.Prefix
		errs []error
	)
	for _, s := range raw {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: invalid spec.podCIDRs entry %q: %w", node.Name, s, err))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}
