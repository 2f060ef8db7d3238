package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

// fakeKernel records applied scripts and answers ListChain with the base chain, and ListSet with
// the digest's set and the current epoch's set of what it holds, as the kernel would (an update
// in place that leaves a set alone leaves its element); tests make it fail or forget the table.
type fakeKernel struct {
	mu       sync.Mutex
	applied  [][]byte
	applyErr error
	table    []byte // what the "kernel" holds; nil when the table is gone
	extra    string // a change another process made inside the table
	packets  int    // grows at every listing, as a counter would
	digest   string // the digest's element
	epoch    uint32 // the current epoch's element
}

func (k *fakeKernel) Apply(_ context.Context, script []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applied = append(k.applied, script)
	if k.applyErr != nil {
		return k.applyErr
	}
	k.table, k.extra = script, ""
	if d, ok := render.Digest(script); ok {
		k.digest = d
	}
	if e, ok := render.Epoch(script); ok {
		k.epoch = e
	}
	return nil
}

func (k *fakeKernel) ListChain(_ context.Context, _, table, chain string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.table == nil {
		return "", &nft.Error{ExitCode: 1, Stderr: "Error: No such file or directory\nlist chain inet " + table + " " + chain, Err: errors.New("exit status 1")}
	}
	return "table inet " + table + " {\n\tchain " + chain + " {\n\t\tjump ingress-dispatch\n\t}\n}\n", nil
}

func (k *fakeKernel) ListSet(_ context.Context, _, table, set string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	element := ""
	switch {
	case k.table == nil:
	case set == render.DigestSet && k.digest != "":
		element = fmt.Sprintf("0x00000000 comment \"ruleset %s\"", k.digest)
	case set == render.CurrentEpochSet && k.epoch != 0:
		element = fmt.Sprintf("0x%08x comment \"epoch %d\"", epoch.Mark(k.epoch), k.epoch)
	}
	if element == "" {
		return "", &nft.Error{ExitCode: 1, Stderr: "Error: No such file or directory\nlist set inet " + table + " " + set, Err: errors.New("exit status 1")}
	}
	return "table inet " + table + " {\n\tset " + set + " {\n\t\ttype mark\n\t\tcomment \"x\"\n\t\telements = { " + element + " }\n\t}\n}\n", nil
}

// ListTable answers with the table as applied, plus what the kernel adds that changes by itself
// (a counter's values) and what a test made another process change (extra).
func (k *fakeKernel) ListTable(_ context.Context, _, table string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.table == nil {
		return "", &nft.Error{ExitCode: 1, Stderr: "Error: No such file or directory\nlist table inet " + table, Err: errors.New("exit status 1")}
	}
	k.packets++
	return fmt.Sprintf("%s\n\t\tcounter packets %d bytes %d drop\n%s", k.table, k.packets, 60*k.packets, k.extra), nil
}

// last returns the last applied script.
func (k *fakeKernel) last() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.applied) == 0 {
		return nil
	}
	return k.applied[len(k.applied)-1]
}

func (k *fakeKernel) applies() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.applied)
}

// newReconciler returns a reconciler for node n1 over objs and the Node object n1.
func newReconciler(t *testing.T, k *fakeKernel, logs *strings.Builder, objs ...runtime.Object) *Reconciler {
	t.Helper()
	return newReconcilerWithout(t, k, logs, append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})...)
}

// newReconcilerWithout is newReconciler without the Node object of n1 (unless objs has one).
func newReconcilerWithout(t *testing.T, k *fakeKernel, logs *strings.Builder, objs ...runtime.Object) *Reconciler {
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

// localPod is a running pod of the reconciler's node n1; denyAll isolates it for ingress.
func localPod() *corev1.Pod {
	return objects.Pod("x/a", objects.OnNode("n1"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.0.1"))
}

func denyAll() *networkingv1.NetworkPolicy { return objects.Policy("x/deny") }

// TestAWrongNodeNameAppliesNothing pins that without a Node object of the agent's name nothing is
// applied (the table stays as it was), the agent is unready with a reason naming the node, and
// the reason is logged once; the Node's creation lets the next recompute apply.
func TestAWrongNodeNameAppliesNothing(t *testing.T) {
	k := &fakeKernel{}
	var logs strings.Builder
	r := newReconcilerWithout(t, k, &logs, localPod(), denyAll())
	ctx := context.Background()
	for range 2 {
		if _, err := r.Reconcile(ctx, changeKey); err != nil {
			t.Fatal(err)
		}
	}
	if k.applies() != 0 {
		t.Errorf("%d applies without a Node object, want none", k.applies())
	}
	if err := r.ReadyCheck(nil); err == nil || !strings.Contains(err.Error(), `no Node object is named "n1"`) {
		t.Errorf("ReadyCheck = %v, want the missing Node named", err)
	}
	if n := strings.Count(logs.String(), "refusing to apply"); n != 1 {
		t.Errorf("logged the refusal %d times, want once:\n%s", n, logs.String())
	}

	src := r.Source.(ReaderSource).Reader.(client.Client)
	if err := src.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	if k.applies() != 1 || r.ReadyCheck(nil) != nil {
		t.Errorf("after the Node appeared: %d applies, ReadyCheck %v; want 1 and ready", k.applies(), r.ReadyCheck(nil))
	}
}

// TestPodRangesComeFromTheNodeUnlessOverridden pins where the closed ranges come from: the
// Node's spec.podCIDRs, the PodCIDRs override instead when set, and none when closing is off.
func TestPodRangesComeFromTheNodeUnlessOverridden(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.0.0.0/24", "fd00::/112"}}}
	for _, c := range []struct {
		name     string
		close    bool
		override []netip.Prefix
		want     []string // substrings of the applied script; nil means no closed range
	}{
		{"from the Node", true, nil, []string{"ip saddr 10.0.0.0/24 ip saddr != @local-pods-v4", "ip6 daddr fd00::/112 ", "10.0.0.1,"}},
		{"overridden", true, []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, []string{"ip daddr 10.9.0.0/16 ip daddr != @local-pods-v4"}},
		{"closing off", false, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := &fakeKernel{}
			r := newReconcilerWithout(t, k, nil, localPod(), node)
			r.CloseUnknownPodAddresses, r.PodCIDRs = c.close, c.override
			if _, err := r.Reconcile(context.Background(), changeKey); err != nil {
				t.Fatal(err)
			}
			script := string(k.last())
			if has := strings.Contains(script, "!= @local-pods-v4"); has != (c.want != nil) {
				t.Errorf("script closes a range: %v, want %v", has, c.want != nil)
			}
			for _, w := range c.want {
				if !strings.Contains(script, w) {
					t.Errorf("script lacks %q", w)
				}
			}
		})
	}
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
	if got := testutil.ToFloat64(r.Metrics.Repairs.WithLabelValues("resync")); got != 1 {
		t.Errorf("repairs_total{cause=resync} = %v, want 1", got)
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
	bad := objects.Policy("x/deny", objects.Ingress(objects.From(objects.IPBlock("10.0.0.0/33"))))
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
	p := objects.Pod("x/a", objects.Labels("app", "web"), objects.OnNode("n1"),
		objects.Containers(corev1.Container{Name: "c", Image: "img"}), objects.Phase(corev1.PodRunning), objects.IPs("10.0.0.1"))
	// What the cache must drop.
	p.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	p.ResourceVersion, p.CreationTimestamp = "7", metav1.Unix(1, 0)
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
		p := objects.Pod("x/a", objects.Labels("app", "web"), objects.OnNode("n1"), objects.Phase(corev1.PodPending), objects.IPs("10.0.0.1"))
		p.ResourceVersion = "7"
		return p
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

// TestFullCheckRepairsAChangeInsideTheTable pins the full comparison of the periodic check: a
// change inside the table that keeps the base chain's digest is found at the next full comparison
// and repaired (cause resync); counters that count are no change.
func TestFullCheckRepairsAChangeInsideTheTable(t *testing.T) {
	k := &fakeKernel{}
	r := newReconciler(t, k, nil, localPod(), denyAll())
	r.FullCheckEvery = 2
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	for range 4 { // two full comparisons: the baseline, then an equal listing (other counts)
		if _, err := r.Reconcile(ctx, resyncKey); err != nil {
			t.Fatal(err)
		}
	}
	if k.applies() != 1 {
		t.Fatalf("%d applies with the table intact, want 1", k.applies())
	}
	k.mu.Lock()
	k.extra = "\t\tip saddr 10.9.9.9 accept"
	k.mu.Unlock()
	for range 2 {
		if _, err := r.Reconcile(ctx, resyncKey); err != nil {
			t.Fatal(err)
		}
	}
	if k.applies() != 2 {
		t.Errorf("%d applies after a change inside the table, want the repair", k.applies())
	}
	if got := testutil.ToFloat64(r.Metrics.Repairs.WithLabelValues("resync")); got != 1 {
		t.Errorf("repairs_total{cause=resync} = %v, want 1", got)
	}
}

// TestEpochsFollowTheTableInTheKernel pins how the agent numbers epochs: its first apply
// continues after the epoch of the table a previous run left (no old stamp passes as a new one),
// a change that can deny something moves to the next epoch, and one that only allows more does
// not.
func TestEpochsFollowTheTableInTheKernel(t *testing.T) {
	old := render.Render(ruleset.RuleSet{}, render.Options{Epochs: epoch.State{Current: 41}})
	k := &fakeKernel{}
	if err := k.Apply(context.Background(), old.Text); err != nil {
		t.Fatal(err)
	}
	allow := objects.Policy("x/allow", objects.Ingress(objects.From(objects.Peer(objects.Selector("app", "client"), nil))))
	client1 := objects.Pod("x/c1", objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.1"))
	client2 := objects.Pod("x/c2", objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.2"))
	r := newReconciler(t, k, nil, localPod(), allow, client1)
	c := r.Source.(ReaderSource).Reader.(client.Client)
	ctx := context.Background()
	step := func(name string, want uint32, change func()) {
		t.Helper()
		if change != nil {
			change()
		}
		if _, err := r.Reconcile(ctx, changeKey); err != nil {
			t.Fatal(err)
		}
		// The epoch the kernel holds: the current epoch's set, which an update changes only
		// when the epoch moves.
		k.mu.Lock()
		got := k.epoch
		k.mu.Unlock()
		if got != want {
			t.Errorf("%s: epoch %d, want %d", name, got, want)
		}
	}
	step("first apply after a previous run's table at 41", 42, nil)
	step("a client joins the peers: nothing to re-validate", 42, func() {
		if err := c.Create(ctx, client2); err != nil {
			t.Fatal(err)
		}
	})
	step("a client leaves the peers: x/a's connections are judged again", 43, func() {
		if err := c.Delete(ctx, client1); err != nil {
			t.Fatal(err)
		}
	})
}

// TestChangesAreAppliedInPlace pins when the agent updates the table in place: an ordinary change
// after a successful apply goes as an incremental update (render.Diff); the first apply and a
// repair replace the whole table.
func TestChangesAreAppliedInPlace(t *testing.T) {
	k := &fakeKernel{}
	allow := objects.Policy("x/allow", objects.Ingress(objects.From(objects.Peer(objects.Selector("app", "client"), nil))))
	client1 := objects.Pod("x/c1", objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.1"))
	client2 := objects.Pod("x/c2", objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.2"))
	// Peers that stay, so that no change below touches more than half of the table's elements
	// (which goes as a full replace: render.DiffOptions.MaxShare); every update also changes the
	// digest's element (deleted and added again).
	var stay []runtime.Object
	for _, ip := range []string{"10.0.2.3", "10.0.2.4", "10.0.2.5", "10.0.2.6", "10.0.2.7", "10.0.2.8", "10.0.2.9"} {
		stay = append(stay, objects.Pod("x/s-"+strings.ReplaceAll(ip, ".", "-"), objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs(ip)))
	}
	r := newReconciler(t, k, nil, append([]runtime.Object{localPod(), allow, client1}, stay...)...)
	c := r.Source.(ReaderSource).Reader.(client.Client)
	ctx := context.Background()
	reconcile := func(req reconcile.Request) string {
		t.Helper()
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
		return string(k.last())
	}
	if first := reconcile(changeKey); !strings.Contains(first, "delete table inet flock-netpol") {
		t.Errorf("the first apply is not a full replace:\n%s", first)
	}
	if err := c.Create(ctx, client2); err != nil {
		t.Fatal(err)
	}
	update := reconcile(changeKey)
	if !strings.HasPrefix(update, "# flock-netpol: incremental update") || !strings.Contains(update, "10.0.2.2") || strings.Contains(update, "delete table") {
		t.Errorf("a new peer was not applied in place:\n%s", update)
	}
	// The next update starts from the table the last one left (kept parsed).
	if err := c.Delete(ctx, client1); err != nil {
		t.Fatal(err)
	}
	update = reconcile(changeKey)
	// A small set that loses an element is sent again whole (render.DefaultMaxRefill).
	if !strings.HasPrefix(update, "# flock-netpol: incremental update") || !strings.Contains(update, "flush set inet flock-netpol peers-") ||
		!strings.Contains(update, "10.0.2.2") || strings.Contains(update, "10.0.2.1") {
		t.Errorf("a peer that left was not applied in place:\n%s", update)
	}
	k.mu.Lock()
	k.table = nil // deleted behind the agent's back
	k.mu.Unlock()
	if repair := reconcile(resyncKey); !strings.Contains(repair, "delete table inet flock-netpol") {
		t.Errorf("the repair is not a full replace:\n%s", repair)
	}
}

// TestAnUnchangedRuleSetIsNotRenderedAgain pins that a recompute whose rule set and epochs are
// those of the last apply returns the last script itself (no render), and that a change renders.
func TestAnUnchangedRuleSetIsNotRenderedAgain(t *testing.T) {
	k := &fakeKernel{}
	allow := objects.Policy("x/allow", objects.Ingress(objects.From(objects.Peer(objects.Selector("app", "client"), nil))))
	client1 := objects.Pod("x/c1", objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.1"))
	other := objects.Pod("y/o", objects.Labels("app", "other"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.3.1"))
	r := newReconciler(t, k, nil, localPod(), allow, client1, other)
	c := r.Source.(ReaderSource).Reader.(client.Client)
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	rendered := func() (fresh bool) {
		t.Helper()
		d, err := r.Desired(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return &d.Script.Text[0] != &r.lastScript.Text[0]
	}
	if rendered() {
		t.Error("nothing changed, yet the script was rendered again")
	}
	// A pod no policy selects, relabelled: the rule set is the same.
	other.Labels = map[string]string{"app": "still-other"}
	if err := c.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	if rendered() {
		t.Error("a relabel that changes no rule was rendered again")
	}
	client1.Labels = map[string]string{"app": "gone"}
	if err := c.Update(ctx, client1); err != nil {
		t.Fatal(err)
	}
	if !rendered() {
		t.Error("a peer left the rules, yet the last script was returned")
	}
}

// TestChangesWithinTheIntervalAreCoalesced pins MinApplyInterval: a change that comes sooner
// than the interval after the last apply waits for the rest of it and is applied together with
// the changes that arrive meanwhile (one apply for both); a change after the interval, and the
// periodic check, do not wait.
func TestChangesWithinTheIntervalAreCoalesced(t *testing.T) {
	k := &fakeKernel{}
	allow := objects.Policy("x/allow", objects.Ingress(objects.From(objects.Peer(objects.Selector("app", "client"), nil))))
	peer := func(n int) *corev1.Pod {
		return objects.Pod(fmt.Sprintf("x/c%d", n), objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs(fmt.Sprintf("10.0.2.%d", n)))
	}
	r := newReconciler(t, k, nil, localPod(), allow, peer(1))
	r.MinApplyInterval = time.Second
	c := r.Source.(ReaderSource).Reader.(client.Client)
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, peer(2)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := r.Reconcile(ctx, changeKey); done <- err }()
	time.Sleep(100 * time.Millisecond) // within the interval: the recompute has not read the cluster yet
	if err := c.Create(ctx, peer(3)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, last := k.applies(), string(k.last()); got != 2 || !strings.Contains(last, "10.0.2.2") || !strings.Contains(last, "10.0.2.3") {
		t.Errorf("%d applies, the last:\n%s\nwant 2, the second with both new peers", got, last)
	}
	// Past the interval (an hour, with the clock moved past it) a change is applied at once,
	// and the periodic check never waits: neither call may block for the hour.
	r.MinApplyInterval = time.Hour
	if _, err := r.Reconcile(ctx, resyncKey); err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if err := c.Create(ctx, peer(4)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(k.last()), "10.0.2.4") {
		t.Errorf("the change past the interval was not applied:\n%s", k.last())
	}
}

// fakeElements records element updates, or fails them with err.
type fakeElements struct {
	calls [][]nft.SetChange
	err   error
}

func (f *fakeElements) UpdateElements(_ context.Context, _, _ string, changes []nft.SetChange) error {
	f.calls = append(f.calls, changes)
	return f.err
}

// TestElementOnlyUpdatesGoToTheElementUpdater pins where an update goes: one that changes only
// elements (a peer joins, a peer leaves) to Elements, and nothing to nft; one Elements cannot
// encode (nft.ErrUnsupportedSet) to nft as the same update in place; one Elements fails is a
// failed update in place, replaced by the whole table.
func TestElementOnlyUpdatesGoToTheElementUpdater(t *testing.T) {
	k, el := &fakeKernel{}, &fakeElements{}
	allow := objects.Policy("x/allow", objects.Ingress(objects.From(objects.Peer(objects.Selector("app", "client"), nil))))
	peer := func(n int) *corev1.Pod {
		return objects.Pod(fmt.Sprintf("x/c%d", n), objects.Labels("app", "client"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs(fmt.Sprintf("10.0.2.%d", n)))
	}
	r := newReconciler(t, k, nil, localPod(), allow, peer(1))
	r.Elements = el
	c := r.Source.(ReaderSource).Reader.(client.Client)
	ctx := context.Background()
	step := func(name string, change func()) {
		t.Helper()
		change()
		if _, err := r.Reconcile(ctx, changeKey); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	step("first apply", func() {})
	step("a peer joins", func() {
		if err := c.Create(ctx, peer(2)); err != nil {
			t.Fatal(err)
		}
	})
	step("a peer leaves", func() {
		if err := c.Delete(ctx, peer(1)); err != nil {
			t.Fatal(err)
		}
	})
	if k.applies() != 1 || len(el.calls) != 2 {
		t.Fatalf("%d nft applies and %d element updates, want the first apply and 2", k.applies(), len(el.calls))
	}
	joined := fmt.Sprint(el.calls[0])
	if !strings.Contains(joined, "10.0.2.2") || !strings.Contains(joined, `comment "ruleset `) {
		t.Errorf("the peer's update lacks the peer or the digest: %s", joined)
	}
	if left := fmt.Sprint(el.calls[1]); !strings.Contains(left, "10.0.2.1") || !strings.Contains(left, "goto stamp-") {
		t.Errorf("the narrowing update lacks the peer or the new stamp: %s", left)
	}

	el.err = fmt.Errorf("set s: %w", nft.ErrUnsupportedSet)
	step("a peer joins, unsupported", func() {
		if err := c.Create(ctx, peer(3)); err != nil {
			t.Fatal(err)
		}
	})
	if last := string(k.last()); k.applies() != 2 || !strings.HasPrefix(last, "# flock-netpol: incremental update") || !strings.Contains(last, "10.0.2.3") {
		t.Errorf("an update Elements cannot encode did not go to nft in place (%d applies):\n%s", k.applies(), last)
	}

	el.err = errors.New("netlink: no buffer space")
	step("a peer joins, refused", func() {
		if err := c.Create(ctx, peer(4)); err != nil {
			t.Fatal(err)
		}
	})
	if last := string(k.last()); k.applies() != 3 || !strings.Contains(last, "delete table inet flock-netpol") || !strings.Contains(last, "10.0.2.4") {
		t.Errorf("a refused element update was not replaced by the whole table (%d applies):\n%s", k.applies(), last)
	}
	if got := testutil.ToFloat64(r.Metrics.IncrementalUpdates.WithLabelValues("netlink")); got != 2 {
		t.Errorf("incremental_updates_total{outcome=netlink} = %v, want 2", got)
	}
}
