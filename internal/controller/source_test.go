package controller

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// TestStripKeepsOnlyTheAgentsAnnotations pins that the cache keeps the annotations the translator
// reads (a policy's mode, a namespace's drop logs) and drops every other.
func TestStripKeepsOnlyTheAgentsAnnotations(t *testing.T) {
	full := metav1.ObjectMeta{Namespace: "x", Name: "a", CreationTimestamp: metav1.Unix(1, 0), Annotations: map[string]string{
		translate.ModeAnnotation: translate.ModeAudit, translate.DropLogAnnotation: "true", "kubectl.kubernetes.io/last-applied-configuration": "{...}"}}
	want := map[string]string{translate.ModeAnnotation: translate.ModeAudit, translate.DropLogAnnotation: "true"}
	for _, c := range []struct {
		strip func(any) (any, error)
		obj   client.Object
	}{
		{StripNamespace, &corev1.Namespace{ObjectMeta: full}},
		{StripNetworkPolicy, &networkingv1.NetworkPolicy{ObjectMeta: full}},
	} {
		out, err := c.strip(c.obj)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.(client.Object).GetAnnotations(); !reflect.DeepEqual(got, want) {
			t.Errorf("stripped %T has annotations %v, want %v", c.obj, got, want)
		}
	}
}

// TestStripIsIdempotent pins what keeps the initial sync from holding two stripped copies of
// every object: client-go transforms each object twice, and the second strip must hand back
// the first one's result rather than a copy of it.
func TestStripIsIdempotent(t *testing.T) {
	full := metav1.ObjectMeta{Namespace: "x", Name: "a", ResourceVersion: "7", CreationTimestamp: metav1.Unix(1, 0),
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}}
	cases := []struct {
		strip func(any) (any, error)
		obj   client.Object
	}{
		{StripPod, &corev1.Pod{ObjectMeta: full, Spec: corev1.PodSpec{NodeName: "n1"}}},
		{StripNamespace, &corev1.Namespace{ObjectMeta: full}},
		{StripNetworkPolicy, &networkingv1.NetworkPolicy{ObjectMeta: full}},
	}
	for _, c := range cases {
		once, err := c.strip(c.obj)
		if err != nil {
			t.Fatal(err)
		}
		if once == any(c.obj) {
			t.Errorf("%T from the API server was returned unstripped", c.obj)
			continue
		}
		o := once.(client.Object)
		if ts := o.GetCreationTimestamp(); !ts.IsZero() || o.GetAnnotations() != nil {
			t.Errorf("stripped %T kept creationTimestamp or annotations: %+v", o, o)
		}
		twice, err := c.strip(once)
		if err != nil {
			t.Fatal(err)
		}
		if twice != once {
			t.Errorf("stripping a stripped %T made a copy", o)
		}
		if !reflect.DeepEqual(c.obj.GetLabels(), o.GetLabels()) || o.GetResourceVersion() != "7" {
			t.Errorf("stripped %T lost labels or resourceVersion: %+v", o, o)
		}
	}
	// Objects of other types, and tombstones, pass through.
	tomb := toolscache.DeletedFinalStateUnknown{Key: "x/a"}
	for _, strip := range []func(any) (any, error){StripPod, StripNamespace, StripNetworkPolicy} {
		if got, _ := strip(tomb); got != any(tomb) {
			t.Errorf("a tombstone came back as %v", got)
		}
	}
}

// informers hands out unstarted informers whose indexers the test fills directly.
type informers map[reflect.Type]toolscache.SharedIndexInformer

func (m informers) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	return m[reflect.TypeOf(obj)], nil
}

// TestCacheSourceHandsOutTheCachedObjects pins that the reconciler reads the cache's own
// objects, not copies of them.
func TestCacheSourceHandsOutTheCachedObjects(t *testing.T) {
	pod := compact.NewPod(localPod()) // the cache holds pods in their compact form
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
	pol := denyAll()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	m := informers{}
	for _, c := range []struct{ kind, cached client.Object }{{&corev1.Pod{}, pod}, {ns, ns}, {pol, pol}, {node, node}} {
		inf := toolscache.NewSharedIndexInformer(&toolscache.ListWatch{}, c.kind, 0, toolscache.Indexers{})
		if err := inf.GetIndexer().Add(c.cached); err != nil {
			t.Fatal(err)
		}
		m[reflect.TypeOf(c.kind)] = inf
	}
	in, err := CacheSource{Informers: m}.Objects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Pods) != 1 || in.Pods[0] != pod || len(in.Namespaces) != 1 || in.Namespaces[0] != ns ||
		len(in.Policies) != 1 || in.Policies[0] != pol {
		t.Errorf("got %+v, want the cached objects themselves", in)
	}
	if got, err := (CacheSource{Informers: m}).Node(context.Background(), "n1"); err != nil || got != node {
		t.Errorf("Node(n1) = %v, %v; want the cached Node itself", got, err)
	}
	if got, err := (CacheSource{Informers: m}).Node(context.Background(), "n2"); err != nil || got != nil {
		t.Errorf("Node(n2) = %v, %v; want none", got, err)
	}
}
