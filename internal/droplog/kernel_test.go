//go:build linux

package droplog

// These tests run the Reader against the kernel's NFLOG, each in a throwaway network namespace
// with a small table whose output chain logs (and drops) UDP packets the test sends over the
// namespace's loopback, with the prefixes and group the renderer uses. Nothing leaves the
// namespace. They need root, ip and nft (testenv.RequireKernel), and skip without them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

const testGroup = 100

// kernelNS creates a scratch namespace (deleted when t ends) with its loopback up and rules
// installed, and returns its name.
func kernelNS(t *testing.T, rules string) string {
	t.Helper()
	tb := testenv.RequireKernel(t, "droplog kernel test")
	ns := netns.NewScratch(tb)
	inNS(t, ns, "", "ip", "link", "set", "lo", "up")
	inNS(t, ns, rules, "nft", "-f", "-")
	return ns
}

// inNS runs argv inside the namespace with `ip netns exec`, feeding it stdin.
func inNS(t *testing.T, ns, stdin string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", ns, strings.Join(argv, " "), err, out)
	}
}

// openIn opens a Reader for testGroup in the namespace.
func openIn(t *testing.T, ns string) (*Reader, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Open(testGroup, int(f.Fd()))
}

// udpSockets opens, inside the namespace, one UDP socket per source port, connected to dst. The
// sockets stay in the namespace once opened; t closes them when it ends.
func udpSockets(t *testing.T, ns string, dst netip.AddrPort, srcPorts ...uint16) []*net.UDPConn {
	t.Helper()
	var conns []*net.UDPConn
	err := netns.Do(ns, func() error {
		for _, p := range srcPorts {
			c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.Addr(), p)), net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	for _, c := range conns {
		t.Cleanup(func() { c.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// send writes n datagrams on c. The rules drop them on output, so each write fails with EPERM,
// which is expected; the kernel logged the packet before it dropped it.
func send(c *net.UDPConn, n int) {
	for range n {
		_, _ = c.Write([]byte("x"))
	}
}

// collector is the logger and stats of a running Reader: the fields of each log line, and the
// counts by kind.
type collector struct {
	mu     sync.Mutex
	lines  []map[string]any
	counts map[string]int
}

func (c *collector) logLine(obj string) {
	var m map[string]any
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		m = map[string]any{"unparsable": obj}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, m)
}

func (c *collector) stat(kind string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[kind] += n
}

func (c *collector) snapshot() ([]map[string]any, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := map[string]int{}
	for k, v := range c.counts {
		counts[k] = v
	}
	return slices.Clone(c.lines), counts
}

// run starts r.Run with a collector; stop cancels it and fails t unless Run returns nil promptly.
func run(t *testing.T, r *Reader, res Resolver) (c *collector, stop func()) {
	t.Helper()
	c = &collector{counts: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, res, funcr.NewJSON(c.logLine, funcr.Options{}), c.stat) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after its context ended, want nil", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return within 2s of its context ending")
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// waitFor polls until cond holds or d passes, and reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// waitQuiet waits until the collector's counts have not changed for quiet (at most d), and
// returns them.
func waitQuiet(c *collector, quiet, d time.Duration) map[string]int {
	_, last := c.snapshot()
	changed := time.Now()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, now := c.snapshot()
		if fmt.Sprint(now) != fmt.Sprint(last) {
			last, changed = now, time.Now()
		} else if time.Since(changed) >= quiet {
			break
		}
	}
	return last
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// loResolver: 127.0.0.1 is a pod isolated for ingress; ::1 one audited for egress.
func loResolver() Resolver {
	return &fakeResolver{
		pods: map[netip.Addr]string{lo4: "t/lo4", lo6: "t/lo6"},
		isolated: map[isoKey][]string{
			{lo4, false, false}: {"t/deny", "t/web"},
			{lo6, true, true}:   {"t/audit"},
		},
	}
}

// TestKernelLoggedPacketsBecomeEvents: exactly the packets the rules log arrive, each as one
// line with its 5-tuple, verdict and direction from the prefix, and the pod and policies from
// the resolver.
func TestKernelLoggedPacketsBecomeEvents(t *testing.T) {
	ns := kernelNS(t, `table inet t {
	chain out {
		type filter hook output priority 0; policy accept;
		udp dport 9999 log prefix "fnp drop in" group 100 snaplen 128 drop
		udp dport 9998 log prefix "fnp audit out" group 100 snaplen 128 accept
	}
}
`)
	r, err := openIn(t, ns)
	if err != nil {
		t.Fatal(err)
	}
	c, stop := run(t, r, loResolver())

	dropped := udpSockets(t, ns, netip.AddrPortFrom(lo4, 9999), 40001, 40002, 40003)
	audited := udpSockets(t, ns, netip.AddrPortFrom(lo6, 9998), 40004)
	unlogged := udpSockets(t, ns, netip.AddrPortFrom(lo4, 9997), 40005)
	for _, s := range slices.Concat(dropped, audited, unlogged) {
		send(s, 1)
	}
	if !waitFor(5*time.Second, func() bool { l, _ := c.snapshot(); return len(l) >= 4 }) {
		l, n := c.snapshot()
		t.Fatalf("%d lines within 5s, want 4: %v (counts %v)", len(l), l, n)
	}
	waitQuiet(c, 300*time.Millisecond, 2*time.Second) // nothing more arrives
	stop()

	lines, counts := c.snapshot()
	slices.SortFunc(lines, func(a, b map[string]any) int { return strings.Compare(fmt.Sprint(a["src"]), fmt.Sprint(b["src"])) })
	drop := func(sport int) map[string]any {
		return map[string]any{
			"msg": "connection dropped", "direction": "ingress", "protocol": "udp",
			"src": fmt.Sprintf("127.0.0.1:%d", sport), "dst": "127.0.0.1:9999", "srcPod": "t/lo4", "dstPod": "t/lo4",
			"pod": "t/lo4", "policies": "t/deny, t/web", "reason": "no ingress rule of t/deny, t/web matched",
		}
	}
	want := []map[string]any{drop(40001), drop(40002), drop(40003), {
		"msg": "connection would be dropped (audit)", "direction": "egress", "protocol": "udp",
		"src": "[::1]:40004", "dst": "[::1]:9998", "srcPod": "t/lo6", "dstPod": "t/lo6",
		"pod": "t/lo6", "policies": "t/audit", "reason": "no egress rule of t/audit matched (audit mode: the packet was accepted)",
	}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%v", len(lines), len(want), lines)
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %#v, want %#v", i, k, lines[i][k], v)
			}
		}
	}
	if fmt.Sprint(counts) != fmt.Sprint(map[string]int{StatAudit: 1, StatDrop: 3}) {
		t.Errorf("counts %v, want 3 drop and 1 audit", counts)
	}
}

// TestKernelOneReaderPerGroup: a second socket cannot bind a group bound in the same namespace
// (the kernel says EPERM), and can once the first Reader is closed.
func TestKernelOneReaderPerGroup(t *testing.T) {
	ns := kernelNS(t, "")
	r1, err := openIn(t, ns)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := openIn(t, ns)
	if err == nil {
		r2.Close()
		t.Fatal("a second Open of the group succeeded")
	}
	if !errors.Is(err, syscall.EPERM) {
		t.Errorf("second Open: %v, want EPERM", err)
	}
	t.Logf("second Open: %v", err)
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	r3, err := openIn(t, ns)
	if err != nil {
		t.Fatalf("Open after the first Reader closed: %v", err)
	}
	r3.Close()
}

// TestKernelBurstIsRateLimitedAndMemoryBounded: 10,000 denied packets in a burst, logged through
// the renderer's kind of limit, produce no more lines than the limit lets through, and leave the
// heap as it was.
func TestKernelBurstIsRateLimitedAndMemoryBounded(t *testing.T) {
	const (
		packets = 10000
		rate    = 50  // per second
		burst   = 100 // packets
	)
	ns := kernelNS(t, fmt.Sprintf(`table inet t {
	chain out {
		type filter hook output priority 0; policy accept;
		udp dport 9999 limit rate %d/second burst %d packets log prefix "fnp drop in" group 100 snaplen 128
		udp dport 9999 drop
	}
}
`, rate, burst))
	r, err := openIn(t, ns)
	if err != nil {
		t.Fatal(err)
	}
	s := udpSockets(t, ns, netip.AddrPortFrom(lo4, 9999), 40001)[0]
	c, stop := run(t, r, loResolver())
	before := heapInuse()

	start := time.Now()
	send(s, packets)
	elapsed := time.Since(start)
	counts := waitQuiet(c, 500*time.Millisecond, 10*time.Second)
	after := heapInuse()
	stop()

	// nft's limit lets the burst through, then rate per second (Linux 6.18: 102 lines for 10,000
	// packets in 56 ms).
	limit := burst + int(float64(rate)*elapsed.Seconds()) + 10
	t.Logf("%d packets sent in %v: %v; heap in use %d KiB before, %d KiB after", packets, elapsed, counts, before>>10, after>>10)
	if counts[StatDrop] > limit || counts[StatDrop] < burst {
		t.Errorf("%d lines, want between %d (the burst) and %d (burst + rate*elapsed + slack)", counts[StatDrop], burst, limit)
	}
	if counts[StatLost] != 0 || counts[StatOverrun] != 0 || counts[StatUnparsed] != 0 {
		t.Errorf("counts %v: nothing should be lost or unparsed", counts)
	}
	if after > before+4<<20 {
		t.Errorf("heap in use grew from %d KiB to %d KiB over the burst", before>>10, after>>10)
	}
}

// TestKernelOverrunIsCountedAndReadPast: when the socket's buffer overflows (the reader is not
// reading), the kernel reports ENOBUFS and drops messages; Run counts the overrun, keeps reading,
// and counts every lost packet from the sequence numbers: drops seen + lost = packets logged.
func TestKernelOverrunIsCountedAndReadPast(t *testing.T) {
	const packets = 5000
	ns := kernelNS(t, `table inet t {
	chain out {
		type filter hook output priority 0; policy accept;
		udp dport 9999 log prefix "fnp drop in" group 100 snaplen 128 drop
	}
}
`)
	r, err := openIn(t, ns)
	if err != nil {
		t.Fatal(err)
	}
	// A small buffer, so that a few thousand packets overflow it.
	if err := nft.SetReadBuffer(r.conn, 16<<10); err != nil {
		t.Fatal(err)
	}
	socks := udpSockets(t, ns, netip.AddrPortFrom(lo4, 9999), 40001, 40002)
	before := heapInuse()
	send(socks[0], packets) // nobody reads yet
	time.Sleep(300 * time.Millisecond)

	c, stop := run(t, r, loResolver())
	if !waitFor(5*time.Second, func() bool { _, n := c.snapshot(); return n[StatOverrun] > 0 }) {
		_, n := c.snapshot()
		t.Fatalf("no overrun reported: %v", n)
	}
	waitQuiet(c, 300*time.Millisecond, 5*time.Second)
	// The packets lost last show as lost only when a later message reveals the gap: send one.
	send(socks[1], 1)
	total := packets + 1
	if !waitFor(5*time.Second, func() bool { _, n := c.snapshot(); return n[StatDrop]+n[StatLost] >= total }) {
		_, n := c.snapshot()
		t.Fatalf("drop + lost = %d, want %d: %v", n[StatDrop]+n[StatLost], total, n)
	}
	counts := waitQuiet(c, 300*time.Millisecond, 2*time.Second)
	after := heapInuse()
	all, _ := c.snapshot()
	stop() // also checks that Run was still running, and returns nil

	var lines []map[string]any
	overrunLines := 0
	for _, l := range all {
		switch l["msg"] {
		case "connection dropped":
			lines = append(lines, l)
		case "NFLOG receive buffer overrun: logged packets were lost":
			overrunLines++
		default:
			t.Errorf("unexpected line %v", l)
		}
	}
	if overrunLines != 1 {
		t.Errorf("%d lines about the overrun, want 1 (at most one a minute)", overrunLines)
	}

	t.Logf("counts %v; heap in use %d KiB before, %d KiB after", counts, before>>10, after>>10)
	if counts[StatDrop]+counts[StatLost] != total || counts[StatLost] == 0 || counts[StatUnparsed] != 0 {
		t.Errorf("counts %v: want drop + lost = %d, some lost, none unparsed", counts, total)
	}
	if len(lines) != counts[StatDrop] {
		t.Errorf("%d lines logged for %d drops", len(lines), counts[StatDrop])
	}
	if last := lines[len(lines)-1]; last["src"] != "127.0.0.1:40002" {
		t.Errorf("the packet sent after the overrun is not the last line: %v", last)
	}
	if after > before+4<<20 {
		t.Errorf("heap in use grew from %d KiB to %d KiB", before>>10, after>>10)
	}
}
