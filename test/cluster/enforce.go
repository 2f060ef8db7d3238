//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
)

// Table is the agents' nft table (family inet).
const Table = render.DefaultTable

// DefaultEnforceTimeout bounds WaitEnforced when ctx has no deadline.
const DefaultEnforceTimeout = 60 * time.Second

// Expected runs the agent's own computation (controller.Reconciler.Desired, configured as the
// agents are: see agentFlags) on the cluster state now stored in the API server and returns, per
// node, the script that node's agent should have applied and any problems it reported. A node
// without a Node object has no script.
func (c *Cluster) Expected(ctx context.Context) (scripts map[string]render.Script, problems map[string][]translate.Problem, err error) {
	scripts = map[string]render.Script{}
	problems = map[string][]translate.Problem{}
	for _, n := range c.nodes {
		r := controller.Reconciler{
			// What the agents read from their caches, read here from the API server itself:
			// ClusterNetworkPolicies and every Node too when their CRD is installed.
			Source:                   controller.ReaderSource{Reader: c.Client, ClusterPolicies: c.clusterPolicies},
			Node:                     n.Name,
			Table:                    Table,
			AntiSpoofing:             agentAntiSpoofing,
			CloseUnknownPodAddresses: agentCloseUnknown,
		}
		d, err := r.Desired(ctx)
		if err != nil {
			return nil, nil, err
		}
		if d.Node != nil {
			scripts[n.Name], problems[n.Name] = d.Script, d.Problems
		}
	}
	return scripts, problems, nil
}

// KernelDigest returns the digest of the table the node's kernel holds ("" when there is none).
func (n *Node) KernelDigest() (string, error) {
	out, err := n.NS.Run("", "nft", "list", "set", "inet", Table, render.DigestSet)
	if err != nil {
		if strings.Contains(out, "No such file or directory") {
			return "", nil // no table (yet), or not one of the agent's
		}
		return "", err
	}
	d, _ := render.Digest([]byte(out))
	return d, nil
}

// Ruleset returns `nft list table inet flock-netpol` in the node's namespace.
func (n *Node) Ruleset() (string, error) {
	return n.NS.Run("", "nft", "list", "table", "inet", Table)
}

// WaitEnforced waits until every node's kernel holds the table its agent must apply for the
// cluster state now stored in the API server (see the package documentation). It returns an error
// naming the nodes that lag, with the tail of their agent logs, when ctx ends first (after
// DefaultEnforceTimeout when ctx has no deadline), or when an agent has exited or is stopped (StopAgent).
func (c *Cluster) WaitEnforced(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultEnforceTimeout)
		defer cancel()
	}
	scripts, _, err := c.Expected(ctx)
	if err != nil {
		return err
	}
	want := map[string]string{}
	for node, s := range scripts {
		want[node] = s.Digest
	}
	pending := map[string]string{} // node -> digest last seen
	for _, n := range c.nodes {
		pending[n.Name] = "?"
	}
	for {
		var errs []error
		for _, n := range c.nodes {
			if _, ok := pending[n.Name]; !ok {
				continue
			}
			if a := n.agent.Load(); !a.running() {
				if a == nil {
					return fmt.Errorf("node %s has no agent", n.Name)
				}
				if a.stopped.Load() {
					return fmt.Errorf("the agent of %s is stopped (StopAgent): nothing enforces its state", n.Name)
				}
				return fmt.Errorf("the agent of %s has exited (%v):\n%s", n.Name, a.cmd.ProcessState, a.tail(40))
			}
			got, err := n.KernelDigest()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
				continue
			}
			if got == want[n.Name] {
				delete(pending, n.Name)
			} else {
				pending[n.Name] = got
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var sb strings.Builder
			fmt.Fprintf(&sb, "the kernel does not enforce the current cluster state: %v", ctx.Err())
			for _, n := range c.nodes {
				if got, ok := pending[n.Name]; ok {
					fmt.Fprintf(&sb, "\n%s: kernel digest %q, expected %q; agent log (%s):\n%s",
						n.Name, got, want[n.Name], n.LogPath(), n.agent.Load().tail(30))
				}
			}
			if len(errs) > 0 {
				fmt.Fprintf(&sb, "\nlast errors: %v", errors.Join(errs...))
			}
			return errors.New(sb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Probe probes port from every endpoint in from to every endpoint in to (see
// netns.Bed.ProbeMatrix; kinds default to all four).
func (c *Cluster) Probe(port uint16, from, to []netns.Endpoint, kinds ...netns.Kind) *netns.Matrix {
	return c.Bed.ProbeMatrix(port, from, to, kinds...)
}

// ProbePorts probes several ports at once and returns one matrix per port, in order.
func (c *Cluster) ProbePorts(ports []uint16, from, to []netns.Endpoint, kinds ...netns.Kind) []*netns.Matrix {
	out := make([]*netns.Matrix, len(ports))
	var wg sync.WaitGroup
	for i, p := range ports {
		wg.Go(func() { out[i] = c.Bed.ProbeMatrix(p, from, to, kinds...) })
	}
	wg.Wait()
	return out
}

// WarmUp opens one TCP connection, per address family, from every endpoint to every other one on
// the port that portOf gives for the destination (a port it serves), with a generous timeout, and returns an error naming the pairs that did not connect. Call
// it while no policy blocks anything (before the first one): it checks the bed end to end, and the
// first packets of a bed are slow (neighbour resolution, the probes' OS threads being created),
// which on a loaded machine would otherwise eat into the short timeouts of the real probes.
func (c *Cluster) WarmUp(eps []netns.Endpoint, portOf func(to netns.Endpoint) uint16) error {
	var flows []netns.Flow
	for _, from := range eps {
		for _, to := range eps {
			for _, v6 := range []bool{false, true} {
				if from != to && from.Addr(v6).IsValid() && to.Addr(v6).IsValid() {
					flows = append(flows, netns.Flow{From: from, To: to.Addr(v6), Proto: "tcp", Port: portOf(to)})
				}
			}
		}
	}
	saved := c.Bed.ProbeTimeout
	c.Bed.ProbeTimeout = 3 * time.Second
	defer func() { c.Bed.ProbeTimeout = saved }()
	var failed []string
	for _, r := range c.Bed.Probe(flows) {
		if !r.OK {
			failed = append(failed, fmt.Sprintf("%v: %v", r.Flow, r.Err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("warm-up: %d of %d connections failed with no policy in place:\n%s",
			len(failed), len(flows), strings.Join(failed, "\n"))
	}
	return nil
}

// FlushConntrack empties the conntrack table of every node. Policy decides at connection setup
// and replies of an allowed connection pass as established, so after a change of rules a probe
// that happens to reuse the 5-tuple of an earlier allowed UDP flow would still pass. Call it after
// WaitEnforced and before probing.
func (c *Cluster) FlushConntrack() error {
	var errs []error
	for _, n := range c.nodes {
		if err := n.NS.FlushConntrack(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Enforce is WaitEnforced followed by FlushConntrack: after it, probes see exactly the rules of
// the current cluster state.
func (c *Cluster) Enforce(ctx context.Context) error {
	if err := c.WaitEnforced(ctx); err != nil {
		return err
	}
	return c.FlushConntrack()
}
