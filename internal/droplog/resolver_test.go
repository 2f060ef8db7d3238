package droplog

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

// TestRuleSetResolverNamesPodsAndPolicies pins what the agent's resolver answers: local pods and
// the policies that judged them from the applied rule set (enforced or audit, by direction; the
// claimants of a shared address), other pods from the cluster's, remembered for a while.
func TestRuleSetResolverNamesPodsAndPolicies(t *testing.T) {
	a := netip.MustParseAddr
	key := func(ns, name string) ruleset.PolicyKey { return ruleset.PolicyKey{Namespace: ns, Name: name} }
	rs := &ruleset.RuleSet{
		Targets: []ruleset.Target{
			{Namespace: "x", Name: "a", IPs: []netip.Addr{a("10.0.1.1")}, IngressPolicies: []ruleset.PolicyKey{key("x", "deny"), key("x", "web")}, AuditEgress: []ruleset.PolicyKey{key("x", "try")}},
		},
		Claims: []ruleset.Claim{{Addr: a("10.0.1.9"), Claimants: []string{"x/b", "x/c"},
			Ingress: []ruleset.ClaimantPolicies{{Pod: "x/b", Policies: []ruleset.PolicyKey{key("x", "deny")}}, {Pod: "x/c", Policies: []ruleset.PolicyKey{key("x", "deny"), key("x", "web")}}}}},
		Local: []ruleset.LocalAddr{{Addr: a("10.0.1.1"), Pod: "x/a"}, {Addr: a("10.0.1.9"), Pod: "x/b,x/c"}},
	}
	scans := 0
	now := time.Unix(1000, 0)
	r := &RuleSetResolver{
		RuleSet: func() *ruleset.RuleSet { return rs },
		Pods: func() ([]*compact.Pod, error) {
			scans++
			return compact.NewPods([]*corev1.Pod{objects.Pod("y/b", objects.IPs("10.0.2.2"), objects.OnNode("n2"))}), nil
		},
		Now: func() time.Time { return now },
	}
	for _, c := range []struct {
		addr          string
		egress, audit bool
		pod           string
		policies      []string
		ok            bool
	}{
		{"10.0.1.1", false, false, "x/a", []string{"x/deny", "x/web"}, true},
		{"10.0.1.1", true, false, "", nil, false}, // not isolated for egress
		{"10.0.1.1", true, true, "x/a", []string{"x/try"}, true},
		{"10.0.1.9", false, false, "x/b, x/c", []string{"x/deny", "x/web"}, true},
		{"10.0.2.2", false, false, "", nil, false}, // not local
	} {
		pod, policies, ok := r.Isolation(a(c.addr), c.egress, c.audit)
		if pod != c.pod || !slices.Equal(policies, c.policies) || ok != c.ok {
			t.Errorf("Isolation(%s, egress=%v, audit=%v) = %q, %v, %v; want %q, %v, %v", c.addr, c.egress, c.audit, pod, policies, ok, c.pod, c.policies, c.ok)
		}
	}
	if got := r.Pod(a("10.0.1.1")); got != "x/a" || scans != 0 {
		t.Errorf("Pod(local) = %q after %d scans, want x/a from the rule set", got, scans)
	}
	for range 3 {
		if got := r.Pod(a("10.0.2.2")); got != "y/b" {
			t.Errorf("Pod(10.0.2.2) = %q, want y/b", got)
		}
	}
	if scans != 1 {
		t.Errorf("%d scans of the cluster's pods for one address asked thrice, want 1", scans)
	}
	now = now.Add(memoTTL)
	r.Pod(a("10.0.2.2"))
	if scans != 2 {
		t.Errorf("an answer older than %v was not looked up again", memoTTL)
	}
}
