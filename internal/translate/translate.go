package translate

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

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

	isolated := map[*indexedPod]*ruleset.Target{}
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
				rp = &ruleset.Target{Namespace: p.ns.name, Name: p.src.Name(), IPs: slices.Clone(p.ips)} // the rule set owns its slices
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
		rs.Targets = append(rs.Targets, *rp)
	}
	slices.SortFunc(rs.Targets, func(a, b ruleset.Target) int {
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
	pods       []indexedPod                    // every pod that owns an address, in input order
	peers      map[string]peerResult
	builder    ruleset.Builder // reused for every peer: its memory grows to the largest one
	problems   []Problem
}

func (t *translator) report(object, format string, args ...any) {
	t.problems = append(t.problems, Problem{Object: object, Message: fmt.Sprintf(format, args...)})
}
