package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/droplog"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// RunConfig is the configuration of the agent.
type RunConfig struct {
	NodeName               string
	Table                  string
	NFT                    string
	NFTTimeout             time.Duration
	MetricsBindAddress     string
	MetricsSecure          bool
	HealthProbeBindAddress string
	ResyncPeriod           time.Duration
	// RefillMax is --incremental-refill-max.
	RefillMax int
	// PodCIDRs overrides the Node's spec.podCIDRs; CloseUnknownPodAddresses and AntiSpoofing
	// close the node's edges (see the flags).
	PodCIDRs                 []netip.Prefix
	CloseUnknownPodAddresses bool
	AntiSpoofing             bool
	// Established is how established connections are treated (--established).
	Established render.Established
	// LogDrops, LogGroup and LogRate are the drop logs' flags (--drop-log...).
	LogDrops bool
	LogGroup uint16
	LogRate  int
	// DropLogReader reads the drop-log group and writes its lines (--drop-log-reader).
	DropLogReader bool
	// Netns names, as a file, the network namespace of the node's table when --nft runs nft
	// in another one than the agent's (--netns): what the agent reads over netlink (the drift
	// monitor, counters, drop logs) is read there. Empty: the agent's own.
	Netns string
	// MinApplyInterval is --min-apply-interval.
	MinApplyInterval time.Duration
	// NetlinkElements sends updates that change only set and map elements as netlink messages
	// rather than through nft (--netlink-elements).
	NetlinkElements bool
	// CounterInterval is how often the table's counters are read for the metrics; 0 turns
	// the counter metrics off.
	CounterInterval time.Duration
	// FullTranslate translates the whole cluster on every change (--full-translate).
	FullTranslate bool

	// Not flags: tests set these to retry quickly and to run several agents in one process
	// (controller names are otherwise registered process-wide). Zero values are production's.
	RetryBaseDelay, RetryMaxDelay time.Duration
	SkipNameValidation            bool
}

// Validate reports every problem at once.
func (c RunConfig) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required (or set NODE_NAME, e.g. from the downward API spec.nodeName)"))
	}
	if err := render.ValidateTableName(c.Table); err != nil {
		errs = append(errs, fmt.Errorf("--table: %w", err))
	}
	if _, err := nft.ParseCommand(c.NFT); err != nil {
		errs = append(errs, fmt.Errorf("--nft: %w", err))
	}
	if c.NFTTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--nft-timeout must be positive, got %s", c.NFTTimeout))
	}
	if c.RefillMax < 0 {
		errs = append(errs, fmt.Errorf("--incremental-refill-max must not be negative, got %d", c.RefillMax))
	}
	if c.ResyncPeriod < 0 {
		errs = append(errs, fmt.Errorf("--resync-period must not be negative, got %s", c.ResyncPeriod))
	}
	if c.MinApplyInterval < 0 {
		errs = append(errs, fmt.Errorf("--min-apply-interval must not be negative, got %s", c.MinApplyInterval))
	}
	if c.CounterInterval < 0 {
		errs = append(errs, fmt.Errorf("--counter-interval must not be negative, got %s", c.CounterInterval))
	}
	return errors.Join(errs...)
}

func runAgent(ctx context.Context, args []string, stdio IO) int {
	fs := newFlagSet("run", "[flags]",
		"Runs the agent for one node: watches NetworkPolicies, Namespaces and Pods (and\n"+
			"ClusterNetworkPolicies and every Node, when the ClusterNetworkPolicy CRD is installed as the\n"+
			"agent starts; installed later, it takes a restart) and keeps the node's nft table in line\n"+
			"with them, replacing it in one transaction on every change.\n"+
			"The table is never flushed at startup and stays in place on exit; `flock-netpol cleanup`\n"+
			"removes it. The kubeconfig comes from --kubeconfig, $KUBECONFIG, the in-cluster service\n"+
			"account, or ~/.kube/config, in that order.",
		stdio.Stderr)
	cfg := RunConfig{}
	fs.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name, as in the pods' spec.nodeName (default $NODE_NAME)")
	fs.StringVar(&cfg.Table, "table", render.DefaultTable, "name of the agent's nft table (family inet); the agent owns it entirely")
	fs.StringVar(&cfg.NFT, "nft", "nft", "the nft command, split on spaces (e.g. \"ip netns exec node1 nft\")")
	fs.DurationVar(&cfg.NFTTimeout, "nft-timeout", nft.DefaultTimeout, "how long one nft invocation may take before it is killed (nothing is committed then)")
	fs.StringVar(&cfg.MetricsBindAddress, "metrics-bind-address", "0", "address the metrics endpoint binds to, e.g. :9653; \"0\" disables it")
	fs.BoolVar(&cfg.MetricsSecure, "metrics-secure", true, "serve metrics over HTTPS with Kubernetes authentication and authorization")
	fs.StringVar(&cfg.HealthProbeBindAddress, "health-probe-bind-address", ":9652", "address the /healthz and /readyz endpoints bind to")
	fs.DurationVar(&cfg.ResyncPeriod, "resync-period", time.Minute, "how often to check that the kernel still holds the applied table, and repair it if not; 0 disables the check")
	fs.IntVar(&cfg.RefillMax, "incremental-refill-max", render.DefaultMaxRefill, "an update that removes elements from a set of the table sends the whole set again when it holds at most this many elements, and removes them with `delete element` otherwise, which nft 1.0.6 answers by first loading every interval set of the network namespace; raise it when another component keeps large interval sets on the node (0: never send a set again)")
	fs.BoolVar(&cfg.DropLogReader, "drop-log-reader", true, "read the drop-log group (--drop-log-group) and write one log line per logged packet; turn off when another program (e.g. ulogd) reads the group")
	fs.StringVar(&cfg.Netns, "netns", "", "the network namespace of the node's table, as a file (e.g. /var/run/netns/node1), when --nft runs nft in another namespace than the agent's: the drift monitor, the counters and the drop logs are read there, and element updates (--netlink-elements) sent there; empty: the agent's own")
	fs.DurationVar(&cfg.MinApplyInterval, "min-apply-interval", controller.DefaultMinApplyInterval, "the least time between the end of one recompute of a change and the start of the next: a change that comes sooner waits for the rest of it, collecting the others that arrive meanwhile, so a stream of pod events costs one recompute and at most one apply per interval, while a change alone is applied at once (as kube-proxy's --min-sync-period); 0: no wait")
	fs.BoolVar(&cfg.NetlinkElements, "netlink-elements", true, "send an update that changes only set and map elements (the usual pod event) to the kernel as one netlink transaction instead of through nft, which costs nft's start and its loading of the table (tens of milliseconds on a large table); false: every update goes through nft")
	fs.DurationVar(&cfg.CounterInterval, "counter-interval", 15*time.Second, "how often to read the table's per-rule and per-pod counters for the metrics (one netlink dump); 0 turns those metrics off")
	fs.BoolVar(&cfg.FullTranslate, "full-translate", false, "translate the whole cluster on every change, as before the incremental translation (which the periodic check compares with a full one anyway); for comparison, or should the incremental one misbehave")
	var edges edgeFlags
	edges.register(fs)
	config.RegisterFlags(fs)
	zapOpts := zap.Options{Development: false} // JSON logs unless --zap-devel
	zapOpts.BindFlags(fs)
	if code := parse(fs, args); code >= 0 {
		return code
	}
	cfg.PodCIDRs, cfg.CloseUnknownPodAddresses, cfg.AntiSpoofing, cfg.Established = edges.podCIDRs, edges.closeUnknown, edges.antiSpoofing, edges.established
	cfg.LogDrops, cfg.LogGroup, cfg.LogRate = edges.logDrops, uint16(edges.logGroup), edges.logRate
	if err := errors.Join(edges.validate(), cfg.Validate()); err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol run: invalid flags:\n%v\n", err)
		return 2
	}

	log := zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(stdio.Stderr))
	ctrl.SetLogger(log)
	if err := runManager(ctx, cfg); err != nil {
		log.Error(err, "agent stopped")
		return 1
	}
	log.Info("agent stopped; the rules stay in force")
	return 0
}

func runManager(ctx context.Context, cfg RunConfig) error {
	log := ctrl.Log.WithName("flock-netpol").WithValues("node", cfg.NodeName, "table", cfg.Table)
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	return Start(ctx, restCfg, cfg, log, nil)
}

// Start runs the agent until ctx ends. executor may be nil (run processes for real); tests pass
// a fake to observe or fail the applies.
func Start(ctx context.Context, restCfg *rest.Config, cfg RunConfig, log logr.Logger, executor nft.Executor) error {
	a, err := NewAgent(restCfg, cfg, log, executor)
	if err != nil {
		return err
	}
	log.Info("starting", "nft", cfg.NFT)
	return a.Run(ctx)
}

// Agent is a manager wired with the reconciler and its health checks, not yet started.
type Agent struct {
	Manager    ctrl.Manager
	Reconciler *controller.Reconciler
	nft        *nft.Client
	cfg        RunConfig
	log        logr.Logger
	netns      *os.File // --netns, nil without
}

// Run installs the bootstrap table when the node has no table (see bootstrap), then runs the
// manager until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if a.netns != nil {
		defer func() { _ = a.netns.Close() }()
	}
	a.bootstrap(ctx)
	return a.Manager.Start(ctx)
}

// NewAgent builds the agent the way `flock-netpol run` does. executor may be nil (run processes
// for real).
func NewAgent(restCfg *rest.Config, cfg RunConfig, log logr.Logger, executor nft.Executor) (*Agent, error) {
	argv, err := nft.ParseCommand(cfg.NFT)
	if err != nil {
		return nil, err
	}
	nftClient, err := nft.New(nft.Config{Command: argv, Timeout: cfg.NFTTimeout, Executor: executor})
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// Known whether or not the cluster serves them; they are watched only when it does.
	if err := v1alpha2.Install(scheme); err != nil {
		return nil, err
	}
	// The manager is given the mapper that answered whether ClusterNetworkPolicy is served, so
	// that it reuses that discovery rather than doing its own. Like the manager's own discovery
	// (the cache looks up every type it is given), this needs the API server: without it the
	// agent exits, and its restart tries again, while the kernel keeps the last table.
	httpClient, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		return nil, fmt.Errorf("creating the API server's HTTP client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(restCfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("creating the REST mapper: %w", err)
	}
	clusterPolicies, err := controller.ClusterPoliciesInstalled(mapper)
	if err != nil {
		return nil, err
	}
	if clusterPolicies {
		log.Info("enforcing ClusterNetworkPolicy: its CRD is installed; watching ClusterNetworkPolicies and every Node",
			"crd", controller.ClusterNetworkPolicyCRD, "version", v1alpha2.GroupVersion.Version)
	} else {
		log.Info("ClusterNetworkPolicy is not enforced: its CRD is not installed; the agent looks for it only at startup, so restart the agent after installing it",
			"crd", controller.ClusterNetworkPolicyCRD, "version", v1alpha2.GroupVersion.Version)
	}
	metricsOpts := metricsserver.Options{BindAddress: cfg.MetricsBindAddress, SecureServing: cfg.MetricsSecure}
	if cfg.MetricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		MapperProvider:         func(*rest.Config, *http.Client) (meta.RESTMapper, error) { return mapper, nil },
		Cache:                  controller.CacheOptions(cfg.NodeName, clusterPolicies),
		Client:                 controller.ClientOptions(),
		Metrics:                metricsOpts,
		HealthProbeBindAddress: cfg.HealthProbeBindAddress,
		// One agent per node, each enforcing its own node: there is nothing to elect.
		LeaderElection: false,
		Logger:         log,
		Controller:     ctrlconfig.Controller{SkipNameValidation: ptr.To(cfg.SkipNameValidation)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	r := &controller.Reconciler{
		Source:                   controller.CacheSource{Informers: mgr.GetCache(), ClusterPolicies: clusterPolicies},
		Node:                     cfg.NodeName,
		ClusterPolicies:          clusterPolicies,
		Table:                    cfg.Table,
		Applier:                  flagHintApplier{nftClient},
		Inspector:                nftClient,
		ResyncPeriod:             cfg.ResyncPeriod,
		IncrementalMaxRefill:     refillMax(cfg.RefillMax),
		CloseUnknownPodAddresses: cfg.CloseUnknownPodAddresses,
		PodCIDRs:                 cfg.PodCIDRs,
		AntiSpoofing:             cfg.AntiSpoofing,
		Established:              cfg.Established,
		LogDrops:                 cfg.LogDrops,
		LogGroup:                 cfg.LogGroup,
		LogRate:                  cfg.LogRate,
		Metrics:                  controller.DefaultMetrics(),
		Log:                      log,
		RetryBaseDelay:           cfg.RetryBaseDelay,
		RetryMaxDelay:            cfg.RetryMaxDelay,
		FullTranslate:            cfg.FullTranslate,
		MinApplyInterval:         cfg.MinApplyInterval,
		// A reconcile holds at most a few nft calls, each killed at its timeout; well past that,
		// the loop itself is stuck and a restart is the remedy.
		StuckAfter: 3*cfg.NFTTimeout + time.Minute,
	}
	netnsFD := 0
	var netnsFile *os.File // kept open while the agent runs: the netlink readers dial through it
	if cfg.Netns != "" {
		if netnsFile, err = os.Open(cfg.Netns); err != nil {
			return nil, fmt.Errorf("--netns: %w", err)
		}
		netnsFD = int(netnsFile.Fd())
	}
	// The drift monitor reads the kernel's nftables notifications in the table's namespace. A
	// test's executor that stands in for nft (without --netns) streams its own monitor, or none.
	switch _, streams := executor.(nft.Streamer); {
	case executor == nil || cfg.Netns != "":
		r.Monitor = nft.NetlinkMonitor{NetNS: netnsFD}
	case streams:
		r.Monitor = nftClient
	}
	// Element updates reach the same namespace as nft's scripts, so only where the monitor reads
	// it too; a test's executor that stands in for nft takes everything.
	if cfg.NetlinkElements && (executor == nil || cfg.Netns != "") {
		elements := &nft.NetlinkElements{NetNS: netnsFD}
		r.Elements = elements
		// It keeps its socket between updates; the agent's end closes it.
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			<-ctx.Done()
			return elements.Close()
		})); err != nil {
			return nil, err
		}
	}
	if cfg.CounterInterval > 0 {
		r.Counters = controller.NewRuleCounters(nft.NetlinkCounters{NetNS: netnsFD}, cfg.Table, log.WithName("counters"))
		if err := metrics.Registry.Register(r.Counters); err != nil {
			// Only a second agent in one process (tests) meets this: the first one's are served.
			log.Error(err, "the counter metrics of this agent are not served")
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			r.Counters.Run(ctx, cfg.CounterInterval)
			return nil
		})); err != nil {
			return nil, err
		}
	}
	if cfg.DropLogReader {
		src := r.Source
		resolver := &droplog.RuleSetResolver{
			RuleSet: r.AppliedRuleSet,
			Pods: func() ([]*compact.Pod, error) {
				in, err := src.Objects(context.Background())
				return in.Pods, err
			},
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			readDropLogs(ctx, cfg.LogGroup, netnsFD, resolver, r.Metrics, log.WithName("drop-log"))
			return nil
		})); err != nil {
			return nil, err
		}
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("reconcile-loop", r.LiveCheck); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("applied", r.ReadyCheck); err != nil {
		return nil, err
	}
	return &Agent{Manager: mgr, Reconciler: r, nft: nftClient, cfg: cfg, log: log, netns: netnsFile}, nil
}

// readDropLogs reads the drop-log group until ctx ends, opening it again (after a growing pause)
// whenever it cannot be bound or reading fails: drop logs are worth a retry, never the agent.
func readDropLogs(ctx context.Context, group uint16, netnsFD int, res droplog.Resolver, m *controller.Metrics, log logr.Logger) {
	stats := func(kind string, n int) { m.DropLog.WithLabelValues(kind).Add(float64(n)) }
	delay := time.Second
	for ctx.Err() == nil {
		err := func() error {
			r, err := droplog.Open(group, netnsFD)
			if err != nil {
				return err
			}
			log.Info("reading drop logs", "group", group)
			delay = time.Second
			return r.Run(ctx, res, log, stats)
		}()
		if ctx.Err() != nil {
			return
		}
		log.Error(err, "drop logs are not read; retrying", "after", delay.String())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(2*delay, 5*time.Minute)
	}
}

// bootstrapTimeout bounds the start-up read of this node's Node object for its pod ranges.
const bootstrapTimeout = 10 * time.Second

// bootstrap closes a node that has no table of ours (a fresh node, or one rebooted), at once and
// before the caches sync: until the first full apply, forwarded traffic from and to the node's pod
// ranges is dropped, so no pod that starts meanwhile is open. The table is the translation of an
// empty cluster with those ranges, which the first full apply replaces in one transaction like
// any other. An existing table is left alone (never flushed at start): it enforces the last
// applied state until the first apply. Without pod ranges (closing is off, or neither
// --pod-cidrs nor the Node tells them) there is nothing to close, and the agent says so.
func (a *Agent) bootstrap(ctx context.Context) {
	cfg, log := a.cfg, a.log
	if !cfg.CloseUnknownPodAddresses {
		return
	}
	exists, err := a.nft.TableExists(ctx, "inet", cfg.Table)
	if err != nil {
		// Not fatal: the reconciler retries its applies, unready, and says the same.
		log.Error(withNFTFlagHint(err), "cannot tell whether the table exists; no bootstrap table")
		return
	}
	if exists {
		return
	}
	cidrs := cfg.PodCIDRs
	if len(cidrs) == 0 {
		getCtx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
		defer cancel()
		var node corev1.Node
		if err := a.Manager.GetAPIReader().Get(getCtx, client.ObjectKey{Name: cfg.NodeName}, &node); err != nil {
			log.Error(err, "no table yet and the node's pod ranges are unknown: the node stays open until the first apply", "node", cfg.NodeName)
			return
		}
		if cidrs, err = translate.NodePodCIDRs(&node); err != nil {
			log.Error(err, "ignoring a pod range of the Node")
		}
	}
	if len(cidrs) == 0 {
		log.Info("no table yet and the Node has no pod ranges: the node stays open until the first apply")
		return
	}
	rs, _ := translate.Translate(translate.Input{Node: cfg.NodeName, PodCIDRs: cidrs})
	script := render.Render(rs, a.Reconciler.RenderOptions(epoch.State{}))
	if err := a.nft.Apply(ctx, script.Text); err != nil {
		log.Error(withNFTFlagHint(err), "installing the bootstrap table failed; the node stays open until the first apply")
		return
	}
	a.Reconciler.Metrics.Applies.WithLabelValues("bootstrap").Inc()
	log.Info("no table yet: installed the bootstrap table, which drops forwarded traffic from and to the node's pod ranges until the first full apply",
		"podCIDRs", fmt.Sprint(rs.Edges.PodCIDRs))
}

// flagHintApplier names --nft in the error of an apply that cannot run nft at all.
type flagHintApplier struct{ *nft.Client }

func (a flagHintApplier) Apply(ctx context.Context, script []byte) error {
	return withNFTFlagHint(a.Client.Apply(ctx, script))
}

// refillMax is --incremental-refill-max as the reconciler takes it: there 0 means the default
// and a negative value never.
func refillMax(flag int) int {
	if flag == 0 {
		return -1
	}
	return flag
}
