package render

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// TestAdminTierWalksOnlyThePoliciesThatCanMatchThePeer pins the Admin tier's dispatch: a packet
// walks the policies whose peers hold its peer address, with the policies every packet walks (no
// peers, or more addresses than are worth spelling out: per family) in their place in the tier's order, and no
// other. Without the dispatch every packet walked every policy of the pod's list.
func TestAdminTierWalksOnlyThePoliciesThatCanMatchThePeer(t *testing.T) {
	peers := func(addrs ...string) ruleset.AddrSet {
		var b ruleset.Builder
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a); err == nil {
				b.AddPrefix(p)
			} else {
				b.AddAddr(ip(a))
			}
		}
		return b.Set()
	}
	admin := func(name string, rules ...ruleset.Rule) ruleset.ClusterPolicy {
		p := ruleset.ClusterPolicy{Name: name, Tier: ruleset.AdminTier}
		for i, r := range rules {
			r.Index, r.AnyPort = i, true
			p.Ingress = append(p.Ingress, ruleset.ClusterRule{Rule: r, Action: ruleset.Deny})
		}
		return p
	}
	rs := ruleset.RuleSet{
		ClusterPolicies: []ruleset.ClusterPolicy{
			admin("a", ruleset.Rule{Peers: peers("10.0.2.1", "10.0.2.2")}),
			admin("b", ruleset.Rule{AnyPeer: true}),
			admin("c", ruleset.Rule{Peers: peers("10.0.2.2")}, ruleset.Rule{Peers: peers("10.0.2.3")}),
			admin("d", ruleset.Rule{Peers: peers("10.0.0.0/16", "fd00::2:1")}), // too wide for IPv4 only
			admin("e", ruleset.Rule{Peers: peers("fd00::2:1", "fd00::2:2")}),
			// Narrow ranges, but more addresses in all than a map should spell out.
			admin("f", ruleset.Rule{Peers: peers("10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24", "10.1.4.0/24")}),
		},
		Targets: []ruleset.Target{{Namespace: "shop", Name: "web-1", IPs: []netip.Addr{ip("10.0.1.1")},
			AdminIngress: []string{"a", "b", "c", "d", "e", "f"}}},
	}
	text := string(Render(rs, Options{}).Text)

	// The chains a packet from each peer walks: the class chain the map sends it to, else none.
	classOf := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\t(\S+) : jump (admc-\S+),$`).FindAllStringSubmatch(text, -1) {
		classOf[m[1]] = m[2]
	}
	walks := func(chain string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`(?m)^add rule inet flock-netpol `+regexp.QuoteMeta(chain)+` (.*)$`).FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
		return out
	}
	jumps := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, "jump "+ClusterChain(true, n))
		}
		return out
	}
	for peer, want := range map[string][]string{
		"10.0.2.1":  jumps("a", "b", "d", "f"),
		"10.0.2.2":  jumps("a", "b", "c", "d", "f"),
		"10.0.2.3":  jumps("b", "c", "d", "f"),
		"fd00::2:1": jumps("b", "d", "e"),
		"fd00::2:2": jumps("b", "e"),
	} {
		if got := walks(classOf[peer]); classOf[peer] == "" || !slices.Equal(got, want) {
			t.Errorf("peer %s walks %q (chain %q), want %q", peer, got, classOf[peer], want)
		}
	}
	if len(classOf) != 5 {
		t.Errorf("the dispatch maps hold %d addresses, want 5: %v", len(classOf), classOf)
	}
	// Any other peer: the policies every packet of its family walks, in order, then NetworkPolicy.
	adm := walks(AdminChain(true, "shop", "web-1"))
	var rest []string
	for _, r := range adm {
		if !strings.Contains(r, "vmap @admm-in-") && !strings.Contains(r, "fib saddr . iif oif exists") {
			rest = append(rest, r)
		}
	}
	want := []string{"jump " + ClusterChain(true, "b"), "meta nfproto ipv4 jump " + ClusterChain(true, "d"),
		"meta nfproto ipv4 jump " + ClusterChain(true, "f"), "goto " + PodChain(true, "shop", "web-1")}
	if !slices.Equal(rest, want) {
		t.Errorf("the pod's Admin chain walks %q after the dispatch, want %q\n%s", rest, want, strings.Join(adm, "\n"))
	}
}
