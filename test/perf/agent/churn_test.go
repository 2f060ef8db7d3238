package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/controller"
)

// churnResult is the memory of the agent's process while churn ran.
type churnResult struct {
	Events, Recomputes int
	// MaxRSS is the largest VmRSS sampled once a second; EndRSS the last sample.
	MaxRSS, EndRSS int64
}

// churn keeps the agent of BenchmarkAgentMemory's child busy as BenchmarkEventStream does, for d:
// rate events a second, each a relabel of a remote pod in a namespace that holds local pods (its
// tier label toggles, which the synthetic policies' pod peers select), stored in the informer's
// indexer as the watch would store it and observed by r, with a recompute every
// controller.DefaultMinApplyInterval (the coalescing of the agent's default). The garbage of
// events and recomputes, and the collections it triggers, are the steady state whose memory the
// target bounds; the RSS right after the first apply is only its start.
func churn(ctx context.Context, r *controller.Reconciler, pods toolscache.Indexer, node string, d time.Duration, rate int) (churnResult, error) {
	var candidates []*compact.Pod
	local := map[string]bool{}
	for _, o := range pods.List() {
		if p := o.(*compact.Pod); p.NodeHandle().Value() == node {
			local[p.Namespace()] = true
		}
	}
	for _, o := range pods.List() {
		if p := o.(*compact.Pod); p.NodeHandle().Value() != node && local[p.Namespace()] && p.OwnsAddresses() && p.LabelSet().Has("tier") {
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		return churnResult{}, fmt.Errorf("no remote pod with a tier label in the %d namespaces of node %s's pods", len(local), node)
	}
	var res churnResult
	sample := func() error {
		m, err := procStatus()
		res.MaxRSS, res.EndRSS = max(res.MaxRSS, m.RSS), m.RSS
		return err
	}
	event, recompute, second := time.NewTicker(time.Second/time.Duration(rate)), time.NewTicker(controller.DefaultMinApplyInterval), time.NewTicker(time.Second)
	defer event.Stop()
	defer recompute.Stop()
	defer second.Stop()
	dirty := false
	for end := time.Now().Add(d); time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-event.C:
			i := res.Events % len(candidates)
			p := compact.NewPod(relabelled(candidates[i]))
			if err := pods.Update(p); err != nil {
				return res, err
			}
			r.Observe(p, false)
			candidates[i] = p
			res.Events++
			dirty = true
		case <-recompute.C:
			if !dirty {
				continue
			}
			if _, err := r.Reconcile(ctx, nodeKey); err != nil {
				return res, err
			}
			res.Recomputes++
			dirty = false
		case <-second.C:
			if err := sample(); err != nil {
				return res, err
			}
		}
	}
	return res, sample()
}

// relabelled returns p as a Pod, with its tier label toggled between its value and value-moved.
func relabelled(p *compact.Pod) *corev1.Pod {
	labels := p.GetLabels()
	if moved, ok := strings.CutSuffix(labels["tier"], "-moved"); ok {
		labels["tier"] = moved
	} else {
		labels["tier"] += "-moved"
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace(), Name: p.Name(), Labels: labels},
		Spec:       corev1.PodSpec{NodeName: p.NodeHandle().Value(), Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, port := range p.Ports() {
		out.Spec.Containers[0].Ports = append(out.Spec.Containers[0].Ports,
			corev1.ContainerPort{Name: port.Name.Value(), ContainerPort: int32(port.Number), Protocol: corev1.Protocol(strings.ToUpper(string(port.Protocol())))})
	}
	for a := range p.IPs() {
		out.Status.PodIPs = append(out.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	return out
}
