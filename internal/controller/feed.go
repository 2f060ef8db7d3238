package controller

import (
	"cmp"
	"context"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// The incremental translator (translate.Incremental) is told what changed rather than handed
// the whole cache on every recompute: listing 150k pods from the cache, or comparing them with
// the last recompute's, costs more than translating one change.
//
// The watches' handler (feedHandler) records each object it is given in a changeFeed, keyed by
// the object's name, the latest one winning, and only then asks for a recompute: a recompute
// that starts after the request finds the change in the feed. A recompute drains the feed into
// its incremental state (incState). The state is built from a full listing of the cache on the
// first recompute; whatever the feed held then is in the listing already (an informer updates its
// store before it notifies its handlers), and what it delivers later is applied on top, an object
// already held being no change. The periodic resync compares the incremental rule set with a full
// translation of the cache and rebuilds the state when they differ (see translateIncrementally).

// changes are objects delivered by the watches, by key; nil means deleted.
type changes struct {
	pods     map[types.NamespacedName]*compact.Pod
	nss      map[string]*corev1.Namespace
	policies map[types.NamespacedName]*networkingv1.NetworkPolicy
	nodes    map[string]*corev1.Node
	cnps     map[string]*v1alpha2.ClusterNetworkPolicy
}

func newChanges() changes {
	return changes{
		pods:     map[types.NamespacedName]*compact.Pod{},
		nss:      map[string]*corev1.Namespace{},
		policies: map[types.NamespacedName]*networkingv1.NetworkPolicy{},
		nodes:    map[string]*corev1.Node{},
		cnps:     map[string]*v1alpha2.ClusterNetworkPolicy{},
	}
}

// changeFeed holds the changes delivered since the last drain.
type changeFeed struct {
	mu      sync.Mutex
	pending changes
}

func newChangeFeed() *changeFeed { return &changeFeed{pending: newChanges()} }

// reset forgets every change held.
func (f *changeFeed) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = newChanges()
}

// record notes obj, or its deletion. Objects of other types are ignored.
func (f *changeFeed) record(obj client.Object, deleted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
	c := &f.pending
	switch o := obj.(type) {
	case *compact.Pod:
		c.pods[key] = orNil(o, deleted)
	case *corev1.Pod: // a cache without the transform (CacheOptions) holds API objects
		c.pods[key] = orNil(compact.NewPod(o), deleted)
	case *corev1.Namespace:
		c.nss[key.Name] = orNil(o, deleted)
	case *networkingv1.NetworkPolicy:
		c.policies[key] = orNil(o, deleted)
	case *corev1.Node:
		c.nodes[key.Name] = orNil(o, deleted)
	case *v1alpha2.ClusterNetworkPolicy:
		c.cnps[key.Name] = orNil(o, deleted)
	}
}

func orNil[T any](o *T, deleted bool) *T {
	if deleted {
		return nil
	}
	return o
}

// take returns the changes held and empties the feed.
func (f *changeFeed) take() changes {
	f.mu.Lock()
	defer f.mu.Unlock()
	taken := f.pending
	f.pending = newChanges()
	return taken
}

// feedHandler records every event in the feed, then asks for a recompute when the change can
// matter (relevantChange's test). An update that changes nothing the translator reads is still
// recorded, so that the incremental state holds the cache's object and not an old copy of it.
type feedHandler struct{ feed *changeFeed }

var _ handler.EventHandler = feedHandler{}

func (h feedHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.feed.record(e.Object, false)
	q.Add(changeKey)
}

func (h feedHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.feed.record(e.ObjectNew, false)
	if relevantChange.Update(e) {
		q.Add(changeKey)
	}
}

func (h feedHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.feed.record(e.Object, true)
	q.Add(changeKey)
}

func (h feedHandler) Generic(_ context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	q.Add(changeKey)
}

// incState is the reconciler's incremental translator with the Nodes and ClusterNetworkPolicies
// it was last given (settings it takes as whole lists).
type incState struct {
	t     *translate.Incremental
	nodes map[string]*corev1.Node
	cnps  map[string]*v1alpha2.ClusterNetworkPolicy
	// clusterPolicies is the reconciler's setting: without it the full path reads no Nodes and no
	// ClusterNetworkPolicies, and neither does this state.
	clusterPolicies bool
}

// newIncState builds the state from a full listing.
func newIncState(in translate.Input, clusterPolicies bool) *incState {
	s := &incState{t: translate.NewIncremental(in), nodes: map[string]*corev1.Node{},
		cnps: map[string]*v1alpha2.ClusterNetworkPolicy{}, clusterPolicies: clusterPolicies}
	for _, n := range in.Nodes {
		s.nodes[n.Name] = n
	}
	for _, p := range in.ClusterPolicies {
		s.cnps[p.Name] = p
	}
	return s
}

// apply applies the changes taken from the feed. The order does not matter: the incremental
// rule set depends only on the objects held at the end.
func (s *incState) apply(c changes) {
	for k, p := range c.pods {
		if p == nil {
			s.t.DeletePod(k.Namespace, k.Name)
		} else {
			s.t.SetPod(p)
		}
	}
	for name, ns := range c.nss {
		if ns == nil {
			s.t.DeleteNamespace(name)
		} else {
			s.t.SetNamespace(ns)
		}
	}
	for k, np := range c.policies {
		if np == nil {
			s.t.DeletePolicy(k.Namespace, k.Name)
		} else {
			s.t.SetPolicy(np)
		}
	}
	if !s.clusterPolicies {
		return
	}
	if update(s.nodes, c.nodes) {
		s.t.SetNodes(byName(s.nodes, func(n *corev1.Node) string { return n.Name }))
	}
	if update(s.cnps, c.cnps) {
		s.t.SetClusterPolicies(byName(s.cnps, func(p *v1alpha2.ClusterNetworkPolicy) string { return p.Name }))
	}
}

// update applies changes (nil: deleted) to m and reports whether m changed.
func update[T comparable](m, changes map[string]T) bool {
	var zero T
	changed := false
	for k, v := range changes {
		old, ok := m[k]
		switch {
		case v == zero && ok:
			delete(m, k)
			changed = true
		case v != zero && old != v:
			m[k] = v
			changed = true
		}
	}
	return changed
}

// byName returns the values of m sorted by name.
func byName[T any](m map[string]T, name func(T) string) []T {
	return slices.SortedFunc(maps.Values(m), func(a, b T) int { return cmp.Compare(name(a), name(b)) })
}

// translateIncrementally returns the rule set from the incremental state, after applying the
// feed's changes to it; the first call builds the state from a full listing of the Source. With
// check, the result is compared with a full translation of the Source, which is returned instead
// when they differ, and the state rebuilt from that listing. (Events in flight between the
// feed's drain and the listing can make them differ for a moment; a difference at every check
// would be a bug in the incremental translation, which the check then contains.)
func (r *Reconciler) translateIncrementally(ctx context.Context, podCIDRs []netip.Prefix, check bool) (ruleset.RuleSet, []translate.Problem, error) {
	r.incMu.Lock()
	defer r.incMu.Unlock()
	m := r.metrics()
	if r.inc == nil {
		// Whatever the feed holds is in the cache already, so in the listing.
		r.feed.reset()
		in, err := r.input(ctx)
		if err != nil {
			return ruleset.RuleSet{}, nil, err
		}
		r.inc = newIncState(in, r.ClusterPolicies)
		r.inc.t.SetPodCIDRs(podCIDRs)
		rs, problems := r.inc.t.RuleSet()
		m.Translations.WithLabelValues("build").Inc()
		return rs, problems, nil
	}
	r.inc.apply(r.feed.take())
	r.inc.t.SetPodCIDRs(podCIDRs)
	rs, problems := r.inc.t.RuleSet()
	m.Translations.WithLabelValues("incremental").Inc()
	if !check {
		return rs, problems, nil
	}
	in, err := r.input(ctx)
	if err != nil {
		return ruleset.RuleSet{}, nil, err
	}
	in.PodCIDRs = podCIDRs
	full, fullProblems := translate.Translate(in)
	m.Translations.WithLabelValues("full").Inc()
	if reflect.DeepEqual(rs, full) && reflect.DeepEqual(problems, fullProblems) {
		return rs, problems, nil
	}
	m.IncrementalMismatches.Inc()
	r.Log.Info("the incremental translation differs from a full translation of the cache; using the full one and rebuilding the incremental state from the cache")
	// What the feed holds now is in this listing or arrives after it: either way it is applied
	// on top of the rebuilt state at the next recompute.
	r.inc = newIncState(in, r.ClusterPolicies)
	r.inc.t.SetPodCIDRs(podCIDRs)
	m.Translations.WithLabelValues("build").Inc()
	return full, fullProblems, nil
}

// TranslateIncrementally makes a Reconciler driven by hand (SetupWithManager does this itself,
// and feeds it from the watches) translate incrementally: its first recompute builds the state
// from the Source, and Observe must then be told every change the Source shows of a Pod,
// Namespace, NetworkPolicy, Node or ClusterNetworkPolicy. Call it before the first recompute.
func (r *Reconciler) TranslateIncrementally() {
	if r.feed == nil {
		r.feed = newChangeFeed()
	}
}

// Observe records a changed object, or its deletion, for the incremental translation of a
// Reconciler driven by hand (see TranslateIncrementally); it does nothing otherwise.
func (r *Reconciler) Observe(obj client.Object, deleted bool) {
	if r.feed != nil {
		r.feed.record(obj, deleted)
	}
}
