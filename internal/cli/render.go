package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

func runRender(_ context.Context, args []string, stdio IO) int {
	fs := newFlagSet("render", "--node NAME -f PATH [-f PATH ...] [--table NAME] [--pod-cidrs CIDRS]",
		"Reads Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies\n"+
			"(policy.networking.k8s.io/v1alpha2) from manifest files (YAML or JSON, multi-document,\n"+
			"kind: List too) and prints the nft script that node would apply, without a cluster. The\n"+
			"node's pod ranges come from --pod-cidrs or its Node object. Other kinds are skipped with a\n"+
			"warning; values a policy cannot honour are reported on stderr and match nothing. Apply the\n"+
			"output with `nft -f -` (as root), or check it with `nft -c -f -`.",
		stdio.Stderr)
	var files stringList
	node := fs.String("node", "", "the node to render for (spec.nodeName of its pods); required")
	table := fs.String("table", render.DefaultTable, "name of the agent's nft table (family inet)")
	fs.Var(&files, "f", "a manifest file, a directory of *.yaml/*.yml/*.json files, or - for stdin; repeatable")
	var edges edgeFlags
	edges.register(fs)
	if code := parse(fs, args); code >= 0 {
		return code
	}
	switch {
	case *node == "":
		fmt.Fprintln(stdio.Stderr, "flock-netpol render: --node is required")
		return 2
	case len(files) == 0:
		fmt.Fprintln(stdio.Stderr, "flock-netpol render: at least one -f PATH is required")
		return 2
	}
	tableErr := render.ValidateTableName(*table)
	if tableErr != nil {
		tableErr = fmt.Errorf("--table: %w", tableErr)
	}
	if err := errors.Join(tableErr, edges.validate()); err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol render: invalid flags:\n%v\n", err)
		return 2
	}

	objs, err := manifest.Load(files, stdio.Stdin, func(w string) {
		fmt.Fprintln(stdio.Stderr, "warning: "+w)
	})
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol render: %v\n", err)
		return 1
	}
	in := renderInput(objs, *node, &edges, stdio.Stderr)
	rs, problems := translate.Translate(in)
	for _, p := range problems {
		fmt.Fprintf(stdio.Stderr, "warning: %s\n", p) // the message says what is enforced instead
	}
	if _, err := stdio.Stdout.Write(render.Render(rs, edges.renderOptions(*table)).Text); err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol render: writing the script: %v\n", err)
		return 1
	}
	return 0
}

// renderInput is the translator's input for node from the objects read, as the agent would read
// them from its cache with the ClusterNetworkPolicy CRD installed: every ClusterNetworkPolicy and
// every Node of the files. A bad pod range of the node's Node is warned about on stderr.
func renderInput(objs manifest.Objects, node string, edges *edgeFlags, stderr io.Writer) translate.Input {
	in := translate.Input{
		Node:            node,
		Policies:        objs.Policies,
		Namespaces:      objs.Namespaces,
		Pods:            compact.NewPods(objs.Pods),
		LogDrops:        edges.logDrops,
		ClusterPolicies: objs.ClusterPolicies,
		Nodes:           objs.Nodes,
	}
	if edges.closeUnknown {
		in.PodCIDRs = edges.podCIDRs
		for _, n := range objs.Nodes {
			if n.Name == node && len(in.PodCIDRs) == 0 {
				cidrs, err := translate.NodePodCIDRs(n)
				if err != nil {
					fmt.Fprintf(stderr, "warning: %v\n", err)
				}
				in.PodCIDRs = cidrs
			}
		}
	}
	return in
}
