// Package kernel checks rendered scripts against the real nft and kernel, each test in a
// throwaway network namespace: every script the renderer produces is accepted, applying replaces
// the table, and a script the kernel rejects leaves the previous table intact. (How the nft client
// reports what the real binary says is tested next to the client, in internal/nft.)
package kernel

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
)

func newClient(t *testing.T) *nft.Client {
	t.Helper()
	ns := netns.NewScratch(t)
	c, err := nft.New(nft.Config{Command: []string{"ip", "netns", "exec", ns, "nft"}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exampleScript renders the bundled examples for a node.
func exampleScript(t *testing.T, node string) []byte {
	t.Helper()
	objs, err := manifest.Load([]string{filepath.Join("..", "..", "examples")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := translate.Translate(translate.Input{Node: node, Policies: objs.Policies, Namespaces: objs.Namespaces, Pods: compact.NewPods(objs.Pods)})
	return render.Render(rs, render.Options{}).Text
}

// TestRenderedScriptsAreAcceptedByTheKernel applies every golden script and the examples for
// both nodes, and checks that the listed table re-parses (an operator may save and restore it).
func TestRenderedScriptsAreAcceptedByTheKernel(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	scripts := map[string][]byte{
		"examples node-1": exampleScript(t, "node-1"),
		"examples node-2": exampleScript(t, "node-2"),
	}
	goldens, _ := filepath.Glob(filepath.Join("..", "..", "internal", "render", "testdata", "*.nft"))
	if len(goldens) == 0 {
		t.Fatal("no golden scripts found")
	}
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		scripts[filepath.Base(g)] = b
	}
	for _, name := range sortedKeys(scripts) {
		script := scripts[name]
		if err := c.Check(ctx, script); err != nil {
			t.Errorf("%s: nft -c rejects the script: %v", name, err)
			continue
		}
		if err := c.Apply(ctx, script); err != nil {
			t.Errorf("%s: nft -f rejects the script: %v", name, err)
			continue
		}
		listed, err := c.ListTable(ctx, "inet", render.DefaultTable)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(listed, "hook forward priority filter; policy accept;") {
			t.Errorf("%s: the table has no forward hook at priority filter:\n%s", name, listed)
		}
		restore := "add table inet flock-netpol\ndelete table inet flock-netpol\n" + listed
		if err := c.Check(ctx, []byte(restore)); err != nil {
			t.Errorf("%s: `nft list table` output does not re-parse: %v", name, err)
		}
	}
}

// TestReapplyingReplacesTheTable pins that a script replaces everything the previous one
// installed, also what was added to the table by hand since, and that applying into a namespace
// without the table works too.
func TestReapplyingReplacesTheTable(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	if err := c.Apply(ctx, exampleScript(t, "node-1")); err != nil {
		t.Fatal(err)
	}
	stray := "add set inet flock-netpol stray-set { type ipv4_addr; }\n" +
		"add element inet flock-netpol stray-set { 10.0.0.9 }\n" +
		"add chain inet flock-netpol stray-chain\n"
	if err := c.Apply(ctx, []byte(stray)); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, exampleScript(t, "node-2")); err != nil {
		t.Fatal(err)
	}
	listed, err := c.ListTable(ctx, "inet", render.DefaultTable)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(listed, "shop/api-1") || !strings.Contains(listed, "shop/web-2") {
		t.Errorf("after applying node-2's script the table still holds node-1's pods:\n%s", listed)
	}
	// Nothing of the old table may survive: not a chain, not a set, not even an element.
	for _, s := range []string{"stray-set", "10.0.0.9", "stray-chain"} {
		if strings.Contains(listed, s) {
			t.Errorf("after applying node-2's script the table still holds %q, added by hand before:\n%s", s, listed)
		}
	}
	if err := c.Apply(ctx, render.DeleteTable(render.DefaultTable)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTable(ctx, "inet", render.DefaultTable); !nft.IsNotFound(err) {
		t.Errorf("table still present after delete: %v", err)
	}
	if err := c.Apply(ctx, render.DeleteTable(render.DefaultTable)); err != nil {
		t.Errorf("deleting a missing table failed: %v", err)
	}
}

// TestARejectedScriptLeavesThePreviousTableIntact pins transaction atomicity: an error on the
// last line of a full replacement (after the delete and most of the new table) changes nothing,
// whether nft's parser, its evaluation or only the kernel rejects it.
func TestARejectedScriptLeavesThePreviousTableIntact(t *testing.T) {
	for _, tc := range []struct {
		name, lastLine, complaint string
	}{
		// Only the kernel can reject this (the base chain exists in the new table), so the whole
		// batch, including the delete of the old table, has reached the kernel and must be rolled
		// back there.
		{"kernel rejects the last statement", "create chain inet flock-netpol " + render.BaseChain + "\n", "File exists"},
		{"rule for a missing chain", "add rule inet flock-netpol no-such-chain accept\n", "no-such-chain"},
		{"syntax error on the last line", "this is not nft syntax\n", "syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			ctx := context.Background()
			if err := c.Apply(ctx, exampleScript(t, "node-1")); err != nil {
				t.Fatal(err)
			}
			before, err := c.ListTable(ctx, "inet", render.DefaultTable)
			if err != nil {
				t.Fatal(err)
			}
			bad := append(exampleScript(t, "node-2"), tc.lastLine...)
			err = c.Apply(ctx, bad)
			if err == nil {
				t.Fatalf("the kernel accepted %q", tc.lastLine)
			}
			if !strings.Contains(err.Error(), tc.complaint) {
				t.Errorf("the error does not carry nft's complaint %q: %v", tc.complaint, err)
			}
			after, err := c.ListTable(ctx, "inet", render.DefaultTable)
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Errorf("a rejected script changed the table:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestRandomRuleSetsAreAccepted renders seeded random rule sets, with every construct and
// awkward values (port 65535, full ranges, long names, both families, overlapping peers), and
// has nft check each one.
func TestRandomRuleSetsAreAccepted(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 25; i++ {
		rs := randomRuleSet(rng)
		script := render.Render(rs, render.Options{Table: "fuzz"}).Text
		if err := c.Check(ctx, script); err != nil {
			t.Fatalf("random rule set %d rejected: %v\n%s", i, err, script)
		}
	}
}

func randomRuleSet(rng *rand.Rand) ruleset.RuleSet {
	var rs ruleset.RuleSet
	protos := []ruleset.Protocol{ruleset.TCP, ruleset.UDP, ruleset.SCTP}
	addr := func() netip.Addr {
		if rng.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		}
		var b [16]byte
		b[0] = 0xfd
		for j := 8; j < 16; j++ {
			b[j] = byte(rng.IntN(256))
		}
		return netip.AddrFrom16(b)
	}
	nPolicies := 1 + rng.IntN(6)
	for p := 0; p < nPolicies; p++ {
		key := ruleset.PolicyKey{Namespace: fmt.Sprintf("ns-%d", rng.IntN(3)), Name: fmt.Sprintf("pol-%d.%s", p, strings.Repeat("x", rng.IntN(120)))}
		pol := ruleset.Policy{Key: key, Ingress: []ruleset.Rule{}, Egress: []ruleset.Rule{}}
		for d := 0; d < 2; d++ {
			for r := 0; r < rng.IntN(4); r++ {
				rule := ruleset.Rule{Index: r, AnyPeer: rng.IntN(3) == 0, AnyPort: rng.IntN(3) == 0}
				var b ruleset.Builder
				for k := 0; k < rng.IntN(20); k++ {
					a := addr()
					b.AddPrefix(netip.PrefixFrom(a, a.BitLen()-rng.IntN(24)))
				}
				rule.Peers = b.Set()
				for k := 0; k < rng.IntN(4); k++ {
					first := uint16(rng.IntN(65536))
					last := first
					if rng.IntN(2) == 0 {
						last = first + uint16(rng.IntN(int(65535-first)+1))
					}
					if first == 0 {
						last = 0
					}
					rule.Ports = append(rule.Ports, ruleset.PortRange{Protocol: protos[rng.IntN(3)], First: first, Last: last})
				}
				for k := 0; k < rng.IntN(4); k++ {
					rule.NamedPorts = append(rule.NamedPorts, ruleset.Endpoint{Addr: addr(), Protocol: protos[rng.IntN(3)], Port: uint16(1 + rng.IntN(65535))})
				}
				rule.NamedPorts = uniqueEndpoints(rule.NamedPorts)
				if d == 0 {
					pol.Ingress = append(pol.Ingress, rule)
				} else {
					pol.Egress = append(pol.Egress, rule)
				}
			}
		}
		rs.Policies = append(rs.Policies, pol)
	}
	used := map[netip.Addr]bool{}
	for i := 0; i < 1+rng.IntN(8); i++ {
		pod := ruleset.Target{Namespace: fmt.Sprintf("ns-%d", i%3), Name: fmt.Sprintf("pod-%d", i)}
		for _, a := range []netip.Addr{addr(), addr()} {
			if !used[a] {
				used[a] = true
				pod.IPs = append(pod.IPs, a)
			}
		}
		for _, pol := range rs.Policies {
			if rng.IntN(2) == 0 {
				pod.IngressPolicies = append(pod.IngressPolicies, pol.Key)
			}
			if rng.IntN(2) == 0 {
				pod.EgressPolicies = append(pod.EgressPolicies, pol.Key)
			}
		}
		rs.Targets = append(rs.Targets, pod)
	}
	// Addresses several of the pods claim: chains of claimants, reusing the policies' sets.
	for i := 0; i < rng.IntN(4); i++ {
		a := addr()
		if used[a] {
			continue
		}
		used[a] = true
		claim := ruleset.Claim{Addr: a}
		for j, pod := range rs.Targets {
			if j > 1 && rng.IntN(2) == 0 {
				continue
			}
			id := pod.Namespace + "/" + pod.Name
			claim.Claimants = append(claim.Claimants, id)
			if len(pod.IngressPolicies) > 0 {
				claim.Ingress = append(claim.Ingress, ruleset.ClaimantPolicies{Pod: id, Policies: pod.IngressPolicies})
			}
			if len(pod.EgressPolicies) > 0 {
				claim.Egress = append(claim.Egress, ruleset.ClaimantPolicies{Pod: id, Policies: pod.EgressPolicies})
			}
		}
		rs.Claims = append(rs.Claims, claim)
	}
	return rs
}

func uniqueEndpoints(es []ruleset.Endpoint) []ruleset.Endpoint {
	seen := map[ruleset.Endpoint]bool{}
	var out []ruleset.Endpoint
	for _, e := range es {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
