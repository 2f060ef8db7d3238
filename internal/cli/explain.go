package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/explain"
	"github.com/flock-net/flock-netpol/internal/manifest"
)

func runExplain(ctx context.Context, args []string, stdio IO) int {
	fs := newFlagSet("explain", "--from POD|ADDR --to POD|ADDR --port PORT[/PROTO] (-f PATH ... | [--kubeconfig FILE]) [-o text|json]",
		"Says whether a new connection is allowed or denied, and why: for each node that judges it\n"+
			"(the source's for egress, the destination's for ingress), whether the pod is isolated and\n"+
			"by which policies, the rules that allow the connection (policy, direction, rule index, the\n"+
			"peer and port that matched) or, when none does, the nearest misses, and the nft chains and\n"+
			"sets that implement the decision. The answer comes from the agent's own translator and rule\n"+
			"set, so it cannot disagree with what the agent enforces.\n\n"+
			"POD is namespace/name; ADDR an IP address (a pod's address names that pod). PORT is a number\n"+
			"or a container port name of the destination pod; PROTO tcp (default), udp or sctp. The\n"+
			"cluster comes from manifests (-f, as for render) or, without -f, from the API server, read\n"+
			"once (its ClusterNetworkPolicies too, when their CRD is installed). Exit status: 0 allowed,\n"+
			"1 denied, 2 bad usage or input.",
		stdio.Stderr)
	var q explain.Query
	var files stringList
	fs.StringVar(&q.From, "from", "", "the source: namespace/pod or an address; required")
	fs.StringVar(&q.To, "to", "", "the destination: namespace/pod or an address; required")
	fs.StringVar(&q.Port, "port", "", "the destination port: 80, 80/tcp, 53/udp, or a port name of the destination pod; required")
	fs.BoolVar(&q.IPv6, "ipv6", false, "use the IPv6 addresses of pods given by name (default IPv4)")
	fs.Var(&files, "f", "a manifest file, a directory of *.yaml/*.yml/*.json files, or - for stdin; repeatable")
	output := fs.String("o", "text", "output format: text or json")
	config.RegisterFlags(fs)
	if code := parse(fs, args); code >= 0 {
		return code
	}
	switch {
	case q.From == "" || q.To == "" || q.Port == "":
		fmt.Fprintln(stdio.Stderr, "flock-netpol explain: --from, --to and --port are required")
		return 2
	case *output != "text" && *output != "json":
		fmt.Fprintf(stdio.Stderr, "flock-netpol explain: -o must be text or json, got %q\n", *output)
		return 2
	}

	objs, err := loadObjects(ctx, files, stdio)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol explain: %v\n", err)
		return 2
	}
	report, err := explain.Explain(objs, q)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol explain: %v\n", err)
		return 2
	}
	if *output == "json" {
		enc := json.NewEncoder(stdio.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
		err = explain.Write(stdio.Stdout, report)
	}
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol explain: writing the answer: %v\n", err)
		return 2
	}
	if !report.Allowed {
		return 1
	}
	return 0
}

// readCluster lists what the translator reads, once, from the API server the kubeconfig names:
// ClusterNetworkPolicies only when the API server serves them (their CRD is installed).
func readCluster(ctx context.Context) (manifest.Objects, error) {
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return manifest.Objects{}, fmt.Errorf("no cluster to read (pass -f, or --kubeconfig): %w", err)
	}
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha2.Install(scheme)); err != nil {
		return manifest.Objects{}, err
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return manifest.Objects{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var (
		nss   corev1.NamespaceList
		pods  corev1.PodList
		nodes corev1.NodeList
		pols  networkingv1.NetworkPolicyList
	)
	var errs []error
	for _, l := range []client.ObjectList{&nss, &pods, &nodes, &pols} {
		if err := c.List(ctx, l); err != nil {
			errs = append(errs, fmt.Errorf("listing %T: %w", l, err))
		}
	}
	var cnps v1alpha2.ClusterNetworkPolicyList
	if err := c.List(ctx, &cnps); err != nil && !meta.IsNoMatchError(err) {
		errs = append(errs, fmt.Errorf("listing %T: %w", &cnps, err))
	}
	if err := errors.Join(errs...); err != nil {
		return manifest.Objects{}, err
	}
	var objs manifest.Objects
	for i := range nss.Items {
		objs.Namespaces = append(objs.Namespaces, &nss.Items[i])
	}
	for i := range pods.Items {
		objs.Pods = append(objs.Pods, &pods.Items[i])
	}
	for i := range nodes.Items {
		objs.Nodes = append(objs.Nodes, &nodes.Items[i])
	}
	for i := range pols.Items {
		objs.Policies = append(objs.Policies, &pols.Items[i])
	}
	for i := range cnps.Items {
		objs.ClusterPolicies = append(objs.ClusterPolicies, &cnps.Items[i])
	}
	return objs, nil
}
