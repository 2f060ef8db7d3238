package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// Address plan: local pods 10.0.1.0/24 and fd00::1:0/112; remote pods 10.0.2.0/24 and
// fd00::2:0/112; outside 10.200.0.0/16.
func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func set(elems ...string) ruleset.AddrSet {
	var b ruleset.Builder
	for _, e := range elems {
		if strings.Contains(e, "/") {
			b.AddPrefix(netip.MustParsePrefix(e))
		} else {
			b.AddAddr(ip(e))
		}
	}
	return b.Set()
}

var (
	webKey  = ruleset.PolicyKey{Namespace: "shop", Name: "allow-web"}
	dnsKey  = ruleset.PolicyKey{Namespace: "shop", Name: "egress-dns"}
	denyKey = ruleset.PolicyKey{Namespace: "shop", Name: "default-deny"}
)

// goldenCases are rule sets that together use every construct the renderer emits.
var goldenCases = []struct {
	name string
	rs   ruleset.RuleSet
	opts Options
}{
	{"empty", ruleset.RuleSet{}, Options{}},
	{"default-deny", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1")}, IngressPolicies: []ruleset.PolicyKey{denyKey}, EgressPolicies: []ruleset.PolicyKey{denyKey}},
		},
		Policies: []ruleset.Policy{{Key: denyKey, Ingress: []ruleset.Rule{}, Egress: []ruleset.Rule{}}},
	}, Options{}},
	{"dual-stack-peers-ports-named", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1"), ip("fd00::1:1")}, IngressPolicies: []ruleset.PolicyKey{webKey, denyKey}, EgressPolicies: []ruleset.PolicyKey{dnsKey}},
			{Namespace: "shop", Name: "web-2", IPs: []netip.Addr{ip("10.0.1.2"), ip("fd00::1:2")}, IngressPolicies: []ruleset.PolicyKey{webKey}},
		},
		Policies: []ruleset.Policy{
			{Key: webKey, Ingress: []ruleset.Rule{
				{Index: 0, Peers: set("10.0.2.7", "10.0.2.8", "10.200.0.0/16", "fd00::2:7"), Ports: []ruleset.PortRange{
					{Protocol: ruleset.TCP, First: 80, Last: 80}, {Protocol: ruleset.TCP, First: 8000, Last: 8080}, {Protocol: ruleset.SCTP, First: 9000, Last: 9000}, {Protocol: ruleset.UDP},
				}, NamedPorts: []ruleset.Endpoint{
					{Addr: ip("10.0.1.1"), Protocol: ruleset.TCP, Port: 8443}, {Addr: ip("10.0.1.2"), Protocol: ruleset.TCP, Port: 9443}, {Addr: ip("fd00::1:1"), Protocol: ruleset.TCP, Port: 8443},
				}},
				{Index: 1, AnyPeer: true, Ports: []ruleset.PortRange{{Protocol: ruleset.TCP, First: 443, Last: 443}}},
				{Index: 2, AnyPeer: false, AnyPort: true}, // peers matched nothing: no rule at all
			}},
			{Key: dnsKey, Egress: []ruleset.Rule{
				{Index: 0, AnyPeer: true, Ports: []ruleset.PortRange{{Protocol: ruleset.UDP, First: 53, Last: 53}, {Protocol: ruleset.TCP, First: 53, Last: 53}}},
				{Index: 1, Peers: set("10.0.2.0/24", "10.0.3.1"), AnyPort: true},
				{Index: 2, Peers: set("10.0.2.9"), NamedPorts: []ruleset.Endpoint{{Addr: ip("10.0.2.9"), Protocol: ruleset.UDP, Port: 5353}}},
				// Only named ports, and no pod in the block has them: no rule and no set.
				{Index: 3, Peers: set("10.200.0.0/16")},
			}},
			{Key: denyKey, Ingress: []ruleset.Rule{}},
		},
	}, Options{}},
	{"long-names", ruleset.RuleSet{
		Targets: []ruleset.Target{{
			Namespace: strings.Repeat("n", 63), Name: strings.Repeat("p", 200) + ".with.dots",
			IPs: []netip.Addr{ip("10.0.1.9")}, IngressPolicies: []ruleset.PolicyKey{{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("q", 250)}},
		}},
		Policies: []ruleset.Policy{{Key: ruleset.PolicyKey{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("q", 250)}, Ingress: []ruleset.Rule{{Index: 0, AnyPeer: true, AnyPort: true}}}},
	}, Options{}},
	// The node's edges closed: forged sources, and addresses of the pod ranges (one per family;
	// the IPv6 range holds no pod yet) that no known pod owns.
	{"edges-anti-spoofing", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1")}, IngressPolicies: []ruleset.PolicyKey{denyKey}},
		},
		Policies: []ruleset.Policy{{Key: denyKey, Ingress: []ruleset.Rule{}}},
		Edges: ruleset.Edges{
			PodCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("fd00::1:0/112")},
			LocalPods: []netip.Addr{ip("10.0.1.1"), ip("10.0.1.2")},
		},
	}, Options{AntiSpoofing: true}},
	// Addresses several local pods claim (a broken cluster state): 10.0.1.9 is claimed by web-1
	// and web-2, both isolated for ingress (a packet must pass one policy of each: chained chains)
	// and web-1 for egress; fd00::1:9 by web-1 and web-3, only web-3 isolated. The claim chains
	// reuse the policies' sets. web-2 has no address of its own left: no pod chain.
	{"claimed-address", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1")}, IngressPolicies: []ruleset.PolicyKey{webKey}, EgressPolicies: []ruleset.PolicyKey{dnsKey}},
			{Namespace: "shop", Name: "web-2", IngressPolicies: []ruleset.PolicyKey{denyKey, webKey}},
			{Namespace: "shop", Name: "web-3", IPs: []netip.Addr{ip("10.0.1.3")}, IngressPolicies: []ruleset.PolicyKey{denyKey}},
		},
		Policies: []ruleset.Policy{
			{Key: webKey, Ingress: []ruleset.Rule{
				{Index: 0, Peers: set("10.0.2.0/24", "fd00::2:0/112"), Ports: []ruleset.PortRange{{Protocol: ruleset.TCP, First: 80, Last: 80}},
					NamedPorts: []ruleset.Endpoint{{Addr: ip("10.0.1.1"), Protocol: ruleset.TCP, Port: 8443}, {Addr: ip("10.0.1.9"), Protocol: ruleset.TCP, Port: 8443}}},
			}},
			{Key: dnsKey, Egress: []ruleset.Rule{
				{Index: 0, AnyPeer: true, Ports: []ruleset.PortRange{{Protocol: ruleset.UDP, First: 53, Last: 53}}},
			}},
			{Key: denyKey, Ingress: []ruleset.Rule{
				{Index: 0, Peers: set("10.0.2.7", "fd00::2:7"), AnyPort: true},
			}},
		},
		Claims: []ruleset.Claim{
			{Addr: ip("10.0.1.9"), Claimants: []string{"shop/web-1", "shop/web-2"},
				Ingress: []ruleset.ClaimantPolicies{{Pod: "shop/web-1", Policies: []ruleset.PolicyKey{webKey}}, {Pod: "shop/web-2", Policies: []ruleset.PolicyKey{denyKey, webKey}}},
				Egress:  []ruleset.ClaimantPolicies{{Pod: "shop/web-1", Policies: []ruleset.PolicyKey{dnsKey}}}},
			{Addr: ip("fd00::1:9"), Claimants: []string{"shop/web-1", "shop/web-3"},
				Ingress: []ruleset.ClaimantPolicies{{Pod: "shop/web-3", Policies: []ruleset.PolicyKey{denyKey}}}},
		},
		Edges: ruleset.Edges{
			PodCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("fd00::1:0/112")},
			LocalPods: []netip.Addr{ip("10.0.1.1"), ip("10.0.1.3"), ip("10.0.1.9"), ip("fd00::1:9")},
		},
	}, Options{}},
	// Established flows re-validated (the default): at epoch 7, web-1's ingress stamps are valid
	// from epoch 5 and its egress stamps only from 7; web-2 (not isolated) keeps stamps from epoch
	// 2 on; fd00::1:1's ingress window wraps around (from epoch 1048570 through Max, then on). Every
	// window ends at the horizon of epoch 7, 64 (epoch.Horizon). Every other address takes any
	// mark.
	{"established-epochs", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1"), ip("fd00::1:1")}, IngressPolicies: []ruleset.PolicyKey{denyKey}, EgressPolicies: []ruleset.PolicyKey{dnsKey}},
		},
		Policies: []ruleset.Policy{
			{Key: denyKey, Ingress: []ruleset.Rule{}},
			{Key: dnsKey, Egress: []ruleset.Rule{{Index: 0, AnyPeer: true, Ports: []ruleset.PortRange{{Protocol: ruleset.UDP, First: 53, Last: 53}}}}},
		},
		Local: []ruleset.LocalAddr{{Addr: ip("10.0.1.1"), Pod: "shop/web-1"}, {Addr: ip("10.0.1.2"), Pod: "shop/web-2"}, {Addr: ip("fd00::1:1"), Pod: "shop/web-1"}},
	}, Options{Epochs: epoch.State{Current: 7, Addrs: []epoch.Addr{
		{Addr: ip("10.0.1.1"), Owner: "shop/web-1", Since: [2]uint32{5, 7}},
		{Addr: ip("10.0.1.2"), Owner: "shop/web-2", Since: [2]uint32{2, 2}},
		{Addr: ip("fd00::1:1"), Owner: "shop/web-1", Since: [2]uint32{1048570, 7}},
	}}}},
	// Policies in audit mode and drop logs. web-1 is isolated for ingress by default-deny and
	// audited by allow-web (audit): its chain drops, after a report chain counts what allow-web
	// would allow. web-2 only allow-web audits: not isolated, its chain tries allow-web's
	// chain, then counts what it would drop and allows it. Both log (group 7, 20 lines/s).
	{"audit-drop-logs", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1"), ip("fd00::1:1")}, IngressPolicies: []ruleset.PolicyKey{denyKey}, AuditIngress: []ruleset.PolicyKey{webKey}, LogDrops: true},
			{Namespace: "shop", Name: "web-2", IPs: []netip.Addr{ip("10.0.1.2")}, AuditIngress: []ruleset.PolicyKey{webKey}, AuditEgress: []ruleset.PolicyKey{webKey}, LogDrops: true},
		},
		Policies: []ruleset.Policy{
			{Key: webKey, Audit: true, Ingress: []ruleset.Rule{
				{Index: 0, Peers: set("10.0.2.7"), Ports: []ruleset.PortRange{{Protocol: ruleset.TCP, First: 80, Last: 80}}},
			}, Egress: []ruleset.Rule{
				{Index: 0, AnyPeer: true, Ports: []ruleset.PortRange{{Protocol: ruleset.UDP, First: 53, Last: 53}}},
			}},
			{Key: denyKey, Ingress: []ruleset.Rule{}},
		},
		Local: []ruleset.LocalAddr{{Addr: ip("10.0.1.1"), Pod: "shop/web-1"}, {Addr: ip("10.0.1.2"), Pod: "shop/web-2"}, {Addr: ip("fd00::1:1"), Pod: "shop/web-1"}},
	}, Options{LogGroup: 7, LogRate: 20}},
	// ClusterNetworkPolicy tiers. web-1: Admin tier (block-db denies ingress from 10.0.2.7,
	// pass-dns passes UDP 53 egress and fails closed for ingress with a Deny of everything),
	// then NetworkPolicy allow-web isolates its ingress and its egress (its chain accepts traffic
	// to the node, which only the input hook's dispatch sends it). web-2: Admin tier egress accept-web
	// (Accept to 10.200.0.0/16 tcp 443, named port 8443), no NetworkPolicy, then the Baseline
	// tier: baseline-deny denies ingress from every pod of 10.0.2.0/24 except what passes.
	{"cluster-tiers", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1"), ip("fd00::1:1")}, IngressPolicies: []ruleset.PolicyKey{webKey}, EgressPolicies: []ruleset.PolicyKey{webKey},
				AdminIngress: []string{"block-db", "pass-dns"}, AdminEgress: []string{"pass-dns"}},
			{Namespace: "shop", Name: "web-2", IPs: []netip.Addr{ip("10.0.1.2")},
				AdminEgress: []string{"accept-web"}, BaselineIngress: []string{"baseline-deny"}},
		},
		Policies: []ruleset.Policy{
			{Key: webKey, Ingress: []ruleset.Rule{{Index: 0, Peers: set("10.0.2.0/24"), AnyPort: true}}, Egress: []ruleset.Rule{}},
		},
		ClusterPolicies: []ruleset.ClusterPolicy{
			{Name: "block-db", Tier: ruleset.AdminTier, Priority: 5, Ingress: []ruleset.ClusterRule{
				{Rule: ruleset.Rule{Index: 0, Peers: set("10.0.2.7", "fd00::2:7"), AnyPort: true}, Action: ruleset.Deny, Name: "no-db"},
			}},
			{Name: "pass-dns", Tier: ruleset.AdminTier, Priority: 10, Ingress: []ruleset.ClusterRule{
				{Rule: ruleset.Rule{Index: 0, AnyPeer: true, AnyPort: true}, Action: ruleset.Deny},
			}, Egress: []ruleset.ClusterRule{
				{Rule: ruleset.Rule{Index: 0, AnyPeer: true, Ports: []ruleset.PortRange{{Protocol: ruleset.UDP, First: 53, Last: 53}}}, Action: ruleset.Pass},
				{Rule: ruleset.Rule{Index: 1, Peers: set("10.0.2.0/24"), AnyPort: true}, Action: ruleset.Pass},
			}},
			{Name: "accept-web", Tier: ruleset.AdminTier, Priority: 10, Egress: []ruleset.ClusterRule{
				{Rule: ruleset.Rule{Index: 0, Peers: set("10.200.0.0/16", "10.0.2.9"), Ports: []ruleset.PortRange{{Protocol: ruleset.TCP, First: 443, Last: 443}},
					NamedPorts: []ruleset.Endpoint{{Addr: ip("10.0.2.9"), Protocol: ruleset.TCP, Port: 8443}}}, Action: ruleset.Accept},
			}},
			{Name: "baseline-deny", Tier: ruleset.BaselineTier, Priority: 0, Ingress: []ruleset.ClusterRule{
				{Rule: ruleset.Rule{Index: 0, Peers: set("10.0.2.3"), AnyPort: true}, Action: ruleset.Pass},
				{Rule: ruleset.Rule{Index: 1, Peers: set("10.0.2.0/24"), AnyPort: true}, Action: ruleset.Deny},
			}},
		},
		Local: []ruleset.LocalAddr{{Addr: ip("10.0.1.1"), Pod: "shop/web-1"}, {Addr: ip("10.0.1.2"), Pod: "shop/web-2"}, {Addr: ip("fd00::1:1"), Pod: "shop/web-1"}},
	}, Options{}},
	// The same with established flows kept: no stamps, no windows, one fast path.
	{"established-keep", ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1")}, IngressPolicies: []ruleset.PolicyKey{denyKey}},
		},
		Policies: []ruleset.Policy{{Key: denyKey, Ingress: []ruleset.Rule{}}},
		Local:    []ruleset.LocalAddr{{Addr: ip("10.0.1.1"), Pod: "shop/web-1"}},
	}, Options{Established: Keep}},
}

func goldenCase(t *testing.T, name string) (c struct {
	name string
	rs   ruleset.RuleSet
	opts Options
}) {
	for _, c := range goldenCases {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no golden case %s", name)
	return c
}

// TestRenderGolden pins the exact script for each golden rule set. Run with -update to accept
// a change, then read the diff.
func TestRenderGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			got := Render(c.rs, c.opts).Text
			path := filepath.Join("testdata", c.name+".nft")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("script differs from %s (go test ./internal/render -update, then review the diff):\n%s", path, got)
			}
		})
	}
}

func TestRenderUsesTheConfiguredTableEverywhere(t *testing.T) {
	script := string(Render(goldenCases[2].rs, Options{Table: "custom"}).Text)
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		if strings.HasPrefix(line, "add ") || strings.HasPrefix(line, "delete ") {
			if !strings.Contains(line, " inet custom") {
				t.Errorf("line does not use table custom: %s", line)
			}
		}
	}
}

func TestScriptReplacesTheTableFirst(t *testing.T) {
	lines := strings.Split(string(Render(ruleset.RuleSet{}, Options{}).Text), "\n")
	var cmds []string
	for _, l := range lines {
		if l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	if !strings.HasPrefix(cmds[0], "add table inet flock-netpol") || cmds[1] != "delete table inet flock-netpol" || !strings.HasPrefix(cmds[2], "add table inet flock-netpol {") {
		t.Errorf("script does not start with add/delete/add table: %q", cmds[:3])
	}
}

func TestGeneratedNamesAreCappedAndUnique(t *testing.T) {
	long := strings.Repeat("x", 300)
	a := generatedName("pod-in", long+"a", long+"a", "-v4")
	b := generatedName("pod-in", long+"b", long+"b", "-v4")
	if len(a) > maxNameLen || len(b) > maxNameLen {
		t.Errorf("names longer than %d: %d, %d", maxNameLen, len(a), len(b))
	}
	if a == b {
		t.Errorf("different identities gave the same name %s", a)
	}
	if !strings.HasSuffix(a, "-v4") {
		t.Errorf("suffix lost: %s", a)
	}
}

// TestGeneratedNamesKeepTheirForm pins generatedName to the form it has always had (a chain's
// name must not change with the agent's version, or an upgrade replaces every chain): the prefix,
// the base32 of the first 5 bytes of the SHA-256 of prefix, NUL and identity, the readable part
// cut to fit and made an identifier rune by rune, then the suffix.
func TestGeneratedNamesKeepTheirForm(t *testing.T) {
	reference := func(prefix, identity, readable, suffix string) string {
		sum := sha256.Sum256([]byte(prefix + "\x00" + identity))
		name := prefix + "-" + base32.StdEncoding.EncodeToString(sum[:5]) + "-"
		if room := maxNameLen - len(name) - len(suffix); len(readable) > room {
			readable = readable[:max(room, 0)]
		}
		return name + strings.Map(identifierRune, readable) + suffix
	}
	for _, readable := range []string{"", "shop/web-1", `a"b`, "ünïcödé", "a\xffb", strings.Repeat("é", 80), strings.Repeat("x", 300)} {
		for _, suffix := range []string{"", "-v4", strings.Repeat("s", 120)} {
			if got, want := generatedName("pod-in", readable+"!", readable, suffix), reference("pod-in", readable+"!", readable, suffix); got != want {
				t.Errorf("generatedName(%q, %q) = %q, want %q", readable, suffix, got, want)
			}
		}
	}
}

func TestValidateTableName(t *testing.T) {
	for _, ok := range []string{"flock-netpol", "a", "T_1.x"} {
		if err := ValidateTableName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1abc", "has space", "semi;colon", "quote\"", strings.Repeat("a", 101)} {
		if err := ValidateTableName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDeleteTable(t *testing.T) {
	if got := string(DeleteTable("t")); got != "add table inet t\ndelete table inet t\n" {
		t.Errorf("got %q", got)
	}
}

// TestDigestIdentifiesTheScript pins that DigestSet's element carries a digest of the script:
// equal scripts share it, different ones differ, and it can be read back from nft's listing.
func TestDigestIdentifiesTheScript(t *testing.T) {
	a := Render(goldenCases[1].rs, Options{})
	b := Render(goldenCases[2].rs, Options{})
	if a.Digest == b.Digest || len(a.Digest) != digestLen {
		t.Fatalf("digests %q and %q", a.Digest, b.Digest)
	}
	if again := Render(goldenCases[1].rs, Options{}).Digest; again != a.Digest {
		t.Errorf("the same rule set gave digests %s and %s", a.Digest, again)
	}
	if got, ok := Digest(a.Text); !ok || got != a.Digest {
		t.Errorf("the script carries digest %q (%v), Render returned %q", got, ok, a.Digest)
	}
	if bytes.Contains(a.Text, []byte(digestPlaceholder)) {
		t.Errorf("placeholder left in the script")
	}
	// The Table carries the stamped element too, as the script's text does.
	want := []string{`0x00000000 comment "ruleset ` + a.Digest + `"`}
	if got := a.Table.Elements(DigestSet); !slices.Equal(got, want) {
		t.Errorf("the Table's %s holds %q, want %q", DigestSet, got, want)
	}
	// As `nft list set inet flock-netpol digest` prints it.
	listing := "table inet flock-netpol {\n\tset digest {\n\t\ttype mark\n\t\tcomment \"holds the digest\"\n" +
		"\t\telements = { 0x00000000 comment \"ruleset " + a.Digest + "\" }\n\t}\n}\n"
	if got, ok := Digest([]byte(listing)); !ok || got != a.Digest {
		t.Errorf("Digest(listing) = %q, %v", got, ok)
	}
	if _, ok := Digest([]byte("table inet other {}")); ok {
		t.Errorf("found a digest where there is none")
	}
}

// TestStatsCountWhatTheScriptInstalls pins Render's statistics against the script's own lines:
// one command per line, one set element per tab-indented line.
func TestStatsCountWhatTheScriptInstalls(t *testing.T) {
	for _, c := range goldenCases {
		out := Render(c.rs, Options{})
		want := Stats{Bytes: len(out.Text)}
		for line := range bytes.Lines(out.Text) {
			switch {
			case bytes.HasPrefix(line, []byte("\t")):
				want.Elements++
			case bytes.HasPrefix(line, []byte("add rule ")):
				want.Rules++
			case bytes.HasPrefix(line, []byte("add set ")), bytes.HasPrefix(line, []byte("add map ")):
				want.Sets++
			}
		}
		if out.Stats != want {
			t.Errorf("%s: Stats = %+v, the script has %+v", c.name, out.Stats, want)
		}
	}
	// Sets of the third case: 2 peer + 2 named (allow-web), 2 peer + 1 named (egress-dns), 4 verdict
	// maps, 4 fresh maps, the stamp map, the current epoch's set and the digest's set.
	if st := Render(goldenCases[2].rs, Options{}).Stats; st.Sets != 18 {
		t.Errorf("Sets = %d, want 18", st.Sets)
	}
}

func TestARuleThatCanMatchNothingLeavesNoSet(t *testing.T) {
	// Its counter stays (it reads zero: the rule never matches), nothing else.
	for line := range strings.Lines(string(Render(goldenCases[2].rs, Options{}).Text)) {
		if strings.Contains(line, "egress-dns/out3") && !strings.HasPrefix(line, "add counter ") {
			t.Errorf("rule 3 of egress-dns matches nothing but left objects in the script: %s", line)
		}
	}
}

// TestDigestLeavesOutTheEpochs pins that the digest covers the rules and not the epochs of
// established connections, which depend on the history of applies: a node's table can be checked
// against the cluster state alone.
func TestDigestLeavesOutTheEpochs(t *testing.T) {
	c := goldenCase(t, "established-epochs")
	a := Render(c.rs, c.opts)
	b := Render(c.rs, Options{Epochs: epoch.State{Current: 3}})
	if bytes.Equal(a.Text, b.Text) {
		t.Fatal("the epochs do not show in the script")
	}
	if a.Digest != b.Digest {
		t.Errorf("the digest changed with the epochs alone: %s, %s", a.Digest, b.Digest)
	}
	if e, ok := Epoch(b.Text); !ok || e != 3 {
		t.Errorf("Epoch(script) = %d, %v; want 3", e, ok)
	}
	other := Render(goldenCases[1].rs, c.opts)
	if other.Digest == a.Digest {
		t.Error("two rule sets share a digest")
	}
}

// TestOwnNodeGoesOnToTheBaselineTier pins that a pod's traffic to its own node (the input hook)
// is accepted in the pod's chain only where NetworkPolicy decides: a pod that no NetworkPolicy
// isolates but audit policies select, with a Baseline tier, goes on to the Baseline tier.
func TestOwnNodeGoesOnToTheBaselineTier(t *testing.T) {
	base := ruleset.ClusterPolicy{Name: "base", Tier: ruleset.BaselineTier, Egress: []ruleset.ClusterRule{
		{Rule: ruleset.Rule{Index: 0, AnyPeer: true, AnyPort: true}, Action: ruleset.Deny}}}
	for _, c := range []struct {
		name     string
		target   ruleset.Target
		accepted bool
	}{
		{"isolated by NetworkPolicy: accepted", ruleset.Target{EgressPolicies: []ruleset.PolicyKey{denyKey}}, true},
		{"audited, not isolated: on to the Baseline tier", ruleset.Target{AuditEgress: []ruleset.PolicyKey{webKey}}, false},
		{"neither: on to the Baseline tier", ruleset.Target{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg := c.target
			tg.Namespace, tg.Name, tg.IPs, tg.BaselineEgress = "shop", "web-1", []netip.Addr{ip("10.0.1.1")}, []string{"base"}
			rs := ruleset.RuleSet{Targets: []ruleset.Target{tg}, ClusterPolicies: []ruleset.ClusterPolicy{base},
				Policies: []ruleset.Policy{{Key: denyKey, Egress: []ruleset.Rule{}}, {Key: webKey, Audit: true, Egress: []ruleset.Rule{{Index: 0, AnyPeer: true, AnyPort: true}}}}}
			text := string(Render(rs, Options{}).Text)
			rule := "add rule inet flock-netpol " + PodChain(false, "shop", "web-1") + " fib daddr type local"
			if got := strings.Contains(text, rule); got != c.accepted {
				t.Errorf("pod chain accepts the own node: %v, want %v\n%s", got, c.accepted, text)
			}
		})
	}
}
