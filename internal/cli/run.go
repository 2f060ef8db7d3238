package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
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
	if c.ResyncPeriod < 0 {
		errs = append(errs, fmt.Errorf("--resync-period must not be negative, got %s", c.ResyncPeriod))
	}
	return errors.Join(errs...)
}

func runAgent(ctx context.Context, args []string, stdio IO) int {
	fs := newFlagSet("run", "[flags]",
		"Runs the agent for one node: watches NetworkPolicies, Namespaces and Pods and keeps the\n"+
			"node's nft table in line with them, replacing it in one transaction on every change.\n"+
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
	config.RegisterFlags(fs)
	zapOpts := zap.Options{Development: false} // JSON logs unless --zap-devel
	zapOpts.BindFlags(fs)
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if err := cfg.Validate(); err != nil {
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
	return a.Manager.Start(ctx)
}

// Agent is a manager wired with the reconciler and its health checks, not yet started.
type Agent struct {
	Manager    ctrl.Manager
	Reconciler *controller.Reconciler
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
	metricsOpts := metricsserver.Options{BindAddress: cfg.MetricsBindAddress, SecureServing: cfg.MetricsSecure}
	if cfg.MetricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controller.CacheOptions(),
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
		Source:         controller.CacheSource{Informers: mgr.GetCache()},
		Node:           cfg.NodeName,
		Table:          cfg.Table,
		Applier:        nftClient,
		Inspector:      nftClient,
		ResyncPeriod:   cfg.ResyncPeriod,
		Metrics:        controller.DefaultMetrics(),
		Log:            log,
		RetryBaseDelay: cfg.RetryBaseDelay,
		RetryMaxDelay:  cfg.RetryMaxDelay,
		// A reconcile holds at most a few nft calls, each killed at its timeout; well past that,
		// the loop itself is stuck and a restart is the remedy.
		StuckAfter: 3*cfg.NFTTimeout + time.Minute,
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
	return &Agent{Manager: mgr, Reconciler: r}, nil
}
