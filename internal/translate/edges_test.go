package translate

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

// TestUnknownAddressesOfThePodRangesAreClosed pins the node's edges: forwarded traffic from or to
// an address of the node's pod ranges that no known local pod owns is dropped, whatever the
// policies say; known pods, isolated or not, are unaffected. The local pods are x/a, x/b (in
// 10.0.1.0/24, fd00::1:0/112) and y/a (in 10.0.2.0/24, fd00::2:0/112).
func TestUnknownAddressesOfThePodRangesAreClosed(t *testing.T) {
	cidrs := []netip.Prefix{
		netip.MustParsePrefix("10.0.1.77/24"), netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("10.0.1.0/24"),
		netip.MustParsePrefix("fd00::1:0/112"), netip.MustParsePrefix("fd00::2:0/112"),
	}
	c := semanticsCase{
		// x/b is isolated; nothing else is.
		policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny-b", objects.Selecting("pod", "b"))},
		tweak: map[string][]objects.PodOption{
			"x/a": {objects.IPs()},                      // not yet given its address: 10.0.1.1 is unknown
			"y/a": {objects.Phase(corev1.PodSucceeded)}, // finished: its address may be a new pod's
		},
	}
	in := c.input()
	in.PodCIDRs = cidrs
	rs, _ := Translate(in)

	if want := []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.0.2.0/24"),
		netip.MustParsePrefix("fd00::1:0/112"), netip.MustParsePrefix("fd00::2:0/112")}; !slices.Equal(rs.Edges.PodCIDRs, want) {
		t.Errorf("PodCIDRs = %v, want %v (masked, sorted, without duplicates)", rs.Edges.PodCIDRs, want)
	}
	if want := []netip.Addr{addr("x/b", false), addr("x/b", true)}; !slices.Equal(rs.Edges.LocalPods, want) {
		t.Errorf("LocalPods = %v, want %v (live local pods with an address, isolated or not)", rs.Edges.LocalPods, want)
	}

	unknown4, unknown6 := netip.MustParseAddr("10.0.1.9"), netip.MustParseAddr("fd00::1:9")
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		want     bool
	}{
		{"an unknown address of the ranges cannot send", unknown4, addr("z/a", false), false},
		{"an unknown address of the ranges cannot receive", addr("z/a", false), unknown4, false},
		{"the same in IPv6 (send)", unknown6, addr("z/a", true), false},
		{"the same in IPv6 (receive)", addr("z/a", true), unknown6, false},
		{"a pod without its address yet is unknown", addr("x/a", false), addr("z/a", false), false},
		{"a finished pod's address is unknown", addr("z/a", true), addr("y/a", true), false},
		{"a known isolated pod keeps its policies", addr("z/a", false), addr("x/b", false), false},
		{"a known pod may send outside the ranges", addr("x/b", false), addr("z/a", false), true},
		{"addresses outside the ranges are not the node's concern", addr("z/a", false), outside4, true},
	} {
		if got := rs.Allows(ruleset.Flow{Src: c.src, Dst: c.dst, Protocol: ruleset.TCP, Port: 80}); got != c.want {
			t.Errorf("%s: %s -> %s allowed=%v, want %v", c.name, c.src, c.dst, got, c.want)
		}
	}

	in.PodCIDRs = nil
	if rs, _ := Translate(in); len(rs.Edges.PodCIDRs) != 0 || !rs.Allows(ruleset.Flow{Src: unknown4, Dst: addr("z/a", false), Protocol: ruleset.TCP, Port: 80}) {
		t.Errorf("without pod ranges an unknown address was closed: %+v", rs.Edges)
	}
}
