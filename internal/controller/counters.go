package controller

import (
	"cmp"
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
)

// CounterReader reads the named counters of the table. *nft.Client implements it.
type CounterReader interface {
	Counters(ctx context.Context, family, table string) (map[string]nft.Counter, error)
}

// RuleCounters exports the table's named counters (render.Counter) as Prometheus metrics: per
// policy rule, the connections it let through; per pod, the new packets its chain dropped, or
// that its policies in audit mode would drop.
//
// The kernel's counters are read every interval by one nft call, in their own goroutine, never
// inside an apply; a scrape serves the last read. An incremental apply keeps the counters of the
// rules that stay, so they go on counting. A full replace (a repair, a change too large to apply
// in place) creates them anew at zero: the reconciler reads them just before it (Replacing) and,
// once it succeeded, adds what they held to what the metric reports (Replaced). Every metric is
// therefore monotonic for as long as its rule or pod is in the table, losing only what is counted
// between that last read and the replace's commit (milliseconds). A series disappears with its
// rule or pod; one that comes back starts from zero, which Prometheus reads as a counter reset.
type RuleCounters struct {
	Reader CounterReader
	Table  string
	Log    logr.Logger

	mu    sync.Mutex
	info  []render.Counter       // the counters of the last applied table
	base  map[string]nft.Counter // what the counters of that name held in tables since replaced
	last  map[string]nft.Counter // the last read of the kernel's counters
	gen   int                    // full applies so far: a read that spans one is discarded
	taken map[string]nft.Counter // the read taken by Replacing, for Replaced
	// replacing is set by Replacing: the table being replaced is one this run applied, whose
	// counts the metrics carry on.
	replacing bool

	reads     *prometheus.CounterVec
	readTime  prometheus.Histogram
	rulePkts  *prometheus.Desc
	ruleBytes *prometheus.Desc
	denied    *prometheus.Desc
	audit     *prometheus.Desc
}

// NewRuleCounters returns the exporter; register it (it is a prometheus.Collector) and run Run.
func NewRuleCounters(reader CounterReader, table string, log logr.Logger) *RuleCounters {
	const ns = "flocknetpol"
	rule := []string{"namespace", "policy", "direction", "rule", "mode", "tier", "action"}
	pod := []string{"namespace", "pod", "direction"}
	return &RuleCounters{
		Reader: reader, Table: table, Log: log,
		base: map[string]nft.Counter{}, last: map[string]nft.Counter{},
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "counter_reads_total",
			Help: "Reads of the table's named counters, by outcome (ok, failed).",
		}, []string{"outcome"}),
		readTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "counter_read_duration_seconds",
			Help:    "Time one read of the table's named counters took (one nft call).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 10),
		}),
		rulePkts: prometheus.NewDesc(ns+"_rule_packets_total",
			"Connections a policy rule matched: a NetworkPolicy rule let them through (or, in audit mode, would have; "+
				"tier NetworkPolicy, action Allow), a ClusterNetworkPolicy rule applied its action (tier Admin or Baseline, "+
				"namespace empty); the first packet of each.", rule, nil),
		ruleBytes: prometheus.NewDesc(ns+"_rule_bytes_total",
			"Bytes of the first packets counted by flocknetpol_rule_packets_total.", rule, nil),
		denied: prometheus.NewDesc(ns+"_pod_denied_packets_total",
			"New packets a local pod's policies dropped: no rule of the policies isolating it allowed them.", pod, nil),
		audit: prometheus.NewDesc(ns+"_pod_audit_denied_packets_total",
			"New packets to or from a local pod that no enforced policy isolates, which its policies in audit mode would drop (they were allowed).", pod, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *RuleCounters) Describe(ch chan<- *prometheus.Desc) {
	c.reads.Describe(ch)
	c.readTime.Describe(ch)
	for _, d := range []*prometheus.Desc{c.rulePkts, c.ruleBytes, c.denied, c.audit} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the counters of the last applied table, as last read.
func (c *RuleCounters) Collect(ch chan<- prometheus.Metric) {
	c.reads.Collect(ch)
	c.readTime.Collect(ch)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, info := range c.info {
		v := c.base[info.Name]
		if l, ok := c.last[info.Name]; ok {
			v.Packets += l.Packets
			v.Bytes += l.Bytes
		}
		dir := "ingress"
		if info.Egress {
			dir = "egress"
		}
		switch info.Kind {
		case render.CounterRule:
			mode := "enforce"
			if info.Audit {
				mode = "audit"
			}
			tier, action := cmp.Or(info.Tier, "NetworkPolicy"), cmp.Or(info.Action, "Allow")
			labels := []string{info.Namespace, info.Object, dir, strconv.Itoa(info.Rule), mode, tier, action}
			ch <- prometheus.MustNewConstMetric(c.rulePkts, prometheus.CounterValue, float64(v.Packets), labels...)
			ch <- prometheus.MustNewConstMetric(c.ruleBytes, prometheus.CounterValue, float64(v.Bytes), labels...)
		case render.CounterDenied:
			ch <- prometheus.MustNewConstMetric(c.denied, prometheus.CounterValue, float64(v.Packets), info.Namespace, info.Object, dir)
		case render.CounterAuditDenied:
			ch <- prometheus.MustNewConstMetric(c.audit, prometheus.CounterValue, float64(v.Packets), info.Namespace, info.Object, dir)
		}
	}
}

// Applied records the counters of a table the kernel now holds. An incremental apply keeps the
// values of the counters that stay; those that went are forgotten, and so is what a counter
// counted before its series changed (a policy switched between audit and enforce mode: the
// kernel's counter keeps its name, the metric's mode label changes).
func (c *RuleCounters) Applied(counters []render.Counter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := make(map[string]render.Counter, len(counters))
	for _, k := range counters {
		keep[k.Name] = k
	}
	for _, k := range c.info {
		if now, ok := keep[k.Name]; ok && now != k {
			delete(c.base, k.Name)
		}
	}
	c.info = counters
	for _, m := range []map[string]nft.Counter{c.base, c.last} {
		for name := range m {
			if _, ok := keep[name]; !ok {
				delete(m, name)
			}
		}
	}
}

// Replacing reads the counters just before a full replace of the table.
func (c *RuleCounters) Replacing(ctx context.Context) {
	read, err := c.read(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.taken, c.replacing = nil, true
	if err == nil {
		c.taken = read
	}
}

// Replaced records that a full apply succeeded: the new table's counters start from zero. After
// Replacing, what the old ones held (that read, over the last periodic one) is added to the base;
// without (the run's first apply, whose old table another run counted), nothing is.
func (c *RuleCounters) Replaced() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.replacing {
		if c.taken != nil {
			c.absorb(c.taken)
		}
		for name, v := range c.last {
			c.fold(name, v)
		}
	}
	c.last, c.taken, c.replacing = map[string]nft.Counter{}, nil, false
	c.gen++
}

// Run reads the counters every interval until ctx ends.
func (c *RuleCounters) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gen := c.generation()
		read, err := c.read(ctx)
		if err != nil {
			if ctx.Err() == nil && !nft.IsNotFound(err) { // no table yet: nothing to count
				c.Log.Error(err, "reading the table's counters failed; the metrics keep their last values")
			}
			continue
		}
		c.store(gen, read)
	}
}

func (c *RuleCounters) generation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// store keeps a read that started at generation gen, unless a full apply came in between: then
// it is of the old table, whose counts Replaced has already taken.
func (c *RuleCounters) store(gen int, read map[string]nft.Counter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.absorb(read)
	}
}

// absorb takes a read of the kernel's counters as the last one. A counter that went down was
// reset behind the agent's back (its table deleted and replaced, `nft reset counters`): what it
// had counted goes into the base. One the read lacks (its table deleted) keeps its last value.
// Either way the metrics never go down. The caller holds mu.
func (c *RuleCounters) absorb(read map[string]nft.Counter) {
	for name, v := range read {
		if l := c.last[name]; v.Packets < l.Packets || v.Bytes < l.Bytes {
			c.fold(name, l)
		}
		c.last[name] = v
	}
}

// fold adds what a counter had counted to the base. The caller holds mu.
func (c *RuleCounters) fold(name string, v nft.Counter) {
	b := c.base[name]
	b.Packets += v.Packets
	b.Bytes += v.Bytes
	c.base[name] = b
}

func (c *RuleCounters) read(ctx context.Context) (map[string]nft.Counter, error) {
	start := time.Now()
	read, err := c.Reader.Counters(ctx, "inet", c.Table)
	c.readTime.Observe(time.Since(start).Seconds())
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	c.reads.WithLabelValues(outcome).Inc()
	return read, err
}
