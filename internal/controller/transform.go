package controller

import (
	"reflect"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// CacheOptions returns the cache settings the agent needs: every object is stripped down to what
// the translator reads before it is stored, which keeps memory per cached pod small on large
// clusters. Pods are not field-selected by node: peers can live anywhere.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Transform: StripPod},
			&corev1.Namespace{}:           {Transform: StripNamespace},
			&networkingv1.NetworkPolicy{}: {Transform: StripNetworkPolicy},
		},
	}
}

// meta keeps the identity the cache needs (resourceVersion for watches, uid for deletes) and the
// labels; annotations and managed fields, often the bulk of an object, are dropped, and so is
// creationTimestamp, which marks the result as stripped (see stripped).
func meta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// stripped reports whether an object is already stripped, so a strip can return it as it is.
// client-go runs the transform twice on every object of the initial sync (once into the
// watch-list's temporary store, again when Replace hands them to the informer's queue); a strip
// that always copied would keep two stripped copies of every object alive at once.
//
// The test is a zero creationTimestamp: the API server sets it on every object it stores (it is
// immutable), and the strip never keeps it. Unlike the other fields the strip drops
// (annotations, managedFields, most of the spec), which a real object may well lack, it is
// never missing from an object the cache receives. An object that lacks it anyway is only left
// unstripped: that costs memory, not correctness, since the translator reads full objects as
// well as stripped ones.
func stripped(m *metav1.ObjectMeta) bool { return m.CreationTimestamp.IsZero() }

// StripPod keeps a pod's labels, node, hostNetwork flag, phase, addresses and named container
// ports (of containers and of restartable init containers), and nothing else. A pod already
// stripped is returned as it is.
func StripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || stripped(&p.ObjectMeta) {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: meta(&p.ObjectMeta),
		Spec: corev1.PodSpec{
			NodeName:       p.Spec.NodeName,
			HostNetwork:    p.Spec.HostNetwork,
			Containers:     namedPortsOnly(p.Spec.Containers, false),
			InitContainers: namedPortsOnly(p.Spec.InitContainers, true),
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	return out, nil
}

// namedPortsOnly returns one container holding the named ports of cs (unnamed ports cannot be
// referenced by a policy). For init containers only restartable ones count, and the restart
// policy is kept so the translator can tell.
func namedPortsOnly(cs []corev1.Container, initContainers bool) []corev1.Container {
	var out []corev1.Container
	for i := range cs {
		c := &cs[i]
		if initContainers && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			continue
		}
		var ports []corev1.ContainerPort
		for _, cp := range c.Ports {
			if cp.Name != "" {
				ports = append(ports, corev1.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, ContainerPort: cp.ContainerPort})
			}
		}
		if len(ports) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Ports: ports, RestartPolicy: c.RestartPolicy})
		}
	}
	return out
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

// relevantChange drops update events that change nothing the translator reads (a pod's
// conditions, a status heartbeat): after stripping, only the resourceVersion differs.
var relevantChange = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld == nil || e.ObjectNew == nil {
			return true
		}
		return !sameIgnoringVersion(e.ObjectOld, e.ObjectNew)
	},
}

func sameIgnoringVersion(a, b client.Object) bool {
	switch old := a.(type) {
	case *corev1.Pod:
		n, ok := b.(*corev1.Pod)
		return ok && reflect.DeepEqual(old.Labels, n.Labels) && reflect.DeepEqual(old.Spec, n.Spec) && reflect.DeepEqual(old.Status, n.Status)
	case *corev1.Namespace:
		n, ok := b.(*corev1.Namespace)
		return ok && reflect.DeepEqual(old.Labels, n.Labels)
	case *networkingv1.NetworkPolicy:
		n, ok := b.(*networkingv1.NetworkPolicy)
		return ok && reflect.DeepEqual(old.Spec, n.Spec)
	}
	return false
}

func builderPredicates() builder.WatchesOption { return builder.WithPredicates(relevantChange) }
