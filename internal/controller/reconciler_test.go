package controller

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
)

// fakeKernel records applied scripts and answers ListChain with the base chain of the last
// applied script, as the kernel would; tests make it fail or forget the table.
type fakeKernel struct {
	mu       sync.Mutex
	applied  [][]byte
	applyErr error
	table    []byte // what the "kernel" holds; nil when the table is gone
}

func (k *fakeKernel) Apply(_ context.Context, script []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applied = append(k.applied, script)
	if k.applyErr != nil {
		return k.applyErr
	}
	k.table = script
	return nil
}

func (k *fakeKernel) ListChain(_ context.Context, _, table, chain string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.table == nil {
		return "", &nft.Error{ExitCode: 1, Stderr: "Error: No such file or directory\nlist chain inet " + table + " " + chain, Err: errors.New("exit status 1")}
	}
	d, _ := render.Digest(k.table)
	return "table inet " + table + " {\n\tchain " + chain + " {\n\t\tcomment \"x; ruleset " + d + "\"\n\t}\n}\n", nil
}

func (k *fakeKernel) applies() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.applied)
}

func newReconciler(t *testing.T, k *fakeKernel, logs *strings.Builder, objs ...runtime.Object) *Reconciler {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	log := logr.Discard()
	if logs != nil {
		log = funcr.New(func(prefix, args string) { logs.WriteString(args + "\n") }, funcr.Options{})
	}
	return &Reconciler{
		Source:       ReaderSource{Reader: fake.NewClientBuilder().WithScheme(scheme).WithRuntimeObjects(objs...).Build()},
		Node:         "n1",
		Table:        "flock-netpol",
		Applier:      k,
		Inspector:    k,
		ResyncPeriod: time.Minute,
		Log:          log,
	}
}

func localPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a"},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}}},
	}
}

func denyAll() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"}}
}

func TestUnchangedScriptIsNotReapplied(t *testing.T) {
	k := &fakeKernel{}
	r := newReconciler(t, k, nil, localPod(), denyAll())
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := r.Reconcile(ctx, changeKey); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.applies(); n != 1 {
		t.Errorf("applied %d times, want 1", n)
	}
	if !strings.Contains(string(k.applied[0]), "jump pod-in-") {
		t.Errorf("the script does not isolate x/a:\n%s", k.applied[0])
	}
}

// TestFailedApplyKeepsTheAgentUnreadyAndIsRetried pins the fault rule: a failed apply returns an
// error (the work item is retried with backoff), is logged with nft's stderr, is counted, and
// keeps /readyz failing until an apply succeeds.
func TestFailedApplyKeepsTheAgentUnreadyAndIsRetried(t *testing.T) {
	var logs strings.Builder
	k := &fakeKernel{applyErr: &nft.Error{Argv: []string{"nft", "-f", "-"}, ExitCode: 1,
		Stderr: "Error: Could not process rule: No buffer space available", Err: errors.New("exit status 1")}}
	r := newReconciler(t, k, &logs, localPod(), denyAll())
	r.Metrics = NewMetrics(nil)
	ctx := context.Background()

	if err := r.ReadyCheck(nil); err == nil {
		t.Error("ready before any apply")
	}
	if _, err := r.Reconcile(ctx, changeKey); err == nil {
		t.Fatal("a failed apply returned no error, so it would not be retried")
	}
	if err := r.ReadyCheck(nil); err == nil || !strings.Contains(err.Error(), "No buffer space") {
		t.Errorf("ReadyCheck = %v, want the apply error", err)
	}
	if !strings.Contains(logs.String(), "No buffer space available") {
		t.Errorf("nft's stderr is not in the logs:\n%s", logs.String())
	}
	if got := testutil.ToFloat64(r.Metrics.ApplyFailures.WithLabelValues("rejected")); got != 1 {
		t.Errorf("apply_failures_total{reason=rejected} = %v, want 1", got)
	}
	// The retry applies the same script again, although it did not change.
	k.applyErr = nil
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	if n := k.applies(); n != 2 {
		t.Errorf("applies = %d, want 2 (the retry)", n)
	}
	if err := r.ReadyCheck(nil); err != nil {
		t.Errorf("not ready after a successful apply: %v", err)
	}
}

// TestResyncRepairsATableDeletedBehindTheAgentsBack pins the periodic repair: the resync item
// reads the base chain's digest, re-applies when the table is gone, and counts the repair.
func TestResyncRepairsATableDeletedBehindTheAgentsBack(t *testing.T) {
	k := &fakeKernel{}
	r := newReconciler(t, k, nil, localPod(), denyAll())
	r.Metrics = NewMetrics(nil)
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(ctx, resyncKey)
	if err != nil || res.RequeueAfter != time.Minute {
		t.Fatalf("resync = %+v, %v; want a requeue after the period", res, err)
	}
	if n := k.applies(); n != 1 {
		t.Fatalf("an intact table was re-applied (%d applies)", n)
	}

	k.table = nil // someone ran `nft delete table inet flock-netpol`
	res, err = r.Reconcile(ctx, resyncKey)
	if err != nil || res.RequeueAfter != time.Minute {
		t.Fatalf("resync = %+v, %v", res, err)
	}
	if n := k.applies(); n != 2 {
		t.Errorf("applies = %d, want 2 (the repair)", n)
	}
	if got := testutil.ToFloat64(r.Metrics.Repairs); got != 1 {
		t.Errorf("resync_repairs_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.Metrics.Applies.WithLabelValues("repair")); got != 1 {
		t.Errorf("applies_total{trigger=repair} = %v, want 1", got)
	}
}

func TestLiveCheckFailsWhenAReconcileIsStuck(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &Reconciler{StuckAfter: time.Minute, Now: func() time.Time { return now }}
	if err := r.LiveCheck(nil); err != nil {
		t.Errorf("idle loop reported dead: %v", err)
	}
	r.setBusy(true)
	now = now.Add(59 * time.Second)
	if err := r.LiveCheck(nil); err != nil {
		t.Errorf("busy loop within the limit reported dead: %v", err)
	}
	now = now.Add(2 * time.Second)
	if err := r.LiveCheck(nil); err == nil {
		t.Error("a reconcile running past the limit passed the liveness check")
	}
	r.setBusy(false)
	if err := r.LiveCheck(nil); err != nil {
		t.Errorf("idle loop reported dead: %v", err)
	}
}

func TestProblemsAreLoggedOnceAndCounted(t *testing.T) {
	var logs strings.Builder
	bad := denyAll()
	bad.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}}}}}
	r := newReconciler(t, &fakeKernel{}, &logs, localPod(), bad)
	r.Metrics = NewMetrics(nil)
	for i := 0; i < 3; i++ {
		if _, err := r.Reconcile(context.Background(), reconcile.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "invalid ipBlock.cidr"); n != 1 {
		t.Errorf("problem logged %d times, want once:\n%s", n, logs.String())
	}
	if got := testutil.ToFloat64(r.Metrics.PolicyProblems); got != 1 {
		t.Errorf("policy_problems = %v, want 1", got)
	}
}

// TestStripPodCachesTheCompactForm pins that the pod cache holds compact Pods, keyed and labelled
// like the Pod they stand for (package compact pins what NewPod keeps of it).
func TestStripPodCachesTheCompactForm(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"big": strings.Repeat("x", 1000)}, ResourceVersion: "7",
			CreationTimestamp: metav1.Unix(1, 0)},
		Spec:   corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "img"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}}},
	}
	out, err := StripPod(p)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := out.(*compact.Pod)
	if !ok {
		t.Fatalf("StripPod returned a %T", out)
	}
	if key, err := toolscache.MetaNamespaceKeyFunc(s); err != nil || key != "x/a" {
		t.Errorf("cache key = %q, %v; want x/a", key, err)
	}
	if s.GetResourceVersion() != "7" || !reflect.DeepEqual(s.GetLabels(), p.Labels) || s.GetAnnotations() != nil {
		t.Errorf("metadata = %q %v %v, want the resourceVersion and labels only", s.GetResourceVersion(), s.GetLabels(), s.GetAnnotations())
	}
	if c, ok := s.DeepCopyObject().(*compact.Pod); !ok || c == s || !c.Equal(s) {
		t.Errorf("DeepCopyObject = %v, want an equal compact Pod", c)
	}
	if p.Annotations == nil || p.Spec.Containers[0].Image != "img" {
		t.Error("StripPod modified its input")
	}
}

// TestOnlyRelevantPodUpdatesEnqueue pins the update predicate: a change the translator does not
// read (a condition, Pending to Running, a new resourceVersion) is dropped; labels, addresses
// and finishing are not.
func TestOnlyRelevantPodUpdatesEnqueue(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", Labels: map[string]string{"app": "web"}, ResourceVersion: "7"},
			Spec:       corev1.PodSpec{NodeName: "n1"},
			Status:     corev1.PodStatus{Phase: corev1.PodPending, PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}}},
		}
	}
	cases := []struct {
		name     string
		change   func(*corev1.Pod)
		relevant bool
	}{
		{"resourceVersion and a condition", func(p *corev1.Pod) {
			p.ResourceVersion = "8"
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady}}
		}, false},
		{"Pending to Running", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }, false},
		{"a label", func(p *corev1.Pod) { p.Labels["app"] = "db" }, true},
		{"an address", func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::1"}) }, true},
		{"finished", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, true},
	}
	for _, c := range cases {
		changed := base()
		c.change(changed)
		old, _ := StripPod(base())
		updated, _ := StripPod(changed)
		got := relevantChange.Update(event.UpdateEvent{ObjectOld: old.(client.Object), ObjectNew: updated.(client.Object)})
		if got != c.relevant {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.relevant)
		}
	}
}
