//go:build linux

package nft

// These tests run NetlinkMonitor against the kernel, in a throwaway network namespace, through
// the changes drift detection must tell apart (see internal/controller/drift.go): the agent's own
// applies of a script, and other processes' changes to its table.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// establishedEpochs is a rendered script whose sets have concatenated interval keys
// (`ipv4_addr . mark; flags interval`), the elements nft 1.0.6's monitor cannot print.
const establishedEpochs = "../render/testdata/established-epochs.nft"

// monitorRun is a NetlinkMonitor running in a scratch namespace.
type monitorRun struct {
	ns    string
	netns *os.File
	lines chan string
	done  chan error
	stop  context.CancelFunc
}

// startMonitor starts a NetlinkMonitor with a receive buffer of readBuffer bytes in a new
// namespace, and returns once it receives the namespace's notifications. The monitor calls before
// (when not nil) before it hands on each line.
func startMonitor(t *testing.T, readBuffer int, before func()) *monitorRun {
	t.Helper()
	testenv.RequireKernel(t, "NetlinkMonitor")
	r := &monitorRun{ns: netns.NewScratch(t), lines: make(chan string, 1<<20), done: make(chan error, 1)}
	f, err := os.Open("/var/run/netns/" + r.ns)
	if err != nil {
		t.Fatal(err)
	}
	r.netns = f
	t.Cleanup(func() { f.Close() })
	line := func(l string) {
		if before != nil {
			before()
		}
		r.lines <- l
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- NetlinkMonitor{NetNS: int(f.Fd())}.monitor(ctx, line, readBuffer) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("the monitor did not return after its context ended")
		}
	})
	// Until the monitor has joined the group, changes go unseen: make changes until one shows.
	for i := 0; ; i++ {
		probe := fmt.Sprintf("add table ip probe%d", i)
		r.nft(t, probe)
		if r.waitFor(t, probe, 200*time.Millisecond) {
			return r
		}
		if i == 50 {
			t.Fatal("the monitor saw none of 50 changes")
		}
	}
}

// nft runs nft in the namespace with the script on its standard input.
func (r *monitorRun) nft(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", r.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft %q: %v: %s", script, err, out)
	}
}

// waitFor reads lines until the end of a transaction that contains want, and reports whether
// it came within d.
func (r *monitorRun) waitFor(t *testing.T, want string, d time.Duration) bool {
	t.Helper()
	timeout := time.After(d)
	seen := false
	for {
		select {
		case l := <-r.lines:
			seen = seen || l == want
			if strings.HasPrefix(l, "# new generation") && seen {
				return true
			}
		case err := <-r.done:
			t.Fatalf("the monitor stopped: %v", err)
		case <-timeout:
			return false
		}
	}
}

// transaction returns the lines of the next transaction, its "# new generation" line last.
func (r *monitorRun) transaction(t *testing.T) []string {
	t.Helper()
	var lines []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-r.lines:
			lines = append(lines, l)
			if strings.HasPrefix(l, "# new generation") {
				return lines
			}
		case err := <-r.done:
			t.Fatalf("the monitor stopped: %v; lines so far %q", err, lines)
		case <-timeout:
			t.Fatalf("no end of transaction within 10s; lines so far %q", lines)
		}
	}
}

// whatDriftSees is what drift detection reads of a transaction (batchReader): whether a line is
// about a change to table inet flock-netpol, and the digests the lines carry.
func whatDriftSees(lines []string) (touched bool, digests []string) {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 4 && f[2] == "inet" && f[3] == "flock-netpol" {
			touched = true
			if d, ok := render.Digest([]byte(l)); ok {
				digests = append(digests, d)
			}
		}
	}
	return touched, digests
}

// TestKernelNetlinkMonitorTellsAppliesFromOtherChanges pins the monitor against the kernel
// through the sequence of internal/controller/testdata/monitor-nft-1.0.6.txt: applies of the
// script, each one transaction touching the table with the script's digest in exactly one line;
// incremental updates, which carry the new script's digest the same way; other processes'
// changes to the table (the digest's element deleted, an element deleted from a verdict map, a concatenated
// interval set added and an element deleted from it, whose elements crash `nft monitor` (1.0.6),
// a chain and a map flushed, a rule with an anonymous set added, a rule inserted, the table
// replaced by a script that is not ours, the table deleted), each touching the table without the
// digest; a change to another table, not touching it. The monitor runs throughout, and returns
// promptly when its context ends.
func TestKernelNetlinkMonitorTellsAppliesFromOtherChanges(t *testing.T) {
	r := startMonitor(t, monitorReadBuffer, nil)
	script, err := os.ReadFile(establishedEpochs)
	if err != nil {
		t.Fatal(err)
	}
	digest, ok := render.Digest(script)
	if !ok {
		t.Fatalf("%s has no digest", establishedEpochs)
	}
	const otherDigest = "0123456789abcdef"
	notOurs := bytes.Replace(script, []byte("ruleset "+digest), []byte("ruleset "+otherDigest), 1)

	ours := []string{digest}
	// Incremental updates between the two scripts (render.Diff): the digest's element changes
	// with the elements, its set refilled or the element deleted.
	update := func(from, to []byte, maxRefill int) string {
		a, err := render.ParseTable(from)
		if err != nil {
			t.Fatal(err)
		}
		b, err := render.ParseTable(to)
		if err != nil {
			t.Fatal(err)
		}
		u, err := render.Diff(a, b, render.DiffOptions{Table: render.DefaultTable, MaxShare: 1, MaxRefill: maxRefill})
		if err != nil {
			t.Fatal(err)
		}
		return string(u.Text)
	}
	for _, step := range []struct {
		what    string
		script  string
		touched bool
		digests []string
		want    string // a line the transaction must have
	}{
		{"our apply", string(script), true, ours, "add table inet flock-netpol"},
		{"our apply again", string(script), true, ours, "delete table inet flock-netpol"},
		{"our apply a third time", string(script), true, ours, "add element inet flock-netpol fresh-in-v4 { ... }"},
		{"an update, the digest's set refilled", update(script, notOurs, 0), true, []string{otherDigest},
			`add element inet flock-netpol digest { ... comment "ruleset 0123456789abcdef" }`},
		{"an update, the digest's element deleted and added", update(notOurs, script, -1), true, ours,
			"delete element inet flock-netpol digest { ... }"},
		{"the digest's element deleted", "delete element inet flock-netpol digest { 0x00000000 }", true, nil,
			"delete element inet flock-netpol digest { ... }"},
		{"an element deleted from a verdict map", "delete element inet flock-netpol ingress-pods-v4 { 10.0.1.1 }", true, nil,
			"delete element inet flock-netpol ingress-pods-v4 { ... }"},
		{"a concatenated interval set added", "add set inet flock-netpol ranges { type ipv4_addr . mark; flags interval; elements = { 10.0.1.1 . 0x00005000-0x00007fff, 10.0.1.2 . 0x00001000-0x00040fff } }", true, nil,
			"add element inet flock-netpol ranges { ... }"},
		{"an element deleted from a concatenated interval set", "delete element inet flock-netpol ranges { 10.0.1.1 . 0x00005000-0x00007fff }", true, nil,
			"delete element inet flock-netpol ranges { ... }"},
		{"a pod chain flushed", "flush chain inet flock-netpol pod-in-EN3T6OWG-shop/web-1", true, nil,
			"delete rule inet flock-netpol pod-in-EN3T6OWG-shop/web-1 handle "},
		{"a verdict map flushed", "flush map inet flock-netpol egress-pods-v4", true, nil,
			"delete element inet flock-netpol egress-pods-v4 { ... }"},
		{"a rule with an anonymous set added", "add rule inet flock-netpol filter-forward ip daddr { 10.9.0.1, 10.9.0.2 } drop", true, nil,
			"add rule inet flock-netpol filter-forward ... # handle "},
		{"a rule inserted", "insert rule inet flock-netpol filter-forward accept", true, nil,
			"insert rule inet flock-netpol filter-forward ... # handle "},
		{"another table", "add table ip other", false, nil, "add table ip other"},
		{"a replace that is not ours", string(notOurs), true, []string{otherDigest},
			"delete rule inet flock-netpol filter-forward handle "},
		{"the table deleted", "delete table inet flock-netpol", true, nil, "delete table inet flock-netpol"},
		{"our apply after all that", string(script), true, ours, "add table inet flock-netpol"},
	} {
		r.nft(t, step.script)
		lines := r.transaction(t)
		touched, digests := whatDriftSees(lines)
		if touched != step.touched || !slices.Equal(digests, step.digests) {
			t.Errorf("%s: touched %v, digests %q; want %v, %q; lines:\n%s", step.what, touched, digests, step.touched, step.digests, strings.Join(lines, "\n"))
		}
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, step.want) }) {
			t.Errorf("%s: no line %q...; lines:\n%s", step.what, step.want, strings.Join(lines, "\n"))
		}
		for _, l := range lines {
			if strings.Contains(l, "__set") {
				t.Errorf("%s: a line about an anonymous set, which nft does not print: %q", step.what, l)
			}
		}
		if !strings.HasPrefix(lines[len(lines)-1], "# new generation ") || !strings.HasSuffix(lines[len(lines)-1], " (nft)") {
			t.Errorf("%s: last line %q; want # new generation N by process PID (nft)", step.what, lines[len(lines)-1])
		}
	}

	select {
	case err := <-r.done:
		t.Fatalf("the monitor stopped: %v", err)
	default:
	}
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Monitor after its context ended = %v; want nil", err)
		}
		r.done <- err // for the cleanup
	case <-time.After(2 * time.Second):
		t.Error("the monitor did not return within 2s of its context ending")
	}
}

// TestKernelNetlinkMonitorSeesDestroyedTable pins that a table deleted with NFT_MSG_DESTROYTABLE
// (what `nft destroy table` sends, nft 1.0.8 and later; nft 1.0.6 has no such command, so the
// batch is built here) shows as a deletion, though the kernel notifies it under the DESTROY type.
func TestKernelNetlinkMonitorSeesDestroyedTable(t *testing.T) {
	r := startMonitor(t, monitorReadBuffer, nil)
	r.nft(t, "add table inet flock-netpol")
	r.transaction(t)

	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(r.netns.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A batch: begin, the message, end; the begin and end name the subsystem in nfgenmsg's res_id.
	batch := func(typ uint16) netlink.Message {
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request}, Data: []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES}}
	}
	destroy, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: unix.NFNL_SUBSYS_NFTABLES,
		MessageType: nftMsgDestroyTable,
		Family:      netfilter.ProtoInet,
		Flags:       netlink.Request | netlink.Acknowledge,
	}, []netfilter.Attribute{strAttr(unix.NFTA_TABLE_NAME, "flock-netpol")})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.SendMessages([]netlink.Message{batch(unix.NFNL_MSG_BATCH_BEGIN), destroy, batch(unix.NFNL_MSG_BATCH_END)}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Receive(); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			t.Skipf("this kernel does not know NFT_MSG_DESTROYTABLE (Linux 6.3): %v", err)
		}
		t.Fatalf("destroying the table: %v", err)
	}
	lines := r.transaction(t)
	if !slices.Contains(lines, "delete table inet flock-netpol") {
		t.Errorf("lines %q; want delete table inet flock-netpol", lines)
	}
}

// TestKernelNetlinkMonitorReportsLostEvents pins the overrun: when the reader falls behind and
// the kernel drops notifications, the monitor prints nft's "# ERROR: We lost some netlink
// events!" and goes on, seeing the next transaction whole.
func TestKernelNetlinkMonitorReportsLostEvents(t *testing.T) {
	gate := make(chan struct{})
	var hold atomic.Bool
	r := startMonitor(t, 64<<10, func() {
		if hold.CompareAndSwap(true, false) {
			<-gate // hold the reader until the big transaction has been committed
		}
	})
	// 5,000 elements make some 5,000 notifications, far more than 64 KiB (128 KiB as the kernel
	// counts it) holds.
	var b strings.Builder
	b.WriteString("add table inet flock-netpol\nadd set inet flock-netpol big { type ipv4_addr; }\nadd element inet flock-netpol big {")
	for i := range 5000 {
		fmt.Fprintf(&b, " 10.%d.%d.1,", i/256, i%256)
	}
	b.WriteString(" }\n")
	hold.Store(true) // the next line the monitor hands on waits for the gate
	r.nft(t, "add table ip hold")
	r.nft(t, b.String())
	close(gate)

	var lost bool
	timeout := time.After(20 * time.Second)
	for !lost {
		select {
		case l := <-r.lines:
			lost = l == lostEventsLine
		case err := <-r.done:
			t.Fatalf("the monitor stopped: %v", err)
		case <-timeout:
			t.Fatal("no lost events reported within 20s")
		}
	}
	r.nft(t, "add table ip after")
	if !r.waitFor(t, "add table ip after", 10*time.Second) {
		t.Error("the monitor did not see the change after the overrun")
	}
}
