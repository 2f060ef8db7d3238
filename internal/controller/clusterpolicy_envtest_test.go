package controller_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/objects"
)

// The suite's API server starts without the ClusterNetworkPolicy CRD, so that every other spec
// runs the agent as a cluster without it does. The specs "with its CRD installed" install it for
// themselves (Ordered: they run one after the other, with no other spec in between) and remove
// it, waiting until the API server no longer serves it, before any other spec runs.
//
// The translator does not read ClusterNetworkPolicies yet: these specs check that the objects
// reach its input, and that their changes reach the reconciler, not what is enforced.

// cnpCRDFile is the CRD the install ships (test/deploy checks it against the module's).
var cnpCRDFile = filepath.Join("..", "..", "config", "components", "clusternetworkpolicy",
	"policy.networking.k8s.io_clusternetworkpolicies.yaml")

// cnpServed reports whether the API server serves policy.networking.k8s.io/v1alpha2, asking
// afresh (a discovery client caches nothing between calls to ServerResourcesForGroupVersion).
func cnpServed(g Gomega) bool {
	dc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = dc.ServerResourcesForGroupVersion(v1alpha2.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false
	}
	g.Expect(err).NotTo(HaveOccurred())
	return true
}

// installCNPCRD installs the CRD until the end of the enclosing container.
func installCNPCRD() {
	opts := envtest.CRDInstallOptions{Paths: []string{cnpCRDFile}, ErrorIfPathMissing: true}
	crds, err := envtest.InstallCRDs(restCfg, opts) // waits until the API server serves it
	Expect(err).NotTo(HaveOccurred())
	Expect(crds).To(HaveLen(1))
	DeferCleanup(func() {
		Expect(envtest.UninstallCRDs(restCfg, opts)).To(Succeed())
		// Deleting a CRD deletes its objects first: wait until it is gone, or the next spec's
		// agent would still find it.
		Eventually(func(g Gomega) bool { return cnpServed(g) }, time.Minute, 100*time.Millisecond).Should(BeFalse(),
			"the API server still serves ClusterNetworkPolicy after the CRD was deleted")
	})
}

// recordingSource sits between the reconciler and its Source (see withSource) and keeps what the
// recomputes read.
type recordingSource struct {
	controller.Source
	mu    sync.Mutex
	reads int
	last  translate.Input
}

func (s *recordingSource) wrap(src controller.Source) controller.Source {
	s.Source = src
	return s
}

func (s *recordingSource) Objects(ctx context.Context) (translate.Input, error) {
	in, err := s.Source.Objects(ctx)
	if err == nil {
		s.mu.Lock()
		s.reads, s.last = s.reads+1, in
		s.mu.Unlock()
	}
	return in, err
}

// Reads is how many recomputes read the cluster so far.
func (s *recordingSource) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// Last is what the latest recompute read. Its objects are the cache's: read-only.
func (s *recordingSource) Last() translate.Input {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// clusterPolicy is a valid ClusterNetworkPolicy of the Admin tier: no pod may reach the pods of
// the namespaces labelled team=<team>. (The standard-channel CRD the install ships has no `nodes`
// peers: the API server would prune one, and refuse the peer left empty.)
func clusterPolicy(name string, priority int32, team string) *v1alpha2.ClusterNetworkPolicy {
	return &v1alpha2.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha2.ClusterNetworkPolicySpec{
			Tier: v1alpha2.AdminTier, Priority: priority,
			Subject: v1alpha2.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []v1alpha2.ClusterNetworkPolicyEgressRule{{
				Action: v1alpha2.ClusterNetworkPolicyRuleActionDeny,
				To:     []v1alpha2.ClusterNetworkPolicyEgressPeer{{Namespaces: objects.Selector("team", team)}},
			}},
		},
	}
}

// createNodeWith creates a Node with labels and, as a kubelet would write them through the
// status subresource, addresses and a Ready condition; it is deleted when the spec ends.
func createNodeWith(name string, labels map[string]string, addrs ...string) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	Expect(k8sClient.Create(ctxT(), node)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctxT(), node))).To(Succeed()) })
	updateNode(name, true, func(n *corev1.Node) {
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
	})
}

// updateNode re-reads the Node, applies change and writes it back (its status when status is set).
func updateNode(name string, status bool, change func(*corev1.Node)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var n corev1.Node
		if err := k8sClient.Get(ctxT(), types.NamespacedName{Name: name}, &n); err != nil {
			return err
		}
		change(&n)
		if status {
			return k8sClient.Status().Update(ctxT(), &n)
		}
		return k8sClient.Update(ctxT(), &n)
	})).To(Succeed())
}

func findPolicy(in translate.Input, name string) *v1alpha2.ClusterNetworkPolicy {
	i := slices.IndexFunc(in.ClusterPolicies, func(p *v1alpha2.ClusterNetworkPolicy) bool { return p.Name == name })
	if i < 0 {
		return nil
	}
	return in.ClusterPolicies[i]
}

func findNode(in translate.Input, name string) *corev1.Node {
	i := slices.IndexFunc(in.Nodes, func(n *corev1.Node) bool { return n.Name == name })
	if i < 0 {
		return nil
	}
	return in.Nodes[i]
}

var _ = Describe("ClusterNetworkPolicy", func() {
	Describe("without its CRD", func() {
		It("says once that it is not enforced, reads neither policies nor other Nodes, and applies NetworkPolicy as before", func() {
			Expect(cnpServed(Default)).To(BeFalse(), "the API server serves ClusterNetworkPolicy: a spec left its CRD installed")
			k := newKernel()
			c := newCluster()
			ns := namespace()
			createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
			createPolicy(ns, "deny", objects.Selecting("app", "web"), objects.IsolateIngress())
			createNodeWith("other-"+randomSuffix(), nil, "10.254.7.1")
			rec := &recordingSource{}
			a := startAgent(c.node, k, withSource(rec.wrap))
			a.waitReady()
			Eventually(func(g Gomega) {
				g.Expect(k.view(g).PodChain("in", ns, "web")).NotTo(BeEmpty(), "web is isolated")
			}, timeout, poll).Should(Succeed())

			Expect(a.r.ClusterPolicies).To(BeFalse())
			Expect(strings.Count(a.logs.String(), "ClusterNetworkPolicy is not enforced: its CRD is not installed")).To(Equal(1), a.logs.String())
			in := rec.Last()
			Expect(in.ClusterPolicies).To(BeNil())
			Expect(in.Nodes).To(BeNil(), "only this node's Node is cached, and not handed to the translator")
		})
	})

	Describe("with its CRD installed", Ordered, func() {
		BeforeAll(installCNPCRD)

		It("reads every ClusterNetworkPolicy and every Node, and recomputes when either changes but not at a node's status update", func() {
			k := newKernel()
			c := newCluster()
			suffix := randomSuffix()
			other := "other-" + suffix
			createNodeWith(other, map[string]string{"role": "infra-" + suffix}, "10.254.7.1", "fd00:254:7::1")
			rec := &recordingSource{}
			a := startAgent(c.node, k, withSource(rec.wrap))
			a.waitReady() // finds its own Node among all of them
			Expect(a.r.ClusterPolicies).To(BeTrue())
			Expect(a.logs.String()).To(ContainSubstring("enforcing ClusterNetworkPolicy: its CRD is installed"))
			Expect(a.logs.String()).NotTo(ContainSubstring("ClusterNetworkPolicy is not enforced"))

			By("reading every Node, stripped to labels, pod ranges and addresses")
			in := rec.Last()
			Expect(findNode(in, c.node)).NotTo(BeNil(), "this node's Node")
			n := findNode(in, other)
			Expect(n).NotTo(BeNil(), "another node's Node")
			Expect(n.Labels).To(HaveKeyWithValue("role", "infra-"+suffix))
			Expect(n.Status.Addresses).To(ConsistOf(
				corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.254.7.1"},
				corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00:254:7::1"}))
			Expect(n.Status.Conditions).To(BeEmpty(), "the cache strips a Node's conditions")

			By("reading a ClusterNetworkPolicy created after the start")
			name := "deny-team-" + suffix
			pol := clusterPolicy(name, 10, suffix)
			Expect(k8sClient.Create(ctxT(), pol)).To(Succeed())
			DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctxT(), pol))).To(Succeed()) })
			Eventually(func(g Gomega) {
				p := findPolicy(rec.Last(), name)
				g.Expect(p).NotTo(BeNil())
				g.Expect(p.Spec.Priority).To(Equal(int32(10)))
				g.Expect(p.Spec.Egress).To(HaveLen(1))
				g.Expect(p.Spec.Egress[0].To[0].Namespaces.MatchLabels).To(HaveKeyWithValue("team", suffix))
				g.Expect(p.ManagedFields).To(BeEmpty(), "the cache strips managed fields")
			}, timeout, poll).Should(Succeed())

			By("recomputing when the policy changes")
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				var p v1alpha2.ClusterNetworkPolicy
				if err := k8sClient.Get(ctxT(), types.NamespacedName{Name: name}, &p); err != nil {
					return err
				}
				p.Spec.Priority = 20
				return k8sClient.Update(ctxT(), &p)
			})).To(Succeed())
			Eventually(func() int32 {
				if p := findPolicy(rec.Last(), name); p != nil {
					return p.Spec.Priority
				}
				return -1
			}, timeout, poll).Should(Equal(int32(20)))

			By("not recomputing at a node's status update (a heartbeat), which the cache strips")
			reads := rec.Reads()
			updateNode(other, true, func(n *corev1.Node) {
				n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Minute))
				n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.invalid/app:1"}, SizeBytes: 1 << 20}}
			})
			Consistently(rec.Reads, time.Second, poll).Should(Equal(reads), "a node's status update triggered a recompute")

			By("recomputing when a node's labels change")
			updateNode(other, false, func(n *corev1.Node) { n.Labels["zone"] = "b" })
			Eventually(func() map[string]string {
				if n := findNode(rec.Last(), other); n != nil {
					return n.Labels
				}
				return nil
			}, timeout, poll).Should(HaveKeyWithValue("zone", "b"))

			By("forgetting a deleted policy")
			Expect(k8sClient.Delete(ctxT(), pol)).To(Succeed())
			Eventually(func() *v1alpha2.ClusterNetworkPolicy { return findPolicy(rec.Last(), name) }, timeout, poll).Should(BeNil())
		})

		It("applies ClusterNetworkPolicies and Nodes from the watch events, as a full translation would", func() {
			k := newKernel()
			c := newCluster()
			suffix := randomSuffix()
			ns := namespace("team", suffix)
			createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
			a := startAgent(c.node, k) // translating incrementally: the default
			a.waitReady()
			Expect(a.r.FullTranslate).To(BeFalse())

			// sameAsFull checks that the agent wants what a full translation of its cache gives.
			sameAsFull := func(g Gomega) {
				d, err := a.r.Desired(ctxT())
				g.Expect(err).NotTo(HaveOccurred())
				in, err := a.r.Source.Objects(ctxT())
				g.Expect(err).NotTo(HaveOccurred())
				in.Node = c.node
				want, _ := translate.Translate(in)
				g.Expect(d.RuleSet).To(Equal(want))
			}

			By("applying a ClusterNetworkPolicy created after the start")
			name := "deny-team-" + suffix
			pol := clusterPolicy(name, 10, suffix)
			Expect(k8sClient.Create(ctxT(), pol)).To(Succeed())
			DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctxT(), pol))).To(Succeed()) })
			Eventually(func(g Gomega) {
				rs := a.r.AppliedRuleSet()
				g.Expect(rs).NotTo(BeNil())
				g.Expect(slices.ContainsFunc(rs.ClusterPolicies, func(p ruleset.ClusterPolicy) bool { return p.Name == name })).To(BeTrue())
				sameAsFull(g)
			}, timeout, poll).Should(Succeed())

			By("following a Node created after the start")
			other := "other-" + suffix
			createNodeWith(other, map[string]string{"role": "infra-" + suffix}, "10.254.8.1")
			Eventually(sameAsFull, timeout, poll).Should(Succeed())

			By("forgetting a deleted policy")
			Expect(k8sClient.Delete(ctxT(), pol)).To(Succeed())
			Eventually(func(g Gomega) {
				rs := a.r.AppliedRuleSet()
				g.Expect(rs.ClusterPolicies).To(BeEmpty())
				sameAsFull(g)
			}, timeout, poll).Should(Succeed())
		})
	})
})
