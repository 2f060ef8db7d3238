//go:build linux

package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// The edge tests add pods in a range of their own to node-1, whose pod ranges (for these tests
// only) are 10.1.9.0/24 and fd00:1::9:0/112; the cluster's other pods stay outside every range.
//
//	x-new   10.1.9.1   fd00:1::9:1    node-1; its Pod object exists only in some steps
//	unused  10.1.9.99  fd00:1::9:99   inside the ranges, no pod's
var (
	edgeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.1.9.0/24"), netip.MustParsePrefix("fd00:1::9:0/112")}
	newPod4   = netip.MustParseAddr("10.1.9.1")
	newPod6   = netip.MustParseAddr("fd00:1::9:1")
	unused4   = netip.MustParseAddr("10.1.9.99")
	unused6   = netip.MustParseAddr("fd00:1::9:99")
)

// newPodObject is x-new as the API server holds it once it has its addresses.
func newPodObject() *corev1.Pod {
	return objects.Pod("x/new", objects.Labels("pod", "new"), objects.OnNode(node1), objects.Container("main"),
		objects.Phase(corev1.PodRunning), objects.IPs(newPod4.String(), newPod6.String()))
}

// applyEdges renders and applies every node's script the way the agent would with node-1's pod
// ranges closed: extra pods join podDefs' objects, and antiSpoofing is the flag. bootstrap gives
// node-1 the table a fresh node gets at start (an empty cluster with its ranges) instead.
func (c *cluster) applyEdges(t *testing.T, policies []*networkingv1.NetworkPolicy, extra []*corev1.Pod, antiSpoofing, closeUnknown, bootstrap bool) {
	t.Helper()
	pods := extra
	for i := range podDefs {
		pods = append(pods, podDefs[i].object())
	}
	for _, n := range nodeNames {
		in := translate.Input{Node: n, Policies: policies, Namespaces: namespaceObjects(), Pods: compact.NewPods(pods)}
		if n == node1 {
			if closeUnknown {
				in.PodCIDRs = edgeCIDRs
			}
			if bootstrap {
				in = translate.Input{Node: n, PodCIDRs: edgeCIDRs}
			}
		}
		rs, _ := translate.Translate(in)
		script := render.Render(rs, render.Options{AntiSpoofing: antiSpoofing}).Text
		if out, err := c.nodes[n].Run(string(script), "nft", "-f", "-"); err != nil {
			t.Fatalf("%s: nft rejected the script: %v\n%s\n%s", n, err, out, script)
		}
		if err := c.nodes[n].FlushConntrack(); err != nil {
			t.Fatal(err)
		}
	}
}

// expectFlows probes TCP port 80 in both families for each pair and compares with want.
func (c *cluster) expectFlows(t *testing.T, step string, want map[[2]netns.Endpoint]bool) {
	t.Helper()
	var flows []netns.Flow
	var wants []bool
	for pair, ok := range want {
		for _, v6 := range []bool{false, true} {
			flows = append(flows, netns.Flow{From: pair[0], To: pair[1].Addr(v6), Proto: "tcp", Port: 80})
			wants = append(wants, ok)
		}
	}
	for i, r := range c.bed.Probe(flows) {
		if r.OK != wants[i] {
			t.Errorf("%s: %s: reachable=%v, want %v (%v)", step, r.Flow, r.OK, wants[i], r.Err)
		}
	}
}

// TestUnknownLocalAddressesAreClosed pins the closed pod ranges with real traffic: a pod whose
// network namespace sends and receives before its Pod object has an address is denied both ways,
// as on a fresh node under the bootstrap table; once the address is known its policies apply.
func TestUnknownLocalAddressesAreClosed(t *testing.T) {
	c := newCluster(t)
	xnew := c.bed.AddPod(c.nodes[node1], "x-new", newPod4, newPod6)
	xnew.Serve(probePorts...)
	xa, ya, yb, ext := c.endpoint("x-a"), c.endpoint("y-a"), c.endpoint("y-b"), c.endpoint("ext")
	denyX := []*networkingv1.NetworkPolicy{objects.Policy("x/default-deny", objects.Types(networkingv1.PolicyTypeIngress))}

	// A fresh node: everything from and to the ranges is closed; the rest of the node is not.
	c.applyEdges(t, nil, nil, true, true, true)
	c.expectFlows(t, "bootstrap table", map[[2]netns.Endpoint]bool{
		{xnew, ya}: false, {ya, xnew}: false, {xnew, ext}: false, {ext, xnew}: false, {yb, xnew}: false,
		{xa, ya}: true, {ext, xa}: true,
	})

	// The pod runs, its object has no address yet: unknown, whatever the policies.
	c.applyEdges(t, denyX, nil, true, true, false)
	c.expectFlows(t, "address unknown", map[[2]netns.Endpoint]bool{
		{xnew, ya}: false, {xnew, ext}: false, {ya, xnew}: false, {yb, xnew}: false,
		{ya, xa}: false, {xa, ya}: true, // x's policy as usual
	})

	// Its address is known: x's default-deny isolates it for ingress, egress stays open.
	c.applyEdges(t, denyX, []*corev1.Pod{newPodObject()}, true, true, false)
	c.expectFlows(t, "address known", map[[2]netns.Endpoint]bool{
		{xnew, ya}: true, {xnew, ext}: true, {xnew, yb}: true,
		{ya, xnew}: false, {yb, xnew}: false, {ext, xnew}: false,
	})

	// Without the check the unknown pod is open: the test can tell.
	c.applyEdges(t, denyX, nil, true, false, false)
	c.expectFlows(t, "check off", map[[2]netns.Endpoint]bool{{xnew, ya}: true, {ya, xnew}: true})
}

// TestForgedSourcesAreDropped pins anti-spoofing with real traffic: x-new sends UDP to the external
// host from its own address and from addresses it does not own (an unused one of its range,
// another pod's, the node's), IPv4 and IPv6. The external host counts what arrives by source.
// Without anti-spoofing the forged datagrams arrive (except the node's IPv4 address, which the
// kernel itself drops as a martian), so the test can tell.
func TestForgedSourcesAreDropped(t *testing.T) {
	c := newCluster(t)
	xnew := c.bed.AddPod(c.nodes[node1], "x-new", newPod4, newPod6)
	host := c.bed.Externals()[0]
	nodeAddrs := c.nodes[node1].UnderlayAddrs()
	sources := []struct {
		name string
		addr netip.Addr
		own  bool
	}{
		{"own v4", newPod4, true}, {"own v6", newPod6, true},
		{"unused v4", unused4, false}, {"unused v6", unused6, false},
		{"other pod v4", podDefs[0].addr(false), false}, {"other pod v6", podDefs[0].addr(true), false},
		{"node v4", nodeAddrs[0], false}, {"node v6", nodeAddrs[1], false},
	}
	// The forged addresses become the pod's own, as a pod with CAP_NET_ADMIN (or a raw socket)
	// could make them; the node knows nothing of it.
	for _, s := range sources[2:] {
		args := []string{"addr", "add", netip.PrefixFrom(s.addr, s.addr.BitLen()).String(), "dev", netns.EndpointIf}
		if s.addr.Is6() {
			args = append([]string{"-6"}, append(args, "nodad")...)
		}
		xnew.MustRun("", "ip", args...)
	}
	// Recreated for each round: it starts with zero counters.
	observer := "add table inet observe\ndelete table inet observe\nadd table inet observe\nadd chain inet observe in { type filter hook input priority -300; }\n"
	for i, s := range sources {
		observer += fmt.Sprintf("add rule inet observe in %s saddr %s udp dport 81 counter comment \"src%d\"\n", ipFamily(s.addr), s.addr, i)
	}

	for _, antiSpoofing := range []bool{false, true} {
		c.applyEdges(t, nil, []*corev1.Pod{newPodObject()}, antiSpoofing, false, false)
		host.MustRun(observer, "nft", "-f", "-")
		for _, s := range sources {
			dst := host.Addr(s.addr.Is6())
			if err := xnew.Do(func() error { return sendUDP(s.addr, netip.AddrPortFrom(dst, 81)) }); err != nil {
				t.Fatalf("sending from %s: %v", s.addr, err)
			}
		}
		// Datagrams take a moment (and IPv6 a neighbour resolution): wait until the pod's own
		// ones have arrived, then read once more for the rest.
		var counts map[int]int
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			counts = arrivals(t, host.MustRun("", "nft", "list", "chain", "inet", "observe", "in"))
			if (counts[0] > 0 && counts[1] > 0) || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
		counts = arrivals(t, host.MustRun("", "nft", "list", "chain", "inet", "observe", "in"))
		for i, s := range sources {
			arrived := counts[i] > 0
			switch {
			case s.own && !arrived:
				t.Errorf("anti-spoofing=%v: %s (%s): the pod's own address did not arrive", antiSpoofing, s.name, s.addr)
			case !s.own && antiSpoofing && arrived:
				t.Errorf("anti-spoofing on: %s (%s): a forged source arrived", s.name, s.addr)
			case !s.own && !antiSpoofing && !arrived && s.name != "node v4":
				t.Errorf("anti-spoofing off: %s (%s) did not arrive either: the test cannot tell", s.name, s.addr)
			}
		}
	}
}

func ipFamily(a netip.Addr) string {
	if a.Is4() {
		return "ip"
	}
	return "ip6"
}

// sendUDP sends three datagrams from src to dst (three, so that one lost to neighbour discovery
// does not matter).
func sendUDP(src netip.Addr, dst netip.AddrPort) error {
	conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return err
	}
	defer conn.Close()
	for range 3 {
		if _, err := conn.Write([]byte("forged?")); err != nil {
			return err
		}
	}
	return nil
}

var counterLine = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "src(\d+)"`)

// arrivals reads the observer's counters, by source index.
func arrivals(t *testing.T, listing string) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, m := range counterLine.FindAllStringSubmatch(listing, -1) {
		n, _ := strconv.Atoi(m[1])
		i, _ := strconv.Atoi(m[2])
		out[i] = n
	}
	return out
}
