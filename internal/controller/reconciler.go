package controller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// Applier applies a complete nft script in one transaction. *nft.Client implements it.
type Applier interface {
	Apply(ctx context.Context, script []byte) error
}

// Reconciler recomputes and applies the node's rule set. Create it with its fields set, then
// call SetupWithManager.
type Reconciler struct {
	// Reader lists objects; normally the manager's cache.
	Reader client.Reader
	// Node is this node's name.
	Node string
	// Table is the nft table to own (family inet).
	Table string
	// Applier runs the script.
	Applier Applier
	// Log receives the agent's structured logs.
	Log logr.Logger
	// RetryBaseDelay and RetryMaxDelay bound the exponential backoff after a failed apply;
	// zero means 500ms and 30s.
	RetryBaseDelay, RetryMaxDelay time.Duration

	mu          sync.Mutex
	lastApplied [sha256.Size]byte // hash of the last script the kernel accepted
	applied     bool              // at least one apply succeeded since start
	lastErr     error             // the last apply's error, nil once one succeeds
	problems    []translate.Problem
}

// key is the single work item: every event asks for the same full recompute.
var key = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-ruleset"}}

func enqueueKey(context.Context, client.Object) []reconcile.Request {
	return []reconcile.Request{key}
}

// +kubebuilder:rbac:groups="",resources=pods;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch

// Reconcile lists everything from the cache, translates, renders and applies when the script
// changed. A failed apply returns an error, so the work item is retried with backoff while the
// previous table stays in force.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	in, err := r.input(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	rs, problems := translate.Translate(in)
	r.logProblems(problems)
	script := render.Render(rs, render.Options{Table: r.Table})
	sum := sha256.Sum256(script)

	r.mu.Lock()
	unchanged := r.applied && r.lastErr == nil && sum == r.lastApplied
	r.mu.Unlock()
	if unchanged {
		return reconcile.Result{}, nil
	}

	start := time.Now()
	err = r.Applier.Apply(ctx, script)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	if err != nil {
		// The kernel rejected or never saw the transaction, so the previous table is intact.
		r.Log.Error(err, "apply failed; the previous rules stay in force and the apply is retried",
			"bytes", len(script))
		return reconcile.Result{}, fmt.Errorf("apply: %w", err)
	}
	r.lastApplied, r.applied = sum, true
	r.Log.Info("applied rules", "isolatedPods", len(rs.Pods), "policies", len(rs.Policies),
		"bytes", len(script), "duration", time.Since(start).String())
	return reconcile.Result{}, nil
}

func (r *Reconciler) input(ctx context.Context) (translate.Input, error) {
	// The cache hands out its own objects without copying them: the translator never mutates
	// its input, and copying 150k pods per recompute would dominate its cost.
	var (
		pols networkingv1.NetworkPolicyList
		nss  corev1.NamespaceList
		pods corev1.PodList
	)
	for _, l := range []client.ObjectList{&pols, &nss, &pods} {
		if err := r.Reader.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return translate.Input{}, fmt.Errorf("listing from the cache: %w", err)
		}
	}
	in := translate.Input{Node: r.Node}
	for i := range pols.Items {
		in.Policies = append(in.Policies, &pols.Items[i])
	}
	for i := range nss.Items {
		in.Namespaces = append(in.Namespaces, &nss.Items[i])
	}
	for i := range pods.Items {
		in.Pods = append(in.Pods, &pods.Items[i])
	}
	return in, nil
}

// logProblems logs bad values once when they appear, not on every recompute.
func (r *Reconciler) logProblems(problems []translate.Problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Equal(problems, r.problems) {
		return
	}
	for _, p := range problems {
		if !slices.Contains(r.problems, p) {
			r.Log.Info("policy value cannot be honoured; it matches nothing (fail closed)",
				"object", p.Object, "problem", p.Message)
		}
	}
	r.problems = problems
}

// ReadyCheck is the /readyz check: ready once an apply succeeded, and not while the last apply
// failed.
func (r *Reconciler) ReadyCheck(_ *http.Request) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.lastErr != nil:
		return fmt.Errorf("last apply failed: %w", r.lastErr)
	case !r.applied:
		return errors.New("no rules applied yet")
	}
	return nil
}

// SetupWithManager registers the controller: NetworkPolicies, Namespaces and Pods all map to the
// one key, and one initial event makes sure the first apply happens even in an empty cluster.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	initial := make(chan event.TypedGenericEvent[*corev1.Namespace], 1)
	initial <- event.TypedGenericEvent[*corev1.Namespace]{Object: &corev1.Namespace{}}
	base, maxDelay := r.RetryBaseDelay, r.RetryMaxDelay
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second
	}
	h := handler.EnqueueRequestsFromMapFunc(enqueueKey)
	return ctrl.NewControllerManagedBy(mgr).
		Named("flock-netpol").
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 1,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](base, maxDelay),
		}).
		Watches(&networkingv1.NetworkPolicy{}, h, builderPredicates()).
		Watches(&corev1.Namespace{}, h, builderPredicates()).
		Watches(&corev1.Pod{}, h, builderPredicates()).
		WatchesRawSource(source.Channel(initial, handler.TypedEnqueueRequestsFromMapFunc(
			func(context.Context, *corev1.Namespace) []reconcile.Request { return []reconcile.Request{key} }))).
		Complete(r)
}
