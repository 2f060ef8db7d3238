//go:build linux

package netns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Interface names used inside the namespaces.
const (
	// UnderlayIf is a node's interface towards the underlay bridge.
	UnderlayIf = "ul0"
	// EndpointIf is a pod's or external host's only interface.
	EndpointIf = "eth0"
)

// nsBase is what every object of the bed has: a short name and a network namespace.
type nsBase struct {
	bed   *Bed
	name  string
	netns string
}

// Name is the short name given to Add*, e.g. "a1".
func (n *nsBase) Name() string { return n.name }

// Namespace is the network namespace name, usable as `ip netns exec <Namespace()> ...` or
// `ip -n <Namespace()> ...`.
func (n *nsBase) Namespace() string { return n.netns }

// Run runs a command inside the namespace through `ip netns exec` and returns its combined output.
// stdin, if non-empty, is fed to the command. Example: node.Run(script, "nft", "-f", "-").
func (n *nsBase) Run(stdin string, name string, args ...string) (string, error) {
	return run(stdin, append([]string{"ip", "netns", "exec", n.netns, name}, args...)...)
}

// MustRun is Run that fails the test (t.Fatal) on error. Call it from the test goroutine.
func (n *nsBase) MustRun(stdin string, name string, args ...string) string {
	if n.bed.t != nil {
		n.bed.t.Helper()
	}
	out, err := n.Run(stdin, name, args...)
	if err != nil {
		n.bed.fatal(err)
	}
	return out
}

// Do runs fn in-process on a thread inside this namespace; see the package-level Do.
func (n *nsBase) Do(fn func() error) error { return Do(n.netns, fn) }

// Node is a Kubernetes node: a namespace that routes for its pods, with forwarding enabled. Put the
// policy agent's nftables rules here.
type Node struct {
	nsBase
	member *member
	pods   []*Pod
}

func (n *Node) String() string { return "node " + n.name }

// UnderlayAddrs are the node's IPv4 and IPv6 addresses on the underlay (interface UnderlayIf).
func (n *Node) UnderlayAddrs() []netip.Addr { return []netip.Addr{n.member.ul4, n.member.ul6} }

// Pods returns the node's pods in creation order.
func (n *Node) Pods() []*Pod {
	n.bed.mu.Lock()
	defer n.bed.mu.Unlock()
	return slices.Clone(n.pods)
}

// Endpoint is something that has addresses and can send and receive traffic: a *Pod or a *Host.
type Endpoint interface {
	Name() string
	Namespace() string
	// Addrs returns the endpoint's own addresses (not underlay addresses), in the order given.
	Addrs() []netip.Addr
	// Addr returns the endpoint's first IPv4 (v6=false) or IPv6 address, or the zero Addr.
	Addr(v6 bool) netip.Addr
	// Serve starts TCP and UDP servers on the given ports (see the method on Pod and Host).
	Serve(ports ...uint16)
}

// endpoint is the part shared by pods and external hosts.
type endpoint struct {
	nsBase
	addrs []netip.Addr
}

func (e *endpoint) Addrs() []netip.Addr { return slices.Clone(e.addrs) }

func (e *endpoint) Addr(v6 bool) netip.Addr {
	for _, a := range e.addrs {
		if a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// Pod is a pod: a namespace attached to its node by a routed veth pair.
type Pod struct {
	endpoint
	node   *Node
	nodeIf string
}

// Node is the node the pod runs on.
func (p *Pod) Node() *Node { return p.node }

// NodeIf is the name of the pod's veth end inside the node namespace (like Calico's cali*
// interfaces), e.g. for iifname/oifname matches in rules.
func (p *Pod) NodeIf() string { return p.nodeIf }

// Host is an external (non-pod) host attached to the underlay, reachable from every node and pod.
type Host struct {
	endpoint
	member *member
}

// NewNode creates a node namespace and connects it to the underlay. Routes to pods and external
// hosts that already exist are installed, so nodes, pods and hosts may be added in any order.
func (b *Bed) NewNode(name string) (*Node, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.addNode(name)
	if err != nil {
		return nil, fmt.Errorf("netns: AddNode(%q): %w", name, err)
	}
	return n, nil
}

// AddNode is NewNode that fails the test on error.
func (b *Bed) AddNode(name string) *Node {
	if b.t != nil {
		b.t.Helper()
	}
	n, err := b.NewNode(name)
	if err != nil {
		b.fatal(err)
	}
	return n
}

func (b *Bed) addNode(name string) (*Node, error) {
	if err := b.claimName(name); err != nil {
		return nil, err
	}
	n := &Node{nsBase: nsBase{bed: b, name: name, netns: b.prefix + "n-" + name}}
	if err := b.createNS(n.netns, roleNode); err != nil {
		return nil, err
	}
	m, err := b.joinUnderlay(n.netns, "n-"+name, UnderlayIf, nil, func() []netip.Addr {
		var out []netip.Addr
		for _, p := range n.pods {
			out = append(out, p.addrs...)
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	n.member = m
	b.nodes = append(b.nodes, n)
	return n, nil
}

// NewPod creates a pod on node with the given addresses (one IPv4 and/or one IPv6 is typical),
// and installs the routes that make it reachable from everywhere in the bed.
func (b *Bed) NewPod(node *Node, name string, addrs ...netip.Addr) (*Pod, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, err := b.addPod(node, name, addrs)
	if err != nil {
		return nil, fmt.Errorf("netns: AddPod(%q): %w", name, err)
	}
	return p, nil
}

// AddPod is NewPod that fails the test on error.
func (b *Bed) AddPod(node *Node, name string, addrs ...netip.Addr) *Pod {
	if b.t != nil {
		b.t.Helper()
	}
	p, err := b.NewPod(node, name, addrs...)
	if err != nil {
		b.fatal(err)
	}
	return p
}

func (b *Bed) addPod(node *Node, name string, addrs []netip.Addr) (*Pod, error) {
	if node == nil || node.bed != b {
		return nil, fmt.Errorf("node does not belong to this bed")
	}
	if err := b.claimName(name); err != nil {
		return nil, err
	}
	addrs, err := b.claimAddrs(name, addrs)
	if err != nil {
		return nil, err
	}
	p := &Pod{
		endpoint: endpoint{nsBase: nsBase{bed: b, name: name, netns: b.prefix + "p-" + name}, addrs: addrs},
		node:     node,
		nodeIf:   ifName("v-", name, len(node.pods)),
	}
	if err := b.createNS(p.netns, roleEndpoint); err != nil {
		return nil, err
	}

	// Node side: the veth end carries the gateway addresses the pod routes via (so the node
	// answers ARP/ND for them) and one host route per pod address. The same gateway addresses sit
	// on every pod veth of the node, which Linux allows and which keeps pods' config identical.
	nodeCmds := []string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", p.nodeIf, EndpointIf, p.netns),
		fmt.Sprintf("address add %s/32 dev %s", gateway4, p.nodeIf),
		fmt.Sprintf("address add %s/64 dev %s nodad", gateway6, p.nodeIf),
		fmt.Sprintf("link set %s up", p.nodeIf),
	}
	for _, a := range addrs {
		nodeCmds = append(nodeCmds, fmt.Sprintf("route add %s dev %s", netip.PrefixFrom(a, a.BitLen()), p.nodeIf))
	}
	// Pod side: only its own /32 and /128 (no subnet route: everything, even a pod on the same
	// node, is reached via the node) and a default route per family.
	podCmds := []string{"link set lo up", "link set " + EndpointIf + " up"}
	for _, a := range addrs {
		podCmds = append(podCmds, fmt.Sprintf("address add %s dev %s%s", netip.PrefixFrom(a, a.BitLen()), EndpointIf, nodad(a)))
	}
	if p.Addr(false).IsValid() {
		podCmds = append(podCmds, fmt.Sprintf("route add default via %s dev %s onlink", gateway4, EndpointIf))
	}
	if p.Addr(true).IsValid() {
		podCmds = append(podCmds, fmt.Sprintf("route add default via %s dev %s", gateway6, EndpointIf))
	}
	if err := ipBatch(node.netns, nodeCmds...); err != nil {
		return nil, err
	}
	if err := ipBatch(p.netns, podCmds...); err != nil {
		return nil, err
	}
	if err := waitLinksUp(p.netns, EndpointIf); err != nil {
		return nil, err
	}
	if err := waitLinksUp(node.netns, p.nodeIf); err != nil {
		return nil, err
	}
	node.pods = append(node.pods, p)
	// Everyone else on the underlay reaches the new pod via its node.
	return p, b.routeToMember(node.member, addrs)
}

// NewExternal creates a host outside the cluster, attached to the underlay, with the given
// addresses (use a range outside your pod ranges, e.g. 10.200.0.0/16 and fd00:200::/64). Every
// node routes these addresses to the host, and the host routes every pod address to the pod's
// node, so pods and the host reach each other without NAT, crossing the pod's node's forward hook.
func (b *Bed) NewExternal(name string, addrs ...netip.Addr) (*Host, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, err := b.addExternal(name, addrs)
	if err != nil {
		return nil, fmt.Errorf("netns: AddExternal(%q): %w", name, err)
	}
	return h, nil
}

// AddExternal is NewExternal that fails the test on error.
func (b *Bed) AddExternal(name string, addrs ...netip.Addr) *Host {
	if b.t != nil {
		b.t.Helper()
	}
	h, err := b.NewExternal(name, addrs...)
	if err != nil {
		b.fatal(err)
	}
	return h
}

func (b *Bed) addExternal(name string, addrs []netip.Addr) (*Host, error) {
	if err := b.claimName(name); err != nil {
		return nil, err
	}
	addrs, err := b.claimAddrs(name, addrs)
	if err != nil {
		return nil, err
	}
	h := &Host{endpoint: endpoint{nsBase: nsBase{bed: b, name: name, netns: b.prefix + "x-" + name}, addrs: addrs}}
	if err := b.createNS(h.netns, roleEndpoint); err != nil {
		return nil, err
	}
	m, err := b.joinUnderlay(h.netns, "x-"+name, EndpointIf, addrs, func() []netip.Addr { return h.addrs })
	if err != nil {
		return nil, err
	}
	h.member = m
	b.externals = append(b.externals, h)
	return h, b.routeToMember(m, addrs)
}

// joinUnderlay plugs namespace nsName into the underlay bridge via interface ifname, assigns the
// next underlay addresses plus extra (the host's own addresses, if any), and installs routes to
// everything the existing members own. Called with b.mu held.
func (b *Bed) joinUnderlay(nsName, portName, ifname string, extra []netip.Addr, owned func() []netip.Addr) (*member, error) {
	b.nextUL++
	if b.nextUL > 250 {
		return nil, fmt.Errorf("underlay is full")
	}
	m := &member{
		ns:     nsName,
		ifname: ifname,
		ul4:    nthAddr(underlay4, b.nextUL),
		ul6:    nthAddr(underlay6, b.nextUL),
		owned:  owned,
	}
	for _, a := range extra {
		if a.Is4() && !m.src4.IsValid() {
			m.src4 = a
		}
		if a.Is6() && !m.src6.IsValid() {
			m.src6 = a
		}
	}
	port := ifName("", portName, b.nextUL)
	// Create the pair from inside the underlay namespace with the peer placed directly in the
	// member namespace (neither end ever exists in the host namespace), and bring the bridge port
	// up first so that the member's link has carrier when its routes are added.
	if err := ipBatch(b.ulNS,
		fmt.Sprintf("link add %s type veth peer name %s netns %s", port, ifname, nsName),
		fmt.Sprintf("link set %s master br0 up", port),
	); err != nil {
		return nil, err
	}
	cmds := []string{
		"link set lo up",
		fmt.Sprintf("address add %s/%d dev %s", m.ul4, underlay4.Bits(), ifname),
		fmt.Sprintf("address add %s/%d dev %s nodad", m.ul6, underlay6.Bits(), ifname),
	}
	for _, a := range extra {
		cmds = append(cmds, fmt.Sprintf("address add %s dev %s%s", netip.PrefixFrom(a, a.BitLen()), ifname, nodad(a)))
	}
	cmds = append(cmds, fmt.Sprintf("link set %s up", ifname))
	for _, other := range b.members {
		for _, a := range other.owned() {
			cmds = append(cmds, m.routeCmd(a, other))
		}
	}
	if err := ipBatch(nsName, cmds...); err != nil {
		return nil, err
	}
	if err := waitLinksUp(b.ulNS, port); err != nil {
		return nil, err
	}
	if err := waitLinksUp(nsName, ifname); err != nil {
		return nil, err
	}
	b.members = append(b.members, m)
	return m, nil
}

// routeToMember installs, on every other underlay member, routes for addrs via owner.
func (b *Bed) routeToMember(owner *member, addrs []netip.Addr) error {
	for _, m := range b.members {
		if m == owner {
			continue
		}
		var cmds []string
		for _, a := range addrs {
			cmds = append(cmds, m.routeCmd(a, owner))
		}
		if err := ipBatch(m.ns, cmds...); err != nil {
			return err
		}
	}
	return nil
}

// routeCmd is the `ip route add` line, run in m, that sends address a via member owner.
func (m *member) routeCmd(a netip.Addr, owner *member) string {
	via, src := owner.ul4, m.src4
	if a.Is6() {
		via, src = owner.ul6, m.src6
	}
	cmd := fmt.Sprintf("route add %s via %s dev %s", netip.PrefixFrom(a, a.BitLen()), via, m.ifname)
	if src.IsValid() {
		// External hosts also carry an underlay address; without a src hint, connections they
		// open would come from it instead of from the host's own address.
		cmd += " src " + src.String()
	}
	return cmd
}

// nodad disables duplicate address detection for IPv6 addresses (belt and braces with
// accept_dad=0), so they are usable immediately.
func nodad(a netip.Addr) string {
	if a.Is6() {
		return " nodad"
	}
	return ""
}

// nthAddr returns the n-th address of prefix p (n small).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().AsSlice()
	b[len(b)-1] += byte(n)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ifName builds an interface name from prefix+name, falling back to an index when that would
// exceed the kernel's 15-byte limit.
func ifName(prefix, name string, idx int) string {
	if s := prefix + name; len(s) <= 15 {
		return s
	}
	if prefix == "" {
		prefix = "if"
	}
	return fmt.Sprintf("%s%d", strings.TrimSuffix(prefix, "-"), idx)
}

// DumpState returns addresses and routes of every namespace of the bed, for failure diagnostics
// (t.Log(b.DumpState())).
func (b *Bed) DumpState() string {
	var sb strings.Builder
	for _, n := range b.Namespaces() {
		fmt.Fprintf(&sb, "=== %s\n", n)
		for _, args := range [][]string{{"-br", "address"}, {"-4", "route"}, {"-6", "route"}} {
			out, err := run("", append([]string{"ip", "-n", n}, args...)...)
			if err != nil {
				out = err.Error() + "\n"
			}
			sb.WriteString(out)
		}
	}
	return sb.String()
}
