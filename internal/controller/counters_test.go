package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
)

// fakeCounters is the kernel's counters, set by the test.
type fakeCounters struct {
	mu     sync.Mutex
	values map[string]nft.Counter
}

func (f *fakeCounters) Counters(context.Context, string, string) (map[string]nft.Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]nft.Counter{}
	for k, v := range f.values {
		out[k] = v
	}
	return out, nil
}

func (f *fakeCounters) set(name string, packets uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values[name] = nft.Counter{Packets: packets, Bytes: 60 * packets}
}

// readNow runs one periodic read.
func readNow(t *testing.T, c *RuleCounters) {
	t.Helper()
	gen := c.generation()
	read, err := c.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.store(gen, read)
}

var testCounters = []render.Counter{
	{Name: "rule-A-x/p/in0", Kind: render.CounterRule, Namespace: "x", Object: "p", Rule: 0},
	{Name: "denied-in-B-x/a", Kind: render.CounterDenied, Namespace: "x", Object: "a"},
	{Name: "would-drop-out-C-x/b", Kind: render.CounterAuditDenied, Namespace: "x", Object: "b", Egress: true},
}

const wantMetrics = `
# HELP flocknetpol_pod_audit_denied_packets_total New packets to or from a local pod that no enforced policy isolates, which its policies in audit mode would drop (they were allowed).
# TYPE flocknetpol_pod_audit_denied_packets_total counter
flocknetpol_pod_audit_denied_packets_total{direction="egress",namespace="x",pod="b"} %d
# HELP flocknetpol_pod_denied_packets_total New packets a local pod's policies dropped: no rule of the policies isolating it allowed them.
# TYPE flocknetpol_pod_denied_packets_total counter
flocknetpol_pod_denied_packets_total{direction="ingress",namespace="x",pod="a"} %d
# HELP flocknetpol_rule_packets_total Connections a policy rule matched: a NetworkPolicy rule let them through (or, in audit mode, would have; tier NetworkPolicy, action Allow), a ClusterNetworkPolicy rule applied its action (tier Admin or Baseline, namespace empty); the first packet of each.
# TYPE flocknetpol_rule_packets_total counter
flocknetpol_rule_packets_total{action="Allow",direction="ingress",mode="enforce",namespace="x",policy="p",rule="0",tier="NetworkPolicy"} %d
`

func expectMetrics(t *testing.T, c *RuleCounters, audit, denied, rule int) {
	t.Helper()
	want := strings.NewReader(fmt.Sprintf(wantMetrics, audit, denied, rule))
	if err := testutil.CollectAndCompare(c, want, "flocknetpol_rule_packets_total", "flocknetpol_pod_denied_packets_total",
		"flocknetpol_pod_audit_denied_packets_total"); err != nil {
		t.Error(err)
	}
}

// TestCountersStayMonotonicAcrossFullApplies pins how the counters metrics follow the table's:
// labelled by what each counts, carried on by an incremental apply, and monotonic across a full
// replace, whose new counters start from zero.
func TestCountersStayMonotonicAcrossFullApplies(t *testing.T) {
	kernel := &fakeCounters{values: map[string]nft.Counter{}}
	c := NewRuleCounters(kernel, "flock-netpol", logr.Discard())
	prometheus.NewPedanticRegistry().MustRegister(c)

	c.Replaced() // the run's first apply: nothing carried over
	c.Applied(testCounters)
	kernel.set("rule-A-x/p/in0", 5)
	kernel.set("denied-in-B-x/a", 2)
	readNow(t, c)
	expectMetrics(t, c, 0, 2, 5)

	// An incremental apply: the kernel's counters go on.
	c.Applied(testCounters)
	kernel.set("rule-A-x/p/in0", 7)
	readNow(t, c)
	expectMetrics(t, c, 0, 2, 7)

	// A full replace: read just before, the new counters start at zero.
	kernel.set("rule-A-x/p/in0", 9)
	c.Replacing(context.Background())
	kernel.values = map[string]nft.Counter{}
	c.Replaced()
	c.Applied(testCounters)
	expectMetrics(t, c, 0, 2, 9)
	kernel.set("rule-A-x/p/in0", 1)
	kernel.set("would-drop-out-C-x/b", 4)
	readNow(t, c)
	expectMetrics(t, c, 4, 2, 10)

	// The policy switches to audit mode (a full apply): its rule's series is a new one, from zero.
	kernel.set("rule-A-x/p/in0", 3)
	readNow(t, c)
	c.Replacing(context.Background())
	kernel.values = map[string]nft.Counter{"would-drop-out-C-x/b": {Packets: 4, Bytes: 240}}
	c.Replaced()
	audited := slices.Clone(testCounters)
	audited[0].Audit = true
	c.Applied(audited)
	readNow(t, c)
	want := `
# HELP flocknetpol_rule_packets_total Connections a policy rule matched: a NetworkPolicy rule let them through (or, in audit mode, would have; tier NetworkPolicy, action Allow), a ClusterNetworkPolicy rule applied its action (tier Admin or Baseline, namespace empty); the first packet of each.
# TYPE flocknetpol_rule_packets_total counter
flocknetpol_rule_packets_total{action="Allow",direction="ingress",mode="audit",namespace="x",policy="p",rule="0",tier="NetworkPolicy"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "flocknetpol_rule_packets_total"); err != nil {
		t.Error(err)
	}
	c.Applied(testCounters)

	// A counter that leaves the table leaves the metrics.
	c.Applied(testCounters[:1])
	if n := testutil.CollectAndCount(c, "flocknetpol_pod_denied_packets_total"); n != 0 {
		t.Errorf("%d series of a pod no longer in the table", n)
	}
}

// TestCountersStayMonotonicWhenAnotherProcessResetsThem pins the metrics against what the agent
// did not do: its table deleted (a read finds no counters) and then repaired, and counters reset
// behind its back (a read finds less than the last).
func TestCountersStayMonotonicWhenAnotherProcessResetsThem(t *testing.T) {
	kernel := &fakeCounters{values: map[string]nft.Counter{}}
	c := NewRuleCounters(kernel, "flock-netpol", logr.Discard())
	c.Replaced()
	c.Applied(testCounters)
	kernel.set("rule-A-x/p/in0", 5)
	readNow(t, c)
	expectMetrics(t, c, 0, 0, 5)

	kernel.values = map[string]nft.Counter{} // the table deleted by another process
	readNow(t, c)
	expectMetrics(t, c, 0, 0, 5)
	c.Replacing(context.Background()) // the repair
	c.Replaced()
	c.Applied(testCounters)
	kernel.set("rule-A-x/p/in0", 2)
	readNow(t, c)
	expectMetrics(t, c, 0, 0, 7)

	kernel.set("rule-A-x/p/in0", 1) // `nft reset counters`, then one more connection
	readNow(t, c)
	expectMetrics(t, c, 0, 0, 8)
}

// TestACounterReadSpanningAFullApplyIsDiscarded pins that a periodic read of the old table, which
// lands after a replace, does not count the old values a second time.
func TestACounterReadSpanningAFullApplyIsDiscarded(t *testing.T) {
	kernel := &fakeCounters{values: map[string]nft.Counter{}}
	c := NewRuleCounters(kernel, "flock-netpol", logr.Discard())
	c.Applied(testCounters)
	kernel.set("rule-A-x/p/in0", 5)
	readNow(t, c)

	gen := c.generation()
	stale, _ := c.read(context.Background()) // a periodic read of the old table...
	c.Replacing(context.Background())
	kernel.values = map[string]nft.Counter{}
	c.Replaced()
	c.store(gen, stale) // ...that completes after the replace
	expectMetrics(t, c, 0, 0, 5)
}

// TestClusterNetworkPolicyRuleCountersNameTheirTierAndAction pins the labels of a
// ClusterNetworkPolicy rule's series: no namespace, its tier and its action.
func TestClusterNetworkPolicyRuleCountersNameTheirTierAndAction(t *testing.T) {
	kernel := &fakeCounters{values: map[string]nft.Counter{}}
	c := NewRuleCounters(kernel, "flock-netpol", logr.Discard())
	c.Replaced()
	c.Applied([]render.Counter{{Name: "rule-D-no-db/in0", Kind: render.CounterRule, Object: "no-db", Rule: 0, Tier: "Admin", Action: "Deny"}})
	kernel.set("rule-D-no-db/in0", 3)
	readNow(t, c)
	want := `
# HELP flocknetpol_rule_packets_total ` + strings.TrimPrefix(`# HELP flocknetpol_rule_packets_total Connections a policy rule matched: a NetworkPolicy rule let them through (or, in audit mode, would have; tier NetworkPolicy, action Allow), a ClusterNetworkPolicy rule applied its action (tier Admin or Baseline, namespace empty); the first packet of each.`, "# HELP flocknetpol_rule_packets_total ") + `
# TYPE flocknetpol_rule_packets_total counter
flocknetpol_rule_packets_total{action="Deny",direction="ingress",mode="enforce",namespace="",policy="no-db",rule="0",tier="Admin"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "flocknetpol_rule_packets_total"); err != nil {
		t.Error(err)
	}
}
