package controller

import (
	"context"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/flock-net/flock-netpol/internal/render"
)

// Monitor streams the kernel's nftables changes in the node's network namespace, one line per
// change in the format of `nft monitor`. nft.NetlinkMonitor implements it (and *nft.Client, by
// running `nft monitor`, for tests whose executor stands in for nft).
type Monitor interface {
	Monitor(ctx context.Context, line func(string)) error
}

// Drift detection. The kernel notifies every change any process commits to the namespace's
// ruleset; the monitor prints each as `nft monitor` would, one object per line, and ends each
// transaction with a line "# new generation N by process PID (CMD)". (The agent reads the
// notifications itself rather than running `nft monitor`: nft 1.0.6 reads garbage, and often
// crashes, printing an element of a set with a concatenated interval key, such as the fresh
// sets, so its monitor died after most applies.) A transaction of ours adds the one element of
// the set render.DigestSet, whose comment carries the digest of the table (see package render):
// a full apply adds it with the table, an incremental update deletes the old element and adds the
// new one along with the elements it changes, so that an update of elements only (through nft or
// over netlink, see Reconciler.Elements) carries it, where a digest in a rule made every update
// refill the base chain. A transaction that touches our table without adding a digest of ours is someone else's
// change (a flushed chain or map, a deleted element or table, an inserted rule) and is repaired at
// once with a full apply. Only an added (or created) object's digest counts: `nft monitor`
// prints a deleted element with its comment, and another process deleting our digest's element
// (or flushing its set) must not pass for our apply. The PID is no help: the kernel reports it as
// the host sees it, not as the agent's container does.
//
// Events that the monitor cannot keep up with are lost ("# ERROR: We lost some netlink events!",
// seen with transactions of some 100,000 elements): what happened is then unknown, and the agent asks the
// periodic check to run now (it compares the kernel's digest), rather than re-applying blindly,
// which on such a table would only lose events again.

// batchKind is what one transaction did to our table.
type batchKind int

const (
	batchElsewhere batchKind = iota // it did not touch our table
	batchOurs                       // our own apply
	batchForeign                    // another process changed our table
	batchLost                       // nft lost events: unknown
)

// batchReader groups monitor lines into transactions and classifies them.
type batchReader struct {
	table string
	// ours reports whether a digest is one of the agent's recent applies.
	ours    func(digest string) bool
	touched bool
	digests []string
	first   string // the transaction's first line about our table, for the log
}

// line takes one line of `nft monitor`; at the end of a transaction (or when events were lost)
// it returns what the transaction did, and true.
func (b *batchReader) line(l string) (batchKind, bool) {
	switch {
	case strings.HasPrefix(l, "# new generation"):
		kind := batchElsewhere
		if b.touched {
			kind = batchForeign
			if slices.ContainsFunc(b.digests, b.ours) {
				kind = batchOurs
			}
		}
		b.touched, b.digests = false, b.digests[:0]
		return kind, true
	case strings.HasPrefix(l, "# ERROR"):
		b.touched, b.digests = false, b.digests[:0]
		return batchLost, true
	}
	// "<verb> <object> <family> <table> ...", e.g. "delete element inet flock-netpol local-pods-v4 { 10.0.1.3 }".
	f := strings.Fields(l)
	if len(f) >= 4 && f[2] == "inet" && f[3] == b.table {
		if !b.touched {
			b.first = l
		}
		b.touched = true
		if d, ok := render.Digest([]byte(l)); ok && f[0] != "delete" {
			b.digests = append(b.digests, d)
		}
	}
	return 0, false
}

// ownDigests is how many recent applies the monitor recognises as the agent's own: the monitor
// may print a transaction after the agent has already started the next one.
const ownDigests = 16

// noteApplying records the digest of a script about to be applied, before nft runs, so the
// monitor recognises the transaction whenever it prints it.
func (r *Reconciler) noteApplying(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recent) == ownDigests {
		r.recent = r.recent[1:]
	}
	r.recent = append(r.recent, digest)
}

func (r *Reconciler) isOwnDigest(d string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.recent, d)
}

// watchDrift runs the monitor until ctx ends, restarting it (with backoff) when it exits, and
// sends the key of the work a transaction calls for: driftKey to repair, resyncKey to check.
func (r *Reconciler) watchDrift(ctx context.Context, work chan<- event.TypedGenericEvent[*corev1.Namespace]) {
	send := func(key string) {
		select {
		case work <- event.TypedGenericEvent[*corev1.Namespace]{Object: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key}}}:
		case <-ctx.Done():
		}
	}
	delay := time.Second
	for ctx.Err() == nil {
		b := &batchReader{table: r.Table, ours: r.isOwnDigest}
		start := time.Now()
		err := r.Monitor.Monitor(ctx, func(l string) {
			switch kind, done := b.line(l); {
			case !done:
			case kind == batchForeign:
				r.Log.Info("another process changed the table; repairing it", "change", b.first)
				send(driftKey.Name)
			case kind == batchLost && r.resyncEnabled():
				r.Log.Info("the monitor lost events; checking the table now")
				send(resyncKey.Name)
			}
		})
		if ctx.Err() != nil {
			return
		}
		// Changes made while no monitor ran are unseen: check once the monitor is back.
		r.Log.Error(err, "the monitor stopped; restarting it and checking the table", "after", delay.String())
		if time.Since(start) > time.Minute {
			delay = time.Second
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(2*delay, 30*time.Second)
		if r.resyncEnabled() {
			send(resyncKey.Name)
		}
	}
}
