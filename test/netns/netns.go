//go:build linux

// Package netns builds a small simulated Kubernetes cluster out of Linux network namespaces, for
// tests that need real packets to cross a node's nftables `forward` hook.
//
// # Topology
//
// Every object is its own network namespace, named "<prefix><kind>-<name>" where prefix is unique
// per Bed ("fnp-<6 random chars>-") and kind is n (node), p (pod), x (external host) or "ul" for
// the underlay:
//
//	pod ns (p-<pod>)           node ns (n-<node>)                          underlay ns (ul)
//	eth0 10.1.0.11/32  <-veth->  v-<pod> 169.254.1.1/32, fe80::1/64
//	     fd00:1::11/128          route 10.1.0.11/32 dev v-<pod>
//	default via 169.254.1.1      ul0 10.254.0.N/24    <-veth->  port -- br0 -- other nodes,
//	default via fe80::1              fd00:254::N/64                           external hosts
//	                             route <pod on another node> via that node's ul0 address
//
// Pods are attached with routed veth pairs (as Calico does): the pod has only its /32 and /128 and
// a default route via a link-local gateway that the node answers for; the node has one host route
// per pod address and forwarding enabled. Consequently every packet between two pods, and between a
// pod and anything off its node, is routed by the node and traverses the node's `forward` hook;
// nothing is bridged inside a node.
//
// Nodes are joined by an underlay: a bridge in its own namespace, with one veth per node. Each node
// has a host route to every pod on the other nodes (via that node's underlay address). External
// hosts hang off the same bridge with an underlay address plus their own addresses; nodes route
// those addresses to them and they route every pod address to the pod's node, so pod<->external
// traffic crosses exactly the pod's node's forward hook. There is no NAT anywhere.
//
// A host-network endpoint (HostNet, what a hostNetwork pod is) lives in its node's namespace with
// the node's underlay addresses: flows to it end in the node's input hook, flows from it start in
// the output hook.
//
// Things the model does not cover: a flow from a pod to itself never leaves the pod (ProbeMatrix
// skips it); and ARP/ND between a pod and its gateway go to the node's input/output hooks, not
// forward, so a rule set that drops in input breaks pods.
//
// # Addresses
//
// Callers choose pod and external addresses. To keep tests from ever addressing real networks, all
// of them must lie in 10.0.0.0/8 or fd00::/8, and they must not collide with the reserved ranges
// 10.254.0.0/24 and fd00:254::/64 (underlay) or link-local space (gateways). Keep external host
// addresses outside the pod ranges your test uses (for example pods in 10.1.0.0/16 and
// fd00:1::/64, externals in 10.200.0.0/16 and fd00:200::/64), since policy code usually tells pods
// and the outside world apart by CIDR.
//
// # Traffic
//
// Endpoint.Serve starts in-process TCP and UDP servers inside a pod, external host or host-network
// endpoint (TCP: write the endpoint's name and close; UDP: echo, prefixed with the name);
// ServeSCTP answers SCTP INITs over raw sockets, which works without an SCTP stack (sctp.go). Bed.Probe and Bed.ProbeMatrix
// open connections from a source namespace concurrently, with short timeouts. For connections
// that live on while rules change, ServeEcho serves an echo that keeps each connection open and
// can push to a client unasked, and Bed.DialStream opens a long-lived client (stream.go). All of this happens
// in the test process on threads temporarily moved into the namespace (see Do); no helper
// processes run, so there is nothing to leak besides the namespaces themselves.
//
// # Cleanup
//
// Whoever creates a bed closes it: New returns it and the caller runs Bed.Close (a program defers
// it); NewBed, the form for tests, registers Close with t.Cleanup, so namespaces are removed even
// when the test fails. A process-wide SIGINT/SIGTERM handler also closes every live Bed before the
// process dies, so Ctrl-C on `go test` or on a program does not leave namespaces behind (a second
// signal during cleanup exits at once). Only SIGKILL, a crash or an expiring `go test -timeout`
// (which panics without running cleanups) can leak namespaces. Every bed records its owning
// process (pid, start time, pid namespace) in the alias of its underlay bridge, and New calls
// SweepStale, which deletes beds whose owner is gone; beds of running processes, such as other
// test runs in parallel, are never touched. By hand:
//
//	ip netns list | grep '^fnp-'   # then `ip netns del` those of runs that are over
//
// # Scratch namespaces
//
// Scratch (NewScratch in tests) makes a single throwaway namespace with an empty ruleset, for
// kernel tests and agents under test that only need somewhere to program nftables. It shares the
// bed's naming (fnp-<random>-scratch), owner record and sweep.
//
// # Without a test
//
// New, Bed.NewNode, Bed.NewPod, Bed.NewExternal, Listen and Run return errors, so a program (the
// demo) can drive a bed. The methods for tests, AddNode, AddPod, AddExternal, Serve and MustRun,
// are those plus t.Fatal: they report through the testing.TB of NewBed (or SetTB), and panic on a
// bed without one.
//
// # Usage
//
//	func TestSomething(t *testing.T) {
//		b := netns.NewBed(t) // skips unless root; cleans up via t.Cleanup
//		a, bn := b.AddNode("a"), b.AddNode("b")
//		ip := netip.MustParseAddr
//		a1 := b.AddPod(a, "a1", ip("10.1.0.11"), ip("fd00:1::11"))
//		b1 := b.AddPod(bn, "b1", ip("10.1.1.11"), ip("fd00:1::1:11"))
//		ext := b.AddExternal("ext", ip("10.200.0.10"), ip("fd00:200::10"))
//		eps := []netns.Endpoint{a1, b1, ext}
//		for _, e := range eps {
//			e.Serve(8080)
//		}
//		// Program node a, e.g. with the agent's nft client wrapped as
//		// `ip netns exec <a.Namespace()> nft`, or directly:
//		a.MustRun(script, "nft", "-f", "-")
//		got := b.ProbeMatrix(8080, eps, eps) // tcp4, udp4, tcp6, udp6 for every pair
//		want := got.Expect(func(from, to netns.Endpoint, k netns.Kind) bool { return ... })
//		if d := got.Diff(want); d != "" {
//			t.Error(d)
//		}
//	}
//
// # Requirements
//
// Root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`; otherwise New returns an error
// wrapping ErrUnavailable and NewBed skips the test (fails it when FLOCK_REQUIRE_KERNEL_TESTS is
// set). nft is only needed by callers that program rules, e.g. with Node.Run("", "nft", "-f", "-").
package netns

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/test/testenv"
)

// Reserved address plan. The underlay prefixes host node and external-host underlay addresses; the
// gateways are what pods use as their default next hop.
var (
	underlay4 = netip.MustParsePrefix("10.254.0.0/24")
	underlay6 = netip.MustParsePrefix("fd00:254::/64")
	gateway4  = netip.MustParseAddr("169.254.1.1")
	gateway6  = netip.MustParseAddr("fe80::1")

	// allowed4/allowed6 are the only ranges tests may use, so that even a routing mistake cannot
	// make the bed talk to a real network.
	allowed4 = netip.MustParsePrefix("10.0.0.0/8")
	allowed6 = netip.MustParsePrefix("fd00::/8")
)

// Defaults for Bed.ProbeTimeout and Bed.ProbeConcurrency.
const (
	DefaultProbeTimeout     = 400 * time.Millisecond
	DefaultProbeConcurrency = 64
)

// Bed is one simulated cluster. Create it with New (or NewBed in a test); add nodes, pods and
// external hosts with NewNode, NewPod and NewExternal (in a test, from the test goroutine: AddNode,
// AddPod and AddExternal, which report setup errors with t.Fatal). Probe and ProbeMatrix may be
// called from any goroutine.
type Bed struct {
	// ProbeTimeout bounds each probe (TCP connect plus reading the reply; UDP send plus waiting
	// for the echo). A dropped flow costs this much. Default DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// ProbeConcurrency bounds the number of probes in flight (each uses one OS thread).
	// Default DefaultProbeConcurrency.
	ProbeConcurrency int

	t      testing.TB // for the Must-style methods; nil: they panic
	prefix string
	ulNS   string

	mu        sync.Mutex
	closed    bool
	nsCreated []string // every namespace we (tried to) create, in creation order
	names     map[string]bool
	addrs     map[netip.Addr]string // address -> owner name, to reject duplicates
	nodes     []*Node
	externals []*Host
	members   []*member // underlay members (nodes and external hosts)
	nextUL    int       // last underlay host number handed out
	closers   []func() error
	servers   sync.WaitGroup
}

// member is anything attached to the underlay bridge: a node or an external host.
type member struct {
	ns         string
	ifname     string // its interface on the underlay
	ul4, ul6   netip.Addr
	src4, src6 netip.Addr // preferred source for routes it originates (external hosts only)
	owned      func() []netip.Addr
}

// Options configure New. The zero value gives the defaults.
type Options struct {
	// ProbeTimeout and ProbeConcurrency set the bed's fields of the same names. Defaults
	// DefaultProbeTimeout and DefaultProbeConcurrency.
	ProbeTimeout     time.Duration
	ProbeConcurrency int
	// Logf receives what the bed has to say besides errors (namespaces of dead processes it
	// swept). Default: nothing is logged.
	Logf func(format string, args ...any)
}

// New creates an empty Bed (just the underlay bridge). The caller must Close it. It needs root and
// `ip`; when they are missing or namespaces cannot be created the error wraps ErrUnavailable.
func New(opts Options) (*Bed, error) {
	if os.Geteuid() != 0 {
		return nil, unavailable("the namespace test bed needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); run e.g. `sudo go test ./test/netns/`")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, unavailable("iproute2's `ip` is not in PATH (apt-get install iproute2)")
	}
	if swept, err := SweepStale(); (len(swept) > 0 || err != nil) && opts.Logf != nil {
		opts.Logf("netns: removed namespaces of dead test beds: %v (err: %v)", swept, err)
	}
	b := &Bed{
		ProbeTimeout:     cmp.Or(opts.ProbeTimeout, DefaultProbeTimeout),
		ProbeConcurrency: cmp.Or(opts.ProbeConcurrency, DefaultProbeConcurrency),
		prefix:           "fnp-" + randString(6) + "-",
		names:            map[string]bool{},
		addrs:            map[netip.Addr]string{},
	}
	// Register before creating anything, so a signal arriving mid-setup still cleans up.
	registerLive(b)
	if err := b.createUnderlay(); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

func (b *Bed) createUnderlay() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ulNS = b.prefix + "ul"
	if err := b.createNS(b.ulNS, roleUnderlay); err != nil {
		// The first namespace is the capability probe: failing here means the environment (a
		// container without CAP_SYS_ADMIN, a read-only /var/run, ...) cannot host the bed.
		return unavailable("cannot create network namespaces: %v", err)
	}
	if err := ipBatch(b.ulNS,
		"link set lo up",
		// Snooping off: with no multicast querier on this L2 segment, snooping could stop
		// forwarding IPv6 neighbour solicitations to the right ports.
		"link add br0 type bridge mcast_snooping 0",
		// Owner record for SweepStale (quoted: ip batch lines are split on blanks).
		fmt.Sprintf("link set br0 alias %q", ownerTag()),
		"link set br0 up",
	); err != nil {
		return fmt.Errorf("netns: underlay: %w", err)
	}
	return nil
}

// NewBed is New for tests: it closes the bed when tb ends (an error closing it fails tb), makes
// the bed's Must-style methods report through tb (SetTB), skips tb when the machine cannot host a
// bed (fails it when FLOCK_REQUIRE_KERNEL_TESTS is set), and fails it on any other error.
func NewBed(tb testing.TB) *Bed {
	tb.Helper()
	b, err := New(Options{Logf: tb.Logf})
	if errors.Is(err, ErrUnavailable) {
		testenv.Strict(tb).Skipf("netns: skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	b.SetTB(tb)
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("netns: cleanup: %v", err)
		}
	})
	return b
}

// SetTB makes AddNode, AddPod, AddExternal, Serve and MustRun report failures with tb.Fatalf
// instead of panicking. Call it before using them (NewBed does).
func (b *Bed) SetTB(tb testing.TB) { b.t = tb }

// fatal ends the test of the Must-style methods with err, or panics on a bed without one.
func (b *Bed) fatal(err error) {
	if b.t == nil {
		panic(err)
	}
	b.t.Helper()
	b.t.Fatal(err)
}

// Prefix is the unique namespace-name prefix of this bed, e.g. "fnp-k3x9qa-".
func (b *Bed) Prefix() string { return b.prefix }

// Namespaces lists the namespaces this bed created (underlay first), e.g. for `ip netns exec`.
func (b *Bed) Namespaces() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.nsCreated)
}

// Nodes returns the nodes in creation order.
func (b *Bed) Nodes() []*Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.nodes)
}

// Externals returns the external hosts in creation order.
func (b *Bed) Externals() []*Host {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.externals)
}

// Close stops all servers and deletes all namespaces of the bed, and returns an error naming what
// is left. It is idempotent (later calls return nil) and also runs on SIGINT/SIGTERM; NewBed
// registers it with t.Cleanup, so a test calls it only to check the cleanup itself.
func (b *Bed) Close() error {
	// Holding mu for the whole teardown makes a concurrent Add* either finish before we delete
	// (so its namespace is deleted too) or see closed and create nothing.
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	defer unregisterLive(b)

	var errs []error
	// Sockets pin their namespace: close them first, or a deleted namespace would linger (without
	// a name) until the process exits.
	for _, c := range b.closers {
		if err := c(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	b.closers = nil
	b.servers.Wait()

	// The underlay, created first, goes last.
	order := slices.Clone(b.nsCreated)
	slices.Reverse(order)
	errs = append(errs, Delete(order...))
	return errors.Join(errs...)
}

type nsRole int

const (
	roleUnderlay nsRole = iota
	roleNode
	roleEndpoint
)

// createNS adds a namespace and sets its sysctls. Called with b.mu held.
//
// The sysctls are set explicitly because a new namespace inherits IPv4 settings from the host's
// (net.core.devconf_inherit_init_net=0), so rp_filter or arp_ignore values chosen for the host would
// otherwise leak into the bed. Values are written to "all" and "default" before any interface
// exists, so every interface created later starts from them.
func (b *Bed) createNS(ns string, role nsRole) error {
	if b.closed {
		return errors.New("netns: bed already closed")
	}
	b.nsCreated = append(b.nsCreated, ns) // record first: a half-created namespace is still deleted
	if err := Add(ns); err != nil {
		return err
	}
	var kv []sysctl
	for _, c := range []string{"all", "default"} {
		kv = append(kv,
			// Reverse-path filtering off: a drop here would look exactly like a policy drop. The
			// routing is symmetric anyway, so it would not fire, but it must not depend on the host.
			sysctl{"ipv4/conf/" + c + "/rp_filter", "0"},
			sysctl{"ipv4/conf/" + c + "/arp_ignore", "0"},
		)
	}
	fwd := "0"
	if role == roleNode {
		fwd = "1"
	}
	kv = append(kv, sysctl{"ipv4/ip_forward", fwd})
	if role == roleUnderlay {
		// The bridge namespace is pure L2; without IPv6 on its ports it sends no DAD/MLD/RS noise.
		kv = append(kv,
			sysctl{"ipv6/conf/all/disable_ipv6", "1"},
			sysctl{"ipv6/conf/default/disable_ipv6", "1"})
	} else {
		for _, c := range []string{"all", "default"} {
			kv = append(kv,
				sysctl{"ipv6/conf/" + c + "/disable_ipv6", "0"},
				// No duplicate address detection: addresses (including auto link-local ones)
				// are usable at once instead of "tentative" for about a second.
				sysctl{"ipv6/conf/" + c + "/accept_dad", "0"},
				sysctl{"ipv6/conf/" + c + "/forwarding", fwd},
			)
		}
	}
	return setSysctls(ns, kv)
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$`)

// claimName validates a node/pod/host name and reserves it. Names are unique per bed across all
// kinds so that matrices and error messages are unambiguous. Called with b.mu held.
func (b *Bed) claimName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("netns: invalid name %q (want 1-20 chars of [a-z0-9-])", name)
	}
	if b.names[name] {
		return fmt.Errorf("netns: name %q already used in this bed", name)
	}
	b.names[name] = true
	return nil
}

// claimAddrs validates endpoint addresses against the address plan and reserves them.
func (b *Bed) claimAddrs(owner string, addrs []netip.Addr) ([]netip.Addr, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("netns: %s: at least one address is required", owner)
	}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case !a.IsValid() || a.Zone() != "":
			return nil, fmt.Errorf("netns: %s: invalid address %v", owner, a)
		case !allowed4.Contains(a) && !allowed6.Contains(a):
			return nil, fmt.Errorf("netns: %s: address %v is outside 10.0.0.0/8 and fd00::/8", owner, a)
		case underlay4.Contains(a) || underlay6.Contains(a):
			return nil, fmt.Errorf("netns: %s: address %v is in the reserved underlay range %v/%v", owner, a, underlay4, underlay6)
		case b.addrs[a] != "":
			return nil, fmt.Errorf("netns: %s: address %v already used by %s", owner, a, b.addrs[a])
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("netns: %s: address %v given twice", owner, a)
		}
		out = append(out, a)
	}
	for _, a := range out {
		b.addrs[a] = owner
	}
	return out, nil
}

// randString returns n random characters from [a-z0-9].
func randString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	for i := range buf {
		buf[i] = alphabet[int(buf[i])%len(alphabet)]
	}
	return string(buf)
}

// Process-wide registry of open beds, for the signal handler.
var live struct {
	sync.Mutex
	beds    map[*Bed]struct{}
	install sync.Once
}

func registerLive(b *Bed) {
	live.install.Do(installSignalHandler)
	live.Lock()
	defer live.Unlock()
	if live.beds == nil {
		live.beds = map[*Bed]struct{}{}
	}
	live.beds[b] = struct{}{}
}

func unregisterLive(b *Bed) {
	live.Lock()
	defer live.Unlock()
	delete(live.beds, b)
}

// installSignalHandler makes SIGINT/SIGTERM delete every open bed's namespaces and then die from the
// same signal (default action), so `go test` reports the interruption as usual. t.Cleanup does not
// run on signals, hence this. A second signal while cleaning up skips the cleanup.
func installSignalHandler() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "netns: %v: removing test namespaces\n", sig)
		done := make(chan struct{})
		go func() {
			defer close(done)
			live.Lock()
			beds := make([]*Bed, 0, len(live.beds))
			for b := range live.beds {
				beds = append(beds, b)
			}
			live.Unlock()
			for _, b := range beds {
				if err := b.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "netns: cleanup: %v\n", err)
				}
			}
		}()
		select {
		case <-done:
		case <-ch:
		case <-time.After(30 * time.Second):
		}
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if s, ok := sig.(syscall.Signal); ok {
			_ = syscall.Kill(os.Getpid(), s)
		}
		time.Sleep(time.Second) // the re-raised signal normally ends the process right here
		os.Exit(1)
	}()
}
