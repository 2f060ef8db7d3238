package explain

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/synth"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func load(t *testing.T, paths ...string) manifest.Objects {
	t.Helper()
	objs, err := manifest.Load(paths, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestExplainClusterNetworkPolicyGolden pins the answers where the ClusterNetworkPolicies of
// examples/cluster judge: an Admin Deny, a Pass on to NetworkPolicy, an Accept over isolation, the
// Baseline tier, and a pod's traffic to its own node.
func TestExplainClusterNetworkPolicyGolden(t *testing.T) {
	objs := load(t, "../../examples", "../../examples/cluster")
	for _, c := range []struct {
		name string
		q    Query
		want bool
	}{
		{"cnp-admin-deny", Query{From: "shop/web-1", To: "payments/ledger-1", Port: "9443"}, false},
		{"cnp-pass-to-networkpolicy", Query{From: "shop/api-1", To: "payments/ledger-1", Port: "9443"}, true},
		{"cnp-accept-over-isolation", Query{From: "monitoring/prometheus-0", To: "shop/api-1", Port: "metrics"}, true},
		{"cnp-baseline-deny", Query{From: "shop/web-1", To: "monitoring/prometheus-0", Port: "9090"}, false},
		{"cnp-own-node", Query{From: "shop/web-1", To: "10.0.0.1", Port: "10250"}, false},
	} {
		t.Run(c.name, func(t *testing.T) { checkGolden(t, objs, c.q, c.want, c.name) })
	}
}

// TestExplainGolden pins readable answers for the bundled examples (plus a second policy on the
// web tier, and the audit-mode example): the text an operator reads.
func TestExplainGolden(t *testing.T) {
	objs := load(t, "../../examples", "../../examples/audit", "testdata/monitoring.yaml")
	cases := []struct {
		name string
		q    Query
		want bool
	}{
		{"allowed-by-one-rule", Query{From: "shop/api-1", To: "payments/ledger-1", Port: "9443"}, true},
		{"allowed-by-two-policies", Query{From: "10.200.0.1", To: "shop/web-1", Port: "8080"}, true},
		{"egress-denied-ingress-allowed", Query{From: "shop/api-1", To: "shop/web-1", Port: "8080"}, false},
		{"denied-by-isolation-with-a-near-miss", Query{From: "shop/web-1", To: "payments/ledger-1", Port: "9443"}, false},
		// "http" is 8080 on web-1 and 8081 on web-2.
		{"named-port-on-web-1", Query{From: "10.200.0.1", To: "shop/web-1", Port: "http"}, true},
		{"named-port-on-web-2", Query{From: "fd00:200::1", To: "shop/web-2", Port: "http"}, true},
		{"ip-block-except", Query{From: "shop/api-1", To: "169.254.169.254", Port: "443"}, false},
		{"ip-block", Query{From: "shop/api-1", To: "8.8.8.8", Port: "443"}, true},
		// monitoring/default-deny is in audit mode (examples/audit).
		{"audit-would-drop", Query{From: "10.200.0.1", To: "monitoring/prometheus-0", Port: "9090"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGolden(t, objs, c.q, c.want, c.name) })
	}
}

// checkGolden compares the written answer to q with testdata/<name>.txt.
func checkGolden(t *testing.T, objs manifest.Objects, q Query, wantAllowed bool, name string) {
	t.Helper()
	r, err := Explain(objs, q)
	if err != nil {
		t.Fatal(err)
	}
	if r.Allowed != wantAllowed {
		t.Errorf("Allowed = %v, want %v", r.Allowed, wantAllowed)
	}
	var got bytes.Buffer
	if err := Write(&got, r); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".txt")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/explain -update creates it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("the answer differs from %s (-update, then review the diff):\n%s", path, got.String())
	}
}

// TestBadQueriesAreInputErrors pins that what cannot be answered is an input error (exit 2),
// never a verdict.
func TestBadQueriesAreInputErrors(t *testing.T) {
	objs := load(t, "../../examples")
	for _, q := range []Query{
		{From: "shop/nope", To: "shop/web-1", Port: "80"},
		{From: "shop", To: "shop/web-1", Port: "80"},
		{From: "shop/api-1", To: "shop/web-1", Port: "nope"},
		{From: "shop/api-1", To: "10.0.0.1", Port: "http"},
		{From: "shop/api-1", To: "shop/web-1", Port: "80/icmp"},
		{From: "shop/api-1", To: "shop/web-1", Port: "0"},
		{From: "10.0.0.1", To: "fd00::1", Port: "80"},
	} {
		if _, err := Explain(objs, q); !errors.Is(err, ErrInput) {
			t.Errorf("%+v: err = %v, want an input error", q, err)
		}
	}
}

// TestExplainAgreesWithTheReferenceEvaluator runs random connections over generated clusters:
// explain's verdict must be the reference evaluator's on the source's node and on the
// destination's node, and an allowed isolated end names the rule that allows it.
func TestExplainAgreesWithTheReferenceEvaluator(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		cfg := synth.Sized(400, 60)
		cfg.Seed, cfg.Nodes, cfg.LocalPods = seed, 4, 100
		c := synth.Generate(cfg)
		objs := manifest.Objects{Namespaces: c.Namespaces, Pods: c.Pods, Policies: c.Policies}
		pods := compact.NewPods(c.Pods)
		ruleSets := map[string]*ruleset.RuleSet{}
		for _, n := range c.Nodes {
			rs, _ := translate.Translate(translate.Input{Node: n, Policies: c.Policies, Namespaces: c.Namespaces, Pods: pods})
			ruleSets[n] = &rs
		}
		var live []int
		for i, p := range pods {
			if p.OwnsAddresses() && p.NumIPs() > 0 {
				live = append(live, i)
			}
		}
		rng := rand.New(rand.NewPCG(seed, 99))
		ports := []string{"53/udp", "80", "443", "8080", "9090", "5432"}
		for range 300 {
			src, dst := c.Pods[live[rng.IntN(len(live))]], c.Pods[live[rng.IntN(len(live))]]
			q := Query{From: src.Namespace + "/" + src.Name, To: dst.Namespace + "/" + dst.Name, Port: ports[rng.IntN(len(ports))]}
			r, err := Explain(objs, q)
			if err != nil {
				t.Fatalf("%+v: %v", q, err)
			}
			f := ruleset.Flow{Src: r.From.Addr, Dst: r.To.Addr, Protocol: ruleset.Protocol(r.Protocol), Port: r.Port}
			want := ruleSets[src.Spec.NodeName].Allows(f) && ruleSets[dst.Spec.NodeName].Allows(f)
			if r.Allowed != want {
				t.Fatalf("seed %d, %+v: explain says %v, the evaluator %v", seed, q, r.Allowed, want)
			}
			for _, n := range r.Nodes {
				for _, s := range n.Sides {
					if s.Isolated && s.Allowed && len(s.Matches) == 0 {
						t.Fatalf("seed %d, %+v: %s allowed by no rule", seed, q, fmt.Sprint(s))
					}
				}
			}
		}
	}
}
