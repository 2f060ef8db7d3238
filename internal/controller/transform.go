package controller

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// CacheOptions returns the cache settings the agent needs: every object is stripped down to what
// the translator reads before it is stored, which keeps memory per cached pod small on large
// clusters; Pods are even stored in a compact form of their own (compact.Pod). Pods are not
// field-selected by node: peers can live anywhere.
//
// clusterPolicies says whether the agent enforces ClusterNetworkPolicies (their CRD is installed:
// see ClusterPoliciesInstalled). Then ClusterNetworkPolicies are cached too, and every Node, since
// a policy's `nodes` peers select nodes by label anywhere in the cluster. Otherwise only this
// node's Node is watched (a field selector on its name), for its pod ranges, as it always was:
// the other Nodes would cost every agent memory and a watch event at every change of any node,
// for nothing.
func CacheOptions(node string, clusterPolicies bool) cache.Options {
	nodes := cache.ByObject{Transform: StripNode, Field: fields.OneTermEqualSelector("metadata.name", node)}
	if clusterPolicies {
		nodes.Field = nil
	}
	opts := cache.Options{
		NewInformer: newInformer,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Transform: StripPod},
			&corev1.Namespace{}:           {Transform: StripNamespace},
			&networkingv1.NetworkPolicy{}: {Transform: StripNetworkPolicy},
			&corev1.Node{}:                nodes,
		},
	}
	if clusterPolicies {
		// Only with the CRD installed: the cache looks every type it is given up in the API
		// server's discovery when it is created, and fails on one the server does not serve.
		opts.ByObject[&v1alpha2.ClusterNetworkPolicy{}] = cache.ByObject{Transform: StripClusterNetworkPolicy}
	}
	return opts
}

// newInformer is client-go's informer constructor, as controller-runtime calls it, without the
// namespace index for Pods. controller-runtime indexes every informer by namespace for lists in
// one namespace; the agent never lists Pods that way (it reads them all through CacheSource, and
// its client reads Pods from the API server: see ClientOptions), and at 150,000 pods the index is
// about 7 MiB of heap.
func newInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if _, ok := obj.(*corev1.Pod); ok {
		indexers = maps.Clone(indexers)
		delete(indexers, toolscache.NamespaceIndex)
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
}

// ClientOptions returns the manager's client settings: Pods are read from the API server, never
// from the cache, because the cache holds compact Pods, not *corev1.Pod. The agent reads pods only
// through CacheSource; this keeps any other read of a Pod correct rather than failing on the type.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Pod{}}}}
}

// meta keeps the identity the cache needs (resourceVersion for watches, uid for deletes), the
// labels and the agent's own annotations (translate.AnnotationPrefix); other annotations and
// managed fields, often the bulk of an object, are dropped, and so is creationTimestamp, which
// marks the result as stripped (see stripped).
func meta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	var ours map[string]string
	for k, v := range m.Annotations {
		if strings.HasPrefix(k, translate.AnnotationPrefix) {
			if ours == nil {
				ours = map[string]string{}
			}
			ours[k] = v
		}
	}
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		Annotations:       ours,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// stripped reports whether a Namespace or NetworkPolicy is already stripped, so a strip can return
// it as it is (a Pod's strip tells by its type: see StripPod).
// client-go runs the transform twice on every object of the initial sync (once into the
// watch-list's temporary store, again when Replace hands them to the informer's queue); a strip
// that always copied would keep two stripped copies of every object alive at once.
//
// The test is a zero creationTimestamp: the API server sets it on every object it stores (it is
// immutable), and the strip never keeps it. Unlike the other fields the strip drops
// (annotations, managedFields), which a real object may well lack, it is
// never missing from an object the cache receives. An object that lacks it anyway is only left
// unstripped: that costs memory, not correctness, since the translator reads full objects as
// well as stripped ones.
func stripped(m *metav1.ObjectMeta) bool { return m.CreationTimestamp.IsZero() }

// StripPod turns a Pod into its compact form (compact.Pod): its labels, node, hostNetwork flag,
// whether it has finished, its addresses and its named container ports (of containers and of
// restartable init containers), and nothing else. A compact Pod is returned as it is.
func StripPod(obj any) (any, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		return compact.NewPod(p), nil
	}
	return obj, nil
}

// StripNode keeps what the agent reads of a Node: its name and labels (the `nodes` peers of
// ClusterNetworkPolicies select nodes by label), its pod ranges, and its addresses (what such a
// peer matches). Its status conditions and images, most of a Node and rewritten by the kubelet's
// status updates, are dropped, so that those updates leave the stripped Node unchanged and
// trigger no recompute (see relevantChange). A node already stripped is returned as it is.
func StripNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok || stripped(&n.ObjectMeta) {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: meta(&n.ObjectMeta),
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

// StripNamespace keeps a namespace's name and labels. A namespace already stripped is returned
// as it is.
func StripNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok || stripped(&ns.ObjectMeta) {
		return obj, nil
	}
	return &corev1.Namespace{TypeMeta: ns.TypeMeta, ObjectMeta: meta(&ns.ObjectMeta)}, nil
}

// StripNetworkPolicy keeps a policy's name and spec. A policy already stripped is returned as
// it is.
func StripNetworkPolicy(obj any) (any, error) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok || stripped(&np.ObjectMeta) {
		return obj, nil
	}
	return &networkingv1.NetworkPolicy{TypeMeta: np.TypeMeta, ObjectMeta: meta(&np.ObjectMeta), Spec: np.Spec}, nil
}

// StripClusterNetworkPolicy keeps a ClusterNetworkPolicy's name, labels, the agent's own
// annotations and spec; its status (written by whichever implementation reports on it) and
// managed fields are dropped. A policy already stripped is returned as it is.
func StripClusterNetworkPolicy(obj any) (any, error) {
	p, ok := obj.(*v1alpha2.ClusterNetworkPolicy)
	if !ok || stripped(&p.ObjectMeta) {
		return obj, nil
	}
	return &v1alpha2.ClusterNetworkPolicy{TypeMeta: p.TypeMeta, ObjectMeta: meta(&p.ObjectMeta), Spec: p.Spec}, nil
}

// relevantChange drops update events that change nothing the translator reads (a pod's
// conditions, its phase going from Pending to Running, a node's status update, a policy's
// status): after stripping, only the resourceVersion differs.
var relevantChange = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld == nil || e.ObjectNew == nil {
			return true
		}
		return !sameIgnoringVersion(e.ObjectOld, e.ObjectNew)
	},
}

// sameIgnoringVersion compares what the strips keep, except the resourceVersion. The annotations
// compared are the agent's own (meta keeps no other): a policy's mode, a namespace's drop logs.
func sameIgnoringVersion(a, b client.Object) bool {
	switch old := a.(type) {
	case *compact.Pod:
		n, ok := b.(*compact.Pod)
		return ok && old.Equal(n)
	case *corev1.Namespace:
		n, ok := b.(*corev1.Namespace)
		return ok && sameLabelsAndAnnotations(old, n)
	case *corev1.Node:
		n, ok := b.(*corev1.Node)
		return ok && sameLabelsAndAnnotations(old, n) &&
			old.Spec.PodCIDR == n.Spec.PodCIDR && slices.Equal(old.Spec.PodCIDRs, n.Spec.PodCIDRs) &&
			slices.Equal(old.Status.Addresses, n.Status.Addresses)
	case *networkingv1.NetworkPolicy:
		n, ok := b.(*networkingv1.NetworkPolicy)
		return ok && sameLabelsAndAnnotations(old, n) && reflect.DeepEqual(old.Spec, n.Spec)
	case *v1alpha2.ClusterNetworkPolicy:
		n, ok := b.(*v1alpha2.ClusterNetworkPolicy)
		return ok && sameLabelsAndAnnotations(old, n) && reflect.DeepEqual(old.Spec, n.Spec)
	}
	return false
}

func sameLabelsAndAnnotations(a, b client.Object) bool {
	return maps.Equal(a.GetLabels(), b.GetLabels()) && maps.Equal(a.GetAnnotations(), b.GetAnnotations())
}

func builderPredicates() builder.WatchesOption { return builder.WithPredicates(relevantChange) }
