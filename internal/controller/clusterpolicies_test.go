package controller

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// cnp is a ClusterNetworkPolicy as the API server hands it out: the fields the cache must drop
// (status, managed fields, other annotations, creationTimestamp) are set.
func cnp(name string, priority int32) *v1alpha2.ClusterNetworkPolicy {
	return &v1alpha2.ClusterNetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "ClusterNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, ResourceVersion: "7", CreationTimestamp: metav1.Unix(1, 0), Labels: map[string]string{"team": "sec"},
			Annotations:   map[string]string{translate.ModeAnnotation: translate.ModeAudit, "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		},
		Spec: v1alpha2.ClusterNetworkPolicySpec{
			Tier: v1alpha2.AdminTier, Priority: priority,
			Subject: v1alpha2.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []v1alpha2.ClusterNetworkPolicyEgressRule{{
				Action: v1alpha2.ClusterNetworkPolicyRuleActionDeny,
				To:     []v1alpha2.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "infra"}}}},
			}},
		},
		Status: v1alpha2.ClusterNetworkPolicyStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Programmed"}}},
	}
}

// fullNode is a Node as the API server hands it out, with the status the kubelet keeps rewriting.
func fullNode(name string, addrs ...string) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "7", CreationTimestamp: metav1.Unix(1, 0),
			Labels:      map[string]string{"kubernetes.io/hostname": name, "role": "infra"},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}, ProviderID: "kind://x"},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Unix(100, 0)}},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.invalid/big:1"}, SizeBytes: 1 << 30}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
		},
	}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

func TestStripClusterNetworkPolicyKeepsTheSpecOnly(t *testing.T) {
	in := cnp("deny-infra", 10)
	out, err := StripClusterNetworkPolicy(in)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := out.(*v1alpha2.ClusterNetworkPolicy)
	if !ok {
		t.Fatalf("StripClusterNetworkPolicy returned a %T", out)
	}
	if !reflect.DeepEqual(s.Spec, in.Spec) {
		t.Errorf("spec = %+v, want %+v", s.Spec, in.Spec)
	}
	if s.Status.Conditions != nil || s.ManagedFields != nil || !s.CreationTimestamp.IsZero() {
		t.Errorf("kept status, managed fields or creationTimestamp: %+v", s)
	}
	if want := map[string]string{translate.ModeAnnotation: translate.ModeAudit}; !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("annotations = %v, want the agent's own only: %v", s.Annotations, want)
	}
	if s.Name != "deny-infra" || s.ResourceVersion != "7" || !reflect.DeepEqual(s.Labels, in.Labels) {
		t.Errorf("lost name, resourceVersion or labels: %+v", s.ObjectMeta)
	}
	if in.Status.Conditions == nil || in.ManagedFields == nil {
		t.Error("StripClusterNetworkPolicy modified its input")
	}
	if key, err := toolscache.MetaNamespaceKeyFunc(s); err != nil || key != "deny-infra" {
		t.Errorf("cache key = %q, %v; want deny-infra", key, err)
	}
}

func TestStripNodeKeepsLabelsRangesAndAddresses(t *testing.T) {
	in := fullNode("n1", "10.254.0.1", "fd00:254::1")
	out, err := StripNode(in)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Node)
	if !reflect.DeepEqual(s.Labels, in.Labels) || !reflect.DeepEqual(s.Status.Addresses, in.Status.Addresses) ||
		s.Spec.PodCIDR != in.Spec.PodCIDR || !reflect.DeepEqual(s.Spec.PodCIDRs, in.Spec.PodCIDRs) {
		t.Errorf("stripped Node lost labels, addresses or pod ranges: %+v", s)
	}
	if s.Status.Conditions != nil || s.Status.Images != nil || s.Status.NodeInfo != (corev1.NodeSystemInfo{}) ||
		s.Spec.ProviderID != "" || s.Annotations != nil {
		t.Errorf("stripped Node kept conditions, images, node info, providerID or annotations: %+v", s)
	}
	if in.Status.Conditions == nil || in.Status.Images == nil {
		t.Error("StripNode modified its input")
	}
}

// The other strips' idempotence is pinned by TestStripIsIdempotent.
func TestStripNodeAndClusterNetworkPolicyAreIdempotent(t *testing.T) {
	for _, c := range []struct {
		strip func(any) (any, error)
		obj   client.Object
	}{{StripNode, fullNode("n1", "10.254.0.1")}, {StripClusterNetworkPolicy, cnp("p", 1)}} {
		once, _ := c.strip(c.obj)
		if once == any(c.obj) {
			t.Errorf("%T from the API server was returned unstripped", c.obj)
		}
		if twice, _ := c.strip(once); twice != once {
			t.Errorf("stripping a stripped %T made a copy", c.obj)
		}
		tomb := toolscache.DeletedFinalStateUnknown{Key: "a"}
		if got, _ := c.strip(tomb); got != any(tomb) {
			t.Errorf("a tombstone came back as %v", got)
		}
	}
}

// TestOnlyRelevantNodeAndPolicyUpdatesEnqueue pins the update predicate for the kinds beside Pods
// (TestOnlyRelevantPodUpdatesEnqueue): a Node's status update (a heartbeat, new images) or a
// ClusterNetworkPolicy's status is no recompute; what the translator reads is.
func TestOnlyRelevantNodeAndPolicyUpdatesEnqueue(t *testing.T) {
	cases := []struct {
		name     string
		old, new client.Object
		relevant bool
	}{
		{"a node heartbeat", fullNode("n1", "10.254.0.1"), with(fullNode("n1", "10.254.0.1"), func(n *corev1.Node) {
			n.ResourceVersion = "8"
			n.Status.Conditions[0].LastHeartbeatTime = metav1.Unix(200, 0)
			n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{"other"}})
			n.Annotations["node.alpha.kubernetes.io/ttl"] = "30"
		}), false},
		{"a node label", fullNode("n1"), with(fullNode("n1"), func(n *corev1.Node) { n.Labels["role"] = "web" }), true},
		{"a node address", fullNode("n1", "10.254.0.1"), fullNode("n1", "10.254.0.2"), true},
		{"a node's pod ranges", fullNode("n1"), with(fullNode("n1"), func(n *corev1.Node) { n.Spec.PodCIDRs = n.Spec.PodCIDRs[:1] }), true},
		{"a policy's status", cnp("p", 1), with(cnp("p", 1), func(p *v1alpha2.ClusterNetworkPolicy) {
			p.ResourceVersion = "8"
			p.Status.Conditions[0].Reason = "Other"
			p.ManagedFields = nil
		}), false},
		{"a policy's priority", cnp("p", 1), cnp("p", 2), true},
		{"a policy's mode annotation", cnp("p", 1), with(cnp("p", 1), func(p *v1alpha2.ClusterNetworkPolicy) {
			p.Annotations[translate.ModeAnnotation] = translate.ModeEnforce
		}), true},
		{"a namespace's drop-log annotation", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", CreationTimestamp: metav1.Unix(1, 0)}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", CreationTimestamp: metav1.Unix(1, 0),
				Annotations: map[string]string{translate.DropLogAnnotation: "true"}}}, true},
		{"another annotation of a namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", CreationTimestamp: metav1.Unix(1, 0)}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", CreationTimestamp: metav1.Unix(1, 0),
				Annotations: map[string]string{"owner": "team-a"}}}, false},
	}
	strip := func(o client.Object) client.Object {
		var out any
		switch o.(type) {
		case *corev1.Node:
			out, _ = StripNode(o)
		case *corev1.Namespace:
			out, _ = StripNamespace(o)
		default:
			out, _ = StripClusterNetworkPolicy(o)
		}
		return out.(client.Object)
	}
	for _, c := range cases {
		got := relevantChange.Update(event.UpdateEvent{ObjectOld: strip(c.old), ObjectNew: strip(c.new)})
		if got != c.relevant {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.relevant)
		}
	}
}

func with[T any](o T, change func(T)) T {
	change(o)
	return o
}

// TestCacheOptionsFollowTheCRD pins the two cache layouts: without the CRD, this node's Node only
// and no ClusterNetworkPolicy (a type the API server does not serve would fail the cache); with
// it, every Node and the ClusterNetworkPolicies, each with its strip.
func TestCacheOptionsFollowTheCRD(t *testing.T) {
	byType := func(clusterPolicies bool) map[string]cache.ByObject {
		m := map[string]cache.ByObject{}
		for k, v := range CacheOptions("n1", clusterPolicies).ByObject {
			m[reflect.TypeOf(k).String()] = v
		}
		return m
	}
	without := byType(false)
	if _, ok := without["*v1alpha2.ClusterNetworkPolicy"]; ok {
		t.Error("without the CRD the cache holds ClusterNetworkPolicies")
	}
	if f := without["*v1.Node"].Field; f == nil || f.String() != "metadata.name=n1" {
		t.Errorf("without the CRD the Node field selector is %v, want metadata.name=n1", f)
	}
	with := byType(true)
	if f := with["*v1.Node"].Field; f != nil {
		t.Errorf("with the CRD the Node field selector is %v, want none (every Node)", f)
	}
	for _, typ := range []string{"*v1.Pod", "*v1.Namespace", "*v1.NetworkPolicy", "*v1.Node", "*v1alpha2.ClusterNetworkPolicy"} {
		if with[typ].Transform == nil {
			t.Errorf("with the CRD, %s has no transform", typ)
		}
	}
}

// TestCacheSourceReadsClusterPoliciesAndNodesOnlyWhenAsked pins that the cached
// ClusterNetworkPolicies and Nodes reach the translator's input when the CRD is installed, and
// that otherwise their informers are not even asked for (the CNP one would never sync).
func TestCacheSourceReadsClusterPoliciesAndNodesOnlyWhenAsked(t *testing.T) {
	pol, _ := StripClusterNetworkPolicy(cnp("p", 1))
	n1, _ := StripNode(fullNode("n1", "10.254.0.1"))
	n2, _ := StripNode(fullNode("n2", "10.254.0.2"))
	m := informers{}
	for _, c := range []struct {
		kind   client.Object
		cached []any
	}{
		{&corev1.Pod{}, []any{compact.NewPod(localPod())}}, {&corev1.Namespace{}, nil},
		{denyAll(), nil}, {&corev1.Node{}, []any{n1, n2}}, {&v1alpha2.ClusterNetworkPolicy{}, []any{pol}},
	} {
		inf := toolscache.NewSharedIndexInformer(&toolscache.ListWatch{}, c.kind, 0, toolscache.Indexers{})
		for _, o := range c.cached {
			if err := inf.GetIndexer().Add(o); err != nil {
				t.Fatal(err)
			}
		}
		m[reflect.TypeOf(c.kind)] = inf
	}
	ctx := context.Background()
	in, err := CacheSource{Informers: m, ClusterPolicies: true}.Objects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.ClusterPolicies) != 1 || in.ClusterPolicies[0] != pol {
		t.Errorf("ClusterPolicies = %v, want the cached policy itself", in.ClusterPolicies)
	}
	if len(in.Nodes) != 2 || (in.Nodes[0] != n1 && in.Nodes[1] != n1) {
		t.Errorf("Nodes = %v, want both cached Nodes themselves", in.Nodes)
	}
	if got, err := (CacheSource{Informers: m, ClusterPolicies: true}).Node(ctx, "n2"); err != nil || got != n2 {
		t.Errorf("Node(n2) among two cached Nodes = %v, %v; want n2 itself", got, err)
	}

	delete(m, reflect.TypeOf(&v1alpha2.ClusterNetworkPolicy{})) // asking for it now fails
	in, err = CacheSource{Informers: m}.Objects(ctx)
	if err != nil {
		t.Fatalf("without ClusterPolicies: %v", err)
	}
	if in.ClusterPolicies != nil || in.Nodes != nil || len(in.Pods) != 1 {
		t.Errorf("without ClusterPolicies got %d policies, %d nodes and %d pods; want 0, 0 and 1", len(in.ClusterPolicies), len(in.Nodes), len(in.Pods))
	}
}

func TestReaderSourceListsClusterPoliciesAndNodesWhenAsked(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha2.Install(scheme); err != nil {
		t.Fatal(err)
	}
	// The fake client refuses managed fields it cannot parse; a reader never sees them stripped.
	pol := with(cnp("p", 1), func(p *v1alpha2.ClusterNetworkPolicy) { p.ManagedFields = nil })
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pol, fullNode("n1"), fullNode("n2")).Build()
	for _, enabled := range []bool{true, false} {
		in, err := ReaderSource{Reader: c, ClusterPolicies: enabled}.Objects(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool][2]int{true: {1, 2}, false: {0, 0}}[enabled]
		if got := [2]int{len(in.ClusterPolicies), len(in.Nodes)}; got != want {
			t.Errorf("ClusterPolicies %v: got %d policies and %d nodes, want %d and %d", enabled, got[0], got[1], want[0], want[1])
		}
	}
}

// failingMapper answers every lookup with err.
type failingMapper struct {
	apimeta.RESTMapper
	err error
}

func (m failingMapper) RESTMapping(schema.GroupKind, ...string) (*apimeta.RESTMapping, error) {
	return nil, m.err
}

func TestClusterPoliciesInstalled(t *testing.T) {
	served := apimeta.NewDefaultRESTMapper(nil)
	served.Add(schema.GroupVersionKind{Group: "policy.networking.k8s.io", Version: "v1alpha2", Kind: "ClusterNetworkPolicy"}, apimeta.RESTScopeRoot)
	// Another version of the kind, or other kinds of the group (the older AdminNetworkPolicy
	// API), are not what the agent reads.
	otherVersion := apimeta.NewDefaultRESTMapper(nil)
	otherVersion.Add(schema.GroupVersionKind{Group: v1alpha2.GroupName, Version: "v1", Kind: "ClusterNetworkPolicy"}, apimeta.RESTScopeRoot)
	otherKinds := apimeta.NewDefaultRESTMapper(nil)
	otherKinds.Add(schema.GroupVersionKind{Group: v1alpha2.GroupName, Version: "v1alpha1", Kind: "AdminNetworkPolicy"}, apimeta.RESTScopeRoot)
	// What controller-runtime's dynamic mapper returns when discovery answers 404 for the group
	// version (ErrResourceDiscoveryFailed unwraps it into a NoResourceMatchError).
	notFound := apiutil.ErrResourceDiscoveryFailed{clusterNetworkPolicyKind.GroupVersion(): apierrors.NewNotFound(schema.GroupResource{}, "")}
	unreachable := errors.New("dial tcp 10.96.0.1:443: connect: connection refused")

	cases := []struct {
		name    string
		mapper  apimeta.RESTMapper
		want    bool
		wantErr string
	}{
		{"served", served, true, ""},
		{"no such group", apimeta.NewDefaultRESTMapper(nil), false, ""},
		{"another version only", otherVersion, false, ""},
		{"other kinds of the group only", otherKinds, false, ""},
		{"discovery says not found", failingMapper{err: &notFound}, false, ""},
		{"the API server unreachable", failingMapper{err: unreachable}, false, "connection refused"},
	}
	for _, c := range cases {
		got, err := ClusterPoliciesInstalled(c.mapper)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, unreachable)):
			t.Errorf("%s: error %v, want one wrapping %q", c.name, err, c.wantErr)
		case got != c.want:
			t.Errorf("%s: installed = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestPodInformersHaveNoNamespaceIndex pins CacheOptions' informer constructor: controller-runtime
// asks every informer for a namespace index, which the Pod informer drops (the agent reads every
// cached Pod, never those of one namespace) and the others keep.
func TestPodInformersHaveNoNamespaceIndex(t *testing.T) {
	newInformer := CacheOptions("n1", false).NewInformer
	if newInformer == nil {
		t.Fatal("CacheOptions sets no informer constructor")
	}
	asked := toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc}
	for _, c := range []struct {
		obj  runtime.Object
		want bool
	}{{&corev1.Pod{}, false}, {&corev1.Namespace{}, true}, {&networkingv1.NetworkPolicy{}, true}, {&corev1.Node{}, true}} {
		_, got := newInformer(&toolscache.ListWatch{}, c.obj, 0, asked).GetIndexer().GetIndexers()[toolscache.NamespaceIndex]
		if got != c.want {
			t.Errorf("%T: namespace index %v, want %v", c.obj, got, c.want)
		}
	}
	if _, ok := asked[toolscache.NamespaceIndex]; !ok {
		t.Error("the constructor changed the indexers it was given")
	}
}
