//go:build linux

package netns_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

var mustAddr = netip.MustParseAddr

// newBed creates a bed and asserts, after the bed's own cleanup, that none of its namespaces is
// left in /var/run/netns. It runs also when the test fails.
func newBed(t *testing.T) *netns.Bed {
	t.Helper()
	b := netns.NewBed(t)
	prefix := b.Prefix()
	// Cleanups run last-in first-out, so this one runs before the Close registered by NewBed; it
	// calls Close itself (idempotent) so the check sees the final state.
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("netns: cleanup: %v", err)
		}
		if left := netns.Leftovers(prefix); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	return b
}

// TestForwardHook builds 2 nodes, 3 pods and an external host (dual-stack), checks full
// reachability without rules, then drops everything in node A's forward hook and checks that
// exactly the flows touching node A's pods break.
func TestForwardHook(t *testing.T) {
	start := time.Now()
	b := newBed(t)
	prefix := b.Prefix()

	a := b.AddNode("a")
	bn := b.AddNode("b")
	a1 := b.AddPod(a, "a1", mustAddr("10.1.0.11"), mustAddr("fd00:1::11"))
	a2 := b.AddPod(a, "a2", mustAddr("10.1.0.12"), mustAddr("fd00:1::12"))
	b1 := b.AddPod(bn, "b1", mustAddr("10.1.1.11"), mustAddr("fd00:1::1:11"))
	ext := b.AddExternal("ext", mustAddr("10.200.0.10"), mustAddr("fd00:200::10"))
	eps := []netns.Endpoint{a1, a2, b1, ext}
	const port = 8080
	for _, e := range eps {
		e.Serve(port)
	}
	t.Logf("topology ready in %v (namespaces: %v)", time.Since(start).Round(time.Millisecond), b.Namespaces())

	fail := func(diff string) {
		t.Helper()
		t.Errorf("reachability mismatch:\n%s", diff)
		t.Log(b.DumpState())
	}

	// 1. No rules: everything reaches everything, and the right endpoint answers.
	t0 := time.Now()
	got := b.ProbeMatrix(port, eps, eps)
	t.Logf("open cluster probed in %v:\n%s", time.Since(t0).Round(time.Millisecond), got)
	if d := got.Diff(got.Expect(func(_, _ netns.Endpoint, _ netns.Kind) bool { return true })); d != "" {
		fail(d)
	}
	for _, from := range eps {
		for _, to := range eps {
			for _, k := range netns.AllKinds {
				if r, ok := got.Result(from, to, k); ok && r.OK && r.Reply != to.Name() {
					t.Errorf("%v answered by %q, want %q", r.Flow, r.Reply, to.Name())
				}
			}
		}
	}

	// 2. Drop everything in node A's forward hook. The counter shows packets really hit it.
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed; skipping the forward-hook part")
	}
	a.MustRun("add table inet t\nadd chain inet t f { type filter hook forward priority 0; policy drop; }\nadd rule inet t f counter\n", "nft", "-f", "-")
	onA := func(e netns.Endpoint) bool {
		p, ok := e.(*netns.Pod)
		return ok && p.Node() == a
	}
	t0 = time.Now()
	got = b.ProbeMatrix(port, eps, eps)
	t.Logf("node A dropping, probed in %v:\n%s", time.Since(t0).Round(time.Millisecond), got)
	want := got.Expect(func(from, to netns.Endpoint, _ netns.Kind) bool { return !onA(from) && !onA(to) })
	if d := got.Diff(want); d != "" {
		fail(d)
	}
	out := a.MustRun("", "nft", "list", "chain", "inet", "t", "f")
	if m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("forward chain on node A counted no packets:\n%s", out)
	}

	// 3. Removing the table restores reachability (nothing else in the bed was changed).
	a.MustRun("", "nft", "delete", "table", "inet", "t")
	got = b.ProbeMatrix(port, eps, eps)
	if d := got.Diff(got.Expect(func(_, _ netns.Endpoint, _ netns.Kind) bool { return true })); d != "" {
		fail(d)
	}

	// 4. Explicit cleanup, then nothing with our prefix may remain.
	if err := b.Close(); err != nil {
		t.Errorf("netns: cleanup: %v", err)
	}
	if left := netns.Leftovers(prefix); len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// TestProbeDetails checks single flows: a closed port is refused (not a timeout), a dropped flow
// times out within ProbeTimeout, and probes refuse destinations outside the test ranges.
func TestProbeDetails(t *testing.T) {
	b := newBed(t)
	n := b.AddNode("n")
	p1 := b.AddPod(n, "p1", mustAddr("10.1.0.1"))
	p2 := b.AddPod(n, "p2", mustAddr("10.1.0.2"), mustAddr("fd00:1::2"))
	p2.Serve(80)

	rs := b.Probe([]netns.Flow{
		{From: p1, To: p2.Addr(false), Proto: "tcp", Port: 80},
		{From: p1, To: p2.Addr(false), Proto: "udp", Port: 80},
		{From: p1, To: p2.Addr(false), Proto: "tcp", Port: 81},
		{From: p1, To: p2.Addr(false), Proto: "udp", Port: 81},
		{From: p1, To: p2.Addr(true), Proto: "tcp", Port: 80},         // p1 has no IPv6
		{From: p1, To: mustAddr("192.0.2.1"), Proto: "tcp", Port: 80}, // outside the test ranges
		{From: p1, To: mustAddr("10.9.9.9"), Proto: "tcp", Port: 80},  // no route on the node
	})
	for i, r := range rs {
		t.Logf("%d %v: ok=%v reply=%q err=%v took=%v", i, r.Flow, r.OK, r.Reply, r.Err, r.Took.Round(time.Millisecond))
	}
	if !rs[0].OK || rs[0].Reply != "p2" || !rs[1].OK || rs[1].Reply != "p2" {
		t.Errorf("tcp/udp to served port failed: %+v %+v", rs[0], rs[1])
	}
	for _, i := range []int{2, 3} {
		if rs[i].OK || !errors.Is(rs[i].Err, syscall.ECONNREFUSED) {
			t.Errorf("flow %v: want connection refused, got %v", rs[i].Flow, rs[i].Err)
		}
	}
	for _, i := range []int{4, 5, 6} {
		if rs[i].OK || rs[i].Err == nil {
			t.Errorf("flow %v: want failure, got ok", rs[i].Flow)
		}
	}
	if rs[6].Took > b.ProbeTimeout+200*time.Millisecond {
		t.Errorf("failed flow took %v, timeout is %v", rs[6].Took, b.ProbeTimeout)
	}
}

// TestDoLeavesNoThreadBehind checks the thread hygiene of Do: after many calls, every thread of
// the process is back in the original network namespace.
func TestDoLeavesNoThreadBehind(t *testing.T) {
	b := newBed(t)
	n := b.AddNode("n")
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	for range 50 {
		if err := n.Do(func() error {
			var err error
			inside, err = os.Readlink("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if inside == self {
		t.Fatalf("Do did not switch namespace (%s)", inside)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && ns != self {
			t.Errorf("thread %s is in %s, want %s", task.Name(), ns, self)
		}
	}
	// A panic inside Do is re-raised in the caller, and the thread still goes home.
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_ = n.Do(func() error { panic("boom") })
	}()
}

// TestValidation checks that the address plan is enforced.
func TestValidation(t *testing.T) {
	if os.Getenv("NETNS_VALIDATION_HELPER") != "" {
		b := netns.NewBed(t)
		n := b.AddNode("n")
		b.AddPod(n, "p", mustAddr(os.Getenv("NETNS_VALIDATION_HELPER")))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// AddPod reports bad addresses with t.Fatal, so check in a child test process.
	for _, bad := range []string{"192.168.1.1", "10.254.0.7", "fd00:254::7", "2001:db8::1"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestValidation$", "-test.v")
		cmd.Env = append(os.Environ(), "NETNS_VALIDATION_HELPER="+bad)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "AddPod") {
			t.Errorf("address %s accepted (err=%v):\n%s", bad, err, out)
		}
	}
}

// TestSignalCleanup runs a child test process that builds a bed and then receives SIGINT, as on
// Ctrl-C during `go test`, and checks that the child removed its namespaces and died of the signal.
func TestSignalCleanup(t *testing.T) {
	if os.Getenv("NETNS_SIGNAL_HELPER") != "" {
		b := netns.NewBed(t)
		n := b.AddNode("n")
		p := b.AddPod(n, "p", mustAddr("10.1.0.1"))
		p.Serve(80)
		os.Stdout.WriteString("PREFIX=" + b.Prefix() + "\n")
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		time.Sleep(10 * time.Second)
		t.Error("still alive after SIGINT")
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalCleanup$", "-test.v")
	cmd.Env = append(os.Environ(), "NETNS_SIGNAL_HELPER=1")
	out, err := cmd.CombinedOutput()
	var prefix string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "PREFIX="); ok {
			prefix = p
		}
	}
	if prefix == "" {
		t.Fatalf("child did not build a bed (err=%v):\n%s", err, out)
	}
	if left := netns.Leftovers(prefix); len(left) > 0 {
		t.Errorf("child left namespaces behind: %v\n%s", left, out)
		_ = netns.Delete(left...) // do not leak them from this test either
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child exited with %v, want death by SIGINT:\n%s", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("child exit status %v, want killed by SIGINT:\n%s", ee, out)
	}
	t.Logf("child output:\n%s", out)
}

// TestMatrixFormat checks rendering and diffing with fake endpoints (no root needed).
func TestMatrixFormat(t *testing.T) {
	x := fakeEP{"x", []netip.Addr{mustAddr("10.0.0.1")}}
	y := fakeEP{"yy", []netip.Addr{mustAddr("10.0.0.2"), mustAddr("fd00::2")}}
	m := (&netns.Matrix{Port: 80, Kinds: netns.AllKinds, From: []netns.Endpoint{x, y}, To: []netns.Endpoint{x, y}}).
		Expect(func(from, to netns.Endpoint, k netns.Kind) bool { return k != netns.UDP4 })
	s := m.String()
	t.Logf("\n%s", s)
	for _, want := range []string{"from\\to  x     yy", "x        ----  .X--", "yy       .X--  ----"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	if d := m.Diff(m); d != "" {
		t.Errorf("self diff: %s", d)
	}
	all := m.Expect(func(_, _ netns.Endpoint, _ netns.Kind) bool { return true })
	d := m.Diff(all)
	t.Logf("\n%s", d)
	if n := strings.Count(d, "expected reachable, observed blocked"); n != 2 {
		t.Errorf("want 2 mismatches, got %d:\n%s", n, d)
	}
	if !strings.Contains(d, "x -> yy udp4 (10.0.0.2:80)") || !strings.Contains(d, "  |  ") {
		t.Errorf("diff lacks detail or side-by-side layout:\n%s", d)
	}
}

type fakeEP struct {
	name  string
	addrs []netip.Addr
}

func (f fakeEP) Name() string        { return f.name }
func (f fakeEP) Namespace() string   { return "none" }
func (f fakeEP) Addrs() []netip.Addr { return f.addrs }
func (f fakeEP) Serve(...uint16)     {}
func (f fakeEP) Addr(v6 bool) netip.Addr {
	for _, a := range f.addrs {
		if a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// TestSweepStale fakes the leftovers of a test process that was killed, and checks that
// SweepStale removes them while leaving alone a live bed and a bed whose owner is unknown.
func TestSweepStale(t *testing.T) {
	live := newBed(t)
	live.AddNode("n")

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pidns, _ := os.Readlink("/proc/self/ns/pid")
	staleTag := fmt.Sprintf("flock-netpol-netns-bed pid=%d start=1 pidns=%s", dead.Process.Pid, pidns)

	// The live bed carries its owner record.
	out, err := exec.Command("ip", "-n", live.Prefix()+"ul", "link", "show", "br0").CombinedOutput()
	if want := fmt.Sprintf("alias flock-netpol-netns-bed pid=%d ", os.Getpid()); err != nil || !strings.Contains(string(out), want) {
		t.Errorf("underlay bridge lacks %q (err %v):\n%s", want, err, out)
	}

	stale := fmt.Sprintf("fnp-%06x-", rand.Uint32()&0xffffff)
	unknown := fmt.Sprintf("fnp-%06x-", rand.Uint32()&0xffffff)
	staleScratch := fmt.Sprintf("fnp-%06x-scratch", rand.Uint32()&0xffffff)
	liveScratch := netns.NewScratch(t)
	var created []string
	t.Cleanup(func() { _ = netns.Delete(created...) })
	mk := func(ns string, cmds ...string) {
		t.Helper()
		created = append(created, ns)
		if err := netns.Add(ns); err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			if out, err := exec.Command("ip", append([]string{"-n", ns}, strings.Fields(c)...)...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", c, err, out)
			}
		}
	}
	// Other test processes sweep too (in New and Scratch), so the fake stale bed must become recognisable
	// atomically: everything else first, the owner alias last.
	mk(stale + "n-a")
	mk(stale+"ul", "link add br0 type bridge")
	if out, err := exec.Command("ip", "-n", stale+"ul", "link", "set", "br0", "alias", staleTag).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	mk(unknown + "n-a")
	mk(unknown+"ul", "link add br0 type bridge") // no owner alias: must survive
	mk(staleScratch)
	if out, err := exec.Command("ip", "-n", staleScratch, "link", "set", "lo", "alias", staleTag).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	swept, err := netns.SweepStale()
	t.Logf("swept %v (err %v)", swept, err)
	if err != nil {
		t.Error(err)
	}
	if left := netns.Leftovers(stale); len(left) > 0 {
		t.Errorf("stale bed not swept: %v", left)
	}
	if left := netns.Leftovers(unknown); len(left) != 2 {
		t.Errorf("bed of unknown owner: left %v, want both namespaces", left)
	}
	if left := netns.Leftovers(live.Prefix()); len(left) != 2 {
		t.Errorf("live bed: left %v, want its 2 namespaces", left)
	}
	if left := netns.Leftovers(staleScratch); len(left) > 0 {
		t.Errorf("stale scratch namespace not swept: %v", left)
	}
	if left := netns.Leftovers(liveScratch); len(left) != 1 {
		t.Errorf("scratch namespace of this process: left %v, want it", left)
	}
}

// TestScratch checks the throwaway namespace of kernel tests: a fresh name each time, an empty
// ruleset, the owner record, and gone after its cleanup.
func TestScratch(t *testing.T) {
	a, cleanup, err := netns.Scratch()
	if errors.Is(err, netns.ErrUnavailable) {
		testenv.Strict(t).Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := netns.NewScratch(t)
	if a == b || !strings.HasPrefix(a, "fnp-") || !strings.HasSuffix(a, "-scratch") {
		t.Errorf("scratch names %q and %q: want two distinct fnp-<random>-scratch", a, b)
	}
	out, err := exec.Command("ip", "-n", a, "link", "show", "lo").CombinedOutput()
	if want := fmt.Sprintf("alias flock-netpol-netns-bed pid=%d ", os.Getpid()); err != nil || !strings.Contains(string(out), want) {
		t.Errorf("scratch loopback lacks %q (err %v):\n%s", want, err, out)
	}
	if err := cleanup(); err != nil {
		t.Fatal(err)
	}
	if left := netns.Leftovers(a); len(left) > 0 {
		t.Errorf("scratch namespace left after cleanup: %v", left)
	}
}
