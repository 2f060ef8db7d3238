//go:build linux

package datapath

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// The cluster every scenario runs on. Pod addresses are 10.1.<ns>.<pod> and fd00:1::<ns>:<pod>,
// with x, y, z = 1, 2, 3 and a, b, c = 1, 2, 3; the external host is outside the pod ranges.
//
//	node-1: x/a 10.1.1.1  x/b 10.1.1.2  y/a 10.1.2.1
//	node-2: x/c 10.1.1.3  y/b 10.1.2.2  z/b 10.1.3.2
//	ext:    10.200.0.10, fd00:200::10 (no node: nothing polices it)
const (
	node1 = "node-1"
	node2 = "node-2"
)

var (
	nodeNames = []string{node1, node2}
	ext4      = netip.MustParseAddr("10.200.0.10")
	ext6      = netip.MustParseAddr("fd00:200::10")
	// probePorts are served by every endpoint and probed in every scenario.
	probePorts = []uint16{80, 81}
)

// Probe timing: a dropped flow costs one timeout, but all flows of a scenario run at once.
const (
	probeTimeout     = 350 * time.Millisecond
	probeConcurrency = 192 // per port; both ports are probed at the same time
)

// podDef is one pod, both as a Kubernetes object and as a namespace of the bed.
type podDef struct {
	ns, name string
	node     string
	// ports are the named container ports of the pod's main container; sidecar are those of a
	// restartable init container. Every pod serves 80 and 81 over TCP and UDP whatever it
	// declares: declarations only give names to numbers, for named-port rules.
	ports, sidecar []corev1.ContainerPort
}

// podDefs lists the pods in display order (node-1 first). The named ports give one name different
// numbers (and protocols) on different pods.
var podDefs = []podDef{
	{ns: "x", name: "a", node: node1, ports: []corev1.ContainerPort{objects.ContainerPort("web", corev1.ProtocolTCP, 80), objects.ContainerPort("alt", corev1.ProtocolUDP, 81)}},
	{ns: "x", name: "b", node: node1, ports: []corev1.ContainerPort{objects.ContainerPort("web", corev1.ProtocolTCP, 81)}},
	{ns: "y", name: "a", node: node1, ports: []corev1.ContainerPort{objects.ContainerPort("web", corev1.ProtocolTCP, 81)}},
	{ns: "x", name: "c", node: node2, ports: []corev1.ContainerPort{objects.ContainerPort("web", corev1.ProtocolTCP, 80), objects.ContainerPort("dns", corev1.ProtocolUDP, 80)}},
	{ns: "y", name: "b", node: node2, ports: []corev1.ContainerPort{objects.ContainerPort("web", corev1.ProtocolTCP, 80)}, sidecar: []corev1.ContainerPort{objects.ContainerPort("alt", corev1.ProtocolUDP, 80)}},
	{ns: "z", name: "b", node: node2, ports: []corev1.ContainerPort{objects.ContainerPort("web", corev1.ProtocolTCP, 81)}},
}

// id is "ns/name"; endpoint is the bed's name for the pod, "ns-name".
func (p *podDef) id() string       { return p.ns + "/" + p.name }
func (p *podDef) endpoint() string { return p.ns + "-" + p.name }

func (p *podDef) addr(v6 bool) netip.Addr {
	nsN := map[string]int{"x": 1, "y": 2, "z": 3}[p.ns]
	podN := int(p.name[0]-'a') + 1
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:1::%d:%d", nsN, podN))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.1.%d.%d", nsN, podN))
}

// object is the pod as the API server would hold it once scheduled and running.
func (p *podDef) object() *corev1.Pod {
	opts := []objects.PodOption{
		objects.Labels("pod", p.name),
		objects.OnNode(p.node),
		objects.Container("main", p.ports...),
		objects.Phase(corev1.PodRunning),
		objects.PodIP(p.addr(false).String()),
		objects.IPs(p.addr(false).String(), p.addr(true).String()),
	}
	if len(p.sidecar) > 0 {
		opts = append(opts, objects.Sidecar("sidecar", p.sidecar...))
	}
	return objects.Pod(p.id(), opts...)
}

// namespaceObjects are x, y and z, each labelled ns=<name> (and with the name label the API
// server adds).
func namespaceObjects() []*corev1.Namespace {
	var out []*corev1.Namespace
	for _, n := range []string{"x", "y", "z"} {
		out = append(out, objects.Namespace(n, "ns", n, "kubernetes.io/metadata.name", n))
	}
	return out
}

// cluster is the bed plus the bookkeeping that maps its endpoints back to pods.
type cluster struct {
	bed   *netns.Bed
	nodes map[string]*netns.Node
	eps   []netns.Endpoint   // every pod (podDefs order), then the external host
	pods  map[string]*podDef // by endpoint name; the external host is absent
}

// newCluster builds the topology once: 2 nodes, 6 pods, 1 external host, all serving 80 and 81.
// It skips (or, with FLOCK_REQUIRE_KERNEL_TESTS, fails) unless root with `ip` and `nft`.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	tb := testenv.RequireKernel(t, "datapath")

	start := time.Now()
	bed := netns.NewBed(tb) // skips itself when namespaces cannot be created; strictTB makes that fail
	prefix := bed.Prefix()
	// Runs before the Close that NewBed registered (cleanups are LIFO); Close is idempotent.
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Errorf("netns: cleanup: %v", err)
		}
		if left := netns.Leftovers(prefix); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	bed.ProbeTimeout = probeTimeout
	bed.ProbeConcurrency = probeConcurrency

	c := &cluster{bed: bed, nodes: map[string]*netns.Node{}, pods: map[string]*podDef{}}
	for _, n := range nodeNames {
		c.nodes[n] = bed.AddNode(n)
	}
	if out, err := c.nodes[node1].Run("", "nft", "list", "ruleset"); err != nil {
		tb.Skipf("datapath: nft does not work inside a network namespace (no nf_tables in this kernel?): %v\n%s", err, out)
	}
	for i := range podDefs {
		p := &podDefs[i]
		c.eps = append(c.eps, bed.AddPod(c.nodes[p.node], p.endpoint(), p.addr(false), p.addr(true)))
		c.pods[p.endpoint()] = p
	}
	c.eps = append(c.eps, bed.AddExternal("ext", ext4, ext6))
	for _, e := range c.eps {
		e.Serve(probePorts...)
	}
	t.Logf("topology ready in %v: %d nodes, %d pods, 1 external host", time.Since(start).Round(time.Millisecond), len(nodeNames), len(podDefs))
	return c
}

// applied is one scenario as programmed into the nodes.
type applied struct {
	rs       map[string]ruleset.RuleSet
	scripts  map[string]string
	problems map[string][]translate.Problem
}

// apply translates and renders the policies for each node, applies each node's script in its
// namespace (the script replaces the table in one transaction), and flushes the nodes' conntrack
// tables so that no connection of an earlier scenario is let through as established.
func (c *cluster) apply(t *testing.T, policies []*networkingv1.NetworkPolicy, cluster ...*v1alpha2.ClusterNetworkPolicy) *applied {
	t.Helper()
	a := translateAll(policies, cluster...)
	for _, n := range nodeNames {
		if out, err := c.nodes[n].Run(a.scripts[n], "nft", "-f", "-"); err != nil {
			a.logScripts(t)
			t.Fatalf("%s: nft rejected the rendered script: %v\n%s", n, err, out)
		}
	}
	for _, n := range nodeNames {
		if err := c.nodes[n].FlushConntrack(); err != nil {
			t.Fatalf("%s: flushing conntrack: %v", n, err)
		}
	}
	for _, n := range nodeNames {
		for _, p := range a.problems[n] {
			// Scenarios hold only valid input.
			t.Errorf("translate for %s reported a problem: %s", n, p)
		}
	}
	return a
}

// translateAll runs the agent's pure stages for every node: translate, then render.
func translateAll(policies []*networkingv1.NetworkPolicy, cluster ...*v1alpha2.ClusterNetworkPolicy) *applied {
	var pods []*corev1.Pod
	for i := range podDefs {
		pods = append(pods, podDefs[i].object())
	}
	a := &applied{rs: map[string]ruleset.RuleSet{}, scripts: map[string]string{}, problems: map[string][]translate.Problem{}}
	for _, n := range nodeNames {
		rs, problems := translate.Translate(translate.Input{Node: n, Policies: policies, Namespaces: namespaceObjects(), Pods: compact.NewPods(pods), ClusterPolicies: cluster})
		a.rs[n], a.scripts[n], a.problems[n] = rs, string(render.Render(rs, render.Options{}).Text), problems
	}
	return a
}

func (a *applied) logScripts(t *testing.T) {
	t.Helper()
	for _, n := range nodeNames {
		t.Logf("script applied on %s (`ip netns exec <node> nft -f -`):\n%s", n, a.scripts[n])
	}
}

// probe probes every port's full matrix (all kinds), the ports concurrently.
func (c *cluster) probe() map[uint16]*netns.Matrix {
	ms := make([]*netns.Matrix, len(probePorts))
	var wg sync.WaitGroup
	for i, port := range probePorts {
		wg.Go(func() { ms[i] = c.bed.ProbeMatrix(port, c.eps, c.eps) })
	}
	wg.Wait()
	out := map[uint16]*netns.Matrix{}
	for i, port := range probePorts {
		out[port] = ms[i]
	}
	return out
}

// nodesCrossed lists the nodes whose forward hook a flow traverses: the source pod's node and, if
// different, the destination pod's node. The external host has none.
func (c *cluster) nodesCrossed(from, to netns.Endpoint) []string {
	var out []string
	if p := c.pods[from.Name()]; p != nil {
		out = append(out, p.node)
	}
	if p := c.pods[to.Name()]; p != nil && !slices.Contains(out, p.node) {
		out = append(out, p.node)
	}
	return out
}

// model is the reference verdict: every node the flow crosses must allow it.
func (c *cluster) model(a *applied, port uint16) func(from, to netns.Endpoint, k netns.Kind) bool {
	return func(from, to netns.Endpoint, k netns.Kind) bool {
		f := ruleset.Flow{Src: from.Addr(k.IPv6()), Dst: to.Addr(k.IPv6()), Protocol: ruleset.Protocol(k.Proto()), Port: port}
		for _, n := range c.nodesCrossed(from, to) {
			rs := a.rs[n]
			if !rs.Allows(f) {
				return false
			}
		}
		return true
	}
}

// conntrackCount reads the number of conntrack entries in a node's namespace.
func conntrackCount(n *netns.Node) (string, error) {
	var s string
	err := n.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		s = strings.TrimSpace(string(b))
		return err
	})
	return s, err
}
