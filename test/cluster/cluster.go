//go:build linux

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// Options configure Start. The zero value is a two-node cluster with defaults everywhere.
type Options struct {
	// Nodes are the node names, used both for the bed's node namespaces and as spec.nodeName.
	// Default DefaultNodes.
	Nodes []string
	// Assets is the directory holding kube-apiserver and etcd. Default $KUBEBUILDER_ASSETS.
	Assets string
	// AgentBinary is a prebuilt flock-netpol binary. Empty: Start builds ./cmd of this module
	// with `go build` into the cluster's temporary directory.
	AgentBinary string
	// AgentArgs are extra flags for every `flock-netpol run`, e.g. "--zap-log-level=debug".
	AgentArgs []string
	// PodCIDRs are the nodes' pod ranges (node name -> CIDRs, at most one per address family),
	// written to the Node objects' spec.podCIDRs as the node IPAM controller would. The agents
	// close the addresses of these ranges that no known local pod owns, and a fresh node's
	// bootstrap table closes them whole (see the README's Closed edges). A node without an entry
	// has no pod ranges: nothing is closed there.
	PodCIDRs map[string][]string
	// ProbeTimeout and ProbeConcurrency are set on the bed (see netns.Bed). Defaults
	// DefaultProbeTimeout and DefaultProbeConcurrency.
	ProbeTimeout     time.Duration
	ProbeConcurrency int
	// ClusterNetworkPolicies installs the ClusterNetworkPolicy CRD (networkPolicyAPICRD) before
	// the agents start, so that they watch ClusterNetworkPolicies and every Node, and Expected
	// reads them too. Without it the API server does not serve the type, as in a cluster without
	// the CRD, and the agents run without them.
	ClusterNetworkPolicies bool
	// ReadyTimeout bounds the wait for every agent's /readyz. Default one minute.
	ReadyTimeout time.Duration
	// Logf receives progress lines. Default: tb.Logf for Start, nothing for New.
	Logf func(format string, args ...any)
}

// Defaults.
var DefaultNodes = []string{"node-1", "node-2"}

const (
	DefaultProbeTimeout     = 350 * time.Millisecond
	DefaultProbeConcurrency = 192
	defaultReadyTimeout     = time.Minute
)

// Cluster is a running control plane, bed and agents. Create it with New and Close it, or in a
// test with Start.
type Cluster struct {
	// Bed is the network-namespace test bed: add pods and external hosts with AddPod and
	// AddExternal (or directly on the bed), probe with Probe.
	Bed *netns.Bed
	// Client is an uncached client of the API server (reads see every write).
	Client client.Client
	// Config is the API server's admin config.
	Config *rest.Config
	// Dir is the cluster's temporary directory: agent binary, kubeconfig, agent logs, etcd data.
	// It is removed by Close.
	Dir string

	tb    testing.TB // Start's, for the Must-style methods (AddPod, AddExternal); nil from New
	logf  func(string, ...any)
	env   *envtest.Environment
	nodes []*Node

	// What every agent is started with, for StartAgent.
	binary, kubeconfig string
	agentArgs          []string
	readyTimeout       time.Duration
	heldUsers          int  // identities made by StartAgentHeld so far
	clusterPolicies    bool // the ClusterNetworkPolicy CRD is installed (Options.ClusterNetworkPolicies)

	build        sync.WaitGroup // the agent build, while it runs
	mu           sync.Mutex
	closed       bool
	envtestProcs []proc   // kube-apiserver and etcd, once started
	extraDirs    []string // envtest's own temporary directories
}

// Node is one node: its network namespace and its agent.
type Node struct {
	// Name is the node name (spec.nodeName) and the bed's node name.
	Name string
	// NS is the node's network namespace in the bed.
	NS *netns.Node
	// agent is the node's current agent process, running or stopped (StopAgent); nil before the
	// first start. Atomic: the signal handler reads it while StartAgent may replace it.
	agent atomic.Pointer[agent]
	runs  int // agents started for this node so far
}

// LogPath is the file the node's current agent logs to (it is removed with the cluster's
// directory). Each agent started by StartAgent logs to a file of its own.
func (n *Node) LogPath() string { return n.agent.Load().logPath }

var quietControllerRuntime sync.Once

// Start is New for tests: it skips tb when the kernel requirements are missing (fails it with
// FLOCK_REQUIRE_KERNEL_TESTS), fails it on any other error (the envtest binaries missing, say),
// and closes the cluster when tb ends, first printing the tail of each agent's log when tb failed.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	tb = testenv.RequireKernel(tb, "cluster")
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	c, err := New(opts)
	if errors.Is(err, netns.ErrUnavailable) {
		tb.Skipf("cluster: skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	c.tb = tb
	c.Bed.SetTB(tb)
	tb.Cleanup(func() {
		c.stopAgents()
		if tb.Failed() {
			c.logAgentTails(tb.Logf)
		}
		if err := c.Close(); err != nil {
			tb.Errorf("cluster: %v", err)
		}
	})
	return c
}

// New brings the cluster up: envtest, the agent binary, the bed with its nodes, one agent per
// node, and waits until every agent is ready (/readyz: its first apply succeeded). The caller must
// Close it. When the kernel requirements are missing (testenv.CheckKernel, or nft does not work in
// a network namespace) the error wraps netns.ErrUnavailable. When New fails, it has already
// removed whatever it had started.
func New(opts Options) (*Cluster, error) {
	if dying.Load() {
		return nil, fmt.Errorf("cluster: %w", errInterrupted)
	}
	if err := testenv.CheckKernel(); err != nil {
		return nil, fmt.Errorf("cluster: %w: %v", netns.ErrUnavailable, err)
	}
	assets, err := testenv.Assets(opts.Assets)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = DefaultNodes
	}
	quietControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })

	c := &Cluster{logf: opts.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if err := c.start(opts, assets); err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: %w", err), c.Close())
	}
	return c, nil
}

// start is New after the checks. On error, Close removes what it started.
func (c *Cluster) start(opts Options, assets string) error {
	start := time.Now()
	if swept, err := SweepStale(); len(swept) > 0 || err != nil {
		c.logf("cluster: removed what dead test processes left behind: %v (err: %v)", swept, err)
	}
	var err error
	c.Dir, err = os.MkdirTemp("", dirPrefix)
	if err != nil {
		return err
	}
	registerLive(c)
	if err := c.writeOwner(); err != nil {
		return err
	}

	// The agent binary builds while envtest starts.
	binary := opts.AgentBinary
	var buildErr error
	built := &c.build
	if binary == "" {
		binary = filepath.Join(c.Dir, "flock-netpol")
		built.Go(func() { buildErr = buildAgent(binary) })
	}

	c.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ControlPlane: envtest.ControlPlane{
			// State in our directory, so that it goes with it whatever happens to envtest.
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(c.Dir, "etcd")},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(c.Dir, "apiserver")},
		},
	}
	if c.clusterPolicies = opts.ClusterNetworkPolicies; c.clusterPolicies {
		crd, err := networkPolicyAPICRD()
		if err != nil {
			built.Wait()
			return err
		}
		c.env.CRDInstallOptions = envtest.CRDInstallOptions{Paths: []string{crd}, ErrorIfPathMissing: true}
	}
	for _, d := range []string{c.env.ControlPlane.Etcd.DataDir, c.env.ControlPlane.APIServer.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if dying.Load() {
		return errInterrupted
	}
	cfg, err := c.env.Start()
	// Whatever happened, record what did start, for the signal handler and SweepStale.
	if rerr := c.recordEnvtest(); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		built.Wait()
		return fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	// The test API server has no other users: no client-side throttling.
	cfg.QPS = -1
	c.Config = cfg
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha2.Install(scheme); err != nil {
		return err
	}
	if c.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	kubeconfig, err := c.writeKubeconfig()
	if err != nil {
		return err
	}
	// What the kubelet would register, with the pod ranges the node IPAM controller would give:
	// the agents wait for their Node object.
	for name := range opts.PodCIDRs {
		if !slices.Contains(opts.Nodes, name) {
			return fmt.Errorf("Options.PodCIDRs names %q, which is not one of the nodes %v", name, opts.Nodes)
		}
	}
	for _, name := range opts.Nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if cidrs := opts.PodCIDRs[name]; len(cidrs) > 0 {
			node.Spec.PodCIDR, node.Spec.PodCIDRs = cidrs[0], slices.Clone(cidrs)
		}
		if err := c.Client.Create(context.Background(), node); err != nil {
			return fmt.Errorf("creating Node %s: %w", name, err)
		}
	}
	c.logf("cluster: control plane up in %v (%s)", time.Since(start).Round(time.Millisecond), assets)

	bedStarted.Store(true)
	c.Bed, err = netns.New(netns.Options{
		ProbeTimeout:     cmpOr(opts.ProbeTimeout, DefaultProbeTimeout),
		ProbeConcurrency: cmpOr(opts.ProbeConcurrency, DefaultProbeConcurrency),
		Logf:             c.logf,
	})
	if err != nil {
		return err
	}
	for _, name := range opts.Nodes {
		ns, err := c.Bed.NewNode(name)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, &Node{Name: name, NS: ns})
	}
	if out, err := c.nodes[0].NS.Run("", "nft", "list", "ruleset"); err != nil {
		return fmt.Errorf("%w: nft does not work inside a network namespace (no nf_tables in this kernel?): %v\n%s", netns.ErrUnavailable, err, out)
	}

	built.Wait()
	if buildErr != nil {
		return buildErr
	}
	c.binary, c.kubeconfig, c.agentArgs = binary, kubeconfig, opts.AgentArgs
	c.readyTimeout = cmpOr(opts.ReadyTimeout, defaultReadyTimeout)
	for _, n := range c.nodes {
		if _, err := c.startAgent(n, kubeconfig); err != nil {
			return err
		}
	}
	readyBy := time.Now().Add(c.readyTimeout)
	for _, n := range c.nodes {
		if a := n.agent.Load(); a != nil {
			if err := a.waitReady(readyBy); err != nil {
				return fmt.Errorf("agent of %s: %w\n%s", n.Name, err, a.tail(40))
			}
		}
	}
	c.logf("cluster: %d nodes with ready agents in %v (bed %s)", len(c.nodes), time.Since(start).Round(time.Millisecond), c.Bed.Prefix())
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Nodes returns the nodes in the order of Options.Nodes.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// EtcdURL is the client URL of the control plane's etcd (plain HTTP on 127.0.0.1), for tests
// that write objects the API server would reject straight into its storage: keys
// /registry/<resource>/<namespace>/<name>, values in the API server's protobuf encoding.
func (c *Cluster) EtcdURL() string { return c.env.ControlPlane.Etcd.URL.String() }

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// buildAgent builds ./cmd of the module that holds the working directory.
func buildAgent(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("building the agent: the working directory is not inside the flock-netpol module (set Options.AgentBinary)")
	}
	root := filepath.Dir(mod)
	cmd := exec.Command("go", "build", "-o", out, "./cmd")
	cmd.Dir = root
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	// A process group of its own, so that the signal handler can end the go command and the
	// compilers it runs at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startHelper(cmd); err != nil {
		return fmt.Errorf("go build ./cmd in %s: %w", root, err)
	}
	err = cmd.Wait()
	helperDone(cmd)
	if err != nil {
		return fmt.Errorf("go build ./cmd in %s: %w\n%s", root, err, b.String())
	}
	return nil
}

// writeKubeconfig writes an admin kubeconfig for the agents.
func (c *Cluster) writeKubeconfig() (string, error) {
	user, err := c.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding the agents' user: %w", err)
	}
	b, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("agents' kubeconfig: %w", err)
	}
	path := filepath.Join(c.Dir, "kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}

// Close stops the agents (SIGTERM, then SIGKILL after a grace period, by PID), deletes the bed's
// namespaces, stops envtest and removes the directory, in that order, and returns what went wrong.
// It is idempotent (later calls return nil).
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	defer unregisterLive(c)
	c.build.Wait() // it writes into the directory
	c.stopAgents()
	var errs []error
	if c.Bed != nil {
		errs = append(errs, c.Bed.Close())
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping envtest: %w", err))
		}
	}
	c.mu.Lock()
	c.envtestProcs = nil
	c.mu.Unlock()
	if c.Dir != "" {
		errs = append(errs, os.RemoveAll(c.Dir))
		_ = os.Remove(ownerPath(c.Dir))
	}
	return errors.Join(errs...)
}

// stopAgents stops every agent (SIGTERM, then SIGKILL). Idempotent.
func (c *Cluster) stopAgents() {
	for _, n := range c.nodes {
		if a := n.agent.Load(); a != nil {
			_ = a.stop() // how an agent exits is StopAgent's to report; on Close it only has to stop
		}
	}
}

// logAgentTails logs the last lines of each agent's log (after stopAgents, before Close).
func (c *Cluster) logAgentTails(logf func(string, ...any)) {
	for _, n := range c.nodes {
		if a := n.agent.Load(); a != nil {
			logf("cluster: last lines of the agent log of %s (%s):\n%s", n.Name, a.logPath, a.tail(60))
		}
	}
}
