//go:build linux

package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/synth"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// The wide scenario: besides test/synth's 150k-pod cluster, one namespace holds widePods pods, all
// on the local node (a node far beyond the kubelet's default of 110 pods, so that one policy can
// select 1,000 pods whose chains this node holds), isolated for ingress by a default deny. The
// policy change is a second policy selecting all of them, allowing TCP 80 from each other, created
// (every pod gains a policy: widening) and deleted again (narrowing: their established flows
// are judged again). Addresses: 10.252.0.0/16, apart from the synthetic cluster's.
const (
	wideNS     = "perf-wide"
	widePods   = 1000
	wideDeny   = "default-deny"
	wideAllow  = "allow-web"
	wideRounds = 10 // creates and deletes each
)

func wideObjects(node string) (*corev1.Namespace, []*corev1.Pod, *networkingv1.NetworkPolicy) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wideNS, Labels: map[string]string{corev1.LabelMetadataName: wideNS}}}
	pods := make([]*corev1.Pod, widePods)
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{10, 252, byte(i >> 8), byte(i)}).Next().String()
		pods[i] = &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: wideNS, Name: fmt.Sprintf("web-%04d", i), UID: types.UID(fmt.Sprintf("wide-%d", i)), Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "web"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: wideNS, Name: wideDeny},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	return ns, pods, deny
}

func wideAllowPolicy() *networkingv1.NetworkPolicy {
	tcp, port := corev1.ProtocolTCP, intstr.FromInt32(80)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: wideNS, Name: wideAllow},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// policySource is the cluster in memory for a Reconciler driven by hand; setPolicy and
// deletePolicy change it as an API write would.
type policySource struct {
	mu   sync.Mutex
	in   translate.Input
	node *corev1.Node
}

func (s *policySource) Objects(context.Context) (translate.Input, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.in
	in.Policies = slices.Clone(s.in.Policies)
	return in, nil
}

func (s *policySource) Node(context.Context, string) (*corev1.Node, error) { return s.node, nil }

func (s *policySource) setPolicy(p *networkingv1.NetworkPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in.Policies = append(s.in.Policies, p)
}

func (s *policySource) deletePolicy(p *networkingv1.NetworkPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in.Policies = slices.DeleteFunc(s.in.Policies, func(q *networkingv1.NetworkPolicy) bool {
		return q.Namespace == p.Namespace && q.Name == p.Name
	})
}

// sizeRecorder is the agent's nft.Executor and, through elements, its element updater: it
// applies and keeps, of the last apply, its size (bytes: the script, or the element texts sent
// over netlink), its element lines, whether it went over netlink, and how long nft or the kernel
// took.
type sizeRecorder struct {
	inner    nft.Executor
	elems    controller.ElementUpdater
	last     int
	elements int
	netlink  bool
	took     time.Duration
}

func (r *sizeRecorder) Run(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
	if !nft.IsApply(argv) {
		return r.inner.Run(ctx, argv, stdin)
	}
	r.last, r.elements, r.netlink = len(stdin), bytes.Count(stdin, []byte("\n\t")), false
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	return r.inner.Run(ctx, argv, stdin)
}

func (r *sizeRecorder) UpdateElements(ctx context.Context, family, table string, changes []nft.SetChange) error {
	r.last, r.elements, r.netlink = 0, 0, true
	for _, c := range changes {
		for _, e := range slices.Concat(c.Delete, c.Add) {
			r.last += len(e) + 1
			r.elements++
		}
	}
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	return r.elems.UpdateElements(ctx, family, table, changes)
}

// BenchmarkPolicyChange times a policy change that touches 1,000 pods' chains, from the change
// to nft done, through the real reconciler and nft at cluster scale (150k pods / 10k policies in
// memory, plus the wide namespace above on the local node): the allow policy is created and
// deleted wideRounds times each, one at a time, nothing else changing. Reported per kind
// (create-ms, delete-ms: the slowest of the rounds; p50 in the log) with the bytes of the last
// transaction of each kind. Two variants, as BenchmarkEventStream's: "incremental" (the agent's
// default) and "full" (translated in full, and every change replaces the whole table: the
// baseline). It measures once, whatever b.N.
func BenchmarkPolicyChange(b *testing.B) {
	for _, mode := range []string{"incremental", "full"} {
		b.Run(fmt.Sprintf("pods=150000,policies=10000,selected=%d,%s", widePods, mode), func(b *testing.B) {
			tb := testenv.RequireKernel(b, "perf/agent policy change")
			if testing.Short() {
				b.Skip("150k-pod cluster skipped in -short mode")
			}
			rec := &sizeRecorder{inner: nft.NewExecutor()}
			cl := synth.Generate(synth.Sized(150000, 10000))
			wns, wpods, deny := wideObjects(cl.LocalNode)
			src := &policySource{
				in: translate.Input{Policies: append(slices.Clone(cl.Policies), deny), Namespaces: append(slices.Clone(cl.Namespaces), wns),
					Pods: append(compact.NewPods(cl.Pods), compact.NewPods(wpods)...)},
				node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cl.LocalNode}},
			}
			r := startAgent(b, tb, src, cl.LocalNode, rec, mode)
			ctx := context.Background()
			var created, deleted []time.Duration
			var createBytes, deleteBytes int
			for range wideRounds {
				allow := wideAllowPolicy()
				time.Sleep(controller.DefaultMinApplyInterval) // alone: nothing applied just before
				start := time.Now()
				src.setPolicy(allow)
				r.Observe(allow, false)
				if _, err := r.Reconcile(ctx, nodeKey); err != nil {
					b.Fatal(err)
				}
				created, createBytes = append(created, time.Since(start)), rec.last

				time.Sleep(controller.DefaultMinApplyInterval)
				start = time.Now()
				src.deletePolicy(allow)
				r.Observe(allow, true)
				if _, err := r.Reconcile(ctx, nodeKey); err != nil {
					b.Fatal(err)
				}
				deleted, deleteBytes = append(deleted, time.Since(start)), rec.last
			}
			for b.Loop() {
			}
			slices.Sort(created)
			slices.Sort(deleted)
			ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
			b.Logf("%s: policy selecting %d local pods created %d times: p50 %v, max %v, %d bytes; deleted: p50 %v, max %v, %d bytes",
				mode, widePods, wideRounds, percentile(created, 50), created[len(created)-1], createBytes,
				percentile(deleted, 50), deleted[len(deleted)-1], deleteBytes)
			b.ReportMetric(ms(created[len(created)-1]), "create-ms")
			b.ReportMetric(ms(deleted[len(deleted)-1]), "delete-ms")
			b.ReportMetric(float64(createBytes), "create-bytes")
			b.ReportMetric(float64(deleteBytes), "delete-bytes")
		})
	}
}
