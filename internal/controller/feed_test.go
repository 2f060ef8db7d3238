package controller

import (
	"context"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/test/objects"
)

// feedTest drives two reconcilers over the same objects: one translating incrementally from the
// events its feed is given, as SetupWithManager wires it, and one translating the whole Source.
type feedTest struct {
	t          *testing.T
	ctx        context.Context
	c          client.Client
	inc, full  *Reconciler
	h          feedHandler
	q          workqueue.TypedRateLimitingInterface[reconcile.Request]
	lastObject map[string]client.Object // the object last given to the feed, by kind and key
	podEvents  int                      // pod events so far: every other one gives the compact form
}

func newFeedTest(t *testing.T, objs ...client.Object) *feedTest {
	t.Helper()
	var initial []runtime.Object
	for _, o := range objs {
		initial = append(initial, o)
	}
	inc := newReconciler(t, &fakeKernel{}, nil, initial...)
	inc.Metrics = NewMetrics(nil)
	inc.TranslateIncrementally()
	k := &fakeKernel{}
	full := &Reconciler{Source: inc.Source, Node: inc.Node, Table: inc.Table, Applier: k, Inspector: k, Log: inc.Log}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(q.ShutDown)
	return &feedTest{t: t, ctx: context.Background(), c: inc.Source.(ReaderSource).Reader.(client.Client),
		inc: inc, full: full, h: feedHandler{inc.feed}, q: q, lastObject: map[string]client.Object{}}
}

// cached returns the object as the cache holds it: a Pod in its compact form, though every other
// pod event gives the API object, as a cache without the transform would.
func (f *feedTest) cached(o client.Object) client.Object {
	if p, ok := o.(*corev1.Pod); ok {
		if f.podEvents++; f.podEvents%2 == 1 {
			return compact.NewPod(p)
		}
	}
	return o
}

func (f *feedTest) key(o client.Object) string {
	return reflect.TypeOf(o).String() + " " + o.GetNamespace() + "/" + o.GetName()
}

func (f *feedTest) create(o client.Object) {
	f.t.Helper()
	if err := f.c.Create(f.ctx, o); err != nil {
		f.t.Fatal(err)
	}
	obj := f.cached(o)
	f.h.Create(f.ctx, event.CreateEvent{Object: obj}, f.q)
	f.lastObject[f.key(o)] = obj
}

func (f *feedTest) update(o client.Object) {
	f.t.Helper()
	if err := f.c.Update(f.ctx, o); err != nil {
		f.t.Fatal(err)
	}
	obj := f.cached(o)
	f.h.Update(f.ctx, event.UpdateEvent{ObjectOld: f.lastObject[f.key(o)], ObjectNew: obj}, f.q)
	f.lastObject[f.key(o)] = obj
}

func (f *feedTest) delete(o client.Object) {
	f.t.Helper()
	if err := f.c.Delete(f.ctx, o); err != nil {
		f.t.Fatal(err)
	}
	f.h.Delete(f.ctx, event.DeleteEvent{Object: f.cached(o)}, f.q)
}

// same fails unless both reconcilers want the same rule set, problems and script.
func (f *feedTest) same(after string) {
	f.t.Helper()
	got, err := f.inc.Desired(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	want, err := f.full.Desired(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if !reflect.DeepEqual(got.RuleSet, want.RuleSet) || !reflect.DeepEqual(got.Problems, want.Problems) || got.Script.Digest != want.Script.Digest {
		f.t.Fatalf("after %s the incremental translation differs from the full one:\nincremental: %+v\nfull:        %+v", after, got.RuleSet, want.RuleSet)
	}
}

// TestIncrementalDesiredMatchesTheFullTranslationAfterEachEvent pins the wiring of the incremental
// translation: fed the watches' events through the handler, the reconciler wants what a full
// translation of the Source gives, after each event; an event the feed never saw is caught by the
// periodic check, which uses the full translation and rebuilds the incremental state.
func TestIncrementalDesiredMatchesTheFullTranslationAfterEachEvent(t *testing.T) {
	allowDB := objects.Policy("x/allow-db", objects.Ingress(objects.From(objects.PodsLabelled("app", "db"))))
	f := newFeedTest(t, objects.Namespace("x"), objects.Namespace("y"), localPod(), allowDB)
	f.same("the first recompute (built from the Source)")

	remote := objects.Pod("x/db", objects.Labels("app", "db"), objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.1.1"))
	f.create(remote)
	f.same("a remote pod created in a peer set")
	if f.q.Len() == 0 {
		t.Fatal("an event asked for no recompute")
	}

	remote.Labels["app"] = "web"
	f.update(remote)
	f.same("the remote pod relabelled out of the peer set")

	fromTeam := objects.Policy("x/from-team", objects.Ingress(objects.From(objects.NamespacesLabelled("team", "a"))))
	f.create(fromTeam)
	f.same("a policy created")

	other := objects.Pod("y/b", objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.1"))
	f.create(other)
	ns := objects.Namespace("y", "team", "a")
	f.update(ns)
	f.same("a namespace relabelled into a namespaceSelector")

	f.delete(other)
	f.same("a pod deleted")
	f.delete(allowDB)
	f.same("a policy deleted")

	// An event the feed never sees: only the periodic check can catch the difference.
	missed := objects.Pod("y/c", objects.OnNode("n2"), objects.Phase(corev1.PodRunning), objects.IPs("10.0.2.2"))
	if err := f.c.Create(f.ctx, missed); err != nil {
		t.Fatal(err)
	}
	checked, err := f.inc.desired(f.ctx, true, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := f.full.Desired(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(checked.RuleSet, want.RuleSet) {
		t.Fatal("the periodic check did not return the full translation")
	}
	if n := testutil.ToFloat64(f.inc.Metrics.IncrementalMismatches); n != 1 {
		t.Errorf("mismatches counted: %v, want 1", n)
	}
	f.same("the rebuild")
	for mode, want := range map[string]float64{"build": 2, "incremental": 8, "full": 1} {
		if n := testutil.ToFloat64(f.inc.Metrics.Translations.WithLabelValues(mode)); n != want {
			t.Errorf("translations %s: %v, want %v", mode, n, want)
		}
	}
}
