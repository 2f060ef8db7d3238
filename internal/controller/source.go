package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// Source supplies the objects the translator reads. The Input it returns may share its objects
// with a cache: its users must treat every object as read-only. (translate.Translate never
// mutates its input.) Node is left for the caller to set.
type Source interface {
	Objects(ctx context.Context) (translate.Input, error)
	// Node returns the Node object of that name, or nil when there is none.
	Node(ctx context.Context, name string) (*corev1.Node, error)
}

// InformerGetter hands out the informer of a type; the manager's cache (mgr.GetCache())
// implements it.
type InformerGetter interface {
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// CacheSource reads the objects straight from the informers' indexers: the pointers it returns
// are the cached objects themselves (Pods in their compact form). Listing through the cache's
// client.Reader instead, even with
// client.UnsafeDisableDeepCopy, copies every struct into the list's Items (a 1240-byte Pod each,
// ~177 MiB per recompute at 150k pods) only for the reconciler to take their addresses.
//
// The objects belong to the cache and are shared with every other reader: they must never be
// mutated. The translator only reads them, and nothing keeps them past the recompute.
type CacheSource struct {
	Informers InformerGetter
	// ClusterPolicies makes Objects read ClusterNetworkPolicies and every Node too. The cache
	// must then hold them (CacheOptions with clusterPolicies set): otherwise the Node informer
	// holds this node's Node only, and asking for the ClusterNetworkPolicy informer would wait
	// for a resource the API server does not serve.
	ClusterPolicies bool
}

var _ Source = CacheSource{}

// Objects implements Source. It waits for each informer to sync, as the cache's reader does.
func (s CacheSource) Objects(ctx context.Context) (translate.Input, error) {
	var (
		in  translate.Input
		err error
	)
	if in.Policies, err = fromIndexer(ctx, s.Informers, &networkingv1.NetworkPolicy{}, as[*networkingv1.NetworkPolicy]); err != nil {
		return translate.Input{}, err
	}
	if in.Namespaces, err = fromIndexer(ctx, s.Informers, &corev1.Namespace{}, as[*corev1.Namespace]); err != nil {
		return translate.Input{}, err
	}
	if in.Pods, err = fromIndexer(ctx, s.Informers, &corev1.Pod{}, as[*compact.Pod]); err != nil {
		return translate.Input{}, err
	}
	if !s.ClusterPolicies {
		return in, nil
	}
	if in.ClusterPolicies, err = fromIndexer(ctx, s.Informers, &v1alpha2.ClusterNetworkPolicy{}, as[*v1alpha2.ClusterNetworkPolicy]); err != nil {
		return translate.Input{}, err
	}
	if in.Nodes, err = fromIndexer(ctx, s.Informers, &corev1.Node{}, as[*corev1.Node]); err != nil {
		return translate.Input{}, err
	}
	return in, nil
}

// indexed is what controller-runtime's informers are underneath: client-go SharedIndexInformers
// (cache.Informer is the narrower interface they are handed out as).
type indexed interface {
	GetIndexer() toolscache.Indexer
}

// as is the pick of fromIndexer for a type cached as it is.
func as[T any](item any) (T, bool) {
	o, ok := item.(T)
	return o, ok
}

// fromIndexer lists the cached objects of obj's type without copying them, as pick finds them
// in each cached item.
func fromIndexer[T any](ctx context.Context, g InformerGetter, obj client.Object, pick func(any) (T, bool)) ([]T, error) {
	ix, err := indexerOf(ctx, g, obj)
	if err != nil {
		return nil, err
	}
	items := ix.List()
	out := make([]T, 0, len(items))
	for _, it := range items {
		o, ok := pick(it)
		if !ok {
			return nil, fmt.Errorf("the %T cache holds a %T", obj, it)
		}
		out = append(out, o)
	}
	return out, nil
}

// indexerOf returns the indexer of obj's informer, once the informer has synced.
func indexerOf(ctx context.Context, g InformerGetter, obj client.Object) (toolscache.Indexer, error) {
	inf, err := g.GetInformer(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("getting the %T informer: %w", obj, err)
	}
	ix, ok := inf.(indexed)
	if !ok {
		return nil, fmt.Errorf("the %T informer (%T) exposes no indexer", obj, inf)
	}
	return ix.GetIndexer(), nil
}

// Node implements Source, from the Node informer, by key: it holds this node's Node only, or
// every Node when ClusterPolicies is set (see CacheOptions), and a recompute must not scan
// thousands of Nodes for its own.
func (s CacheSource) Node(ctx context.Context, name string) (*corev1.Node, error) {
	ix, err := indexerOf(ctx, s.Informers, &corev1.Node{})
	if err != nil {
		return nil, err
	}
	// A Node is cluster-scoped: its cache key is its name.
	item, found, err := ix.GetByKey(name)
	if err != nil {
		return nil, fmt.Errorf("reading Node %s from the cache: %w", name, err)
	}
	if !found {
		return nil, nil
	}
	n, ok := item.(*corev1.Node)
	if !ok {
		return nil, fmt.Errorf("the *v1.Node cache holds a %T", item)
	}
	return n, nil
}

// ReaderSource lists the objects through a client.Reader (tests use a fake client). It asks
// for no deep copy, but a Reader copies each struct into the list anyway; CacheSource does not.
type ReaderSource struct {
	Reader client.Reader
	// ClusterPolicies makes Objects list ClusterNetworkPolicies and every Node too, as
	// CacheSource.ClusterPolicies does. The Reader's scheme must know policy.networking.k8s.io
	// v1alpha2, and the API server must serve it.
	ClusterPolicies bool
}

var _ Source = ReaderSource{}

// Objects implements Source.
func (s ReaderSource) Objects(ctx context.Context) (translate.Input, error) {
	var (
		pols  networkingv1.NetworkPolicyList
		nss   corev1.NamespaceList
		pods  corev1.PodList
		cnps  v1alpha2.ClusterNetworkPolicyList
		nodes corev1.NodeList
	)
	lists := []client.ObjectList{&pols, &nss, &pods}
	if s.ClusterPolicies {
		lists = append(lists, &cnps, &nodes)
	}
	for _, l := range lists {
		if err := s.Reader.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return translate.Input{}, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	var in translate.Input
	for i := range pols.Items {
		in.Policies = append(in.Policies, &pols.Items[i])
	}
	for i := range nss.Items {
		in.Namespaces = append(in.Namespaces, &nss.Items[i])
	}
	for i := range pods.Items {
		in.Pods = append(in.Pods, compact.NewPod(&pods.Items[i]))
	}
	for i := range cnps.Items {
		in.ClusterPolicies = append(in.ClusterPolicies, &cnps.Items[i])
	}
	for i := range nodes.Items {
		in.Nodes = append(in.Nodes, &nodes.Items[i])
	}
	return in, nil
}

// Node implements Source.
func (s ReaderSource) Node(ctx context.Context, name string) (*corev1.Node, error) {
	var node corev1.Node
	if err := s.Reader.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting Node %s: %w", name, err)
	}
	return &node, nil
}
