package translate

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/objects"
)

var audit = objects.Annotated(ModeAnnotation, ModeAudit)

// report is what the audit policies of one local end say of a flow: "" for nothing (not
// consulted), "would drop" (the end is not isolated and no audit rule matches), "would allow" (an
// audit rule matches), "no match" (isolated, refused, and no audit rule would allow it either).
func report(v ruleset.Verdict, pod string, egress bool) string {
	for _, s := range v.Audits {
		if s.Pod != pod || s.Egress != egress {
			continue
		}
		isolated := slices.ContainsFunc(v.Sides, func(o ruleset.Side) bool { return o.Pod == pod && o.Egress == egress })
		switch {
		case s.Allowed:
			return "would allow"
		case isolated:
			return "no match"
		}
		return "would drop"
	}
	return ""
}

// TestAuditMode pins the semantics of policies in audit mode (ModeAnnotation): they isolate
// nothing, and report where the enforced policies leave a flow to them.
func TestAuditMode(t *testing.T) {
	type check struct {
		from, to string
		port     uint16
		allowed  bool
		pod      string // the local end whose audit report is checked
		egress   bool
		report   string
	}
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		checks   []check
	}{
		{
			name:     "a default-deny in audit mode isolates nothing and reports what it would drop",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", audit)},
			checks:   []check{{"y/b", "x/a", 80, true, "x/a", false, "would drop"}},
		},
		{
			name:     "an audit rule that matches reports nothing dropped",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/from-y", audit, objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y"))))},
			checks: []check{
				{"y/b", "x/a", 80, true, "x/a", false, "would allow"},
				{"z/b", "x/a", 80, true, "x/a", false, "would drop"},
			},
		},
		{
			name: "a pod an enforced policy isolates stays isolated; audit policies report what they would additionally allow",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/deny"),
				objects.Policy("x/from-y", audit, objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")))),
			},
			checks: []check{
				{"y/b", "x/a", 80, false, "x/a", false, "would allow"},
				{"z/b", "x/a", 80, false, "x/a", false, "no match"},
			},
		},
		{
			name: "what an enforced policy allows is not reported",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/from-y", objects.Ingress(objects.From(objects.NamespacesLabelled("ns", "y")))),
				objects.Policy("x/deny", audit),
			},
			checks: []check{{"y/b", "x/a", 80, true, "x/a", false, ""}},
		},
		{
			name: "a flow refused on the way out never reaches the destination's audit policies",
			policies: []*networkingv1.NetworkPolicy{
				objects.Policy("x/deny-out", objects.IsolateEgress()),
				objects.Policy("y/deny", audit),
			},
			checks: []check{{"x/a", "y/a", 80, false, "y/a", false, ""}},
		},
		{
			name:     "egress in audit mode reports at the source",
			policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny-out", audit, objects.IsolateEgress())},
			checks:   []check{{"x/a", "z/c", 53, true, "x/a", true, "would drop"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := Input{Node: localNode, Policies: c.policies, Namespaces: standardNamespaces(), Pods: compact.NewPods(standardPods())}
			rs, problems := Translate(in)
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			for _, v6 := range []bool{false, true} {
				for _, ch := range c.checks {
					v := rs.Explain(ruleset.Flow{Src: endpoint(ch.from, v6), Dst: endpoint(ch.to, v6), Protocol: ruleset.TCP, Port: ch.port})
					if v.Allowed != ch.allowed {
						t.Errorf("%s -> %s (ipv6=%v): allowed=%v, want %v", ch.from, ch.to, v6, v.Allowed, ch.allowed)
					}
					if got := report(v, ch.pod, ch.egress); got != ch.report {
						t.Errorf("%s -> %s (ipv6=%v): audit report of %s = %q, want %q", ch.from, ch.to, v6, ch.pod, got, ch.report)
					}
				}
			}
		})
	}
}

// TestAnUnknownModeIsEnforced pins the closed failure of a mistyped mode: the policy isolates as
// an enforced one, and the problem is reported.
func TestAnUnknownModeIsEnforced(t *testing.T) {
	in := Input{Node: localNode, Policies: []*networkingv1.NetworkPolicy{objects.Policy("x/deny", objects.Annotated(ModeAnnotation, "Audit "))},
		Namespaces: standardNamespaces(), Pods: compact.NewPods(standardPods())}
	rs, problems := Translate(in)
	if rs.Allows(ruleset.Flow{Src: endpoint("y/b", false), Dst: endpoint("x/a", false), Protocol: ruleset.TCP, Port: 80}) {
		t.Error("a policy with an unknown mode does not isolate")
	}
	if len(problems) != 1 || !strings.Contains(problems[0].Message, "enforcing the policy") {
		t.Errorf("problems = %v, want one saying the policy is enforced", problems)
	}
}

// TestDropLogsAreOptIn pins who logs drops: the pods of a namespace annotated with
// DropLogAnnotation "true", or every pod when Input.LogDrops is set; nobody otherwise.
func TestDropLogsAreOptIn(t *testing.T) {
	policies := []*networkingv1.NetworkPolicy{objects.Policy("x/deny"), objects.Policy("y/deny")}
	logging := func(nss []*corev1.Namespace, all bool) []string {
		rs, _ := Translate(Input{Node: localNode, Policies: policies, Namespaces: nss, Pods: compact.NewPods(standardPods()), LogDrops: all})
		var out []string
		for _, p := range rs.Targets {
			if p.LogDrops {
				out = append(out, p.Namespace+"/"+p.Name)
			}
		}
		return out
	}
	annotated := standardNamespaces()
	annotated[1].Annotations = map[string]string{DropLogAnnotation: "true"} // y
	annotated[0].Annotations = map[string]string{DropLogAnnotation: "yes"}  // x: not "true"
	for _, c := range []struct {
		name string
		nss  []*corev1.Namespace
		all  bool
		want []string
	}{
		{"off by default", standardNamespaces(), false, nil},
		{"a namespace annotated true logs its pods' drops", annotated, false, []string{"y/a"}},
		{"the agent's flag logs every pod's", standardNamespaces(), true, []string{"x/a", "x/b", "y/a"}},
	} {
		if got := logging(c.nss, c.all); !slices.Equal(got, c.want) {
			t.Errorf("%s: pods logging drops = %v, want %v", c.name, got, c.want)
		}
	}
}
