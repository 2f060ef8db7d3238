//go:build linux

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Stopping and starting agents, and fresh nodes.
//
// StopAgent ends a node's agent as a rollout or a crash-free restart would (SIGTERM): the table
// stays in the kernel and goes on enforcing the last applied state, while the cluster moves on.
// StartAgent starts a new agent for the node with the same flags; its first full apply, after its
// caches sync, brings the node up to date. DeleteTable with the agent stopped makes the node a
// fresh one (first boot, reboot): the next agent finds no table and installs the bootstrap table
// first. StartAgentHeld starts the agent with an identity that may read its Node but not list
// Pods, Namespaces or NetworkPolicies, so that its caches cannot sync and the bootstrap table (or
// the table it found) stays in force, for as long as the test likes, until release grants the
// rest.

// StopAgent stops the agent of node (SIGTERM, then SIGKILL after a grace period) and waits for it
// to exit. The node's table stays in the kernel. WaitEnforced fails while an agent is stopped.
func (c *Cluster) StopAgent(node string) error {
	n := c.Node(node)
	if n == nil {
		return fmt.Errorf("cluster: StopAgent: no node %q", node)
	}
	a := n.agent.Load()
	if !a.running() {
		return fmt.Errorf("cluster: StopAgent: the agent of %s is not running", node)
	}
	start := time.Now()
	if err := a.stop(); err != nil {
		return fmt.Errorf("cluster: StopAgent: %w\n%s", err, a.tail(20))
	}
	c.logf("cluster: stopped the agent of %s in %v", node, time.Since(start).Round(time.Millisecond))
	return nil
}

// StartAgent starts a new agent for node, whose agent must have been stopped (StopAgent), with
// the flags of the first one, and waits until it is ready (its first full apply succeeded).
func (c *Cluster) StartAgent(node string) error {
	n, err := c.restartable(node)
	if err != nil {
		return fmt.Errorf("cluster: StartAgent: %w", err)
	}
	start := time.Now()
	a, err := c.startAgent(n, c.kubeconfig)
	if err != nil {
		return fmt.Errorf("cluster: StartAgent: %w", err)
	}
	if err := a.waitReady(time.Now().Add(c.readyTimeout)); err != nil {
		return fmt.Errorf("cluster: StartAgent: agent of %s: %w\n%s", node, err, a.tail(40))
	}
	c.logf("cluster: started the agent of %s, ready in %v", node, time.Since(start).Round(time.Millisecond))
	return nil
}

// StartAgentHeld starts a new agent for node, whose agent must have been stopped, with the flags
// of the first one but an identity of its own that may get, list and watch Nodes and nothing else:
// the agent reads its Node (its pod ranges, for the bootstrap table) but its caches of Pods,
// Namespaces and NetworkPolicies cannot sync, so it makes no full apply. It does not wait for
// anything. release grants the agent the rest of its read access (the rules of config/rbac) and
// waits until it is ready; the agent's informers retry a forbidden list with backoff (0.8 s, then
// doubling, jittered), so its first full apply follows release by up to a few seconds.
func (c *Cluster) StartAgentHeld(node string) (release func() error, err error) {
	n, err := c.restartable(node)
	if err != nil {
		return nil, fmt.Errorf("cluster: StartAgentHeld: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.ensureAgentRoles(ctx); err != nil {
		return nil, fmt.Errorf("cluster: StartAgentHeld: %w", err)
	}
	c.heldUsers++
	user := fmt.Sprintf("flock-netpol-held-%s-%d", node, c.heldUsers)
	kubeconfig, err := c.writeUserKubeconfig(user)
	if err != nil {
		return nil, fmt.Errorf("cluster: StartAgentHeld: %w", err)
	}
	if err := c.bindRole(ctx, user, roleNodeReader); err != nil {
		return nil, fmt.Errorf("cluster: StartAgentHeld: %w", err)
	}
	a, err := c.startAgent(n, kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: StartAgentHeld: %w", err)
	}
	c.logf("cluster: started the agent of %s held (user %s may read Nodes only)", node, user)
	return func() error {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.bindRole(ctx, user, roleClusterReader); err != nil {
			return fmt.Errorf("cluster: releasing the agent of %s: %w", node, err)
		}
		if err := a.waitReady(time.Now().Add(c.readyTimeout)); err != nil {
			return fmt.Errorf("cluster: releasing the agent of %s: %w\n%s", node, err, a.tail(40))
		}
		c.logf("cluster: released the agent of %s, ready %v later", node, time.Since(start).Round(time.Millisecond))
		return nil
	}, nil
}

// restartable returns the node called name if its agent is not running.
func (c *Cluster) restartable(name string) (*Node, error) {
	n := c.Node(name)
	if n == nil {
		return nil, fmt.Errorf("no node %q", name)
	}
	if n.agent.Load().running() {
		return nil, fmt.Errorf("the agent of %s is running (StopAgent first)", name)
	}
	if c.binary == "" {
		return nil, errors.New("the cluster never started its agents")
	}
	return n, nil
}

// AgentRunning reports whether the node's current agent process is alive.
func (n *Node) AgentRunning() bool { return n.agent.Load().running() }

// AgentLog returns what the node's current agent has logged so far.
func (n *Node) AgentLog() (string, error) {
	b, err := os.ReadFile(n.LogPath())
	return string(b), err
}

// DeleteTable deletes the agents' table in the node's namespace (`nft delete table inet
// flock-netpol`). With the agent stopped this makes the node a fresh one for the next agent; with
// it running, it is a change by another process, which the agent repairs.
func (n *Node) DeleteTable() error {
	if out, err := n.NS.Run("", "nft", "delete", "table", "inet", Table); err != nil {
		return fmt.Errorf("deleting the table of %s: %w: %s", n.Name, err, strings.TrimSpace(out))
	}
	return nil
}

// The ClusterRoles of held agents: an agent's read access (config/rbac/role.yaml) in two parts.
const (
	roleNodeReader    = "flock-netpol-test-node-reader"
	roleClusterReader = "flock-netpol-test-cluster-reader"
)

// ensureAgentRoles creates the two ClusterRoles, when they do not exist yet.
func (c *Cluster) ensureAgentRoles(ctx context.Context) error {
	read := []string{"get", "list", "watch"}
	for _, r := range []*rbacv1.ClusterRole{
		{
			ObjectMeta: metav1.ObjectMeta{Name: roleNodeReader},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: read}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: roleClusterReader},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces", "pods"}, Verbs: read},
				{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: read},
				{APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies"}, Verbs: read},
			},
		},
	} {
		if err := c.Client.Create(ctx, r); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating ClusterRole %s: %w", r.Name, err)
		}
	}
	return nil
}

// bindRole binds a ClusterRole to a user.
func (c *Cluster) bindRole(ctx context.Context, user, role string) error {
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if err := c.Client.Create(ctx, b); err != nil {
		return fmt.Errorf("binding %s to %s: %w", role, user, err)
	}
	return nil
}

// writeUserKubeconfig writes a kubeconfig for a new user without groups (so with no access but
// what bindings give) into the cluster's directory.
func (c *Cluster) writeUserKubeconfig(user string) (string, error) {
	u, err := c.env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", user, err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig of %s: %w", user, err)
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+user)
	return path, os.WriteFile(path, b, 0o600)
}

// AgentStart says how StartAgentWith starts an agent, for fault tests.
type AgentStart struct {
	// Args are appended to the cluster's flags; a flag given again wins, e.g. "--nft" with a
	// wrapper script, or "--nft-timeout".
	Args []string
	// Kubeconfig replaces the agents' admin kubeconfig (see KubeconfigVia). Empty: the cluster's.
	Kubeconfig string
	// NoWait returns as soon as the process runs, without waiting for /readyz (an agent that
	// cannot apply never becomes ready).
	NoWait bool
}

// StartAgentWith starts a new agent for node, whose agent must not be running, with the
// cluster's flags plus s.Args, and waits until it is ready unless s.NoWait.
func (c *Cluster) StartAgentWith(node string, s AgentStart) error {
	n, err := c.restartable(node)
	if err != nil {
		return fmt.Errorf("cluster: StartAgentWith: %w", err)
	}
	kubeconfig := cmpOr(s.Kubeconfig, c.kubeconfig)
	start := time.Now()
	a, err := c.startAgent(n, kubeconfig, s.Args...)
	if err != nil {
		return fmt.Errorf("cluster: StartAgentWith: %w", err)
	}
	if s.NoWait {
		return nil
	}
	if err := a.waitReady(time.Now().Add(c.readyTimeout)); err != nil {
		return fmt.Errorf("cluster: StartAgentWith: agent of %s: %w\n%s", node, err, a.tail(40))
	}
	c.logf("cluster: started the agent of %s %v, ready in %v", node, s.Args, time.Since(start).Round(time.Millisecond))
	return nil
}

// KillAgent ends the node's agent with SIGKILL, as a crash or an OOM kill would, and waits until
// it has exited. Its table stays in the kernel; nft processes it had started may outlive it
// (they run in process groups of their own), as they would on a real node.
func (c *Cluster) KillAgent(node string) error {
	n := c.Node(node)
	if n == nil {
		return fmt.Errorf("cluster: KillAgent: no node %q", node)
	}
	a := n.agent.Load()
	if !a.running() {
		return fmt.Errorf("cluster: KillAgent: the agent of %s is not running", node)
	}
	a.stopped.Store(true)
	a.once.Do(func() { a.stopErr = errors.New("killed by KillAgent") }) // stop has nothing left to do
	_ = a.cmd.Process.Kill()
	<-a.exited
	return nil
}

// AgentPID is the process id of the node's current agent (0 before the first start).
func (n *Node) AgentPID() int {
	if a := n.agent.Load(); a != nil && a.cmd.Process != nil {
		return a.cmd.Process.Pid
	}
	return 0
}

// AgentReady asks the node's current agent's /readyz once: nil when it answers 200, else what
// it answered.
func (n *Node) AgentReady() error {
	a := n.agent.Load()
	if !a.running() {
		return errors.New("the agent is not running")
	}
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + a.health + "/readyz?verbose")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// NFTCommand is the --nft value the agents of the node run with: nft inside the node's
// namespace.
func (n *Node) NFTCommand() string { return "ip netns exec " + n.NS.Namespace() + " nft" }

// APIServerHost is the API server's host:port, as the agents' kubeconfig names it.
func (c *Cluster) APIServerHost() string {
	h := strings.TrimPrefix(strings.TrimPrefix(c.Config.Host, "https://"), "http://")
	return strings.TrimSuffix(h, "/")
}

// KubeconfigVia writes an admin kubeconfig like the agents' that reaches the API server at
// host:port instead (a proxy in front of it; the server's certificate must be valid for the
// host) and returns its path.
func (c *Cluster) KubeconfigVia(hostPort string) (string, error) {
	b, err := os.ReadFile(c.kubeconfig)
	if err != nil {
		return "", err
	}
	old := c.APIServerHost()
	if !bytes.Contains(b, []byte(old)) {
		return "", fmt.Errorf("cluster: KubeconfigVia: the kubeconfig does not name %s", old)
	}
	path := filepath.Join(c.Dir, "kubeconfig-via-"+strings.ReplaceAll(hostPort, ":", "-"))
	return path, os.WriteFile(path, bytes.ReplaceAll(b, []byte(old), []byte(hostPort)), 0o600)
}
