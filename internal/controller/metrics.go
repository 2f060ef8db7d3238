package controller

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flock-net/flock-netpol/internal/nft"
)

// Metrics are the agent's own Prometheus metrics, served beside controller-runtime's on the
// manager's metrics endpoint. docs/operations.md explains each one.
type Metrics struct {
	ApplyDuration       prometheus.Histogram
	Applies             *prometheus.CounterVec // by trigger: change, repair
	ApplyFailures       *prometheus.CounterVec // by reason
	LastSuccess         prometheus.Gauge
	ScriptBytes         prometheus.Gauge
	Rules               prometheus.Gauge
	Sets                prometheus.Gauge
	SetElements         prometheus.Gauge
	IsolatedPods        *prometheus.GaugeVec // by direction
	Policies            prometheus.Gauge
	PolicyProblems      prometheus.Gauge
	Repairs             *prometheus.CounterVec // by cause
	KernelCheckFailures prometheus.Counter
	Epoch               prometheus.Gauge
	IncrementalUpdates  *prometheus.CounterVec // by outcome
	// Translations counts the translations by mode; IncrementalMismatches the checks that found
	// the incremental one different from a full one.
	Translations          *prometheus.CounterVec
	IncrementalMismatches prometheus.Counter
	DropLog               *prometheus.CounterVec // by kind (droplog's Stat*)
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "flocknetpol"
	m := &Metrics{
		ApplyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "apply_duration_seconds",
			Help:    "Time one nft transaction took, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		Applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "applies_total",
			Help: "Successful applies, by trigger: change (the rules changed), repair (the kernel no longer held the last applied table) or bootstrap (the start-up table of a node without one).",
		}, []string{"trigger"}),
		ApplyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "apply_failures_total",
			Help: "Failed applies, by reason: rejected (nft refused the script), timeout, nft_not_found, other. The previous rules stay in force.",
		}, []string{"reason"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "last_successful_apply_timestamp_seconds",
			Help: "Unix time of the last successful apply.",
		}),
		ScriptBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "script_bytes", Help: "Size of the last applied nft script.",
		}),
		Rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "rules", Help: "Rules in the last applied table.",
		}),
		Sets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "sets", Help: "Named sets and verdict maps in the last applied table.",
		}),
		SetElements: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "set_elements", Help: "Elements of all sets and maps in the last applied table.",
		}),
		IsolatedPods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "isolated_pods",
			Help: "Local pods isolated by at least one policy, by direction (ingress, egress).",
		}, []string{"direction"}),
		Policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "policies_selecting_local_pods",
			Help: "NetworkPolicies that select at least one pod of this node.",
		}),
		PolicyProblems: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "policy_problems",
			Help: "Policy values that cannot be honoured, each enforced by its closed reading (see the logs).",
		}),
		Repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "repairs_total",
			Help: "Full applies that repaired the table after another process changed it, by cause: monitor (the monitor of the kernel's changes showed it) or resync (the periodic check found the table missing or different).",
		}, []string{"cause"}),
		KernelCheckFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "kernel_check_failures_total",
			Help: "Periodic checks of the kernel's table that could not run (nft failed for another reason than a missing table).",
		}),
		IncrementalUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "incremental_updates_total",
			Help: "Changes applied as an update of the table in place, by outcome: applied (through nft), netlink (only set and map elements changed: sent as netlink element messages), full_needed (the change redeclares a chain or set, or is larger than the limit, and replaced the whole table), failed (nft refused the update; the whole table replaced it).",
		}, []string{"outcome"}),
		Translations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "translations_total",
			Help: "Translations of the cluster into the node's rule set, by mode: incremental (only what the events since the last one can affect), build (the incremental state built from the whole cache: the first, and after a mismatch), full (the whole cache translated from scratch: every recompute with --full-translate, else the periodic check of the incremental one).",
		}, []string{"mode"}),
		IncrementalMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "incremental_translation_mismatches_total",
			Help: "Periodic checks that found the incremental translation different from a full translation of the cache; the full one was applied and the incremental state rebuilt. Events in flight during a check can cause one; a steady rate is a bug.",
		}),
		Epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "epoch",
			Help: "Epoch of the last applied table (--established=revalidate): it moves on each change that can deny established connections, whose next packet is then judged again.",
		}),
		DropLog: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "drop_log_packets_total",
			Help: "Packets of the drop-log group, by kind: drop and audit (logged), lost (the reader's buffer was full), unparsed; overrun counts the times the kernel reported a full buffer.",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.ApplyDuration, m.Applies, m.ApplyFailures, m.LastSuccess, m.ScriptBytes,
			m.Rules, m.Sets, m.SetElements, m.IsolatedPods, m.Policies, m.PolicyProblems, m.Repairs,
			m.KernelCheckFailures, m.Epoch, m.IncrementalUpdates, m.Translations, m.IncrementalMismatches, m.DropLog)
	}
	return m
}

// DefaultMetrics returns the metrics registered with controller-runtime's registry, which the
// manager serves. They are registered once per process, on first use.
var DefaultMetrics = sync.OnceValue(func() *Metrics { return NewMetrics(metrics.Registry) })

// failureReason sorts an apply error into a small, fixed set of label values.
func failureReason(err error) string {
	var nerr *nft.Error
	switch {
	case nft.IsCommandNotFound(err):
		return "nft_not_found"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &nerr) && nerr.Timeout > 0:
		return "timeout"
	case errors.As(err, &nerr) && nerr.ExitCode > 0:
		return "rejected"
	}
	return "other"
}
