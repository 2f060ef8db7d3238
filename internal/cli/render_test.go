package cli

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func runCLI(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

// TestRenderExamplesGolden pins the script `flock-netpol render` prints for the bundled examples.
func TestRenderExamplesGolden(t *testing.T) {
	for _, node := range []string{"node-1", "node-2"} {
		code, out, stderr := runCLI("", "render", "--node", node, "-f", "../../examples")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		path := filepath.Join("testdata", "examples-"+node+".nft")
		if *update {
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./internal/cli -update creates it)", err)
		}
		if out != string(want) {
			t.Errorf("render --node %s differs from %s (go test ./internal/cli -update, then review the diff)", node, path)
		}
	}
}

// TestRenderIsByteIdenticalForAnyObjectOrder pins determinism end to end: the same objects,
// shuffled, render the same bytes.
func TestRenderIsByteIdenticalForAnyObjectOrder(t *testing.T) {
	objs, err := manifest.Load([]string{"../../examples"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	renderObjs := func(o manifest.Objects) []byte {
		rs, _ := translate.Translate(translate.Input{Node: "node-1", Policies: o.Policies, Namespaces: o.Namespaces, Pods: compact.NewPods(o.Pods)})
		return render.Render(rs, render.Options{}).Text
	}
	want := renderObjs(objs)
	rng := rand.New(rand.NewPCG(3, 5))
	for i := 0; i < 50; i++ {
		rng.Shuffle(len(objs.Pods), func(a, b int) { objs.Pods[a], objs.Pods[b] = objs.Pods[b], objs.Pods[a] })
		rng.Shuffle(len(objs.Policies), func(a, b int) { objs.Policies[a], objs.Policies[b] = objs.Policies[b], objs.Policies[a] })
		rng.Shuffle(len(objs.Namespaces), func(a, b int) {
			objs.Namespaces[a], objs.Namespaces[b] = objs.Namespaces[b], objs.Namespaces[a]
		})
		if got := renderObjs(objs); !bytes.Equal(got, want) {
			t.Fatalf("shuffle %d rendered different bytes", i)
		}
	}
}

func TestRenderCommand(t *testing.T) {
	policy := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/33}}]
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {nodeName: n1}
status: {phase: Running, podIPs: [{ip: 10.0.0.1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: x}
`
	cases := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantOut    string // substring of stdout
		wantStderr string // substring of stderr
	}{
		{"reads stdin, warns about other kinds and about values that match nothing", policy, []string{"render", "--node", "n1", "-f", "-"}, 0,
			"jump pod-in-", "skipping apps/v1 Deployment"},
		{"a bad cidr is reported and fails closed", policy, []string{"render", "--node", "n1", "-f", "-"}, 0,
			"counter drop", "invalid ipBlock.cidr"},
		{"--table names the table", policy, []string{"render", "--node", "n1", "-f", "-", "--table", "t2"}, 0,
			"add table inet t2", ""},
		{"--node is required", "", []string{"render", "-f", "-"}, 2, "", "--node is required"},
		{"-f is required", "", []string{"render", "--node", "n1"}, 2, "", "at least one -f"},
		{"an invalid table name is refused", "", []string{"render", "--node", "n1", "-f", "-", "--table", "bad name"}, 2, "", "--table"},
		{"a missing file is named", "", []string{"render", "--node", "n1", "-f", "/nonexistent/x.yaml"}, 1, "", "/nonexistent/x.yaml"},
		{"unparsable input names the source", "kind: [", []string{"render", "--node", "n1", "-f", "-"}, 1, "", "<stdin>"},
		{"--help exits 0 and lists the flags", "", []string{"render", "--help"}, 0, "", "-node"},
		{"unknown commands are refused", "", []string{"frobnicate"}, 2, "", "unknown command"},
		{"stray arguments are refused", "", []string{"render", "--node", "n1", "-f", "-", "extra"}, 2, "", "unexpected arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := runCLI(c.stdin, c.args...)
			if code != c.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, c.wantCode, stderr)
			}
			if !strings.Contains(out, c.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", c.wantOut, out)
			}
			if !strings.Contains(stderr, c.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", c.wantStderr, stderr)
			}
		})
	}
}

func TestRunConfigValidateReportsEveryProblem(t *testing.T) {
	err := RunConfig{Table: "bad name", NFT: "", NFTTimeout: 0, RefillMax: -1}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"--node-name", "--table", "--nft", "--nft-timeout", "--incremental-refill-max"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if err := (RunConfig{NodeName: "n", Table: "t", NFT: "nft", NFTTimeout: 1, ResyncPeriod: time.Minute}).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// clusterManifests hold a ClusterNetworkPolicy and two Nodes beside a pod of n1.
const clusterManifests = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: deny-db}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  egress:
  - action: Deny
    to: [{namespaces: {matchLabels: {team: db}}}]
---
apiVersion: v1
kind: NodeList
items:
- metadata: {name: n1, labels: {role: web}}
  spec: {podCIDRs: [10.0.0.0/24]}
  status: {addresses: [{type: InternalIP, address: 10.254.0.1}]}
- metadata: {name: n2, labels: {role: infra}}
  status: {addresses: [{type: InternalIP, address: 10.254.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {nodeName: n1}
status: {phase: Running, podIPs: [{ip: 10.0.0.1}]}
`

// TestRenderReadsClusterNetworkPolicies pins that render reads ClusterNetworkPolicies (no
// "skipping" warning) and hands them, with every Node of the manifests, to the translator.
func TestRenderReadsClusterNetworkPolicies(t *testing.T) {
	code, out, stderr := runCLI(clusterManifests, "render", "--node", "n1", "-f", "-")
	if code != 0 || !strings.Contains(out, "add table inet flock-netpol") {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "skipping") {
		t.Errorf("render skipped an object:\n%s", stderr)
	}

	objs, err := manifest.Load([]string{"-"}, strings.NewReader(clusterManifests), func(w string) { t.Errorf("warning: %s", w) })
	if err != nil {
		t.Fatal(err)
	}
	var edges edgeFlags
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	edges.register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	in := renderInput(objs, "n1", &edges, io.Discard)
	if len(in.ClusterPolicies) != 1 || in.ClusterPolicies[0].Name != "deny-db" || in.ClusterPolicies[0].Spec.Priority != 10 {
		t.Errorf("ClusterPolicies = %v, want deny-db", in.ClusterPolicies)
	}
	var nodes []string
	for _, n := range in.Nodes {
		nodes = append(nodes, n.Name+"="+n.Status.Addresses[0].Address)
	}
	if want := []string{"n1=10.254.0.1", "n2=10.254.0.2"}; !slices.Equal(nodes, want) {
		t.Errorf("Nodes = %v, want every Node of the manifests: %v", nodes, want)
	}
	if len(in.Pods) != 1 || in.Node != "n1" || fmt.Sprint(in.PodCIDRs) != "[10.0.0.0/24]" {
		t.Errorf("input = %+v, want n1's pod and pod range", in)
	}

	_, _, help := runCLI("", "render", "--help")
	if !strings.Contains(help, "ClusterNetworkPolicies") {
		t.Errorf("render --help does not say it reads ClusterNetworkPolicies:\n%s", help)
	}
}

// TestRefillMaxZeroNeverRefills pins the flag's 0: no set is sent again (the reconciler's 0 would
// mean its default).
func TestRefillMaxZeroNeverRefills(t *testing.T) {
	for flag, want := range map[int]int{0: -1, 1: 1, 1024: 1024} {
		if got := refillMax(flag); got != want {
			t.Errorf("--incremental-refill-max=%d: the reconciler gets %d, want %d", flag, got, want)
		}
	}
}
