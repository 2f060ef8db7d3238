package trace

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Mapper turns the trace lines of `nft monitor` into each packet's path through the agent's table, in
// terms of pods, policies and rules. Lines of one packet share a trace id; a packet's path is
// written once it reaches a verdict (or at Flush).
type Mapper struct {
	table   string
	out     io.Writer
	packets map[string]*packet
	order   []string
	n       int
}

type packet struct {
	n       int
	header  string
	steps   []string
	verdict string
}

// NewMapper maps lines about agentTable, writing to out.
func NewMapper(agentTable string, out io.Writer) *Mapper {
	return &Mapper{table: agentTable, out: out, packets: map[string]*packet{}}
}

// traceLine is "trace id <id> <family> <table> <chain> <what>".
var traceLine = regexp.MustCompile(`^trace id (\S+) (\S+) (\S+) (\S+) (.*)$`)

// Line takes one line of `nft monitor`; lines that are not traces of the agent's table are
// ignored.
func (m *Mapper) Line(line string) {
	g := traceLine.FindStringSubmatch(strings.TrimSpace(line))
	if g == nil || g[2] != "inet" || g[3] != m.table {
		return // another table's step (the trace table's own included)
	}
	id, chain, what := g[1], g[4], g[5]
	p := m.packets[id]
	if p == nil {
		m.n++
		p = &packet{n: m.n}
		m.packets[id] = p
		m.order = append(m.order, id)
	}
	switch {
	case strings.HasPrefix(what, "packet: "):
		if p.header == "" {
			p.header = summarize(strings.TrimPrefix(what, "packet: "))
		}
	case strings.HasPrefix(what, "rule "):
		rule, verdict := splitVerdict(strings.TrimPrefix(what, "rule "))
		if step := describeRule(chain, rule, verdict); step != "" {
			p.steps = append(p.steps, step)
		}
		if verdict == "accept" || verdict == "drop" {
			p.verdict = verdict
		}
	case strings.HasPrefix(what, "policy "):
		if chain == baseChain {
			p.steps = append(p.steps, "no rule of the table decided: the chain's policy accepts (traffic the agent does not police)")
			p.verdict = strings.TrimSpace(strings.TrimPrefix(what, "policy "))
		}
	}
	if p.verdict != "" {
		m.write(id)
	}
}

// Flush writes the packets that reached no verdict (yet).
func (m *Mapper) Flush() {
	for _, id := range m.order {
		if m.packets[id] != nil {
			m.write(id)
		}
	}
}

func (m *Mapper) write(id string) {
	p := m.packets[id]
	delete(m.packets, id)
	var b strings.Builder
	fmt.Fprintf(&b, "packet %d (trace id %s): %s\n", p.n, id, p.header)
	for i, s := range p.steps {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
	}
	switch p.verdict {
	case "accept":
		b.WriteString("  => ACCEPTED\n")
	case "drop":
		b.WriteString("  => DROPPED\n")
	default:
		b.WriteString("  => no verdict seen (the trace ended first)\n")
	}
	io.WriteString(m.out, b.String()) //nolint:errcheck // the trace keeps going; the caller's writer reports its own errors
}

// splitVerdict separates "<rule> (verdict <v>)".
func splitVerdict(s string) (rule, verdict string) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, " (verdict "); i >= 0 && strings.HasSuffix(s, ")") {
		return s[:i], strings.TrimSuffix(s[i+len(" (verdict "):], ")")
	}
	return s, ""
}

const baseChain = "filter-forward"

var (
	ruleComment = regexp.MustCompile(`comment "([^"]*)"`)
	target      = regexp.MustCompile(`^(?:jump|goto) (\S+)$`)
)

// describeRule says what one rule did to the packet, in the terms of the table's layout (see
// package render); "" for steps that say nothing (a jump into a policy chain that returns).
func describeRule(chain, rule, verdict string) string {
	comment := ""
	if c := ruleComment.FindStringSubmatch(rule); c != nil {
		comment = c[1]
	}
	next := ""
	if t := target.FindStringSubmatch(verdict); t != nil {
		next = t[1]
	}
	switch {
	case strings.HasPrefix(rule, "unknown rule handle"):
		// nft monitor knows the rules that existed when it started: an apply during the trace
		// replaced them.
		return fmt.Sprintf("chain %s, %s (an apply replaced the table during the trace; trace again for the rule's text), verdict %s", chain, rule, verdict)
	case chain == baseChain && strings.Contains(rule, "@current-epoch"):
		return "established connection stamped with the current epoch: accepted at once"
	case chain == baseChain && strings.HasPrefix(next, "fresh-"):
		return "established connection stamped before the current epoch: its stamp is checked at both ends (chain " + next + ")"
	case strings.HasPrefix(chain, "fresh-") && rule == "accept":
		return "neither end of the connection is a pod of this node: accepted at once"
	case strings.HasPrefix(chain, "window-") && verdict == "accept":
		return "the stamp is still valid at both ends: accepted at once"
	case strings.HasPrefix(chain, "fresh-") || strings.HasPrefix(chain, "window-"):
		return "" // on to the window of the local end; a packet that falls off it is judged again
	case chain == baseChain && rule == "ct state established,related accept":
		return "established connection (--established=keep): accepted at once"
	case chain == baseChain && strings.Contains(rule, "fib saddr . iif oif missing"):
		return "forged source (the route back leaves by another interface): dropped"
	case chain == baseChain && strings.Contains(rule, "@local-pods"):
		return "an address of the node's pod ranges that no known pod owns: dropped"
	case strings.Contains(rule, "vmap @egress-pods"):
		return fmt.Sprintf("the connection's source is pod %s, isolated for egress: chain %s", podOf(next), next)
	case strings.Contains(rule, "vmap @ingress-pods"):
		return fmt.Sprintf("the connection's destination is pod %s, isolated for ingress: chain %s", podOf(next), next)
	case chain == baseChain && next == "ingress-dispatch":
		return "the source is not isolated for egress here: on to the ingress dispatch"
	case chain == "ingress-dispatch":
		return "the destination is not isolated for ingress here: allowed"
	case chain == "allow":
		return "" // on to the chain that stamps the current epoch
	case strings.HasPrefix(chain, "stamp-"):
		return "accepted; the connection is stamped with the current epoch"
	case (strings.HasPrefix(chain, "pod-") || strings.HasPrefix(chain, "adm-") || strings.HasPrefix(chain, "admc-")) &&
		(strings.HasPrefix(next, "pol-") || strings.HasPrefix(next, "audit-") || strings.HasPrefix(next, "cnp-")):
		return "" // entering a policy's chain; a rule there that matches says so
	case strings.HasPrefix(chain, "adm-") && strings.HasPrefix(next, "admc-"):
		return "the Admin tier policies whose peers hold the peer's address (and those without peers): chain " + next
	case strings.HasPrefix(chain, "cnp-") && strings.Contains(rule, "vmap @pass-"):
		return fmt.Sprintf("ClusterNetworkPolicy %s passes it: the rest of the Admin tier is skipped, NetworkPolicy decides", comment)
	case strings.HasPrefix(chain, "cnp-") && verdict == "drop":
		return fmt.Sprintf("denied by ClusterNetworkPolicy %s", comment)
	case strings.HasPrefix(chain, "cnp-") && comment != "":
		return fmt.Sprintf("accepted by ClusterNetworkPolicy %s", comment)
	case strings.HasPrefix(chain, "adm-") && strings.HasPrefix(next, "pod-"):
		return fmt.Sprintf("no Admin tier rule selecting %s matched: NetworkPolicy decides", podOf(chain))
	case strings.HasPrefix(chain, "pod-") && (rule == "goto allow" || rule == "goto ingress-dispatch" || rule == "accept"):
		return fmt.Sprintf("no policy selecting %s decided (not isolated by NetworkPolicy, no Baseline rule matched): allowed", podOf(chain))
	case strings.Contains(rule, "log prefix"):
		return "logged (drop logs)"
	case strings.HasPrefix(chain, "audit-") && comment != "":
		return fmt.Sprintf("audit mode: %s would allow it (counted); the enforced policies decide", comment)
	case strings.HasPrefix(chain, "pod-") && strings.Contains(rule, `counter name "would-drop-`):
		return fmt.Sprintf("no rule of the policies in audit mode selecting %s matched: it would be dropped (counted), and is allowed", podOf(chain))
	case (strings.HasPrefix(chain, "pod-") || strings.HasPrefix(chain, "adm-")) && strings.Contains(rule, "fib saddr . iif oif exists"),
		(strings.HasPrefix(chain, "pod-out-") || strings.HasPrefix(chain, "adm-out-")) && strings.HasPrefix(rule, "ct reply ") && !strings.Contains(rule, "@"):
		return fmt.Sprintf("pod %s reaching itself: allowed", podOf(chain))
	case (strings.HasPrefix(chain, "pod-") || strings.HasPrefix(chain, "claim-")) && strings.HasSuffix(rule, "drop"):
		dir := "ingress"
		if strings.HasPrefix(chain, "pod-out-") || strings.HasPrefix(chain, "claim-out-") {
			dir = "egress"
		}
		return fmt.Sprintf("no %s rule of the policies isolating %s matched: dropped", dir, podOf(chain))
	case comment != "":
		return fmt.Sprintf("allowed by %s", comment)
	}
	return fmt.Sprintf("chain %s: %s (verdict %s)", chain, rule, verdict)
}

// podOf reads the pod from a chain name: pod-in-<hash>-<namespace>/<name> (cut when long).
func podOf(chain string) string {
	for _, prefix := range []string{"pod-in-", "pod-out-", "adm-in-", "adm-out-", "claim-in-", "claim-out-"} {
		if rest, ok := strings.CutPrefix(chain, prefix); ok {
			if _, readable, ok := strings.Cut(rest, "-"); ok {
				return readable
			}
		}
	}
	return chain
}

var (
	addrField = regexp.MustCompile(`\bip6? (saddr|daddr) (\S+)`)
	portField = regexp.MustCompile(`\b(tcp|udp|sctp) (sport|dport) (\d+)`)
	tcpFlags  = regexp.MustCompile(`tcp flags == (\S+)`)
	ifField   = regexp.MustCompile(`\b(iif|oif) "([^"]+)"`)
)

// summarize reads the packet's addresses, ports, protocol and interfaces from its trace line.
func summarize(pkt string) string {
	f := map[string]string{}
	for _, g := range addrField.FindAllStringSubmatch(pkt, -1) {
		f[g[1]] = g[2]
	}
	proto := ""
	for _, g := range portField.FindAllStringSubmatch(pkt, -1) {
		proto, f[g[2]] = g[1], g[3]
	}
	s := f["saddr"]
	if f["sport"] != "" {
		s = joinHostPort(s, f["sport"])
	}
	d := f["daddr"]
	if f["dport"] != "" {
		d = joinHostPort(d, f["dport"])
	}
	out := s + " -> " + d
	if proto != "" {
		out += " " + proto
	}
	if g := tcpFlags.FindStringSubmatch(pkt); g != nil {
		out += " [" + g[1] + "]"
	}
	for _, g := range ifField.FindAllStringSubmatch(pkt, -1) {
		out += fmt.Sprintf(" %s %s", g[1], g[2])
	}
	return out
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}
