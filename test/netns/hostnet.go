//go:build linux

package netns

import "fmt"

// HostNet is an endpoint in a node's own namespace with the node's underlay addresses: what a
// hostNetwork pod is. Its servers answer in the node's namespace, so a flow to it from a pod of
// another node crosses that pod's node's forward hook and then the input hook of this node (never
// its forward hook), and a flow to it from a pod of the same node is the node's own input.
type HostNet struct {
	endpoint
	node *Node
}

// Node is the node whose namespace the endpoint lives in.
func (h *HostNet) Node() *Node { return h.node }

// NewHostNet creates a host-network endpoint named name on node. It creates nothing in the kernel:
// the namespace and addresses are the node's.
func (b *Bed) NewHostNet(node *Node, name string) (*HostNet, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if node == nil || node.bed != b {
		return nil, fmt.Errorf("netns: NewHostNet(%q): node does not belong to this bed", name)
	}
	if err := b.claimName(name); err != nil {
		return nil, fmt.Errorf("netns: NewHostNet(%q): %w", name, err)
	}
	return &HostNet{
		endpoint: endpoint{nsBase: nsBase{bed: b, name: name, netns: node.netns}, addrs: node.UnderlayAddrs()},
		node:     node,
	}, nil
}

// AddHostNet is NewHostNet that fails the test on error.
func (b *Bed) AddHostNet(node *Node, name string) *HostNet {
	if b.t != nil {
		b.t.Helper()
	}
	h, err := b.NewHostNet(node, name)
	if err != nil {
		b.fatal(err)
	}
	return h
}
