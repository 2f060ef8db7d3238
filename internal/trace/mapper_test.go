package trace

import "testing"

// TestClusterNetworkPolicySteps pins how a trace names the steps of the ClusterNetworkPolicy
// tiers (the chains of package render's cluster.go).
func TestClusterNetworkPolicySteps(t *testing.T) {
	for _, c := range []struct{ chain, rule, verdict, want string }{
		{"adm-in-UIXIE7Z4-shop/web-1", "jump cnp-in-63BDCAZY-block-db", "jump cnp-in-63BDCAZY-block-db", ""},
		{"adm-in-UIXIE7Z4-shop/web-1", "ct original ip saddr vmap @admm-in-4CGJJK4C-block-db_pass-dns-v4", "jump admc-in-B6IUOKBH-block-db_pass-dns",
			"the Admin tier policies whose peers hold the peer's address (and those without peers): chain admc-in-B6IUOKBH-block-db_pass-dns"},
		{"admc-in-B6IUOKBH-block-db_pass-dns", "jump cnp-in-63BDCAZY-block-db", "jump cnp-in-63BDCAZY-block-db", ""},
		{"cnp-in-63BDCAZY-block-db", `ct state new ct original ip saddr @peers-CXJB2KBW-block-db/in0-v4 counter packets 0 bytes 0 drop comment "block-db ingress rule 0"`, "drop",
			"denied by ClusterNetworkPolicy block-db ingress rule 0"},
		{"cnp-out-4YIXQADW-pass-dns", `ct state new ct reply ip saddr @peers-P6PHGMAW-pass-dns/out1-v4 counter packets 0 bytes 0 ct original ip saddr vmap @pass-out-v4 comment "pass-dns egress rule 1"`, "goto pod-out-3HPGUNFE-shop/web-1",
			"ClusterNetworkPolicy pass-dns egress rule 1 passes it: the rest of the Admin tier is skipped, NetworkPolicy decides"},
		{"cnp-out-HUB3UU6Q-accept-web", `ct state new ct reply ip saddr @peers-3VKMZFOC-accept-web/out0-v4 goto ingress-dispatch comment "accept-web egress rule 0"`, "goto ingress-dispatch",
			"accepted by ClusterNetworkPolicy accept-web egress rule 0"},
		{"adm-in-UIXIE7Z4-shop/web-1", "goto pod-in-EN3T6OWG-shop/web-1", "goto pod-in-EN3T6OWG-shop/web-1",
			"no Admin tier rule selecting shop/web-1 matched: NetworkPolicy decides"},
		{"adm-in-UIXIE7Z4-shop/web-1", "ct original ip saddr 10.0.1.1 fib saddr . iif oif exists goto allow", "goto allow", "pod shop/web-1 reaching itself: allowed"},
		{"pod-in-NEBJYBDV-shop/web-2", "jump cnp-in-BJLSFCNP-baseline-deny", "jump cnp-in-BJLSFCNP-baseline-deny", ""},
		{"pod-in-NEBJYBDV-shop/web-2", "goto allow", "goto allow",
			"no policy selecting shop/web-2 decided (not isolated by NetworkPolicy, no Baseline rule matched): allowed"},
	} {
		if got := describeRule(c.chain, c.rule, c.verdict); got != c.want {
			t.Errorf("%s: %s\n got %q\nwant %q", c.chain, c.rule, got, c.want)
		}
	}
}

// TestEstablishedFastPathSteps pins how a trace names the steps of an established packet whose
// stamp is older than the current epoch (package render's fresh.go): the window check of each
// local end, accepted at the last one or at once when no end is local.
func TestEstablishedFastPathSteps(t *testing.T) {
	for _, c := range []struct{ chain, rule, verdict, want string }{
		{"filter-forward", "ct state established,related ct mark & 0xfffff000 == @current-epoch accept", "accept",
			"established connection stamped with the current epoch: accepted at once"},
		{"filter-forward", "ct state established,related meta nfproto ipv4 jump fresh-v4", "jump fresh-v4",
			"established connection stamped before the current epoch: its stamp is checked at both ends (chain fresh-v4)"},
		{"fresh-v4", "ct original ip saddr vmap @fresh-out-v4", "goto window-out-7-v4", ""},
		{"window-out-7-v4", "ct mark 0x00007000-0x00040fff ct reply ip saddr vmap @fresh-in-v4", "goto window-in-5", ""},
		{"window-in-5", "ct mark 0x00005000-0x00040fff accept", "accept", "the stamp is still valid at both ends: accepted at once"},
		{"window-out-7-v4", "ct mark 0x00007000-0x00040fff accept", "accept", "the stamp is still valid at both ends: accepted at once"},
		{"fresh-v6", "accept", "accept", "neither end of the connection is a pod of this node: accepted at once"},
		{"allow", "meta nfproto vmap @stamp", "goto stamp-7", ""},
		{"stamp-7", "ct mark set ct mark & 0x00007fff | 0x00007000 accept", "accept", "accepted; the connection is stamped with the current epoch"},
	} {
		if got := describeRule(c.chain, c.rule, c.verdict); got != c.want {
			t.Errorf("%s: %s\n got %q\nwant %q", c.chain, c.rule, got, c.want)
		}
	}
}
