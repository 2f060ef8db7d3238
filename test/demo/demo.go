//go:build linux

// Package demo is the guided tour of flock-netpol that a newcomer runs first (`make demo`, the
// program in hack/demo): a local control plane, a two-node cluster made of network namespaces
// with the pods of examples/, the real agents, and a walk through a few example policies, with the
// reachability measured after each step with real packets and compared with what the policies
// say (Steps, written by hand).
//
// Run drives it; hack/demo is the command line, and test/e2e runs the same walkthrough in-process
// so that `make test` keeps it honest.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// External is the name of the external host (not a pod).
const External = "ext"

// externalAddrs are the external host's: outside the example pod ranges (10.1.0.0/16 and
// fd00:1::/64), inside the only ranges the test bed allows.
var externalAddrs = []netip.Addr{netip.MustParseAddr("10.200.0.10"), netip.MustParseAddr("fd00:200::10")}

// Server is a probed endpoint: a pod ("namespace/name") or External, and the TCP ports it serves.
type Server struct {
	Pod   string
	Ports []uint16
}

// Step is one stage of the walkthrough.
type Step struct {
	Title string
	// File is a manifest under examples/ whose NetworkPolicies the step applies; empty for none.
	File string
	// Policies limits the step to these policies of File ("namespace/name"); empty means all.
	Policies []string
	// Note says in words what changed.
	Note string
	// Want is the expected table (see steps.go).
	Want string
}

// Options configure Run.
type Options struct {
	// Examples is the examples/ directory. Default: found by walking up from the working
	// directory to the module root (FindExamples).
	Examples string
	// Out receives the walkthrough. Default os.Stdout.
	Out io.Writer
	// ShowRules prints each node's nft table after every step.
	ShowRules bool
	// Cluster options (the agent binary, envtest assets, ...).
	Cluster cluster.Options
}

// Result is what one step measured.
type Result struct {
	Step     Step
	Observed string // the measured table, in the format of Step.Want
	Diff     string // "" when it matches Step.Want
}

// Run runs the walkthrough and returns each step's result, and an error when a step's
// measurement differs from what the policies say (the walkthrough still goes on to the end) or
// the cluster could not be started or driven (wrapping netns.ErrUnavailable when this machine
// cannot host it). It removes everything it started before it returns.
func Run(opts Options) (results []Result, err error) {
	out := opts.Out
	if out == nil {
		out = os.Stdout
	}
	start := time.Now()
	fmt.Fprintf(out, "Starting a local control plane (kube-apiserver and etcd), two nodes made of network\n"+
		"namespaces, and one flock-netpol agent per node...\n")
	// First, so that a machine without root or nft says so before anything else. The last step
	// applies ClusterNetworkPolicies: the control plane serves their CRD.
	opts.Cluster.ClusterNetworkPolicies = true
	c, err := cluster.New(opts.Cluster)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	examples := opts.Examples
	if examples == "" {
		var err error
		if examples, err = FindExamples(); err != nil {
			return nil, err
		}
	}
	objs, err := load(examples, "00-namespaces.yaml", "10-pods.yaml")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := &tour{c: c, out: out, byName: map[string]netns.Endpoint{}}
	if err := d.build(ctx, objs); err != nil {
		return nil, err
	}
	if err := c.Enforce(ctx); err != nil {
		return nil, err
	}
	var eps []netns.Endpoint
	for _, name := range d.rows {
		eps = append(eps, d.byName[name])
	}
	firstPort := map[string]uint16{}
	for _, s := range Servers {
		firstPort[endpointName(s.Pod)] = s.Ports[0]
	}
	if err := c.WarmUp(eps, func(to netns.Endpoint) uint16 { return firstPort[to.Name()] }); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Ready in %v.\n\n", time.Since(start).Round(100*time.Millisecond))
	d.describe()

	var mismatches []string
	var prev *table
	for i, st := range Steps {
		fmt.Fprintf(out, "\n== Step %d: %s\n", i, st.Title)
		if st.File != "" {
			if err := d.apply(ctx, examples, st); err != nil {
				return results, err
			}
		}
		if err := c.Enforce(ctx); err != nil {
			return results, fmt.Errorf("step %d: %w", i, err)
		}
		want, err := parseTable(st.Want, d.rows, d.cols)
		if err != nil {
			return results, fmt.Errorf("step %d: expected table: %w", i, err)
		}
		got := d.measure()
		if got.diff(want) != "" {
			// A loaded machine can make a probe miss its short timeout, never make a dropped
			// flow connect: measure again, slower, and keep every connection that succeeded.
			saved := c.Bed.ProbeTimeout
			c.Bed.ProbeTimeout = 2 * time.Second
			got.merge(d.measure())
			c.Bed.ProbeTimeout = saved
		}
		r := Result{Step: st, Observed: got.String()}
		fmt.Fprint(out, indent(got.header()+got.String()))
		fmt.Fprintf(out, "%s\n", wrap(st.Note, 96))
		if prev != nil {
			fmt.Fprintf(out, "Measured change: %s\n", prev.changes(got))
		}
		if diff := got.diff(want); diff != "" {
			r.Diff = diff
			mismatches = append(mismatches, fmt.Sprintf("step %d (%s)", i, st.Title))
			fmt.Fprintf(out, "MISMATCH: the measured table differs from what the policies say:\n%s", indent(diff))
		} else {
			fmt.Fprintf(out, "OK: measured with real packets, exactly what the policies say.\n")
		}
		if opts.ShowRules {
			d.showRules()
		}
		results = append(results, r)
		prev = got
	}
	fmt.Fprintf(out, "\nDone in %v.", time.Since(start).Round(100*time.Millisecond))
	if len(mismatches) > 0 {
		fmt.Fprintln(out)
		return results, fmt.Errorf("measured reachability differs from the policies in %s", strings.Join(mismatches, ", "))
	}
	fmt.Fprintf(out, " Everything is cleaned up on exit (namespaces, agents, control plane).\n")
	return results, nil
}

// tour is the running walkthrough.
type tour struct {
	c      *cluster.Cluster
	out    io.Writer
	byName map[string]netns.Endpoint // endpoint name (pod name or External) -> endpoint
	pods   []*corev1.Pod             // the example pods, as created
	rows   []string                  // client endpoint names, in table order
	cols   []column
}

type column struct {
	server string // endpoint name
	port   uint16
}

func (col column) String() string { return fmt.Sprintf("%s:%d", col.server, col.port) }

// endpointName is the pod's name (unique in the examples) or External.
func endpointName(id string) string {
	_, name, ok := strings.Cut(id, "/")
	if !ok {
		return id
	}
	return name
}

// build creates the namespaces and pods of the examples: a network-namespace pod (with its
// servers) and the API object for every pod that runs, the API object alone for finished ones.
func (d *tour) build(ctx context.Context, objs manifest.Objects) error {
	for _, ns := range objs.Namespaces {
		if err := d.c.CreateNamespace(ctx, ns.Name, ns.Labels); err != nil {
			return err
		}
	}
	serves := map[string][]uint16{}
	for _, s := range Servers {
		serves[s.Pod] = s.Ports
	}
	for _, p := range objs.Pods {
		id := p.Namespace + "/" + p.Name
		var ips []netip.Addr
		for _, ip := range p.Status.PodIPs {
			a, err := netip.ParseAddr(ip.IP)
			if err != nil {
				return fmt.Errorf("pod %s: %w", id, err)
			}
			ips = append(ips, a)
		}
		obj := cluster.PodObject{
			Namespace: p.Namespace, Name: p.Name, Labels: p.Labels,
			Containers: p.Spec.Containers, Node: p.Spec.NodeName, IPs: ips, Phase: p.Status.Phase,
		}
		if p.Status.Phase == corev1.PodRunning || p.Status.Phase == "" {
			ports, ok := serves[id]
			if !ok {
				return fmt.Errorf("pod %s of the examples is not in the demo's Servers", id)
			}
			node := d.c.Node(p.Spec.NodeName)
			if node == nil {
				return fmt.Errorf("pod %s: no node %q in the cluster", id, p.Spec.NodeName)
			}
			ep, err := d.c.Bed.NewPod(node.NS, endpointName(id), ips...)
			if err != nil {
				return err
			}
			if err := ep.Listen(ports...); err != nil {
				return err
			}
			d.byName[ep.Name()] = ep
			obj.Endpoint = ep
		}
		created, err := d.c.CreatePod(ctx, obj)
		if err != nil {
			return err
		}
		d.pods = append(d.pods, created)
	}
	ext, err := d.c.Bed.NewExternal(External, externalAddrs...)
	if err != nil {
		return err
	}
	if err := ext.Listen(serves[External]...); err != nil {
		return err
	}
	d.byName[External] = ext
	for _, s := range Servers {
		name := endpointName(s.Pod)
		if d.byName[name] == nil {
			return fmt.Errorf("server %s has no pod in the examples", s.Pod)
		}
		d.rows = append(d.rows, name)
		for _, p := range s.Ports {
			d.cols = append(d.cols, column{name, p})
		}
	}
	return nil
}

// describe prints the cluster the walkthrough runs on.
func (d *tour) describe() {
	fmt.Fprintf(d.out, "The cluster (pods from examples/10-pods.yaml):\n")
	for _, n := range d.c.Nodes() {
		var lines []string
		for _, p := range d.pods {
			if p.Spec.NodeName != n.Name {
				continue
			}
			var ips []string
			for _, ip := range p.Status.PodIPs {
				ips = append(ips, ip.IP)
			}
			state := ""
			if d.byName[p.Name] == nil {
				state = fmt.Sprintf(" (%s: owns no address, not probed)", p.Status.Phase)
			}
			lines = append(lines, fmt.Sprintf("    %-24s %-28s labels %v%s", p.Namespace+"/"+p.Name, strings.Join(ips, " "), p.Labels, state))
		}
		fmt.Fprintf(d.out, "  %s\n%s\n", n.Name, strings.Join(lines, "\n"))
	}
	var addrs []string
	for _, a := range externalAddrs {
		addrs = append(addrs, a.String())
	}
	fmt.Fprintf(d.out, "  outside the cluster\n    %-24s %-28s a stand-in for the internet\n", External, strings.Join(addrs, " "))
	fmt.Fprintf(d.out, "\nEach table: rows are clients, columns are servers (name:TCP port). Each cell is\n"+
		"IPv4 then IPv6: '.' connected, 'X' blocked, '-' not tried (a pod to itself, or no\n"+
		"address of that family). Every cell is a real TCP connection through the nodes' kernels.\n")
}

// apply creates the step's policies.
func (d *tour) apply(ctx context.Context, examples string, st Step) error {
	objs, err := load(examples, st.File)
	if err != nil {
		return err
	}
	var applied, appliedCluster []string
	for _, np := range objs.Policies {
		key := np.Namespace + "/" + np.Name
		if len(st.Policies) > 0 && !slices.Contains(st.Policies, key) {
			continue
		}
		if err := d.c.ApplyPolicy(ctx, np); err != nil {
			return err
		}
		applied = append(applied, key)
	}
	for _, cnp := range objs.ClusterPolicies {
		if len(st.Policies) > 0 && !slices.Contains(st.Policies, cnp.Name) {
			continue
		}
		if err := d.c.Apply(ctx, cnp); err != nil {
			return fmt.Errorf("applying ClusterNetworkPolicy %s: %w", cnp.Name, err)
		}
		appliedCluster = append(appliedCluster, cnp.Name)
	}
	if len(applied)+len(appliedCluster) == 0 {
		return fmt.Errorf("%s holds none of the policies %v", st.File, st.Policies)
	}
	if len(applied) > 0 {
		fmt.Fprintf(d.out, "kubectl apply: NetworkPolicy %s\n", strings.Join(applied, ", "))
	}
	if len(appliedCluster) > 0 {
		fmt.Fprintf(d.out, "kubectl apply: ClusterNetworkPolicy %s\n", strings.Join(appliedCluster, ", "))
	}
	return nil
}

// measure probes every cell.
func (d *tour) measure() *table {
	t := newTable(d.rows, d.cols)
	var flows []netns.Flow
	var cells []*cell
	var servers []string
	for _, r := range d.rows {
		from := d.byName[r]
		for ci, col := range d.cols {
			to := d.byName[col.server]
			for fam, v6 := range []bool{false, true} {
				c := &t.cells[t.rowIndex(r)][ci][fam]
				if r == col.server || !from.Addr(v6).IsValid() || !to.Addr(v6).IsValid() {
					*c = notTried
					continue
				}
				flows = append(flows, netns.Flow{From: from, To: to.Addr(v6), Proto: "tcp", Port: col.port})
				cells = append(cells, c)
				servers = append(servers, col.server)
			}
		}
	}
	for i, res := range d.c.Bed.Probe(flows) {
		*cells[i] = blocked
		// Answered by another endpoint than the one probed would be a routing fault of the
		// bed: it never counts as reachable.
		if res.OK && res.Reply == servers[i] {
			*cells[i] = reachable
		}
	}
	return t
}

// showRules prints every node's table.
func (d *tour) showRules() {
	for _, n := range d.c.Nodes() {
		rules, err := n.Ruleset()
		if err != nil {
			rules = "error: " + err.Error()
		}
		fmt.Fprintf(d.out, "--- nft list table inet %s on %s\n%s", cluster.Table, n.Name, rules)
	}
}

// load reads manifests under the examples directory.
func load(examples string, files ...string) (manifest.Objects, error) {
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(examples, f))
	}
	return manifest.Load(paths, nil, func(string) {})
}

// FindExamples returns the examples/ directory of the module holding the working directory.
func FindExamples() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/flock-net/flock-netpol\n") {
			return filepath.Join(dir, "examples"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("examples/ not found: run from inside the flock-netpol repository, or pass -examples DIR")
		}
		dir = parent
	}
}
