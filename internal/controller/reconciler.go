package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// Applier applies a complete nft script in one transaction. *nft.Client implements it.
type Applier interface {
	Apply(ctx context.Context, script []byte) error
}

// ElementUpdater applies changes of set and map elements in one transaction, without nft.
// nft.NetlinkElements implements it; nft.ErrUnsupportedSet says a change must go through nft.
type ElementUpdater interface {
	UpdateElements(ctx context.Context, family, table string, changes []nft.SetChange) error
}

// Inspector reads the table, or one chain or set of it, back from the kernel. *nft.Client
// implements it.
type Inspector interface {
	ListChain(ctx context.Context, family, table, chain string) (string, error)
	ListSet(ctx context.Context, family, table, set string) (string, error)
	ListTable(ctx context.Context, family, table string) (string, error)
}

// Reconciler recomputes and applies the node's rule set. Create it with its fields set, then
// call SetupWithManager.
type Reconciler struct {
	// Source supplies the objects; normally a CacheSource over the manager's cache.
	Source Source
	// Node is this node's name.
	Node string
	// ClusterPolicies watches ClusterNetworkPolicies too, for a recompute at each change of one.
	// Set it only when their CRD is installed (ClusterPoliciesInstalled), together with the
	// cache's (CacheOptions, which then holds every Node) and the Source's
	// (CacheSource.ClusterPolicies): a watch on a resource the API server does not serve never
	// syncs, and the agent would never apply.
	ClusterPolicies bool
	// Table is the nft table to own (family inet).
	Table string
	// Applier runs the script.
	Applier Applier
	// Elements, when set, applies an update that changes only set and map elements (the usual
	// pod event: a peer joins or leaves) as element messages rather than through the Applier,
	// which costs nft's start and its loading of the table (see nft.NetlinkElements). A failure
	// is handled as a failed update in place: the whole table replaces it.
	Elements ElementUpdater
	// CloseUnknownPodAddresses drops forwarded traffic from or to an address of this node's pod
	// ranges that no known local pod owns. The ranges are PodCIDRs when set, else the Node's
	// spec.podCIDRs.
	CloseUnknownPodAddresses bool
	PodCIDRs                 []netip.Prefix
	// AntiSpoofing drops forwarded packets whose source fails a strict reverse-path check
	// (render.Options.AntiSpoofing).
	AntiSpoofing bool
	// Established is how established connections are treated (render.Established); the zero
	// value re-validates them after every change that can deny them.
	Established render.Established
	// Monitor, when set, watches the kernel's changes: a change to the table by another process
	// is repaired at once (see drift.go).
	Monitor Monitor
	// Inspector, when set together with ResyncPeriod, lets the agent check every ResyncPeriod
	// that the kernel still holds the table it last applied, and repair it when not.
	Inspector    Inspector
	ResyncPeriod time.Duration
	// FullCheckEvery makes every so many periodic checks also compare the whole table (see
	// fullCheck); zero means DefaultFullCheckEvery, a negative value never.
	FullCheckEvery int
	// Log receives the agent's structured logs.
	Log logr.Logger

	// Optional fields: their zero values mean the defaults that setDefaults fills in.

	// Metrics receives the agent's metrics; nil means unregistered ones.
	Metrics *Metrics
	// RetryBaseDelay and RetryMaxDelay bound the exponential backoff after a failed apply;
	// zero means DefaultRetryBaseDelay and DefaultRetryMaxDelay.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// StuckAfter is how long one reconcile may run before the liveness check fails; zero means
	// DefaultStuckAfter. It must exceed the nft timeout.
	StuckAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LogDrops logs the drops of every local pod (translate.Input.LogDrops); LogGroup and
	// LogRate are the drop logs' NFLOG group and rate (render.Options).
	LogDrops bool
	LogGroup uint16
	LogRate  int
	// Counters, when set, exports the table's named counters; the reconciler tells it about
	// every apply (see RuleCounters).
	Counters *RuleCounters
	// IncrementalMaxShare bounds incremental updates: a change that would add or delete more than
	// this share of the table's set elements is applied as a full replace. Zero means
	// DefaultIncrementalMaxShare; a negative value always replaces the whole table.
	IncrementalMaxShare float64
	// IncrementalMaxRefill is the largest set an incremental update declares again with all its
	// elements when it loses some (render.DiffOptions.MaxRefill): zero means
	// render.DefaultMaxRefill, negative never.
	IncrementalMaxRefill int
	// FullTranslate translates the whole cache on every recompute (translate.Translate), as the
	// agent did before it kept an incremental translation (translate.Incremental, fed by the
	// watches: see feed.go); for comparison, and as a way out should the incremental one misbehave.
	// A Reconciler that SetupWithManager did not register always translates in full: nothing
	// feeds it events.
	FullTranslate bool
	// MinApplyInterval is the least time from the end of one recompute of a change (applied or
	// found to change nothing on this node) to the start of the next: a change that comes sooner
	// waits for the rest of it, collecting whatever else arrives meanwhile, so that a stream of
	// events costs one recompute and at most one apply per interval rather than one per event (as
	// kube-proxy's min-sync-period), while a change alone is applied at once. The kernel is then
	// never further behind an event than the interval plus two recomputes. Zero: no wait. Repairs
	// and the periodic check never wait.
	MinApplyInterval time.Duration

	// feed collects the watches' events for inc (nil without SetupWithManager, or with
	// FullTranslate); incMu guards inc, which Desired builds on first use.
	feed  *changeFeed
	incMu sync.Mutex
	inc   *incState

	defaults   sync.Once
	mu         sync.Mutex
	lastDigest string // digest of the last script the kernel accepted
	applied    bool   // at least one apply succeeded since start
	lastErr    error  // the last apply's error, nil once one succeeds
	noNode     error  // set while no Node object carries this node's name: nothing is applied
	busySince  time.Time
	problems   []translate.Problem
	recent     []string // digests of the latest applies, for the monitor (see noteApplying)
	checks     int      // periodic checks so far, for FullCheckEvery
	baseline   tableBaseline
	// lastChange is when the last recompute of a change ended (see MinApplyInterval).
	lastChange time.Time
	// epochs and lastRuleSet are what the last successful apply installed: the next epochs
	// follow from them (epoch.Next). epochsSeeded is set once the epoch of a table left by a
	// previous run has been read, so that this run's stamps continue after it.
	epochs       epoch.State
	lastRuleSet  ruleset.RuleSet
	epochsSeeded bool
	// lastScript is the script of the last successful apply (with its text only when that was a
	// full replace), from whose Table the next change is applied as an incremental update
	// (render.Diff), and which a recompute that finds the same rule set and epochs returns again
	// rather than render it.
	lastScript render.Script
	// renderMemo lets each render reuse the sets of the previous one that the change left alone
	// (the incremental translation's rule sets share their memory), and Diff skip them.
	renderMemo render.Memo
}

// Defaults of the Reconciler's optional fields.
const (
	DefaultRetryBaseDelay      = 500 * time.Millisecond
	DefaultRetryMaxDelay       = 30 * time.Second
	DefaultStuckAfter          = 5 * time.Minute
	DefaultFullCheckEvery      = 10
	DefaultIncrementalMaxShare = 0.5
)

// DefaultMinApplyInterval keeps the kernel within about a tenth of a second of a stream of events
// while one recompute, and one apply, serves every event of the interval (see MinApplyInterval).
// It is the agent's default (--min-apply-interval); a Reconciler's zero MinApplyInterval means no
// wait.
const DefaultMinApplyInterval = 100 * time.Millisecond

// setDefaults fills in the optional fields left zero, once, before the first use of any of them.
func (r *Reconciler) setDefaults() {
	r.defaults.Do(func() {
		if r.Metrics == nil {
			r.Metrics = NewMetrics(nil)
		}
		if r.RetryBaseDelay <= 0 {
			r.RetryBaseDelay = DefaultRetryBaseDelay
		}
		if r.RetryMaxDelay <= 0 {
			r.RetryMaxDelay = DefaultRetryMaxDelay
		}
		if r.StuckAfter <= 0 {
			r.StuckAfter = DefaultStuckAfter
		}
		if r.IncrementalMaxShare == 0 {
			r.IncrementalMaxShare = DefaultIncrementalMaxShare
		}
		if r.FullCheckEvery == 0 {
			r.FullCheckEvery = DefaultFullCheckEvery
		}
		if r.Now == nil {
			r.Now = time.Now
		}
	})
}

// Two work items: every watch event asks for a recompute (changeKey); the periodic resync asks
// for a recompute plus a check that the kernel still holds the last applied table (resyncKey).
// The monitor asks for a repair (driftKey) or for the check to run now (resyncKey).
var (
	changeKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-ruleset"}}
	resyncKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-ruleset-resync"}}
	driftKey  = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-ruleset-drift"}}
)

func enqueueChange(context.Context, client.Object) []reconcile.Request {
	return []reconcile.Request{changeKey}
}

// +kubebuilder:rbac:groups="",resources=pods;namespaces;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.networking.k8s.io,resources=clusternetworkpolicies,verbs=get;list;watch

// Reconcile translates (incrementally from the events since the last time, or the whole cache:
// see Desired), renders and applies when the script changed (or, for the resync item, when the kernel no longer holds it). A failed apply returns
// an error, so the item is retried with backoff while the previous table stays in force.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	r.setBusy(true)
	defer r.setBusy(false)
	m := r.metrics()
	r.seedEpochs(ctx)
	if req == changeKey {
		if err := r.waitForInterval(ctx); err != nil {
			return reconcile.Result{}, err
		}
		defer func() {
			r.mu.Lock()
			r.lastChange = r.Now()
			r.mu.Unlock()
		}()
	}

	// The periodic check and a repair also check the incremental translation against a full one.
	// Once a table is applied, the script is rendered without its text, which only a full replace
	// needs (withText); the first apply is one.
	r.mu.Lock()
	tableOnly := r.applied
	r.mu.Unlock()
	d, err := r.desired(ctx, req == resyncKey || req == driftKey, tableOnly)
	if err != nil {
		return reconcile.Result{}, err
	}
	if !r.nodeExists(d.Node) {
		return reconcile.Result{}, nil // the Node watch brings the node's creation here
	}
	r.logProblems(d.Problems)
	digest := d.Script.Digest

	r.mu.Lock()
	upToDate := r.applied && r.lastErr == nil && digest == r.lastDigest
	r.mu.Unlock()

	trigger, cause := "change", ""
	switch {
	case upToDate && req == driftKey:
		trigger, cause = "repair", "monitor"
	case upToDate:
		if req != resyncKey {
			return reconcile.Result{}, nil
		}
		intact, err := r.kernelHolds(ctx, digest)
		if err == nil && intact {
			intact, err = r.fullCheck(ctx, digest)
		}
		if err != nil {
			// Not knowing is no reason to rewrite the table; try again next period.
			m.KernelCheckFailures.Inc()
			r.Log.Error(err, "cannot read the table back from the kernel")
		}
		if intact || err != nil {
			return r.resyncResult(), nil
		}
		r.Log.Info("the kernel no longer holds the last applied table; re-applying it", "digest", digest)
		trigger, cause = "repair", "resync"
	}

	if err := r.apply(ctx, d, trigger); err != nil {
		return reconcile.Result{}, err
	}
	if trigger == "repair" {
		m.Repairs.WithLabelValues(cause).Inc()
	}
	if req == resyncKey {
		return r.resyncResult(), nil
	}
	return reconcile.Result{}, nil
}

func (r *Reconciler) apply(ctx context.Context, d Desired, trigger string) error {
	script, rs, problems := d.Script, d.RuleSet, len(d.Problems)
	m := r.metrics()
	r.noteApplying(script.Digest)
	start := time.Now()
	u, mode := r.update(script, trigger)
	text := u.Text
	if mode == "full" {
		script = r.withText(d)
		text = script.Text
	}
	r.mu.Lock()
	applied := r.applied
	r.mu.Unlock()
	if mode == "full" && applied && r.Counters != nil {
		r.Counters.Replacing(ctx)
	}
	var err error
	if mode == "elements" {
		err = r.Elements.UpdateElements(ctx, "inet", r.Table, setChanges(u.Changes))
		if errors.Is(err, nft.ErrUnsupportedSet) {
			mode = "incremental" // an interval set (ipBlock peers) goes through nft
		}
	}
	if mode != "elements" {
		err = r.Applier.Apply(ctx, text)
	}
	if err == nil && mode != "full" {
		outcome := "applied"
		if mode == "elements" {
			outcome = "netlink"
		}
		m.IncrementalUpdates.WithLabelValues(outcome).Inc()
	}
	if err != nil && mode != "full" {
		// The kernel's table is not what the last script made it (or the update is wrong):
		// the whole table repairs both, in this same reconcile.
		m.IncrementalUpdates.WithLabelValues("failed").Inc()
		r.Log.Error(err, "incremental update failed; replacing the whole table", "mode", mode)
		script = r.withText(d)
		text, mode = script.Text, "full"
		if r.Counters != nil {
			r.Counters.Replacing(ctx)
		}
		err = r.Applier.Apply(ctx, text)
	}
	if err == nil && r.Counters != nil {
		if mode == "full" {
			r.Counters.Replaced()
		}
		r.Counters.Applied(script.Counters)
	}
	elapsed := time.Since(start)
	m.ApplyDuration.Observe(elapsed.Seconds())

	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	if err != nil {
		// The kernel rejected or never saw the transaction, so the previous table is intact.
		m.ApplyFailures.WithLabelValues(failureReason(err)).Inc()
		r.Log.Error(err, "apply failed; the previous rules stay in force and the apply is retried",
			"bytes", len(script.Text), "duration", elapsed.String())
		return fmt.Errorf("apply: %w", err)
	}
	if old := r.lastScript.Text; cap(old) > 0 && (cap(script.Text) == 0 || &old[:1][0] != &script.Text[:1][0]) {
		// Nothing holds the replaced script any more: the next render writes over its text.
		r.renderMemo.Recycle(old)
	}
	r.lastDigest, r.applied, r.lastScript = script.Digest, true, script
	m.Epoch.Set(float64(d.Epochs.Current))
	r.epochs, r.lastRuleSet = d.Epochs, rs
	r.baseline = tableBaseline{} // a new table, even with the same digest (a repair), lists anew

	st := script.Stats
	var in, out int
	for _, p := range rs.Targets {
		if len(p.IngressPolicies) > 0 {
			in++
		}
		if len(p.EgressPolicies) > 0 {
			out++
		}
	}
	m.Applies.WithLabelValues(trigger).Inc()
	m.LastSuccess.SetToCurrentTime()
	m.ScriptBytes.Set(float64(st.Bytes))
	m.Rules.Set(float64(st.Rules))
	m.Sets.Set(float64(st.Sets))
	m.SetElements.Set(float64(st.Elements))
	m.IsolatedPods.WithLabelValues("ingress").Set(float64(in))
	m.IsolatedPods.WithLabelValues("egress").Set(float64(out))
	m.Policies.Set(float64(len(rs.Policies)))
	m.PolicyProblems.Set(float64(problems))
	r.Log.Info("applied rules", "trigger", trigger, "mode", mode, "digest", script.Digest, "isolatedIngress", in,
		"isolatedEgress", out, "policies", len(rs.Policies), "rules", st.Rules, "bytes", st.Bytes,
		"appliedBytes", len(text), "duration", elapsed.String())
	return nil
}

// withText returns d's script with its text, rendering it when d has none: the reconciler renders
// without the text, which an update in place does not need, and with it only for a full replace
// (the render memo makes that second render a copy of what the first wrote or reused).
func (r *Reconciler) withText(d Desired) render.Script {
	if d.Script.Text != nil {
		return d.Script
	}
	opts := r.RenderOptions(d.Epochs)
	opts.Memo = &r.renderMemo
	return render.Render(d.RuleSet, opts)
}

// update returns what to send for script: the incremental update from the last applied script
// for an ordinary change, or mode "full" and no update for anything else (the first apply, a
// repair, a change too large or one that redeclares a chain or set), which sends the whole script.
func (r *Reconciler) update(script render.Script, trigger string) (u render.Update, mode string) {
	if trigger != "change" || r.lastScript.Table == nil || r.IncrementalMaxShare < 0 {
		return render.Update{}, "full"
	}
	// Render gives every script its Table: no script is parsed back.
	u, err := render.Diff(r.lastScript.Table, script.Table, render.DiffOptions{Table: r.Table, MaxShare: r.IncrementalMaxShare, MaxRefill: r.IncrementalMaxRefill})
	if err != nil { // render.ErrNeedsFullApply: a declaration changed, or too much did
		r.metrics().IncrementalUpdates.WithLabelValues("full_needed").Inc()
		return render.Update{}, "full"
	}
	if u.ElementsOnly && r.Elements != nil {
		return u, "elements"
	}
	return u, "incremental"
}

// AppliedRuleSet returns the rule set of the last successful apply, nil before the first. The
// caller must not modify it.
func (r *Reconciler) AppliedRuleSet() *ruleset.RuleSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.applied {
		return nil
	}
	rs := r.lastRuleSet
	return &rs
}

// Desired is what the kernel should hold now.
type Desired struct {
	// Node is this node's Node object; nil when there is none, and then nothing else is set.
	Node     *corev1.Node
	RuleSet  ruleset.RuleSet
	Problems []translate.Problem
	// Epochs are the stamps the script trusts, following those of the last apply.
	Epochs epoch.State
	Script render.Script
}

// Desired computes, from the Source, the rule set and script this reconciler would apply now. It
// changes nothing the kernel holds and may be called by anyone who wants to know what a node
// should enforce (tests compare it with the kernel). Once SetupWithManager has registered the
// reconciler, the rule set comes from the incremental translation, fed by the watches, which
// the first call builds from the Source; otherwise (or with FullTranslate) the whole Source is
// translated.
func (r *Reconciler) Desired(ctx context.Context) (Desired, error) {
	return r.desired(ctx, false, false)
}

// desired is Desired; check asks for the incremental translation, if there is one, to be
// compared with a full one (see translateIncrementally), and tableOnly for a script without its
// text (render.Options.TableOnly), which withText completes when a full replace needs it.
func (r *Reconciler) desired(ctx context.Context, check, tableOnly bool) (Desired, error) {
	var (
		in  translate.Input
		err error
	)
	if r.feed == nil {
		if in, err = r.input(ctx); err != nil {
			return Desired{}, err
		}
	}
	node, err := r.Source.Node(ctx, r.Node)
	if err != nil || node == nil {
		return Desired{}, err
	}
	var (
		cidrProblems []translate.Problem
		podCIDRs     []netip.Prefix
	)
	if r.CloseUnknownPodAddresses {
		podCIDRs = r.PodCIDRs
		if len(podCIDRs) == 0 {
			cidrs, err := translate.NodePodCIDRs(node)
			if err != nil {
				cidrProblems = append(cidrProblems, translate.Problem{Object: "Node " + node.Name, Message: err.Error()})
			}
			podCIDRs = cidrs
		}
	}
	var (
		rs       ruleset.RuleSet
		problems []translate.Problem
	)
	if r.feed == nil {
		in.PodCIDRs = podCIDRs
		rs, problems = translate.Translate(in)
		r.metrics().Translations.WithLabelValues("full").Inc()
	} else if rs, problems, err = r.translateIncrementally(ctx, podCIDRs, check); err != nil {
		return Desired{}, err
	}
	r.mu.Lock()
	epochs := epoch.Next(r.epochs, &r.lastRuleSet, &rs)
	// Most events change nothing this node enforces (a pod of another namespace relabelled):
	// then the rule set and the epochs are those of the last apply, and so is the script, which
	// is not rendered again. The rule sets of the incremental translation share their memory, so
	// comparing them costs little.
	script, same := r.lastScript, r.applied && reflect.DeepEqual(epochs, r.epochs) && reflect.DeepEqual(rs, r.lastRuleSet)
	r.mu.Unlock()
	if !same || (!tableOnly && script.Text == nil) {
		opts := r.RenderOptions(epochs)
		opts.Memo, opts.TableOnly = &r.renderMemo, tableOnly
		script = render.Render(rs, opts)
	}
	return Desired{
		Node:     node,
		RuleSet:  rs,
		Problems: append(cidrProblems, problems...),
		Epochs:   epochs,
		Script:   script,
	}, nil
}

// RenderOptions are the options the reconciler renders with, for the given epochs.
func (r *Reconciler) RenderOptions(epochs epoch.State) render.Options {
	return render.Options{Table: r.Table, AntiSpoofing: r.AntiSpoofing, Established: r.Established, Epochs: epochs,
		LogGroup: r.LogGroup, LogRate: r.LogRate}
}

// seedEpochs makes this run's first epoch follow the one of the table a previous run left in the
// kernel, read from its current epoch's set (or, from a version that had none, from its base
// chain's fast path rule), so that no stamp of the old table passes as one of the new. Without a
// table the epochs start at 1; when the table cannot be read, at a random epoch (an old stamp then
// passes only if it happens to equal it: one chance in a million per stamp).
func (r *Reconciler) seedEpochs(ctx context.Context) {
	r.mu.Lock()
	seeded := r.epochsSeeded || r.applied
	r.mu.Unlock()
	if seeded {
		return
	}
	var start uint32
	if r.Inspector != nil {
		out, err := r.Inspector.ListSet(ctx, "inet", r.Table, render.CurrentEpochSet)
		if nft.IsNotFound(err) {
			// No such set: no table, or one of an agent before the set existed, whose fast
			// path rule names the epoch in its comment.
			out, err = r.Inspector.ListChain(ctx, "inet", r.Table, render.BaseChain)
		}
		switch {
		case err == nil:
			start, _ = render.Epoch([]byte(out))
		case !nft.IsNotFound(err):
			start = 1 + rand.Uint32N(epoch.Max)
			r.Log.Error(err, "cannot read the epoch of the table in the kernel; starting at a random one", "epoch", start)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if start != 0 {
		// Every address is new to this State, so the first apply moves to the next epoch.
		r.epochs = epoch.State{Current: start}
	}
	r.epochsSeeded = true
}

// waitForInterval waits until MinApplyInterval has passed since the end of the last recompute of
// a change.
func (r *Reconciler) waitForInterval(ctx context.Context) error {
	r.mu.Lock()
	wait := r.MinApplyInterval - r.Now().Sub(r.lastChange)
	if !r.applied {
		wait = 0
	}
	r.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nodeExists records whether the Node object of this node exists. Without it the node name is
// wrong (or the node is being deleted): rather than apply a table in which no pod is local, the
// agent keeps the table as it is and reports unready until the Node appears.
func (r *Reconciler) nodeExists(node *corev1.Node) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if node != nil {
		if r.noNode != nil {
			r.Log.Info("the Node object exists now; applying")
		}
		r.noNode = nil
		return true
	}
	if r.noNode == nil {
		r.noNode = fmt.Errorf("no Node object is named %q: check --node-name; the table is kept as it is until the Node exists", r.Node)
		r.Log.Error(r.noNode, "refusing to apply")
	}
	return false
}

// kernelHolds reports whether the kernel's table carries digest, reading only the set that holds
// it (render.DigestSet): milliseconds, where listing the base chain took half a second at 150,000
// pods (its rules' sets and maps are listed with it).
func (r *Reconciler) kernelHolds(ctx context.Context, digest string) (bool, error) {
	out, err := r.Inspector.ListSet(ctx, "inet", r.Table, render.DigestSet)
	if nft.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	got, ok := render.Digest([]byte(out))
	return ok && got == digest, nil
}

func (r *Reconciler) resyncEnabled() bool { return r.Inspector != nil && r.ResyncPeriod > 0 }

func (r *Reconciler) resyncResult() reconcile.Result {
	if !r.resyncEnabled() {
		return reconcile.Result{}
	}
	return reconcile.Result{RequeueAfter: r.ResyncPeriod}
}

func (r *Reconciler) metrics() *Metrics {
	r.setDefaults()
	return r.Metrics
}

func (r *Reconciler) setBusy(busy bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if busy {
		r.setDefaults()
		r.busySince = r.Now()
	} else {
		r.busySince = time.Time{}
	}
}

func (r *Reconciler) input(ctx context.Context) (translate.Input, error) {
	// With a CacheSource these are the cache's own objects, not copies: copying 150k pods per
	// recompute would dominate its cost. They are read-only here; the translator never
	// mutates its input.
	in, err := r.Source.Objects(ctx)
	if err != nil {
		return translate.Input{}, fmt.Errorf("reading from the cache: %w", err)
	}
	in.Node, in.LogDrops = r.Node, r.LogDrops
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
			r.Log.Info("policy value cannot be honoured; enforcing the closed reading the problem names",
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
	case r.noNode != nil:
		return r.noNode
	case r.lastErr != nil:
		return fmt.Errorf("last apply failed: %w", r.lastErr)
	case !r.applied:
		return errors.New("no rules applied yet")
	}
	return nil
}

// LiveCheck is the /healthz check: it fails when one reconcile has been running for longer than
// StuckAfter (a hung nft is killed at its timeout, so this means the loop itself is stuck).
func (r *Reconciler) LiveCheck(_ *http.Request) error {
	r.setDefaults()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.busySince.IsZero() {
		if d := r.Now().Sub(r.busySince); d > r.StuckAfter {
			return fmt.Errorf("reconcile running for %s (limit %s)", d.Round(time.Second), r.StuckAfter)
		}
	}
	return nil
}

// SetupWithManager registers the controller: NetworkPolicies, Namespaces, Pods and Nodes (and
// ClusterNetworkPolicies when ClusterPolicies is set) all map to the change key; one initial
// event makes sure the first apply happens even in an empty cluster, and starts the resync cycle.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	initial := make(chan event.TypedGenericEvent[*corev1.Namespace], 1)
	initial <- event.TypedGenericEvent[*corev1.Namespace]{Object: &corev1.Namespace{}}
	startKeys := []reconcile.Request{changeKey}
	if r.resyncEnabled() {
		startKeys = append(startKeys, resyncKey)
	}
	r.setDefaults()
	h := handler.EnqueueRequestsFromMapFunc(enqueueChange)
	preds := builderPredicates()
	if !r.FullTranslate {
		// Every event is recorded for the incremental translation; the handler leaves out
		// the updates the predicates would (see feedHandler).
		r.feed = newChangeFeed()
		h = feedHandler{r.feed}
		preds = builder.WithPredicates()
	}
	// The monitor's requests arrive as events whose object names the key.
	work := make(chan event.TypedGenericEvent[*corev1.Namespace])
	if r.Monitor != nil {
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			r.watchDrift(ctx, work)
			return nil
		})); err != nil {
			return err
		}
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("flock-netpol").
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 1,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](r.RetryBaseDelay, r.RetryMaxDelay),
		}).
		Watches(&networkingv1.NetworkPolicy{}, h, preds).
		Watches(&corev1.Namespace{}, h, preds).
		Watches(&corev1.Pod{}, h, preds).
		Watches(&corev1.Node{}, h, preds)
	if r.ClusterPolicies {
		// The controller waits for this watch to sync, like the others, before its first
		// reconcile: the first apply already holds every ClusterNetworkPolicy.
		b = b.Watches(&v1alpha2.ClusterNetworkPolicy{}, h, preds)
	}
	return b.
		WatchesRawSource(source.Channel(initial, handler.TypedEnqueueRequestsFromMapFunc(
			func(context.Context, *corev1.Namespace) []reconcile.Request { return startKeys }))).
		WatchesRawSource(source.Channel(work, handler.TypedEnqueueRequestsFromMapFunc(
			func(_ context.Context, o *corev1.Namespace) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.Name}}}
			}))).
		Complete(r)
}

// setChanges are an update's element changes as nft takes them.
func setChanges(changes []render.ElementChange) []nft.SetChange {
	out := make([]nft.SetChange, len(changes))
	for i, c := range changes {
		out[i] = nft.SetChange(c)
	}
	return out
}
