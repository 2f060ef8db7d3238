package controller_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flock-net/flock-netpol/internal/cli"
	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/objects"
)

// reconciles returns how many reconciles the flock-netpol controllers of this process ran, from
// controller-runtime's own metric (shared by every manager of the suite; only one runs at a time).
func reconciles() int {
	GinkgoHelper()
	families, err := crmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "flock-netpol" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(total)
}

// gaps returns the time between consecutive applies.
func gaps(applies []applyRecord) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(applies); i++ {
		out = append(out, applies[i].At.Sub(applies[i-1].At))
	}
	return out
}

// expectBackoff checks that the first n gaps between retries follow the exponential backoff
// from base: each at least (nearly) base*2^i, and each longer than the one before.
func expectBackoff(g []time.Duration, base time.Duration, n int) {
	GinkgoHelper()
	Expect(len(g)).To(BeNumerically(">=", n), "retry gaps: %v", g)
	for i := range n {
		want := base << i
		Expect(g[i]).To(BeNumerically(">=", want*9/10), "gap %d of %v should be about %v", i, g, want)
		if i > 0 {
			Expect(g[i]).To(BeNumerically(">", g[i-1]), "gaps should grow: %v", g)
		}
	}
}

var _ = Describe("The agent's lifecycle", func() {
	It("applies nothing before every cache synced: the first script is already complete (cli.Start)", func() {
		k := newKernel()
		c := newCluster()
		clients := namespace("role", "client")
		servers := namespace()
		createPolicy(servers, "from-clients", objects.IsolateIngress(objects.Ingress(objects.From(objects.NamespacesLabelled("role", "client")))))
		createPolicy(clients, "same-ns", objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled()))))
		const perNS = 25
		for i := range perNS {
			createPod(servers, fmt.Sprintf("s-%d", i), c.ip(i), objects.OnNode(c.node))
			createPod(clients, fmt.Sprintf("c-%d", i), c.ip(100+i), objects.OnNode(c.node))
		}
		for i := range 10 {
			createPod(clients, fmt.Sprintf("remote-%d", i), c.ip(200+i), objects.OnNode("other-"+c.node))
		}

		createNode(c.node)
		By("starting the agent the way `flock-netpol run` does, after everything exists")
		// cli.Start registers the controller name without skipping validation, so it can run
		// only once per process; this is the suite's only caller (others use cli.NewAgent).
		probe := freeAddr()
		logs := &logBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			done <- cli.Start(ctx, restCfg, cli.RunConfig{
				NodeName:               c.node,
				Table:                  table,
				NFT:                    k.nftFlag(),
				NFTTimeout:             20 * time.Second,
				MetricsBindAddress:     "0",
				HealthProbeBindAddress: probe,
			}, newLogger("cli", logs), k.rec)
		}()
		DeferCleanup(func() {
			cancel()
			Eventually(done, 30*time.Second).Should(Receive(BeNil()))
		})
		p := &process{probe: probe}
		Eventually(func() (int, error) { return p.status("/readyz") }, timeout, poll).Should(Equal(200))

		first := k.rec.Applies()[0]
		Expect(first.Err).NotTo(HaveOccurred())
		Expect(string(first.Script)).To(HavePrefix(fmt.Sprintf("# flock-netpol: %d isolated pods,", 2*perNS)))
		v := parseTable(string(first.Script))
		Expect(v.PodChains()).To(HaveLen(2 * perNS))
		for i := range perNS {
			for _, pod := range []struct{ ns, name, ip string }{
				{servers, fmt.Sprintf("s-%d", i), c.ip(i)},
				{clients, fmt.Sprintf("c-%d", i), c.ip(100 + i)},
			} {
				chain := v.PodChain("in", pod.ns, pod.name)
				Expect(chain).NotTo(BeEmpty(), "pod %s/%s in the first script", pod.ns, pod.name)
				Expect(v.MapTarget(ingressMapV4, pod.ip)).To(Equal(chain))
			}
		}
		for i := range 10 {
			Expect(contains(v.Peers(servers, "from-clients", "in", 0, "v4"), c.ip(200+i))).To(BeTrue())
		}
		Expect(k.mustView().PodChains()).To(Equal(v.PodChains()), "the kernel holds the first script")
	})

	It("collapses a burst of 500 pod creations into far fewer applies than events", func() {
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPolicy(ns, "all", objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled()))))
		a := startAgent(c.node, k, countingPodEventsIn(ns))
		a.waitReady()
		appliesBefore, reconcilesBefore := k.rec.Count(), reconciles()

		const pods, workers = 500, 16
		var writes atomic.Int64
		start := time.Now()
		jobs := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				defer GinkgoRecover()
				for i := range jobs {
					createPod(ns, fmt.Sprintf("burst-%d", i), c.ip(i), objects.OnNode(c.node))
					writes.Add(2) // create, then the status update
				}
			})
		}
		for i := range pods {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		written := time.Since(start)

		Eventually(func(g Gomega) {
			v := k.view(g)
			for i := range pods {
				g.Expect(v.PodChain("in", ns, fmt.Sprintf("burst-%d", i))).NotTo(BeEmpty())
			}
		}, 60*time.Second, 50*time.Millisecond).Should(Succeed())
		converged := time.Since(start)
		Eventually(a.podEvents.Load, timeout, poll).Should(BeNumerically(">=", 2*pods))
		events := a.podEvents.Load()
		// Let whatever is still queued run before counting.
		last := -1
		Eventually(func() bool { n := reconciles(); settled := n == last; last = n; return settled },
			timeout, 250*time.Millisecond).Should(BeTrue(), "reconciles did not settle")
		applies := k.rec.Count() - appliesBefore
		recomputes := reconciles() - reconcilesBefore

		summary := fmt.Sprintf("burst of %d pods: %d API writes in %v, %d pod events delivered to the agent, %d reconciles, %d applies (converged after %v; kernel: %s)",
			pods, writes.Load(), written.Round(time.Millisecond), events, recomputes, applies, converged.Round(time.Millisecond), map[bool]string{true: "real nft", false: "fake nft"}[k.real])
		fmt.Fprintln(GinkgoWriter, summary)
		AddReportEntry("burst", summary)

		// Without collapsing there would be one apply per status update (500); the bound leaves room
		// for slow machines, where the writes spread over more applies.
		Expect(applies).To(BeNumerically("<=", events/4), "a burst must collapse into far fewer applies than events")
		Expect(recomputes).To(BeNumerically("<=", events/4), "events arriving during a recompute must collapse into one more")
		v := k.mustView()
		Expect(v.PodChains()).To(HaveLen(pods))
		Expect(v.Sets[ingressMapV4]).To(HaveLen(pods))
		Expect(v.MapTarget(ingressMapV4, c.ip(pods-1))).To(Equal(v.PodChain("in", ns, fmt.Sprintf("burst-%d", pods-1))))
	})

	It("keeps the table across a restart and replaces it with the first apply, in one transaction", func() {
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
		createPod(ns, "db", c.ip(2), objects.OnNode(c.node), objects.Labels("app", "db"))
		createPod(ns, "client", c.ip(3), objects.OnNode(c.node), objects.Labels("app", "client"))
		createPolicy(ns, "old", objects.Selecting("app", "web"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))

		first := startAgent(c.node, k)
		Eventually(func(g Gomega) {
			g.Expect(k.view(g).PolicyChain("in", ns, "old")).NotTo(BeEmpty())
		}, timeout, poll).Should(Succeed())
		before := k.current()
		Expect(before).NotTo(BeEmpty())

		By("stopping the agent: the table stays")
		first.stop()
		Expect(k.current()).To(Equal(before))

		By("changing the policies while no agent runs: the kernel keeps the old table")
		deletePolicy(ns, "old")
		createPolicy(ns, "new", objects.Selecting("app", "db"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))
		Expect(k.current()).To(Equal(before))

		By("starting a new agent and holding its first apply: nothing was flushed at startup")
		k.rec.Hold()
		mark := k.rec.Count()
		second := startAgent(c.node, k)
		Eventually(k.rec.Waiting, timeout, poll).Should(Equal(1))
		Expect(k.current()).To(Equal(before), "the old table is in force until the first apply")
		Expect(second.ready()).To(MatchError(ContainSubstring("no rules applied yet")))

		By("letting the first apply through")
		k.rec.Release()
		second.waitReady()
		v := k.mustView()
		Expect(v.PolicyChain("in", ns, "new")).NotTo(BeEmpty())
		Expect(v.PodChain("in", ns, "db")).NotTo(BeEmpty())
		Expect(v.PolicyChain("in", ns, "old")).To(BeEmpty())
		Expect(v.PodChain("in", ns, "web")).To(BeEmpty())
		Expect(v.MapTarget(ingressMapV4, c.ip(1))).To(BeEmpty())

		applies := k.rec.Applies()[mark:]
		Expect(applies).To(HaveLen(1), "one transaction replaced the table")
		lines := strings.Split(string(applies[0].Script), "\n")
		Expect(lines[0]).To(HavePrefix("#"))
		Expect(lines[1:3]).To(Equal([]string{"add table inet " + table, "delete table inet " + table}))
		Expect(parseTable(string(applies[0].Script)).PodChains()).To(Equal(v.PodChains()))
	})

	Describe("when nft fails", func() {
		It("keeps the previous table, retries with backoff, logs nft's stderr and is unready until an apply succeeds", func() {
			const base = 50 * time.Millisecond
			k := newKernel()
			c := newCluster()
			ns := namespace()
			createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
			createPod(ns, "client", c.ip(3), objects.OnNode(c.node), objects.Labels("app", "client"))
			createPolicy(ns, "web", objects.Selecting("app", "web"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))

			k.rec.Hold()
			a := startAgent(c.node, k, withRetry(base, 2*time.Second))
			Eventually(k.rec.Waiting, timeout, poll).Should(Equal(1))
			Expect(a.ready()).To(MatchError(ContainSubstring("no rules applied yet")))
			k.rec.Release()
			a.waitReady()
			Expect(k.mustView().PodChain("in", ns, "web")).NotTo(BeEmpty())
			before := k.current()

			By("making every apply fail as nft does when the kernel rejects the transaction")
			const complaint = "Error: Could not process rule: Device or resource busy"
			k.rec.FailWith(&nft.FakeResult{
				Stderr: []byte("/dev/stdin:9:1-40: " + complaint + "\nadd rule inet flock-netpol ingress-dispatch accept\n^^^^^^^^\n"),
				Err:    nft.FakeExitError{Code: 1},
			})
			mark := k.rec.Count()
			createPod(ns, "web-2", c.ip(2), objects.OnNode(c.node), objects.Labels("app", "web"))

			// A failed update in place is followed at once, in the same reconcile, by a full
			// replace: the retries are the reconciles, each ending in a full replace.
			fullSince := func() []applyRecord {
				var out []applyRecord
				for _, f := range k.rec.Applies()[mark:] {
					if !bytes.HasPrefix(f.Script, []byte("# flock-netpol: incremental update")) {
						out = append(out, f)
					}
				}
				return out
			}
			Eventually(func() int { return len(fullSince()) }, timeout, poll).Should(BeNumerically(">=", 5))
			Expect(a.ready()).To(MatchError(ContainSubstring(complaint)))
			Expect(k.current()).To(Equal(before), "the previous table stays in force")
			Expect(a.logs.String()).To(ContainSubstring(complaint), "nft's stderr is logged")
			for _, f := range k.rec.Applies()[mark:] {
				Expect(f.Err).To(HaveOccurred())
			}
			failed := fullSince()
			g := gaps(failed)
			AddReportEntry("retry gaps after a failed apply (base 50ms)", fmt.Sprint(g))
			expectBackoff(g, base, 4)
			Consistently(a.ready, 300*time.Millisecond, poll).ShouldNot(Succeed())

			By("letting nft work again")
			k.rec.FailWith(nil)
			Eventually(a.ready, timeout, poll).Should(Succeed())
			Expect(k.mustView().PodChain("in", ns, "web-2")).NotTo(BeEmpty())
		})

		It("is unready, retries and says clearly what is missing when the nft binary does not exist", func() {
			const base = 50 * time.Millisecond
			c := newCluster()
			k := newMissingNFTKernel("/nonexistent/nft")
			ns := namespace()
			createPod(ns, "web", c.ip(1), objects.OnNode(c.node))
			createPolicy(ns, "web", objects.IsolateIngress(objects.Ingress()))
			a := startAgent(c.node, k, withRetry(base, time.Second))

			Eventually(k.rec.Count, timeout, poll).Should(BeNumerically(">=", 5))
			const advice = "install the nftables package, or pass --nft"
			Expect(a.ready()).To(MatchError(And(
				ContainSubstring(`nft command "/nonexistent/nft" not found`),
				ContainSubstring(advice))))
			Consistently(a.ready, 500*time.Millisecond, poll).ShouldNot(Succeed())
			Expect(a.logs.String()).To(And(ContainSubstring("/nonexistent/nft"), ContainSubstring(advice)))
			expectBackoff(gaps(k.rec.Applies()), base, 3)
		})

		It("keeps the agent binary unready, and logs a clear error, with --nft /nonexistent/nft", func() {
			c := newCluster()
			ns := namespace()
			createPod(ns, "web", c.ip(1), objects.OnNode(c.node))
			createPolicy(ns, "web", objects.IsolateIngress(objects.Ingress()))
			agentBinary() // build outside the timeouts below
			p := runBinary(c.node, "/nonexistent/nft", "")

			Eventually(func() (int, error) { return p.status("/healthz") }, 30*time.Second, poll).Should(Equal(200))
			Eventually(p.output.String, timeout, poll).Should(And(
				ContainSubstring("/nonexistent/nft"),
				ContainSubstring("not found: install the nftables package, or pass --nft")))
			Consistently(func() (int, error) { return p.status("/readyz") }, time.Second, 100*time.Millisecond).Should(Equal(500))
			Expect(p.terminate()).To(Equal(0))
		})
	})

	It("keeps the previous table, is unready and says why when no Node carries its --node-name", func() {
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node))
		createPolicy(ns, "deny", objects.IsolateIngress(objects.Ingress()))
		first := startAgent(c.node, k)
		first.waitReady()
		before := k.current()
		first.stop()

		By("restarting with a node name that no Node object has")
		wrong := "no-such-" + c.node
		a := startAgent(wrong, k, withoutNode())
		Eventually(a.logs.String, timeout, poll).Should(ContainSubstring("refusing to apply"))
		Expect(a.logs.String()).To(ContainSubstring(wrong))
		Consistently(a.ready, 500*time.Millisecond, poll).Should(MatchError(ContainSubstring(`no Node object is named "` + wrong + `": check --node-name`)))
		Expect(k.current()).To(Equal(before), "the previous table stays in force")

		By("creating the Node: the agent applies and becomes ready")
		createNode(wrong)
		Eventually(a.ready, timeout, poll).Should(Succeed())
		Expect(k.current()).NotTo(Equal(before), "no pod of the new node name is local: its table isolates nothing")
	})

	It("repairs a table deleted behind its back within the resync period, and counts the repair", func() {
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
		createPolicy(ns, "deny", objects.Selecting("app", "web"), objects.IsolateIngress(objects.Ingress()))

		const period = 500 * time.Millisecond
		a := startAgent(c.node, k, withResync(period), withoutMonitor())
		Eventually(func(g Gomega) {
			g.Expect(k.view(g).PodChain("in", ns, "web")).NotTo(BeEmpty())
		}, timeout, poll).Should(Succeed())
		// The recorder counts an apply when nft returns, a moment after the kernel shows it:
		// take the count once it has stopped moving (two equal readings a period apart).
		applied := -1
		Eventually(func() bool {
			n := k.rec.Count()
			settled := n > 0 && n == applied
			applied = n
			return settled
		}, timeout, period).Should(BeTrue())
		repairs := testutil.ToFloat64(a.r.Metrics.Repairs.WithLabelValues("resync"))
		before := k.current()

		By("deleting the table the way an operator or a firewall reload would")
		// nft deleted it when this returns; no look at the kernel afterwards, since a periodic
		// check falling just after the delete may already have put the table back.
		Expect(k.list.Apply(ctxT(), render.DeleteTable(table))).To(Succeed())
		deletedAt := time.Now()

		By("waiting for the periodic check to put it back")
		Eventually(k.current, 5*period, poll).Should(Equal(before))
		Expect(time.Since(deletedAt)).To(BeNumerically("<", 3*period), "repaired later than the resync period allows")
		Eventually(func() float64 { return testutil.ToFloat64(a.r.Metrics.Repairs.WithLabelValues("resync")) }, period, poll).Should(Equal(repairs + 1))
		Eventually(k.rec.Count, period, poll).Should(Equal(applied+1), "one repair apply")

		By("an intact table is left alone by later checks, so that was exactly one repair apply")
		Consistently(k.rec.Count, 3*period, 50*time.Millisecond).Should(Equal(applied + 1))
	})

	It("closes a node without a table at once with the bootstrap table, which the first full apply replaces", func() {
		if !kernelReal {
			Skip("needs root with nft and ip: the bootstrap looks for the table in a real network namespace; " +
				"run the suite as root (FLOCK_REQUIRE_KERNEL_TESTS=1 turns this skip into a failure)")
		}
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node))
		createPolicy(ns, "deny", objects.IsolateIngress(objects.Ingress()))
		cidr := netip.PrefixFrom(netip.MustParseAddr(c.ip(1)), 16).Masked().String()
		bootstraps := func() float64 {
			return testutil.ToFloat64(controller.DefaultMetrics().Applies.WithLabelValues("bootstrap"))
		}
		before := bootstraps()
		a := startAgent(c.node, k, withClosedEdges(cidr))
		a.waitReady()

		applies := k.rec.Applies()
		Expect(len(applies)).To(BeNumerically(">=", 2))
		first, full := string(applies[0].Script), string(applies[len(applies)-1].Script)
		Expect(first).To(ContainSubstring("ip saddr "+cidr+" ip saddr != @local-pods-v4"), "the bootstrap closes the node's pod range")
		Expect(first).NotTo(ContainSubstring("pod-in-"), "the bootstrap knows no pod")
		Expect(full).To(ContainSubstring("pod-in-"), "the first full apply replaces it")
		Expect(bootstraps()).To(Equal(before + 1))
		Expect(k.mustView().PodChain("in", ns, "web")).NotTo(BeEmpty())

		By("restarting: a table exists, so no bootstrap")
		a.stop()
		mark := k.rec.Count()
		again := startAgent(c.node, k, withClosedEdges(cidr))
		again.waitReady()
		Expect(bootstraps()).To(Equal(before + 1))
		for _, r := range k.rec.Applies()[mark:] {
			Expect(string(r.Script)).To(ContainSubstring("pod-in-"), "only full applies after a restart")
		}
	})

	It("repairs within a second any change another process makes to its table, and counts it", func() {
		if !kernelReal {
			Skip("needs root with nft and ip: nft monitor watches a real network namespace; " +
				"run the suite as root (FLOCK_REQUIRE_KERNEL_TESTS=1 turns this skip into a failure)")
		}
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
		createPolicy(ns, "deny", objects.Selecting("app", "web"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))
		// No periodic check: only the monitor can repair within the second.
		a := startAgent(c.node, k)
		a.waitReady()
		Eventually(func(g Gomega) { g.Expect(k.view(g).PodChain("in", ns, "web")).NotTo(BeEmpty()) }, timeout, poll).Should(Succeed())
		podChain := k.mustView().PodChain("in", ns, "web")
		repairs := func() float64 { return testutil.ToFloat64(a.r.Metrics.Repairs.WithLabelValues("monitor")) }
		want := k.current()

		for _, tamper := range [][]string{
			{"delete", "table", "inet", table},
			{"flush", "chain", "inet", table, render.BaseChain},
			{"flush", "set", "inet", table, render.DigestSet},
			{"flush", "map", "inet", table, "ingress-pods-v4"},
			{"delete", "element", "inet", table, "ingress-pods-v4", "{", c.ip(1), "}"},
			{"insert", "rule", "inet", table, podChain, "accept"},
		} {
			By(strings.Join(tamper, " "))
			before := repairs()
			_, stderr, err := k.run.Run(ctxT(), append(slices.Clone(k.command), tamper...), nil)
			Expect(err).NotTo(HaveOccurred(), "%s", stderr)
			changed := time.Now() // the repair can be done before a listing would show the change
			Eventually(k.current, time.Second, poll).Should(Equal(want), "repaired within a second")
			fmt.Fprintf(GinkgoWriter, "%s: repaired within %v\n", strings.Join(tamper, " "), time.Since(changed).Round(time.Millisecond))
			Eventually(repairs, time.Second, poll).Should(Equal(before + 1))
		}

		By("its own update over netlink (a second remote peer joins: elements only) is not taken for another's")
		netlinkUpdates := func() float64 { return testutil.ToFloat64(a.r.Metrics.IncrementalUpdates.WithLabelValues("netlink")) }
		done := repairs()
		for i, name := range []string{"client-1", "client-2"} { // the first peer adds the peer set and its rule
			sent := netlinkUpdates()
			createPod(ns, name, c.ip(200+i), objects.OnNode("other-"+c.node), objects.Labels("app", "client"))
			Eventually(func(g Gomega) {
				g.Expect(contains(k.view(g).Peers(ns, "deny", "in", 0, "v4"), c.ip(200+i))).To(BeTrue())
			}, timeout, poll).Should(Succeed())
			if i == 1 {
				Expect(netlinkUpdates()).To(Equal(sent+1), "the second peer went over netlink")
			}
		}
		Consistently(repairs, time.Second, poll).Should(Equal(done), "no repair of the agent's own updates")
	})

	It("leaves the table in place on SIGTERM (agent binary)", func() {
		if !kernelReal {
			Skip("needs root with nft and ip: the agent binary programs a network namespace through `ip netns exec`; " +
				"run the suite as root (FLOCK_REQUIRE_KERNEL_TESTS=1 turns this skip into a failure)")
		}
		k := newKernel()
		c := newCluster()
		ns := namespace()
		createPod(ns, "web", c.ip(1), objects.OnNode(c.node), objects.Labels("app", "web"))
		createPod(ns, "client", c.ip(3), objects.OnNode(c.node), objects.Labels("app", "client"))
		createPolicy(ns, "web", objects.Selecting("app", "web"), objects.IsolateIngress(objects.Ingress(objects.From(objects.PodsLabelled("app", "client")))))
		agentBinary()
		p := runBinary(c.node, k.nftFlag(), k.ns)

		Eventually(func() (int, error) { return p.status("/readyz") }, 30*time.Second, poll).Should(Equal(200))
		v := k.mustView()
		Expect(v.PodChain("in", ns, "web")).NotTo(BeEmpty())
		Expect(contains(v.Peers(ns, "web", "in", 0, "v4"), c.ip(3))).To(BeTrue())
		before := k.current()

		Expect(p.terminate()).To(Equal(0), "exit code after SIGTERM; output:\n%s", p.output.String())
		Expect(p.output.String()).To(ContainSubstring("the rules stay in force"))
		Expect(k.current()).To(Equal(before), "the table is still in the kernel after the agent exited")
	})
})
