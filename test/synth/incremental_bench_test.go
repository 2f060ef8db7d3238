package synth

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// BenchmarkIncrementalTranslate measures one pod event that changes a peer set, at 150k pods /
// 10k policies / 110 local pods: a remote pod in a namespace of local pods has its tier label
// (what the synthetic policies' pod peers select) toggled, so the peer sets that hold it lose it
// or get it back. "incremental" is translate.Incremental told the change, then asked for the rule
// set; "full" is Translate of the whole state, as every recompute did before.
func BenchmarkIncrementalTranslate(b *testing.B) {
	if testing.Short() {
		b.Skip("150k-pod cluster skipped in -short mode")
	}
	cl := Generate(Sized(150000, 10000))
	in := input(cl)
	i, moved := peerChangingRelabel(b, cl, in)
	versions := [2]*compact.Pod{in.Pods[i], moved}
	states := [2]translate.Input{in, in}
	states[1].Pods = slices.Clone(in.Pods)
	states[1].Pods[i] = moved

	b.Run("pods=150000,policies=10000,incremental", func(b *testing.B) {
		inc := translate.NewIncremental(in)
		inc.RuleSet()
		var (
			rs ruleset.RuleSet
			n  int
		)
		b.ReportAllocs()
		for b.Loop() {
			n++
			inc.SetPod(versions[n%2])
			rs, _ = inc.RuleSet()
		}
		if want, _ := translate.Translate(states[n%2]); !reflect.DeepEqual(rs, want) {
			b.Fatal("the incremental rule set differs from Translate's")
		}
		b.ReportMetric(float64(len(rs.Policies)), "policies")
	})
	// One event as the agent runs it up to the epochs: the same relabel, the rule set, and
	// epoch.Next from the previous rule set (which shares the memory of what the event left
	// alone with the new one).
	b.Run("pods=150000,policies=10000,incremental+epoch", func(b *testing.B) {
		inc := translate.NewIncremental(in)
		prev, _ := inc.RuleSet()
		st := epoch.Start(1, &prev)
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			n++
			inc.SetPod(versions[n%2])
			rs, _ := inc.RuleSet()
			st = epoch.Next(st, &prev, &rs)
			prev = rs
		}
		if want, _ := translate.Translate(states[n%2]); !reflect.DeepEqual(prev, want) {
			b.Fatal("the incremental rule set differs from Translate's")
		}
		b.ReportMetric(float64(st.Current), "epoch")
	})
	// The same pod deleted, then created again: the general path, which recomputes every peer
	// result the pod is in (a relabel recomputes only those it enters or leaves).
	b.Run("pods=150000,policies=10000,incremental-delete-create", func(b *testing.B) {
		inc := translate.NewIncremental(in)
		inc.RuleSet()
		p := in.Pods[i]
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			n++
			if n%2 == 1 {
				inc.DeletePod(p.Namespace(), p.Name())
			} else {
				inc.SetPod(p)
			}
			inc.RuleSet()
		}
	})
	// What the agent pays to start, or to rebuild the incremental state from the cache.
	b.Run("pods=150000,policies=10000,incremental-build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			translate.NewIncremental(in).RuleSet()
		}
	})
	b.Run("pods=150000,policies=10000,full", func(b *testing.B) {
		var (
			rs ruleset.RuleSet
			n  int
		)
		b.ReportAllocs()
		for b.Loop() {
			n++
			rs, _ = translate.Translate(states[n%2])
		}
		b.ReportMetric(float64(len(rs.Policies)), "policies")
	})
}

// peerChangingRelabel returns the index of a remote pod, in a namespace with local pods, whose
// tier label changed changes the node's rule set, and the pod with its label changed.
func peerChangingRelabel(b testing.TB, cl Cluster, in translate.Input) (int, *compact.Pod) {
	b.Helper()
	local := map[string]bool{}
	for _, p := range cl.Pods {
		if p.Spec.NodeName == cl.LocalNode {
			local[p.Namespace] = true
		}
	}
	before, _ := translate.Translate(in)
	tries := 0
	for i, p := range cl.Pods {
		if p.Spec.NodeName == cl.LocalNode || !local[p.Namespace] || p.Labels["tier"] == "" ||
			len(p.Status.PodIPs) == 0 || p.Spec.HostNetwork || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if tries++; tries > 50 {
			break
		}
		q := p.DeepCopy()
		q.Labels["tier"] = strings.TrimSuffix(q.Labels["tier"], "-moved") + "-moved"
		moved := compact.NewPod(q)
		after := in
		after.Pods = slices.Clone(in.Pods)
		after.Pods[i] = moved
		if rs, _ := translate.Translate(after); !reflect.DeepEqual(rs.Policies, before.Policies) {
			return i, moved
		}
	}
	b.Fatal("no remote pod's relabel changes a peer set")
	return 0, nil
}
