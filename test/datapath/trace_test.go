//go:build linux

package datapath

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/trace"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// syncBuffer is a bytes.Buffer that the trace writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTraceMapsPacketsToPodsPoliciesAndRules pins what `flock-netpol trace` shows on node-1: an
// allowed connection's packets through x/a's ingress chain to the policy rule that allows them,
// a denied one's to the drop of x/a's chain; and that its table is gone when it ends, also when
// it is cut short.
func TestTraceMapsPacketsToPodsPoliciesAndRules(t *testing.T) {
	c := newCluster(t)
	c.apply(t, []*networkingv1.NetworkPolicy{
		objects.Policy("x/default-deny-ingress", objects.Types(ingressType)),
		objects.Policy("x/allow-b", objects.Ingress(objects.From(objects.PodsLabelled("pod", "b")), objects.Ports(objects.TCPDefault(80)))),
	})
	node := c.nodes[node1]
	client, err := nft.New(nft.Config{Command: []string{"ip", "netns", "exec", node.Namespace(), "nft"}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	xa, xb, ya := c.endpoint("x-a"), c.endpoint("x-b"), c.endpoint("y-a")

	run := func(from, to netns.Endpoint, v6 bool, d time.Duration, cut bool) string {
		t.Helper()
		var out syncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		f := trace.Filter{Src: from.Addr(v6), Dst: to.Addr(v6), Protocol: "tcp", Port: 80}
		go func() { done <- trace.Run(ctx, client, render.DefaultTable, f, d, &out) }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "tracing ") {
			if time.Now().After(deadline) {
				t.Fatalf("the trace did not start: %s", out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.bed.Reachable(from, to.Addr(v6), "tcp", 80)
		if cut {
			cancel() // Ctrl-C
		}
		if err := <-done; err != nil {
			t.Fatalf("trace: %v\n%s", err, out.String())
		}
		if tables, _ := node.Run("", "nft", "list", "tables"); strings.Contains(tables, "flock-netpol-trace") {
			t.Errorf("the trace left its table behind:\n%s", tables)
		}
		return out.String()
	}
	for _, v6 := range []bool{false, true} {
		allowed := run(xb, xa, v6, 3*time.Second, false)
		t.Logf("IPv6 %v, allowed:\n%s", v6, allowed)
		for _, want := range []string{"the connection's destination is pod x/a, isolated for ingress", "allowed by x/allow-b ingress rule 0", "=> ACCEPTED"} {
			if !strings.Contains(allowed, want) {
				t.Errorf("IPv6 %v, allowed connection: no %q in\n%s", v6, want, allowed)
			}
		}
		denied := run(ya, xa, v6, 3*time.Second, false)
		t.Logf("IPv6 %v, denied:\n%s", v6, denied)
		for _, want := range []string{"no ingress rule of the policies isolating x/a matched: dropped", "=> DROPPED"} {
			if !strings.Contains(denied, want) {
				t.Errorf("IPv6 %v, denied connection: no %q in\n%s", v6, want, denied)
			}
		}
		if strings.Contains(denied, "ACCEPTED") {
			t.Errorf("IPv6 %v: a packet of the denied connection was accepted:\n%s", v6, denied)
		}
	}
	// Cut short (Ctrl-C): the table goes with the session.
	run(xb, xa, false, time.Minute, true)
}

// TestTraceTableDiesWithItsSession pins why a killed trace leaves nothing behind: its marking
// table is created with the owner flag by an `nft -i` session, and the kernel deletes it when
// that nft process ends, even by SIGKILL (a killed trace closes the session's input, which ends
// it just the same).
func TestTraceTableDiesWithItsSession(t *testing.T) {
	c := newCluster(t)
	node := c.nodes[node1]
	xa, xb := c.endpoint("x-a"), c.endpoint("x-b")
	table := trace.TableName() + "-killed"
	cmd := exec.Command("ip", "netns", "exec", node.Namespace(), "nft", "-i")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if _, err := in.Write(trace.Script(table, trace.Filter{Src: xb.Addr(false), Dst: xa.Addr(false), Protocol: "tcp", Port: 80})); err != nil {
		t.Fatal(err)
	}
	has := func() bool {
		out, _ := node.Run("", "nft", "list", "tables")
		return strings.Contains(out, table)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !has() {
		if time.Now().After(deadline) {
			t.Fatal("the session never created its table")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for has() {
		if time.Now().After(deadline) {
			t.Fatal("the table outlived its SIGKILLed session")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
