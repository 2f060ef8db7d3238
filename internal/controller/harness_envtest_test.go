package controller_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flock-net/flock-netpol/internal/cli"
	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/test/objects"
)

// Timeouts for Eventually: the agent reacts within milliseconds; these only bound a failure.
const (
	timeout = 10 * time.Second
	poll    = 20 * time.Millisecond
)

// logBuffer collects an agent's log lines (and copies them to GinkgoWriter).
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	b.lines = append(b.lines, line)
	b.mu.Unlock()
	fmt.Fprintln(GinkgoWriter, line)
}

// Write makes logBuffer an io.Writer, for a process's output.
func (b *logBuffer) Write(p []byte) (int, error) {
	for l := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		b.add(l)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func newLogger(prefix string, buf *logBuffer) logr.Logger {
	return funcr.New(func(p, args string) {
		buf.add(prefix + " " + p + " " + args)
	}, funcr.Options{})
}

// agent is one running agent built by cli.NewAgent, in-process and with a handle on the
// reconciler (ReadyCheck).
type agent struct {
	r      *controller.Reconciler
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
	// podEvents counts the pod notifications (add, update, delete) the manager's cache delivered,
	// for pods in eventsNS.
	podEvents atomic.Int64
}

type agentOption func(*agentConfig)

type agentConfig struct {
	retryBase, retryMax time.Duration
	resync              time.Duration
	eventsNS            string
	noNode              bool
	noMonitor           bool
	podCIDRs            []string // the Node's spec.podCIDRs; set: the agent closes its edges
	wrapSource          func(controller.Source) controller.Source
	fullTranslate       bool
}

// withSource puts wrap's Source between the reconciler and the one cli.NewAgent made, before the
// manager starts: a spec can watch what every recompute reads. Every recompute then reads the
// Source (--full-translate): the incremental translation reads it only to start and to check.
func withSource(wrap func(controller.Source) controller.Source) agentOption {
	return func(c *agentConfig) { c.wrapSource, c.fullTranslate = wrap, true }
}

func withRetry(base, maxDelay time.Duration) agentOption {
	return func(c *agentConfig) { c.retryBase, c.retryMax = base, maxDelay }
}

// withoutMonitor starts the agent without its nft monitor, so that only the periodic check can
// see a change made behind its back.
func withoutMonitor() agentOption { return func(c *agentConfig) { c.noMonitor = true } }

// withClosedEdges gives the Node these pod ranges and starts the agent as `flock-netpol run`
// does by default: unknown addresses of the ranges closed, anti-spoofing on.
func withClosedEdges(cidrs ...string) agentOption {
	return func(c *agentConfig) { c.podCIDRs = cidrs }
}

// withoutNode starts the agent without creating its Node object first.
func withoutNode() agentOption { return func(c *agentConfig) { c.noNode = true } }

// createNode creates the Node object of that name (the agent applies nothing without it), unless
// it exists, and deletes it when the spec ends.
func createNode(name string, podCIDRs ...string) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	err := k8sClient.Create(ctxT(), node)
	if apierrors.IsAlreadyExists(err) {
		return
	}
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctxT(), node))).To(Succeed()) })
}

func withResync(period time.Duration) agentOption {
	return func(c *agentConfig) { c.resync = period }
}

func countingPodEventsIn(ns string) agentOption {
	return func(c *agentConfig) { c.eventsNS = ns }
}

// startAgent starts an agent for node that applies through k, and stops it when the spec ends.
func startAgent(node string, k *kernel, opts ...agentOption) *agent {
	cfg := agentConfig{retryBase: 50 * time.Millisecond, retryMax: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.noNode {
		createNode(node, cfg.podCIDRs...)
	}
	var executor nft.Executor = k.rec
	netns := "" // a real kernel's namespace: the agent's netlink monitor watches it
	switch {
	case cfg.noMonitor:
		executor = struct{ nft.Executor }{k.rec} // hides Stream: the agent runs no monitor
	case k.ns != "":
		netns = "/var/run/netns/" + k.ns
	}
	a := &agent{logs: &logBuffer{}, done: make(chan error, 1)}
	log := newLogger("agent["+node+"]", a.logs)
	// The agent is built exactly as `flock-netpol run` builds it, with quick retries, and with
	// name validation skipped since every spec starts its own manager in this process.
	built, err := cli.NewAgent(restCfg, cli.RunConfig{
		NodeName:                 node,
		Table:                    table,
		NFT:                      k.nftFlag(),
		NFTTimeout:               20 * time.Second,
		MetricsBindAddress:       "0",
		HealthProbeBindAddress:   "0",
		RetryBaseDelay:           cfg.retryBase,
		RetryMaxDelay:            cfg.retryMax,
		ResyncPeriod:             cfg.resync,
		SkipNameValidation:       true,
		CloseUnknownPodAddresses: len(cfg.podCIDRs) > 0,
		AntiSpoofing:             len(cfg.podCIDRs) > 0,
		Netns:                    netns,
		NetlinkElements:          true, // the agent's default; only where Netns is set (a real kernel)
		FullTranslate:            cfg.fullTranslate,
	}, log, executor)
	Expect(err).NotTo(HaveOccurred())
	mgr := built.Manager
	a.r = built.Reconciler
	if !k.real {
		// The fake kernel takes every script for the whole table: it knows full replaces only.
		a.r.IncrementalMaxShare = -1
	}
	if cfg.wrapSource != nil {
		a.r.Source = cfg.wrapSource(a.r.Source)
	}

	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if cfg.eventsNS != "" {
		inf, err := mgr.GetCache().GetInformer(ctx, &corev1.Pod{}, cache.BlockUntilSynced(false))
		Expect(err).NotTo(HaveOccurred())
		count := func(obj any) {
			if o, ok := obj.(client.Object); ok && o.GetNamespace() == cfg.eventsNS {
				a.podEvents.Add(1)
			}
		}
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    count,
			UpdateFunc: func(_, n any) { count(n) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				count(obj)
			},
		})
		Expect(err).NotTo(HaveOccurred())
	}
	go func() { a.done <- built.Run(ctx) }()
	DeferCleanup(a.stop)
	return a
}

// stop cancels the manager and waits for it to return; calling it again does nothing.
func (a *agent) stop() {
	a.cancel()
	if a.done == nil {
		return
	}
	var err error
	Eventually(a.done, 30*time.Second).Should(Receive(&err), "the manager did not stop")
	Expect(err).NotTo(HaveOccurred(), "the manager returned an error")
	a.done = nil
}

func (a *agent) ready() error { return a.r.ReadyCheck(nil) }

// waitReady waits until an apply succeeded.
func (a *agent) waitReady() {
	Eventually(a.ready, timeout, poll).Should(Succeed())
}

// cluster is one spec's slice of the test cluster: its own node name and its own /16 of pod
// addresses, so that what earlier specs left behind (namespaces never finish deleting in envtest)
// never shows up in its node's rules.
type cluster struct {
	node string
	net  int
}

var netCounter atomic.Int32

func newCluster() *cluster {
	return &cluster{
		node: "node-" + randomSuffix(),
		net:  int(netCounter.Add(1)%250) + 1,
	}
}

// ip returns the i-th test address of the spec: 10.<net>.x.y, never .0 or .255.
func (c *cluster) ip(i int) string {
	return fmt.Sprintf("10.%d.%d.%d", c.net, i/250, i%250+1)
}

func ctxT() context.Context { return context.Background() }

// namespace creates a namespace with a generated name and the labels kv, and deletes it (with its
// pods and policies) when the spec ends.
func namespace(kv ...string) string {
	ns := objects.Namespace("", kv...)
	ns.GenerateName = "flock-"
	Expect(k8sClient.Create(ctxT(), ns)).To(Succeed())
	DeferCleanup(func() {
		// Pods go at once (grace period 0: there is no kubelet to confirm), the namespace stays
		// Terminating forever (no namespace controller), which is harmless.
		Expect(k8sClient.DeleteAllOf(ctxT(), &corev1.Pod{}, client.InNamespace(ns.Name), client.GracePeriodSeconds(0))).To(Succeed())
		Expect(k8sClient.DeleteAllOf(ctxT(), &networkingv1.NetworkPolicy{}, client.InNamespace(ns.Name))).To(Succeed())
		Expect(client.IgnoreNotFound(k8sClient.Delete(ctxT(), ns))).To(Succeed())
	})
	return ns.Name
}

// createPod creates the pod ns/name with one container "app" and opts (its node, labels...) and,
// if ip is not empty, writes status.podIPs, status.podIP and phase Running through the status
// subresource, as a kubelet would. An empty ip leaves the pod without addresses.
func createPod(ns, name, ip string, opts ...objects.PodOption) {
	app := objects.Containers(corev1.Container{Name: "app", Image: "registry.invalid/app:1"})
	pod := objects.Pod(ns+"/"+name, append([]objects.PodOption{app}, opts...)...)
	Expect(k8sClient.Create(ctxT(), pod)).To(Succeed())
	if ip != "" {
		objects.Phase(corev1.PodRunning)(pod)
		objects.PodIP(ip)(pod)
		objects.IPs(ip)(pod)
		Expect(k8sClient.Status().Update(ctxT(), pod)).To(Succeed())
	}
}

// updatePod re-reads the pod, applies change and writes it back (status too when status is true).
func updatePod(ns, name string, status bool, change func(*corev1.Pod)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pod corev1.Pod
		if err := k8sClient.Get(ctxT(), types.NamespacedName{Namespace: ns, Name: name}, &pod); err != nil {
			return err
		}
		change(&pod)
		if status {
			return k8sClient.Status().Update(ctxT(), &pod)
		}
		return k8sClient.Update(ctxT(), &pod)
	})).To(Succeed())
}

func setPodIP(ns, name, ip string) {
	updatePod(ns, name, true, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	})
}

func setPodLabels(ns, name string, labels map[string]string) {
	updatePod(ns, name, false, func(p *corev1.Pod) { p.Labels = labels })
}

func setNamespaceLabels(name string, labels map[string]string) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ns corev1.Namespace
		if err := k8sClient.Get(ctxT(), types.NamespacedName{Name: name}, &ns); err != nil {
			return err
		}
		ns.Labels = labels
		return k8sClient.Update(ctxT(), &ns)
	})).To(Succeed())
}

// createPolicy creates the NetworkPolicy ns/name built by opts.
func createPolicy(ns, name string, opts ...objects.PolicyOption) {
	Expect(k8sClient.Create(ctxT(), objects.Policy(ns+"/"+name, opts...))).To(Succeed())
}

func updatePolicy(ns, name string, change func(*networkingv1.NetworkPolicySpec)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var np networkingv1.NetworkPolicy
		if err := k8sClient.Get(ctxT(), types.NamespacedName{Namespace: ns, Name: name}, &np); err != nil {
			return err
		}
		change(&np.Spec)
		return k8sClient.Update(ctxT(), &np)
	})).To(Succeed())
}

func deletePolicy(ns, name string) {
	Expect(k8sClient.Delete(ctxT(), objects.Policy(ns+"/"+name))).To(Succeed())
}

// --- the agent binary -------------------------------------------------------------------------

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// agentBinary builds ./cmd of this repository once per suite run.
func agentBinary() string {
	binaryOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binaryErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binaryPath = filepath.Join(suiteDir, "flock-netpol")
		build := exec.Command("go", "build", "-o", binaryPath, "./cmd")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build ./cmd in %s: %w\n%s", root, err, out)
		}
	})
	Expect(binaryErr).NotTo(HaveOccurred())
	return binaryPath
}

var (
	kubeconfigOnce sync.Once
	kubeconfigPath string
)

// kubeconfig writes a kubeconfig for an admin user of the test API server.
func kubeconfig() string {
	kubeconfigOnce.Do(func() {
		user, err := testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		b, err := user.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		kubeconfigPath = filepath.Join(suiteDir, "kubeconfig")
		Expect(os.WriteFile(kubeconfigPath, b, 0o600)).To(Succeed())
	})
	return kubeconfigPath
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// process is the agent binary running.
type process struct {
	cmd    *exec.Cmd
	output *logBuffer
	exited chan struct{}
	state  *os.ProcessState
	probe  string // host:port of the health probes
}

// runBinary starts `flock-netpol run` against the test API server and kills it (by PID) when the
// spec ends if it is still running. netns names the namespace of the table (empty: none; then
// nothing is read over netlink: no drop logs, no counters).
func runBinary(node, nftFlag, netns string) *process {
	createNode(node)
	p := &process{output: &logBuffer{}, exited: make(chan struct{}), probe: freeAddr()}
	p.cmd = exec.Command(agentBinary(), "run",
		"--kubeconfig", kubeconfig(),
		"--node-name", node,
		"--nft", nftFlag,
		"--health-probe-bind-address", p.probe,
		"--metrics-bind-address", "0",
	)
	if netns != "" {
		p.cmd.Args = append(p.cmd.Args, "--netns", "/var/run/netns/"+netns)
	} else {
		p.cmd.Args = append(p.cmd.Args, "--drop-log-reader=false", "--counter-interval=0")
	}
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	Expect(p.cmd.Start()).To(Succeed())
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	DeferCleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// status returns the HTTP status of GET /path on the probe address, or an error.
func (p *process) status(path string) (int, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + p.probe + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// terminate sends SIGTERM and returns the exit code.
func (p *process) terminate() int {
	Expect(p.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	Eventually(p.exited, 30*time.Second).Should(BeClosed(), "the agent did not exit after SIGTERM")
	return p.state.ExitCode()
}
