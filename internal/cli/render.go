package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

func runRender(_ context.Context, args []string, stdio IO) int {
	fs := newFlagSet("render", "--node NAME -f PATH [-f PATH ...] [--table NAME] [--pod-cidrs CIDRS]",
		"Reads Namespaces, Pods, Nodes and NetworkPolicies from manifest files (YAML or JSON,\n"+
			"multi-document, kind: List too) and prints the nft script that node would apply, without a\n"+
			"cluster. The node's pod ranges come from --pod-cidrs or its Node object. Other\n"+
			"kinds are skipped with a warning; values a policy cannot honour are reported on stderr and\n"+
			"match nothing. Apply the output with `nft -f -` (as root), or check it with `nft -c -f -`.",
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
	in := translate.Input{Node: *node, Policies: objs.Policies, Namespaces: objs.Namespaces, Pods: compact.NewPods(objs.Pods), LogDrops: edges.logDrops}
	if edges.closeUnknown {
		in.PodCIDRs = edges.podCIDRs
		for _, n := range objs.Nodes {
			if n.Name == *node && len(in.PodCIDRs) == 0 {
				cidrs, err := translate.NodePodCIDRs(n)
				if err != nil {
					fmt.Fprintf(stdio.Stderr, "warning: %v\n", err)
				}
				in.PodCIDRs = cidrs
			}
		}
	}
	rs, problems := translate.Translate(in)
	for _, p := range problems {
		fmt.Fprintf(stdio.Stderr, "warning: %s (it matches nothing)\n", p)
	}
	if _, err := stdio.Stdout.Write(render.Render(rs, edges.renderOptions(*table)).Text); err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol render: writing the script: %v\n", err)
		return 1
	}
	return 0
}
