package explain

import (
	"fmt"
	"io"
	"strings"
)

// Write prints the report for a reader: the verdict, then per node each local end, the policies
// that isolate it, the rules that allow the connection or the nearest misses, and where the table
// implements them.
func Write(w io.Writer, r Report) error {
	var b strings.Builder
	verdict := "DENIED"
	if r.Allowed {
		verdict = "ALLOWED"
	}
	port := fmt.Sprintf("%s/%d", r.Protocol, r.Port)
	if r.PortName != "" {
		port += fmt.Sprintf(" (port %q of %s)", r.PortName, r.To.Pod)
	}
	fmt.Fprintf(&b, "%s -> %s %s: %s\n", r.From, r.To, port, verdict)
	if len(r.Nodes) == 0 {
		b.WriteString("\nneither end is a pod of the cluster: no node polices this connection\n")
	}
	for _, n := range r.Nodes {
		fmt.Fprintf(&b, "\nnode %s (%s):", n.Node, n.Role)
		switch {
		case n.Closed != "":
			fmt.Fprintf(&b, " denied: %s is in the node's pod ranges but no known pod owns it (closed edge;\n  the rules naming set local-pods in chain filter-forward)\n", n.Closed)
			continue
		case n.Self:
			b.WriteString(" allowed: a pod may always reach itself\n")
			continue
		}
		b.WriteString("\n")
		for _, s := range n.Sides {
			writeSide(&b, s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSide(b *strings.Builder, s SideReport) {
	if s.Audit {
		writeAudit(b, s)
		return
	}
	if s.Tier != "" {
		writeTier(b, s)
		return
	}
	if !s.Isolated {
		fmt.Fprintf(b, "  %s of %s: not isolated (no enforced policy selects it for %s): allowed\n", s.Direction, s.Pod, s.Direction)
		return
	}
	fmt.Fprintf(b, "  %s of %s: isolated by %s\n", s.Direction, s.Pod, strings.Join(s.Policies, ", "))
	fmt.Fprintf(b, "    nft: map %s -> chain %s\n", s.Map, s.Chain)
	if s.Allowed {
		for _, m := range s.Matches {
			fmt.Fprintf(b, "    allowed by %s %s rule %d: %s, %s\n", m.Policy, s.Direction, m.Rule, peer(m.Peer), m.Port)
			writeWhere(b, m)
		}
		return
	}
	fmt.Fprintf(b, "    denied: no %s rule of %s matches\n", s.Direction, strings.Join(s.Policies, ", "))
	if len(s.NearMisses) > 0 {
		b.WriteString("    nearest misses:\n")
	}
	for _, m := range s.NearMisses {
		what := fmt.Sprintf("the peer matches (%s), the port does not", m.Peer)
		if m.Peer == "" {
			what = fmt.Sprintf("the port matches (%s), the peer does not", m.Port)
		}
		fmt.Fprintf(b, "      %s %s rule %d: %s; it allows %s\n", m.Policy, s.Direction, m.Rule, what, m.Allows)
		writeWhere(b, m)
	}
}

// writeAudit says what the policies in audit mode of one end would do: allow the connection
// (which the enforced policies refuse), or drop it (which nothing isolating refuses).
func writeAudit(b *strings.Builder, s SideReport) {
	policies := strings.Join(s.Policies, ", ")
	switch {
	case s.Allowed && s.Isolated:
		fmt.Fprintf(b, "    audit mode: %s would allow it (counted in the rule's counter; still denied):\n", policies)
	case s.Allowed:
		fmt.Fprintf(b, "  %s of %s, audit mode: %s would allow it:\n", s.Direction, s.Pod, policies)
	case s.Isolated:
		fmt.Fprintf(b, "    audit mode: no %s rule of %s would allow it either\n", s.Direction, policies)
		return
	default:
		fmt.Fprintf(b, "  %s of %s, audit mode: %s would DROP it (no %s rule matches); it is allowed, and counted\n    as would-drop (logged when drop logs are on)\n",
			s.Direction, s.Pod, policies, s.Direction)
		return
	}
	for _, m := range s.Matches {
		fmt.Fprintf(b, "      %s %s rule %d: %s, %s\n", m.Policy, s.Direction, m.Rule, peer(m.Peer), m.Port)
		writeWhere(b, m)
	}
}

// writeTier says which ClusterNetworkPolicy rule judged one end, and what it did.
func writeTier(b *strings.Builder, s SideReport) {
	m := s.Matches[0]
	did := map[string]string{"Accept": "accepts it", "Deny": "DENIES it", "Pass": "passes it to NetworkPolicy"}[m.Action]
	if m.Action == "Pass" && s.Tier == "Baseline" {
		did = "passes it on to the default: allowed"
	}
	rule := fmt.Sprintf("rule %d", m.Rule)
	if m.Name != "" {
		rule += fmt.Sprintf(" (%q)", m.Name)
	}
	fmt.Fprintf(b, "  %s of %s: %s tier: ClusterNetworkPolicy %s %s %s %s: %s, %s\n", s.Direction, s.Pod, s.Tier, m.Policy, s.Direction, rule, did, peer(m.Peer), m.Port)
	fmt.Fprintf(b, "    nft: map %s -> chain %s\n", s.Map, s.Chain)
	writeWhere(b, m)
}

func writeWhere(b *strings.Builder, m RuleReport) {
	where := "chain " + m.Chain
	if len(m.Sets) > 0 {
		where += ", set " + strings.Join(m.Sets, ", set ")
	}
	fmt.Fprintf(b, "        nft: %s\n", where)
}

// peer reads a matched peer: "any peer", or "peer 10.0.0.0/24".
func peer(p string) string {
	if strings.HasPrefix(p, "any") {
		return p
	}
	return "peer " + p
}
