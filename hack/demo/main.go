//go:build linux

// Command demo is the guided tour of flock-netpol: `sudo make demo` (or, from the repository root,
// `sudo go run ./hack/demo`). It starts a local control plane, builds a two-node cluster out of
// network namespaces with the pods of examples/, runs the real agents, and walks through example
// policies, measuring after each step which pod reaches which with real packets. It needs root,
// iproute2 and nftables, and cleans up after itself, also on Ctrl-C. See test/demo.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/demo"
	"github.com/flock-net/flock-netpol/test/testenv"
)

func main() {
	showRules := flag.Bool("show-rules", false, "print each node's nft table (nft list table inet flock-netpol) after every step")
	verbose := flag.Bool("v", false, "also print the harness's progress")
	examples := flag.String("examples", "", "the examples/ directory (default: examples/ of the repository holding the working directory)")
	agent := flag.String("agent", "", "a prebuilt flock-netpol binary (default: go build ./cmd)")
	check := flag.Bool("check", false, "only check that this machine can run the demo (root, ip, nft), then exit")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: sudo go run ./hack/demo [flags]\n\n"+
			"A guided tour of flock-netpol on a local two-node cluster made of network namespaces,\n"+
			"with the real agents and real packets. Needs root, ip and nft; takes about a minute.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	if err := testenv.CheckKernel(); err != nil {
		fmt.Fprintf(os.Stderr, "The demo cannot run here:\n%v\n\nIt builds network namespaces and programs nftables: run it as root on Linux with\n"+
			"iproute2 and nftables installed (apt-get install iproute2 nftables), e.g. `sudo make demo`.\n", err)
		os.Exit(2)
	}
	if *check {
		return
	}
	if *examples == "" {
		dir, err := demo.FindExamples()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		*examples = dir
	}
	assets, err := findAssets(filepath.Dir(*examples))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	fmt.Println("flock-netpol demo: NetworkPolicy enforced by the real agent, measured with real packets")
	fmt.Println()
	copts := cluster.Options{Assets: assets, AgentBinary: *agent}
	if *verbose {
		copts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	// demo.Run removes everything it started before it returns; on Ctrl-C the signal handlers of
	// test/cluster and test/netns do.
	if _, err := demo.Run(demo.Options{
		Examples:  *examples,
		Out:       os.Stdout,
		ShowRules: *showRules,
		Cluster:   copts,
	}); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// findAssets returns $KUBEBUILDER_ASSETS or, when unset, the envtest binaries that `make envtest`
// built under bin/k8s/ of the repository.
func findAssets(root string) (string, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		return testenv.Assets("")
	}
	found, _ := filepath.Glob(filepath.Join(root, "bin", "k8s", "*", "kube-apiserver"))
	sort.Strings(found)
	if len(found) == 0 {
		_, err := testenv.Assets("")
		return "", fmt.Errorf("the demo needs kube-apiserver and etcd: %v", err)
	}
	return testenv.Assets(filepath.Dir(found[len(found)-1]))
}
