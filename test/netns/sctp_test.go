//go:build linux

package netns_test

import (
	"os/exec"
	"regexp"
	"testing"

	"github.com/flock-net/flock-netpol/test/netns"
)

// TestSCTP checks the SCTP probe on a kernel that may have no SCTP sockets: INIT and INIT ACK
// over raw sockets, answered by the right endpoint, refused by nothing but a timeout on a port
// that is not served; then a conntrack-based nft rule on node A (the kind of match the agent
// renders: `ct reply proto-src`) drops SCTP to one port and nothing else.
func TestSCTP(t *testing.T) {
	b := newBed(t)
	a, bn := b.AddNode("a"), b.AddNode("b")
	a1 := b.AddPod(a, "a1", mustAddr("10.1.0.11"), mustAddr("fd00:1::11"))
	b1 := b.AddPod(bn, "b1", mustAddr("10.1.1.11"), mustAddr("fd00:1::1:11"))
	ext := b.AddExternal("ext", mustAddr("10.200.0.10"), mustAddr("fd00:200::10"))
	eps := []netns.Endpoint{a1, b1, ext}
	for _, e := range []interface{ ServeSCTP(...uint16) }{a1, b1, ext} {
		e.ServeSCTP(9003, 9005)
	}
	for _, e := range eps {
		e.Serve(9003)
	}
	sctp := []netns.Kind{netns.SCTP4, netns.SCTP6}
	all := func(ok bool) func(_, _ netns.Endpoint, _ netns.Kind) bool {
		return func(_, _ netns.Endpoint, _ netns.Kind) bool { return ok }
	}

	got := b.ProbeMatrix(9003, eps, eps, sctp...)
	t.Logf("no rules:\n%s", got)
	if d := got.Diff(got.Expect(all(true))); d != "" {
		t.Errorf("SCTP without rules:\n%s", d)
	}
	for _, bad := range got.Misrouted() {
		t.Error(bad)
	}
	if got := b.ProbeMatrix(9004, eps, eps, sctp...); got.Diff(got.Expect(all(false))) != "" {
		t.Errorf("SCTP to a port nobody serves got an answer:\n%s", got)
	}

	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed; skipping the rule part")
	}
	a.MustRun("add table inet t\nadd chain inet t f { type filter hook forward priority 0; }\n"+
		"add rule inet t f ct state new meta l4proto sctp ct reply proto-src 9003 counter drop\n", "nft", "-f", "-")
	onA := func(e netns.Endpoint) bool { return e == a1 }
	got = b.ProbeMatrix(9003, eps, eps, sctp...)
	if d := got.Diff(got.Expect(func(from, to netns.Endpoint, _ netns.Kind) bool { return !onA(from) && !onA(to) })); d != "" {
		t.Errorf("SCTP 9003 with node A dropping it:\n%s", d)
	}
	if got := b.ProbeMatrix(9005, eps, eps, sctp...); got.Diff(got.Expect(all(true))) != "" {
		t.Errorf("SCTP 9005 with node A dropping SCTP 9003 only:\n%s", got)
	}
	if got := b.ProbeMatrix(9003, eps, eps, netns.TCP4, netns.TCP6); got.Diff(got.Expect(all(true))) != "" {
		t.Errorf("TCP 9003 with node A dropping SCTP 9003 only:\n%s", got)
	}
	out := a.MustRun("", "nft", "list", "chain", "inet", "t", "f")
	if m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("the SCTP rule on node A counted no packets:\n%s", out)
	}
}

// TestHostNet checks host-network endpoints: they answer in their node's namespace, so dropping
// everything in node A's forward hook cuts a pod of A from the host network of node B but not from
// its own node's.
func TestHostNet(t *testing.T) {
	b := newBed(t)
	a, bn := b.AddNode("a"), b.AddNode("b")
	a1 := b.AddPod(a, "a1", mustAddr("10.1.0.11"), mustAddr("fd00:1::11"))
	ha, hb := b.AddHostNet(a, "host-a"), b.AddHostNet(bn, "host-b")
	eps := []netns.Endpoint{a1, ha, hb}
	for _, e := range eps {
		e.Serve(80)
	}
	got := b.ProbeMatrix(80, eps, eps)
	if d := got.Diff(got.Expect(func(_, _ netns.Endpoint, _ netns.Kind) bool { return true })); d != "" {
		t.Errorf("host network without rules:\n%s", d)
	}
	for _, bad := range got.Misrouted() {
		t.Error(bad)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed; skipping the rule part")
	}
	a.MustRun("add table inet t\nadd chain inet t f { type filter hook forward priority 0; policy drop; }\n", "nft", "-f", "-")
	got = b.ProbeMatrix(80, eps, eps)
	cut := func(from, to netns.Endpoint) bool { return (from == a1 && to == hb) || (from == hb && to == a1) }
	if d := got.Diff(got.Expect(func(from, to netns.Endpoint, _ netns.Kind) bool { return !cut(from, to) })); d != "" {
		t.Errorf("host network with node A's forward hook dropping:\n%s", d)
	}
}
