package controller

import (
	"bufio"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flock-net/flock-netpol/internal/render"
)

// TestMonitorTellsOurAppliesFromOthersChanges pins the classification of real `nft monitor`
// output (nft 1.0.6, testdata/monitor-nft-1.0.6.txt), recorded while these happened in turn: our
// apply of a script with digest fddb70325a28c86a; another process deleting an element, flushing a
// pod chain, flushing a verdict map, inserting an accept rule; a change to another table; a full
// replace with a script that is not ours; deleting the table; our apply again. The recording
// predates the digest's move from the base chain's last rule into the element of
// render.DigestSet: its lines were adapted (the set and its element added where nft 1.0.6 prints
// them, the rule's comment removed), and two transactions added, as nft 1.0.6 prints them: our
// incremental update to digest 5e1f0a2b3c4d5e6f (the old digest's element deleted, the new one
// added), then another process deleting that element, which nft prints with its comment.
func TestMonitorTellsOurAppliesFromOthersChanges(t *testing.T) {
	f, err := os.Open("testdata/monitor-nft-1.0.6.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := &batchReader{table: "flock-netpol", ours: func(d string) bool { return d == "fddb70325a28c86a" || d == "5e1f0a2b3c4d5e6f" }}
	var got []batchKind
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kind, done := b.line(sc.Text()); done {
			got = append(got, kind)
		}
	}
	want := []batchKind{
		batchOurs,
		batchForeign, batchForeign, batchForeign, batchForeign, // element, chain, map, inserted rule
		batchElsewhere,             // another table
		batchForeign, batchForeign, // a replace that is not ours, the table deleted
		batchOurs,
		batchOurs,    // our incremental update
		batchForeign, // our digest's element deleted
	}
	if !slices.Equal(got, want) {
		t.Errorf("batches = %v, want %v", got, want)
	}
	if kind, done := b.line("# ERROR: We lost some netlink events!"); !done || kind != batchLost {
		t.Errorf("lost events = %v, %v; want batchLost", kind, done)
	}
}

// TestMonitorAsksForARepairThatIsCounted pins the path from a foreign change to the repair: the
// monitor's request re-applies the unchanged script and counts a repair with cause monitor; our
// own apply, seen by the monitor, asks for nothing.
func TestMonitorAsksForARepairThatIsCounted(t *testing.T) {
	k := &fakeKernel{}
	r := newReconciler(t, k, nil, localPod(), denyAll())
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, changeKey); err != nil {
		t.Fatal(err)
	}
	digest := r.lastDigest
	foreign := strings.Join([]string{
		"add element inet flock-netpol " + render.DigestSet + " { ... comment \"ruleset " + digest + "\" }",
		"# new generation 2 by process 10 (nft)",
		"insert rule inet flock-netpol filter-forward accept",
		"# new generation 3 by process 11 (nft)",
	}, "\n")
	r.Monitor = monitorFunc(func(ctx context.Context, line func(string)) error {
		for _, l := range strings.Split(foreign, "\n") {
			line(l)
		}
		<-ctx.Done()
		return nil
	})
	work := make(chan event.TypedGenericEvent[*corev1.Namespace], 4)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.watchDrift(wctx, work)
	var keys []string
	for len(keys) < 1 {
		select {
		case ev := <-work:
			keys = append(keys, ev.Object.Name)
		case <-time.After(5 * time.Second):
			t.Fatal("the monitor asked for nothing")
		}
	}
	if keys[0] != driftKey.Name {
		t.Fatalf("the monitor asked for %q, want %q", keys[0], driftKey.Name)
	}
	select {
	case ev := <-work:
		t.Errorf("our own apply also asked for %q", ev.Object.Name)
	case <-time.After(100 * time.Millisecond):
	}

	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: driftKey.NamespacedName}); err != nil {
		t.Fatal(err)
	}
	if k.applies() != 2 {
		t.Errorf("%d applies, want the first and the repair", k.applies())
	}
	if got := testutil.ToFloat64(r.Metrics.Repairs.WithLabelValues("monitor")); got != 1 {
		t.Errorf("repairs{cause=monitor} = %v, want 1", got)
	}
}

type monitorFunc func(ctx context.Context, line func(string)) error

func (f monitorFunc) Monitor(ctx context.Context, line func(string)) error { return f(ctx, line) }
