package controller_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/test/objects"
)

var _ = Describe("The agent keeps the kernel in line with the cluster", func() {
	var (
		k *kernel
		c *cluster
	)
	BeforeEach(func() {
		k = newKernel() // first, so the namespace outlives the agent
		c = newCluster()
	})

	It("applies a policy when it is created, updated and deleted", func() {
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
		createPod(ns, "db", c.ip(10), objects.OnNode(c.node), objects.Labels("app", "db"))
		createPod(ns, "client", c.ip(20), objects.OnNode(c.node), objects.Labels("app", "client"))
		a := startAgent(c.node, k)
		a.waitReady()
		v := k.mustView()
		Expect(v.Exists).To(BeTrue(), "the first apply installs the table")
		Expect(v.PodChains()).To(BeEmpty(), "no policy, no isolated pod")

		By("creating a policy for app=web allowing app=client on TCP 80")
		createPolicy(ns, "allow", objects.Selecting("app", "web"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")), objects.Ports(objects.Port(corev1.ProtocolTCP, 80)))))
		Eventually(func(g Gomega) {
			v := k.view(g)
			web := v.PodChain("in", ns, "web")
			g.Expect(web).NotTo(BeEmpty(), "web is isolated")
			g.Expect(v.MapTarget(ingressMapV4, c.ip(1))).To(Equal(web))
			g.Expect(v.PodChain("in", ns, "db")).To(BeEmpty(), "db is not selected")
			g.Expect(v.MapTarget(ingressMapV4, c.ip(10))).To(BeEmpty())
			pol := v.PolicyChain("in", ns, "allow")
			g.Expect(pol).NotTo(BeEmpty())
			g.Expect(v.Chains[web]).To(ContainElement("jump " + pol))
			g.Expect(v.Chains[pol]).To(ContainElement(ContainSubstring("meta l4proto tcp ct original ip saddr @")))
			g.Expect(contains(v.Peers(ns, "allow", "in", 0, "v4"), c.ip(20))).To(BeTrue(), "the client is a peer")
		}, timeout, poll).Should(Succeed())

		By("updating it to select app=db on TCP 443")
		updatePolicy(ns, "allow", func(s *networkingv1.NetworkPolicySpec) {
			s.PodSelector = *objects.Selector("app", "db")
			s.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{objects.Port(corev1.ProtocolTCP, 443)}
		})
		Eventually(func(g Gomega) {
			v := k.view(g)
			g.Expect(v.PodChain("in", ns, "web")).To(BeEmpty(), "web is no longer selected")
			g.Expect(v.MapTarget(ingressMapV4, c.ip(1))).To(BeEmpty())
			db := v.PodChain("in", ns, "db")
			g.Expect(db).NotTo(BeEmpty())
			g.Expect(v.MapTarget(ingressMapV4, c.ip(10))).To(Equal(db))
			pol := v.PolicyChain("in", ns, "allow")
			g.Expect(v.Chains[pol]).To(ContainElement(ContainSubstring("ct reply proto-src 443 goto allow")))
			g.Expect(v.Chains[pol]).NotTo(ContainElement(ContainSubstring("proto-src 80 ")))
		}, timeout, poll).Should(Succeed())

		By("deleting it")
		deletePolicy(ns, "allow")
		Eventually(func(g Gomega) {
			v := k.view(g)
			g.Expect(v.Exists).To(BeTrue(), "the table stays, only empty")
			g.Expect(v.PodChains()).To(BeEmpty())
			g.Expect(v.PolicyChain("in", ns, "allow")).To(BeEmpty())
			g.Expect(v.Sets[ingressMapV4]).To(BeEmpty())
		}, timeout, poll).Should(Succeed())
	})

	It("enforces a pod that gains its IP after creation on the next recompute", func() {
		ns := namespace()
		createPolicy(ns, "same-ns", objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled()))))
		createPod(ns, "first", c.ip(1), objects.OnNode(c.node))
		a := startAgent(c.node, k)
		a.waitReady()

		By("creating a pod without an address, then a marker pod that proves the agent saw it")
		createPod(ns, "late", "", objects.OnNode(c.node))
		createPod(ns, "marker", c.ip(2), objects.OnNode(c.node))
		Eventually(func(g Gomega) {
			g.Expect(k.view(g).PodChain("in", ns, "marker")).NotTo(BeEmpty())
		}, timeout, poll).Should(Succeed())
		v := k.mustView()
		Expect(v.PodChain("in", ns, "late")).To(BeEmpty(), "a pod without an address contributes nothing")
		Expect(v.PodChains()).To(HaveLen(2))

		By("writing the pod's status.podIPs")
		setPodIP(ns, "late", c.ip(3))
		Eventually(func(g Gomega) {
			v := k.view(g)
			late := v.PodChain("in", ns, "late")
			g.Expect(late).NotTo(BeEmpty())
			g.Expect(v.MapTarget(ingressMapV4, c.ip(3))).To(Equal(late))
			g.Expect(contains(v.Peers(ns, "same-ns", "in", 0, "v4"), c.ip(3))).To(BeTrue(), "and it is a peer now")
		}, timeout, poll).Should(Succeed())
	})

	It("moves a relabelled pod in and out of a podSelector peer set and of the targets", func() {
		ns := namespace()
		createPod(ns, "peer", c.ip(5), objects.OnNode(c.node), objects.Labels("role", "stranger"))
		createPod(ns, "target", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "t"))
		createPod(ns, "friend", c.ip(9), objects.OnNode(c.node), objects.Labels("role", "friend"))
		createPolicy(ns, "friends", objects.Selecting("app", "t"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("role", "friend")))))
		startAgent(c.node, k)
		peerSet := func(g Gomega) []string {
			v := k.view(g)
			g.Expect(v.PodChain("in", ns, "target")).NotTo(BeEmpty())
			return v.Peers(ns, "friends", "in", 0, "v4")
		}
		Eventually(func(g Gomega) {
			s := peerSet(g)
			g.Expect(contains(s, c.ip(9))).To(BeTrue())
			g.Expect(contains(s, c.ip(5))).To(BeFalse())
		}, timeout, poll).Should(Succeed())

		By("relabelling the pod into the peers")
		setPodLabels(ns, "peer", objects.LabelMap("role", "friend"))
		Eventually(func(g Gomega) {
			g.Expect(contains(peerSet(g), c.ip(5))).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		By("relabelling it out again")
		setPodLabels(ns, "peer", objects.LabelMap("role", "stranger"))
		Eventually(func(g Gomega) {
			s := peerSet(g)
			g.Expect(contains(s, c.ip(5))).To(BeFalse())
			g.Expect(contains(s, c.ip(9))).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		By("relabelling the target out of the policy's podSelector")
		setPodLabels(ns, "target", objects.LabelMap("app", "other"))
		Eventually(func(g Gomega) {
			v := k.view(g)
			g.Expect(v.PodChain("in", ns, "target")).To(BeEmpty())
			g.Expect(v.MapTarget(ingressMapV4, c.ip(1))).To(BeEmpty())
		}, timeout, poll).Should(Succeed())
	})

	It("follows namespace relabels for namespaceSelector peers", func() {
		home := namespace()
		other := namespace("team", "red")
		createPod(other, "q", c.ip(5), objects.OnNode(c.node))
		createPod(home, "target", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "t"))
		createPolicy(home, "blue", objects.Selecting("app", "t"), objects.IsolateIngress(objects.Ingress(objects.From(objects.NamespacesLabelled("team", "blue")))))
		startAgent(c.node, k)
		peerSet := func(g Gomega) []string {
			v := k.view(g)
			g.Expect(v.PodChain("in", home, "target")).NotTo(BeEmpty())
			return v.Peers(home, "blue", "in", 0, "v4")
		}
		Eventually(func(g Gomega) {
			g.Expect(contains(peerSet(g), c.ip(5))).To(BeFalse())
		}, timeout, poll).Should(Succeed())

		By("labelling the pod's namespace team=blue")
		setNamespaceLabels(other, objects.LabelMap("team", "blue"))
		Eventually(func(g Gomega) {
			g.Expect(contains(peerSet(g), c.ip(5))).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		By("labelling it team=red again")
		setNamespaceLabels(other, objects.LabelMap("team", "red"))
		Eventually(func(g Gomega) {
			g.Expect(contains(peerSet(g), c.ip(5))).To(BeFalse())
		}, timeout, poll).Should(Succeed())
	})

	DescribeTable("a finished pod releases its IP, and a new pod reusing it gets only its own policies",
		func(phase corev1.PodPhase) {
			ns := namespace()
			reused := c.ip(1)
			createPolicy(ns, "old-pol", objects.Selecting("app", "old"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))
			createPolicy(ns, "new-pol", objects.Selecting("app", "new"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))
			createPolicy(ns, "from-old", objects.Selecting("app", "client"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "old")))))
			createPod(ns, "client", c.ip(20), objects.OnNode(c.node), objects.Labels("app", "client"))
			createPod(ns, "old", reused, objects.OnNode(c.node), objects.Labels("app", "old"))
			startAgent(c.node, k)
			Eventually(func(g Gomega) {
				v := k.view(g)
				old := v.PodChain("in", ns, "old")
				g.Expect(old).NotTo(BeEmpty())
				g.Expect(v.MapTarget(ingressMapV4, reused)).To(Equal(old))
				g.Expect(v.Chains[old]).To(ContainElement("jump " + v.PolicyChain("in", ns, "old-pol")))
				g.Expect(contains(v.Peers(ns, "from-old", "in", 0, "v4"), reused)).To(BeTrue())
			}, timeout, poll).Should(Succeed())

			By("moving the pod to phase " + string(phase) + " (it keeps status.podIPs)")
			updatePod(ns, "old", true, func(p *corev1.Pod) { p.Status.Phase = phase })
			Eventually(func(g Gomega) {
				v := k.view(g)
				g.Expect(v.PodChain("in", ns, "old")).To(BeEmpty())
				g.Expect(v.MapTarget(ingressMapV4, reused)).To(BeEmpty())
				g.Expect(v.PolicyChain("in", ns, "old-pol")).To(BeEmpty())
				g.Expect(contains(v.Peers(ns, "from-old", "in", 0, "v4"), reused)).To(BeFalse(), "a finished pod is no peer")
			}, timeout, poll).Should(Succeed())

			By("creating a new pod with the same IP")
			createPod(ns, "new", reused, objects.OnNode(c.node), objects.Labels("app", "new"))
			Eventually(func(g Gomega) {
				v := k.view(g)
				chain := v.PodChain("in", ns, "new")
				g.Expect(chain).NotTo(BeEmpty())
				g.Expect(v.MapTarget(ingressMapV4, reused)).To(Equal(chain))
				g.Expect(v.Chains[chain]).To(ContainElement("jump " + v.PolicyChain("in", ns, "new-pol")))
				g.Expect(v.Chains[chain]).NotTo(ContainElement(ContainSubstring("old-pol")))
				g.Expect(v.PodChain("in", ns, "old")).To(BeEmpty())
				g.Expect(v.PolicyChain("in", ns, "old-pol")).To(BeEmpty())
				g.Expect(contains(v.Peers(ns, "from-old", "in", 0, "v4"), reused)).To(BeFalse())
			}, timeout, poll).Should(Succeed())
		},
		Entry("Succeeded", corev1.PodSucceeded),
		Entry("Failed", corev1.PodFailed),
	)

	It("ignores hostNetwork pods: neither targets nor peers", func() {
		ns := namespace()
		createPolicy(ns, "all", objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled()))))
		// The hostNetwork pods come first: once the regular pod shows up, the agent has seen them.
		createPod(ns, "host-local", c.ip(100), objects.OnNode(c.node), objects.HostNetwork())
		createPod(ns, "host-remote", c.ip(150), objects.OnNode("other-"+c.node), objects.HostNetwork())
		startAgent(c.node, k)
		createPod(ns, "regular", c.ip(1), objects.OnNode(c.node))
		Eventually(func(g Gomega) {
			v := k.view(g)
			g.Expect(v.PodChain("in", ns, "regular")).NotTo(BeEmpty())
			g.Expect(contains(v.Peers(ns, "all", "in", 0, "v4"), c.ip(1))).To(BeTrue())
		}, timeout, poll).Should(Succeed())
		v := k.mustView()
		Expect(v.PodChains()).To(ConsistOf(v.PodChain("in", ns, "regular")), "only the regular pod is isolated")
		Expect(v.MapTarget(ingressMapV4, c.ip(100))).To(BeEmpty())
		Expect(contains(v.Peers(ns, "all", "in", 0, "v4"), c.ip(100))).To(BeFalse(), "the local hostNetwork pod is no peer")
		Expect(contains(v.Peers(ns, "all", "in", 0, "v4"), c.ip(150))).To(BeFalse(), "the remote hostNetwork pod is no peer")
	})

	It("shows pods of other nodes only as peers", func() {
		ns := namespace()
		remote := "other-" + c.node
		createPolicy(ns, "x", objects.Selecting("app", "x"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "x")))))
		createPolicy(ns, "remote-only", objects.Selecting("app", "r"), objects.IsolateIngress(objects.Ingress()))
		createPod(ns, "remote-x", c.ip(5), objects.OnNode(remote), objects.Labels("app", "x"))
		createPod(ns, "remote-r", c.ip(6), objects.OnNode(remote), objects.Labels("app", "r"))
		createPod(ns, "local-x", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "x"))
		startAgent(c.node, k)
		Eventually(func(g Gomega) {
			v := k.view(g)
			local := v.PodChain("in", ns, "local-x")
			g.Expect(local).NotTo(BeEmpty())
			g.Expect(v.MapTarget(ingressMapV4, c.ip(1))).To(Equal(local))
			s := v.Peers(ns, "x", "in", 0, "v4")
			g.Expect(contains(s, c.ip(1))).To(BeTrue())
			g.Expect(contains(s, c.ip(5))).To(BeTrue(), "the remote pod is a peer")
		}, timeout, poll).Should(Succeed())
		v := k.mustView()
		Expect(v.PodChains()).To(ConsistOf(v.PodChain("in", ns, "local-x")), "no chain for remote pods")
		Expect(v.MapTarget(ingressMapV4, c.ip(5))).To(BeEmpty())
		Expect(v.MapTarget(ingressMapV4, c.ip(6))).To(BeEmpty())
		Expect(v.PolicyChain("in", ns, "remote-only")).To(BeEmpty(), "a policy selecting only remote pods is not rendered")
	})
})
