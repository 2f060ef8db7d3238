//go:build linux

package kernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
)

// BenchmarkEstablished measures what re-validating established flows (render.Revalidate, the
// default) costs against accepting them unconditionally (render.Keep), while the rules keep
// changing. It uses the bed of BenchmarkDatapath (client, router and server; the router holds the
// agent's ruleset for the server, whose one policy allows TCP to its port from a namespace of
// estPeers pods, the client among them) and the agent's own cycle for every change: translate,
// epoch.Next from the previous state, render, `nft -f -` (a full replace, as the agent applies).
//
// The change, every estChange (100 ms): one pod of the allowed namespace, never the client,
// leaves the peer set, and the one that left at the previous change comes back. Every change
// therefore narrows the server's ingress (a peer is gone), so epoch.Next advances the epoch and
// restarts the server address's ingress window: the stamp of every established flow to the
// server is stale after each change, and the flow's next packet is judged again by the policy
// chains and re-stamped. That is the worst case for the flows of one pod short of cutting them;
// each run checks that it holds (every change advances the server's window).
//
// The baseline is the same ruleset rendered with render.Keep, under the same changes applied in
// the same way: the two sides differ in the established path only (Keep accepts every established
// packet at its first rule, as every release before issue 15 did), while the applies themselves
// (an nft process every 100 ms, a kernel transaction that swaps the table) load both sides alike.
// A baseline without changes would charge the cost of the applies, which the agent pays whatever
// the mode, to re-validation.
//
// The two modes alternate, as the datapath benchmark's ruleset and baseline do, because the shared
// machine's spare capacity drifts over seconds: a slice is a few changes long, its first apply
// switches the mode (and is a change like the others), pairs of neighbouring slices run in
// alternating order (ABBA), and the figures are medians over the slices. Every script is
// translated and rendered before the load starts, so rendering takes no CPU from the measurement.
//
// Sub-benchmarks (each measures once, whatever b.N):
//
//   - bulk: one bulk TCP stream from the client (startBulkLoad); Mbit/s with Revalidate,
//     base-Mbit/s with Keep, tput-ratio the quotient of the medians (target ≥ 0.97).
//     per-cpu-ratio is the same quotient for the bytes moved per second of CPU that this process
//     used (both ends of the stream, and the forwarding, which runs in their system calls): the
//     per-packet cost of re-validation alone, with the other processes' share of the machine
//     divided out, so it moves far less than tput-ratio on a busy machine; it does not see time
//     the stream spends waiting rather than computing. retrans/s and base-retrans/s are the
//     client's TCP retransmissions per second in each mode: a packet the router drops shows
//     there (see below). rejudged/change is what a counter on the stamping chain saw per change
//     in a separate phase before the measurement (the counter cannot stay in the measured
//     scripts, whose first change in each slice replaces the table). At the end, a change that removes the client
//     itself from the peer set must cut the running stream within a few hundred milliseconds
//     (re-validation, not Keep, is in force), and bringing it back must let the stream resume.
//   - flows=10000: 10,000 long-lived TCP connections from the client to the server, each sending
//     one 32-byte message per second (10,000 messages/s in all, spread evenly), and no other load.
//     Since the epoch moves ten times between two messages of a flow, every message is judged
//     again: about 10,000 re-judged packets per second (rejudged/s, counted as for bulk). The
//     figure is the CPU that re-validation adds, as a fraction of one core (reval-pct-core,
//     target ≤ 5 %), the median over the pairs of slices of the difference between the two
//     modes; ns/rejudged divides it by rejudged/s. See flowCPU for how the CPU is measured.
//
// What a full replace does to interval sets. On Linux 6.18 an nft transaction publishes its new
// generation (the new table's rules are live) before it commits the lookup structures of new
// interval sets (the rbtree backend now searches an array built at commit; the pipapo backend of
// concatenations has always swapped its lookup table in at commit): for that window, up to a few
// milliseconds here, a lookup in an interval set the transaction created matches nothing.
// A packet judged by the policy chains in the window is dropped although its peer is in the set.
// With Keep only new connections meet it (a SYN dropped, retried a second later); with Revalidate
// every flow whose stamp a change made stale and whose next packet falls into the window loses
// that packet too. The retransmission figures show it; tput-ratio includes it.
func BenchmarkEstablished(b *testing.B) {
	b.Run("bulk,change=100ms", benchEstablishedBulk)
	b.Run(fmt.Sprintf("flows=%d,change=100ms", estFlows), benchEstablishedFlows)
}

const (
	estPeers  = 1000                   // entries in the server's peer set
	estChange = 100 * time.Millisecond // one change of the rules this often

	estBulkPairs  = 150 // pairs of slices
	estBulkSlice  = 2   // changes per slice: 200 ms
	estCountRound = 20  // changes in the counting phase

	estFlows      = 10000
	estFlowPeriod = time.Second // each flow sends one message this often
	estFlowMsg    = 32          // bytes per message
	estFlowPairs  = 16
	estFlowSlice  = 30 // changes per slice: 3 s, three messages per flow
)

// reqLong opens a long-lived flow on the flow sink: it reads messages until EOF.
const reqLong = 'l'

// churn yields the successive rule sets of the changes and their epochs, as the agent computes
// them. Step k leaves out the client pod candidates[k % len] and brings back the one step k-1 left
// out.
type churn struct {
	tb         testing.TB
	in         translate.Input
	all        []*compact.Pod
	candidates []int // indexes into all: client pods other than the bed's client
	step       int
	rs         ruleset.RuleSet // last yielded
	st         epoch.State
	server     netip.Addr
}

// newChurn starts from the state that newBench applied: the whole cluster, rendered with the zero
// Epochs (epoch.Start(1, rs)).
func newChurn(tb testing.TB, n int) *churn {
	in := datapathInput(n)
	c := &churn{tb: tb, in: in, all: in.Pods, server: serverAddr.Addr()}
	client := peerAddr(n/2, n)
	for i, p := range in.Pods {
		if i == 0 || p.IP(0) == client {
			continue // the server, the bed's client
		}
		c.candidates = append(c.candidates, i)
	}
	c.rs = c.translate(c.all)
	c.st = epoch.Start(1, &c.rs)
	return c
}

func (c *churn) translate(pods []*compact.Pod) ruleset.RuleSet {
	c.tb.Helper()
	in := c.in
	in.Pods = pods
	rs, problems := translate.Translate(in)
	if len(problems) > 0 {
		c.tb.Fatalf("%d translation problems, first: %v", len(problems), problems[0])
	}
	return rs
}

// without returns the cluster's pods without pod i.
func (c *churn) without(i int) []*compact.Pod {
	return slices.Delete(slices.Clone(c.all), i, i+1)
}

// next computes the next change and returns its rule set and epochs. It fails the benchmark
// unless the change advanced the server's ingress window, which is what makes it a change that
// established flows to the server must be judged again for.
func (c *churn) next() (ruleset.RuleSet, epoch.State) {
	c.tb.Helper()
	rs := c.translate(c.without(c.candidates[c.step%len(c.candidates)]))
	c.step++
	st := epoch.Next(c.st, &c.rs, &rs)
	srv, ok := st.Lookup(c.server)
	if st.Current == c.st.Current || !ok || srv.Since[epoch.Ingress] != st.Current {
		c.tb.Fatalf("change %d did not advance the server's ingress window (epoch %d -> %d, server %+v): it would not make established flows be judged again", c.step, c.st.Current, st.Current, srv)
	}
	c.rs, c.st = rs, st
	return rs, st
}

// estScript renders rs for the router as the agent does, with mode for established packets.
func estScript(rs ruleset.RuleSet, st epoch.State, mode render.Established) []byte {
	return estRender(rs, st, mode).Text
}

func estRender(rs ruleset.RuleSet, st epoch.State, mode render.Established) render.Script {
	return render.Render(rs, render.Options{AntiSpoofing: true, Established: mode, Epochs: st})
}

// schedule is the pre-rendered changes of an interleaved run: slices of perSlice changes, in
// pairs of opposite modes whose order alternates.
type schedule struct {
	scripts  []render.Script
	reval    []bool // per slice
	perSlice int
}

func newSchedule(c *churn, pairs, perSlice int) *schedule {
	s := &schedule{perSlice: perSlice}
	for p := range pairs {
		for _, reval := range []bool{p%2 == 1, p%2 == 0} {
			s.reval = append(s.reval, reval)
			mode := render.Keep
			if reval {
				mode = render.Revalidate
			}
			for range perSlice {
				rs, st := c.next()
				s.scripts = append(s.scripts, estRender(rs, st, mode))
			}
		}
	}
	return s
}

// run applies the schedule on the router, one change every estChange on a fixed clock, and calls
// sample right after each slice's first apply (which switches the mode) and right before the
// next slice's: the slice is measured between the two. Each slice's first change replaces the
// table (the mode changes its chains); the others are applied as the agent applies them: the
// difference from the last table, over netlink when it changes elements only (every change
// within an epoch block, and every change of Keep's), else through nft. It returns the samples,
// two per slice, and the longest apply. An apply that takes longer than estChange (a busy
// machine) delays the next one; the log says how far the schedule stretched.
func run[T any](bn *bench, s *schedule, sample func() T) (start, end []T, longest time.Duration) {
	bn.tb.Helper()
	elements := &nft.NetlinkElements{NetNS: netns.OpenFD(bn.tb, bn.router.Namespace())}
	defer func() { _ = elements.Close() }()
	var prev *render.Table
	overNetlink := 0
	defer func() { bn.tb.Logf("%d of %d changes applied over netlink", overNetlink, len(s.scripts)) }()
	t0 := time.Now()
	defer func() {
		bn.tb.Logf("%d changes in %v: one every %v on average", len(s.scripts), time.Since(t0).Round(time.Millisecond), (time.Since(t0) / time.Duration(len(s.scripts))).Round(time.Millisecond))
	}()
	for i, script := range s.scripts {
		if d := time.Until(t0.Add(time.Duration(i) * estChange)); d > 0 {
			time.Sleep(d)
		}
		if i > 0 && i%s.perSlice == 0 {
			end = append(end, sample())
		}
		a := time.Now()
		text := script.Text
		if i%s.perSlice != 0 {
			u, err := render.Diff(prev, script.Table, render.DiffOptions{Table: render.DefaultTable, MaxShare: 1})
			if err != nil {
				bn.tb.Fatal(err)
			}
			text = u.Text
			if u.ElementsOnly {
				changes := make([]nft.SetChange, len(u.Changes))
				for k, c := range u.Changes {
					changes[k] = nft.SetChange(c)
				}
				text = nil
				overNetlink++
				if err := elements.UpdateElements(context.Background(), "inet", render.DefaultTable, changes); err != nil {
					bn.tb.Fatal(err)
				}
			}
		}
		if text != nil {
			if err := applyScript(bn.router.Namespace(), text); err != nil {
				bn.tb.Fatal(err)
			}
		}
		prev = script.Table
		longest = max(longest, time.Since(a))
		if i%s.perSlice == 0 {
			start = append(start, sample())
		}
	}
	time.Sleep(time.Until(t0.Add(time.Duration(len(s.scripts)) * estChange)))
	end = append(end, sample())
	return start, end, longest
}

// stampRule finds the rule every accepted flow passes on its way to be stamped in a Revalidate
// script: the lookup of the chain that stamps the current epoch (meta nfproto vmap @stamp).
var stampRule = regexp.MustCompile(`(?m)^add rule inet ` + regexp.QuoteMeta(nftTable) + ` (\S+) (meta nfproto vmap @stamp)$`)

// countRejudged applies k Revalidate changes, one every estChange, each script with a counter at
// the head of the stamping chain, and reads the counter right before the next apply replaces the
// table. Every packet judged again and allowed (and every new connection) passes the stamping
// chain once. It returns the packets counted and the time they were counted over.
func countRejudged(bn *bench, c *churn, k int) (packets int64, over time.Duration) {
	bn.tb.Helper()
	var chain string
	t0 := time.Now()
	var applied time.Time
	for i := range k + 1 {
		if d := time.Until(t0.Add(time.Duration(i) * estChange)); d > 0 {
			time.Sleep(d)
		}
		if i > 0 {
			listed := bn.nft("list", "chain", "inet", nftTable, chain)
			m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(listed)
			if m == nil {
				bn.tb.Fatalf("no counter in the stamping chain:\n%s", listed)
			}
			n, _ := strconv.ParseInt(m[1], 10, 64)
			packets += n
			over += time.Since(applied)
		}
		if i == k {
			break
		}
		rs, st := c.next()
		script := estScript(rs, st, render.Revalidate)
		m := stampRule.FindSubmatch(script)
		if m == nil {
			bn.tb.Fatalf("no stamping rule (meta nfproto vmap @stamp) in the Revalidate script:\n%s", head(script, 60))
		}
		chain = string(m[1])
		script = fmt.Appendf(script, "insert rule inet %s %s counter\n", nftTable, chain)
		if err := applyScript(bn.router.Namespace(), script); err != nil {
			bn.tb.Fatal(err)
		}
		applied = time.Now()
	}
	return packets, over
}

func benchEstablishedBulk(b *testing.B) {
	bn := newBench(b, estPeers)
	if _, err := bn.checkEnforced(50); err != nil {
		b.Fatal(err)
	}
	c := newChurn(b, estPeers)

	bulk, err := startBulkLoad(bn.client.Namespace(), serverAddr)
	if err != nil {
		b.Fatal(err)
	}
	stopBulk := sync.OnceValue(func() error {
		// The stream may be cut (below): its writer is then blocked in Write for good.
		_ = bulk.c.SetWriteDeadline(time.Now())
		return bulk.Stop()
	})
	b.Cleanup(func() { _ = stopBulk() })
	time.Sleep(dpGuard)

	counted, over := countRejudged(bn, c, estCountRound)
	perChange := float64(counted) / float64(estCountRound)
	// One packet per change, or a few more when packets on both CPUs find the stamp stale at
	// once; fewer when the stream stalls across a change (a retransmission timeout).
	if counted < estCountRound/2 {
		b.Fatalf("the stamping chain saw %d packets in %d changes (%v): the stream's packets are not judged again after a change that narrows its destination's rules", counted, estCountRound, over.Round(time.Millisecond))
	}

	s := newSchedule(c, estBulkPairs, estBulkSlice)
	type mark struct {
		t       time.Time
		bytes   int64
		cpu     time.Duration // this process: the stream's two ends and their softirq work
		retrans int64         // segments the client retransmitted
	}
	var start, end []mark
	var longest time.Duration
	measured := false
	for b.Loop() {
		if !measured {
			start, end, longest = run(bn, s, func() mark {
				var ru unix.Rusage
				_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
				return mark{time.Now(), bn.srv.bulk.Load(), time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), tcpRetrans(bn.client.Namespace())}
			})
			measured = true
		}
	}
	var reval, keep, revalEff, keepEff []float64
	var retrans [2]int64 // keep, revalidate
	var seconds [2]float64
	for i := range start {
		bytes := float64(end[i].bytes - start[i].bytes)
		d := end[i].t.Sub(start[i].t).Seconds()
		mbit := bytes * 8 / 1e6 / d
		eff := bytes / (1 << 20) / (end[i].cpu - start[i].cpu).Seconds()
		if s.reval[i] {
			reval, revalEff = append(reval, mbit), append(revalEff, eff)
		} else {
			keep, keepEff = append(keep, mbit), append(keepEff, eff)
		}
		m := boolIndex(s.reval[i])
		retrans[m] += end[i].retrans - start[i].retrans
		seconds[m] += d
	}

	// The stream must still be allowed, and a change that denies it must cut it.
	if moved := rateOver(bn.srv.bulk.Load, 200*time.Millisecond); moved <= 0 {
		b.Fatalf("the stream stalled while its client was still allowed")
	}
	cutRS := c.translate(slices.DeleteFunc(slices.Clone(c.all), func(p *compact.Pod) bool { return p.IP(0) == bn.client.Addr(false) }))
	cutSt := epoch.Next(c.st, &c.rs, &cutRS)
	if err := applyScript(bn.router.Namespace(), estScript(cutRS, cutSt, render.Revalidate)); err != nil {
		b.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // queued bytes drain, retransmissions get dropped
	if after := rateOver(bn.srv.bulk.Load, 500*time.Millisecond); after > 0 {
		b.Fatalf("the stream still moves %.0f B/s after its client left the peer set: established packets are not judged again", after)
	}
	// The client back (a widening change: the epoch stays) lets the stream resume, which also
	// lets it end cleanly.
	if err := applyScript(bn.router.Namespace(), estScript(c.rs, epoch.Next(cutSt, &cutRS, &c.rs), render.Revalidate)); err != nil {
		b.Fatal(err)
	}
	resumed := false
	// The stream is in retransmission backoff by now: its next try may be seconds away.
	for deadline := time.Now().Add(10 * time.Second); !resumed && time.Now().Before(deadline); {
		resumed = rateOver(bn.srv.bulk.Load, 100*time.Millisecond) > 0
	}
	if !resumed {
		b.Fatal("the stream did not resume once its client was allowed again")
	}

	b.Logf("peers=%d, one change every %v; a slice is %d changes; longest apply %v", estPeers, estChange, estBulkSlice, longest.Round(time.Millisecond))
	b.Logf("counting phase: %d packets judged again in %d changes (%.1f per change)", counted, estCountRound, perChange)
	b.Logf("Mbit/s  revalidate %v", round(reval))
	b.Logf("Mbit/s  keep       %v", round(keep))
	b.Logf("MiB per CPU second  revalidate %v", round(revalEff))
	b.Logf("MiB per CPU second  keep       %v", round(keepEff))
	b.Logf("median of per-pair ratios: tput %.3f, per CPU second %.3f", median(ratios(reval, keep)), median(ratios(revalEff, keepEff)))
	b.ReportMetric(median(reval), "Mbit/s")
	b.ReportMetric(median(keep), "base-Mbit/s")
	b.ReportMetric(median(reval)/median(keep), "tput-ratio")
	b.ReportMetric(median(revalEff)/median(keepEff), "per-cpu-ratio")
	b.Logf("client retransmissions: revalidate %.0f/s, keep %.0f/s", float64(retrans[1])/seconds[1], float64(retrans[0])/seconds[0])
	b.ReportMetric(perChange, "rejudged/change")
	b.ReportMetric(float64(retrans[1])/seconds[1], "retrans/s")
	b.ReportMetric(float64(retrans[0])/seconds[0], "base-retrans/s")
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tcpRetrans returns the TCP segments retransmitted in a namespace so far (RetransSegs of
// /proc/net/snmp, which is per network namespace), or -1.
func tcpRetrans(ns string) int64 {
	n := int64(-1)
	_ = netns.Do(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			if i := slices.Index(names, "RetransSegs"); i > 0 && i < len(f) {
				n, _ = strconv.ParseInt(f[i], 10, 64)
			}
		}
		return nil
	})
	return n
}

// The flows' server is a helper process (this test binary again, running
// TestEstablishedFlowSink): both ends of 10,000 connections need 20,000 descriptors, which is the
// hard limit here, and raising a hard limit needs CAP_SYS_RESOURCE, which root in a container may
// not have. The helper listens in the server's namespace, reads every flow into a small buffer
// and answers each line on its stdin with "<bytes read on flows> <flows open>". It exits when its
// stdin closes, which also happens when the benchmark process dies. (Not Pdeathsig: that fires
// when the thread that started the child exits, which a Go thread may do at any time.)
const flowSinkEnv = "FLOCK_PERF_FLOW_SINK" // "<netns> <address:port>"

// TestEstablishedFlowSink is not a test: it is the flows' server of BenchmarkEstablished when
// that starts this binary with flowSinkEnv set, and does nothing otherwise.
func TestEstablishedFlowSink(t *testing.T) {
	arg, ok := os.LookupEnv(flowSinkEnv)
	if !ok {
		t.Skip("the entry point of BenchmarkEstablished's flow sink process, not a test of its own")
	}
	os.Exit(flowSinkMain(arg))
}

func flowSinkMain(arg string) int {
	ns, addr, _ := strings.Cut(arg, " ")
	var ln net.Listener
	if err := netns.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var bytes, open atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				var req [1]byte
				if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != reqLong {
					return
				}
				open.Add(1)
				defer open.Add(-1)
				buf := make([]byte, 256)
				for {
					n, err := c.Read(buf)
					bytes.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Printf("%d %d\n", bytes.Load(), open.Load())
	}
	return 0
}

// flowSink is the running helper, seen from the benchmark.
type flowSink struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startFlowSink(ns string, addr netip.AddrPort) (*flowSink, error) {
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestEstablishedFlowSink$")
	cmd.Env = append(os.Environ(), flowSinkEnv+"="+ns+" "+addr.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &flowSink{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if line, err := s.out.ReadString('\n'); err != nil || line != "ready\n" {
		s.stop()
		return nil, fmt.Errorf("flow sink: %q, %v", line, err)
	}
	return s, nil
}

// counts returns the bytes the sink has read on flows and the flows open.
func (s *flowSink) counts() (bytes, open int64, err error) {
	if _, err := io.WriteString(s.in, "?\n"); err != nil {
		return 0, 0, err
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return 0, 0, err
	}
	_, err = fmt.Sscanf(line, "%d %d", &bytes, &open)
	return bytes, open, err
}

func (s *flowSink) stop() {
	_ = s.in.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// flowLoad is n long-lived connections from one namespace, each sending one message per period,
// spread evenly: a sender goroutine writes to the connections round robin, as many messages as
// are due by the clock whenever it wakes (every 2 ms), with one plain system call per message on
// the connection's descriptor (non-blocking, as the netpoller keeps it), without the netpoller.
type flowLoad struct {
	conns        []net.Conn
	fds          []int
	sent, failed atomic.Int64
	stop         chan struct{}
	done         chan struct{}
}

// dialFlows opens n long-lived flows from namespace ns to dst.
func dialFlows(ns string, dst netip.AddrPort, n int) (*flowLoad, error) {
	l := &flowLoad{}
	err := netns.Do(ns, func() error {
		for range n {
			c, err := net.DialTimeout("tcp4", dst.String(), 2*time.Second)
			if err != nil {
				return fmt.Errorf("flow %d: %w", len(l.conns), err)
			}
			l.conns = append(l.conns, c)
			raw, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				return err
			}
			if err := raw.Control(func(fd uintptr) { l.fds = append(l.fds, int(fd)) }); err != nil {
				return err
			}
			if _, err := c.Write([]byte{reqLong}); err != nil {
				return fmt.Errorf("flow %d: %w", len(l.conns), err)
			}
		}
		return nil
	})
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// start starts sending: each flow one message per period.
func (l *flowLoad) start(period time.Duration) {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	msg := make([]byte, estFlowMsg)
	perSec := float64(len(l.fds)) / period.Seconds()
	go func() {
		defer close(l.done)
		t0 := time.Now()
		var n int64 // messages sent or attempted
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			time.Sleep(2 * time.Millisecond)
			due := int64(time.Since(t0).Seconds() * perSec)
			for ; n < due; n++ {
				if err := unix.Sendto(l.fds[n%int64(len(l.fds))], msg, unix.MSG_DONTWAIT, nil); err != nil {
					l.failed.Add(1)
				} else {
					l.sent.Add(1)
				}
			}
		}
	}()
}

// halt stops sending.
func (l *flowLoad) halt() {
	if l.stop != nil {
		close(l.stop)
		<-l.done
		l.stop = nil
	}
}

// unacked returns the bytes the flows have sent that the server has not acknowledged yet.
func (l *flowLoad) unacked() (int64, error) {
	var sum int64
	for _, fd := range l.fds {
		n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return 0, err
		}
		sum += int64(n)
	}
	return sum, nil
}

// close stops sending and closes every flow.
func (l *flowLoad) close() {
	l.halt()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns, l.fds = nil, nil
}

// flowCPU is one sample of the CPU time that the flows' packets can be charged to.
//
// How the CPU is measured. Forwarding is softirq work, and on this path it runs on the stack of
// the thread that sends the packet: a write on a client socket hands the segment to the veth, the
// backlog is processed when the sender re-enables bottom halves, and the router's forward hook
// (nft), the server's TCP receive and, since the server's route has quickack set, its
// acknowledgement through the router back to the client all run there, inside the write system
// call. The kernel charges that time exactly (the scheduler's runtime, not ticks) to the sending
// thread. The rest runs in the server process (its reads, and packets it handles when they arrive
// while it holds the socket) or in ksoftirqd (work the kernel defers). So bench = this process +
// the sink process + the ksoftirqd threads: exact, and blind to the other processes of a shared
// machine, which is what makes a difference of about 1 % of a core measurable at all. Without
// quickack, the server's acknowledgements would leave from the delayed-acknowledgement timer, on
// whatever task that interrupts (the idle one mostly), where no per-task figure sees them. The nft
// applies (children, accounted when waited for) are reported apart: they are the control plane,
// present in both modes. The machine-wide system, irq and softirq ticks of /proc/stat (machine),
// which count everything but also every other process's system time, are reported as a
// cross-check.
type flowCPU struct {
	t              time.Time
	self, children time.Duration // getrusage, user + system
	sink           time.Duration // the sink process, /proc/<pid>/task/*/schedstat
	ksoftirqd      time.Duration // the ksoftirqd threads, /proc/<pid>/schedstat
	machine        int64         // /proc/stat: system + irq + softirq, in USER_HZ ticks
	retrans        int64         // TCP segments the client retransmitted
}

// userHZ is the unit of /proc/stat.
const userHZ = 100

// ksoftirqdPids finds the per-CPU ksoftirqd threads.
func ksoftirqdPids() []int {
	var pids []int
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range comms {
		comm, err := os.ReadFile(p)
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		pids = append(pids, pid)
	}
	return pids
}

// schedRuntime returns the time on CPU that a schedstat file reports.
func schedRuntime(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	ns, _ := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(ns)
}

func sampleCPU(sinkPid int, ksoft []int, clientNS string) flowCPU {
	s := flowCPU{t: time.Now(), retrans: tcpRetrans(clientNS)}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if unix.Getrusage(unix.RUSAGE_CHILDREN, &ru) == nil {
		s.children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", sinkPid))
	for _, t := range tasks {
		s.sink += schedRuntime(t)
	}
	for _, pid := range ksoft {
		s.ksoftirqd += schedRuntime(fmt.Sprintf("/proc/%d/schedstat", pid))
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq ...
		for _, i := range []int{3, 6, 7} {
			if i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				s.machine += v
			}
		}
	}
	return s
}

// quickAck sets quickack on the IPv4 default route of a namespace: its TCP acknowledges every
// segment at once instead of from the delayed-acknowledgement timer.
func quickAck(ns string) error {
	out, err := exec.Command("ip", "-n", ns, "-4", "route", "show", "default").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route show: %v: %s", err, out)
	}
	route := strings.Fields(strings.TrimSpace(string(out)))
	if len(route) == 0 {
		return fmt.Errorf("no IPv4 default route in %s", ns)
	}
	args := append(append([]string{"-n", ns, "route", "change"}, route...), "quickack", "1")
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func benchEstablishedFlows(b *testing.B) {
	bn := newBench(b, estPeers)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < estFlows+1024 {
		b.Skipf("perf/kernel established flows: skipping, %d open files allowed, need %d (%v)", lim.Cur, estFlows+1024, err)
	}
	if _, err := bn.checkEnforced(50); err != nil {
		b.Fatal(err)
	}
	// The datapath server gives each connection a 256 KiB buffer: the flows get the sink instead,
	// on the same address.
	bn.srv.close()
	srvNS := netnsOf(bn, "server")
	if err := quickAck(srvNS); err != nil {
		b.Fatal(err)
	}
	sink, err := startFlowSink(srvNS, serverAddr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sink.stop)
	c := newChurn(b, estPeers)

	t0 := time.Now()
	flows, err := dialFlows(bn.client.Namespace(), serverAddr, estFlows)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(flows.close) // runs before the sink's stop
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, open, err := sink.counts()
		if err != nil {
			b.Fatal(err)
		}
		if open == estFlows {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d flows reached the server", open, estFlows)
		}
	}
	b.Logf("%d flows open in %v", estFlows, time.Since(t0).Round(time.Millisecond))
	flows.start(estFlowPeriod)
	time.Sleep(estFlowPeriod) // every flow has sent once

	counted, over := countRejudged(bn, c, estCountRound)
	rejudgedPerSec := float64(counted) / over.Seconds()
	msgsPerSec := float64(estFlows) / estFlowPeriod.Seconds()
	if rejudgedPerSec < 0.5*msgsPerSec {
		b.Fatalf("%.0f packets judged again per second for %.0f messages per second: the flows are not judged again after each change", rejudgedPerSec, msgsPerSec)
	}

	s := newSchedule(c, estFlowPairs, estFlowSlice)
	ksoft := ksoftirqdPids()
	sinkPid := sink.cmd.Process.Pid
	var start, end []flowCPU
	var longest time.Duration
	measured := false
	for b.Loop() {
		if !measured {
			start, end, longest = run(bn, s, func() flowCPU { return sampleCPU(sinkPid, ksoft, bn.client.Namespace()) })
			measured = true
		}
	}

	// Every message must have arrived and been acknowledged, on every flow.
	flows.halt()
	time.Sleep(200 * time.Millisecond)
	if failed := flows.failed.Load(); failed > 0 {
		b.Fatalf("%d messages failed to send", failed)
	}
	unacked, err := flows.unacked()
	if err != nil {
		b.Fatal(err)
	}
	got, open, err := sink.counts()
	if err != nil {
		b.Fatal(err)
	}
	if sent := flows.sent.Load(); unacked != 0 || got != sent*estFlowMsg || open != estFlows {
		b.Fatalf("%d messages sent (%d bytes), the server read %d bytes on %d open flows, %d bytes unacknowledged: flows were cut", sent, sent*estFlowMsg, got, open, unacked)
	}

	// Per slice, cores used: bench (this process, the sink, ksoftirqd), applies, machine.
	type slice struct{ bench, apply, machine float64 }
	var reval, keep []slice
	var retrans [2]int64 // keep, revalidate
	var seconds [2]float64
	for i := range start {
		d := end[i].t.Sub(start[i].t).Seconds()
		retrans[boolIndex(s.reval[i])] += end[i].retrans - start[i].retrans
		seconds[boolIndex(s.reval[i])] += d
		sl := slice{
			bench:   (end[i].self - start[i].self + end[i].sink - start[i].sink + end[i].ksoftirqd - start[i].ksoftirqd).Seconds() / d,
			apply:   (end[i].children - start[i].children).Seconds() / d,
			machine: float64(end[i].machine-start[i].machine) / userHZ / d,
		}
		if s.reval[i] {
			reval = append(reval, sl)
		} else {
			keep = append(keep, sl)
		}
	}
	pick := func(xs []slice, f func(slice) float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = f(x)
		}
		return out
	}
	// Slices 2p and 2p+1 are a pair, whichever mode ran first.
	diff := func(f func(slice) float64) []float64 {
		out := make([]float64, len(reval))
		for i := range reval {
			out[i] = f(reval[i]) - f(keep[i])
		}
		return out
	}
	benchOf := func(x slice) float64 { return x.bench }
	applyOf := func(x slice) float64 { return x.apply }
	machineOf := func(x slice) float64 { return x.machine }
	pct := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = math.Round(x*1000) / 10
		}
		return out
	}
	b.Logf("%d flows, one %d-byte message per flow every %v (%.0f messages/s); one change every %v; slices of %d changes; longest apply %v",
		estFlows, estFlowMsg, estFlowPeriod, msgsPerSec, estChange, estFlowSlice, longest.Round(time.Millisecond))
	b.Logf("counting phase: %.0f packets judged again per second (%d in %v)", rejudgedPerSec, counted, over.Round(time.Millisecond))
	b.Logf("%% of a core, bench (this process, sink, ksoftirqd): revalidate %v", pct(pick(reval, benchOf)))
	b.Logf("%% of a core, bench (this process, sink, ksoftirqd): keep       %v", pct(pick(keep, benchOf)))
	b.Logf("%% of a core, nft applies:                           revalidate %v", pct(pick(reval, applyOf)))
	b.Logf("%% of a core, nft applies:                           keep       %v", pct(pick(keep, applyOf)))
	b.Logf("%% of a core, machine system+irq+softirq:            revalidate %v", pct(pick(reval, machineOf)))
	b.Logf("%% of a core, machine system+irq+softirq:            keep       %v", pct(pick(keep, machineOf)))
	b.Logf("per-pair differences, %% of a core: bench %v", pct(diff(benchOf)))
	b.Logf("per-pair differences, %% of a core: applies %v", pct(diff(applyOf)))
	b.Logf("per-pair differences, %% of a core: machine %v", pct(diff(machineOf)))

	b.Logf("client retransmissions: revalidate %.0f/s, keep %.0f/s", float64(retrans[1])/seconds[1], float64(retrans[0])/seconds[0])

	cost := median(diff(benchOf))
	b.ReportMetric(100*cost, "reval-pct-core")
	b.ReportMetric(100*median(pick(reval, benchOf)), "pct-core")
	b.ReportMetric(100*median(pick(keep, benchOf)), "base-pct-core")
	b.ReportMetric(100*median(diff(applyOf)), "apply-pct-core")
	b.ReportMetric(100*median(diff(machineOf)), "machine-pct-core")
	b.ReportMetric(rejudgedPerSec, "rejudged/s")
	b.ReportMetric(cost*1e9/rejudgedPerSec, "ns/rejudged")
	b.ReportMetric(float64(retrans[1])/seconds[1], "retrans/s")
	b.ReportMetric(float64(retrans[0])/seconds[0], "base-retrans/s")
}

// netnsOf returns the network namespace of the bed's pod called name.
func netnsOf(bn *bench, name string) string {
	bn.tb.Helper()
	for _, p := range bn.router.Pods() {
		if p.Name() == name {
			return p.Namespace()
		}
	}
	bn.tb.Fatalf("no pod %q in the bed", name)
	return ""
}
