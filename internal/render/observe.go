package render

import (
	"fmt"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// What the table shows of the traffic it judges: named counters per policy rule and per pod,
// drop logs, and policies in audit mode.
//
// Counters count connections, not packets: a policy rule's counter counts the first packet of
// each connection the rule lets through (conntrack state new), not the packets of an established
// connection judged again after a change. A pod's counters count the new packets its chain
// drops (or, in audit mode, would drop); a refused connection never enters conntrack's table,
// so a client's retransmitted SYN is a new packet and counts again.
//
// Drop logs send the first packet of each dropped connection to an NFLOG group, with a prefix
// that says what happened and in which direction (LogPrefix); a dynamic set of the packets'
// 5-tuples, whose entries expire after dropLogDedup, keeps the retransmissions of one refused
// connection (and the later packets of a cut one) out of the log, and one named limit bounds the
// lines of the whole node. The agent reads the group (package droplog).

// Defaults of the drop-log options.
const (
	DefaultLogGroup = 100
	DefaultLogRate  = 50 // lines per second, with a burst of twice as many
)

const (
	dropLogSet   = "drop-log" // + family suffix
	dropLogLimit = "drop-log"
	// dropLogDedup is how long a logged packet's 5-tuple keeps the next ones quiet, and
	// dropLogSize the most 5-tuples remembered per family: when full, drops are not logged
	// (they are still dropped and counted) until entries expire.
	dropLogDedup = "10s"
	dropLogSize  = 65536
	// snaplen is how much of a logged packet reaches the agent: the IP and transport headers.
	snaplen = 128
)

// LogPrefix is the NFLOG prefix of a logged packet: "fnp drop in", "fnp drop out" for drops, "fnp
// audit in", "fnp audit out" for what a policy in audit mode would drop.
func LogPrefix(audit, egress bool) string {
	kind := "drop"
	if audit {
		kind = "audit"
	}
	return "fnp " + kind + " " + dir(!egress).short
}

// CounterKind says what a named counter counts.
type CounterKind int

const (
	// CounterRule counts the connections one rule of a policy let through.
	CounterRule CounterKind = iota
	// CounterDenied counts the new packets a pod's chain dropped: no rule of the policies
	// isolating it allowed them.
	CounterDenied
	// CounterAuditDenied counts the new packets that no rule of a pod's policies in audit mode
	// allowed, where no enforced policy isolates the pod: what those policies would drop.
	CounterAuditDenied
)

// Counter is a named counter of the table and what it counts.
type Counter struct {
	Name      string
	Kind      CounterKind
	Namespace string
	// Object names the policy (CounterRule) or the pod (the others).
	Object string
	Egress bool
	// Rule is a CounterRule's index in its policy's ingress or egress rules.
	Rule int
	// Audit is true for a CounterRule of a policy in audit mode.
	Audit bool
	// Tier is set for a CounterRule of a ClusterNetworkPolicy ("Admin" or "Baseline"; Namespace
	// is then empty), with the rule's Action ("Accept", "Deny", "Pass").
	Tier, Action string
}

func ruleCounterName(k ruleset.PolicyKey, d direction, index int) string {
	return generatedName("rule", fmt.Sprintf("%s/%s/%d", k, d.name, index), fmt.Sprintf("%s/%s%d", k, d.short, index), "")
}

func podCounterName(audit bool, pod *ruleset.Target, d direction) string {
	kind := "denied-"
	if audit {
		kind = "would-drop-"
	}
	return generatedName(kind+d.short, podID(pod), podID(pod), "")
}

// counter declares a named counter.
func (s *script) counter(c Counter, why string) {
	s.object("counter", c.Name, fmt.Sprintf("add counter inet %s %s { comment %s; }", s.table, c.Name, why))
	s.counters = append(s.counters, c)
}

// ruleCounters declares the counters of a policy's rules in one direction.
func (s *script) ruleCounters(p *ruleset.Policy, d direction) {
	for _, r := range rulesOf(p, d) {
		c := Counter{Kind: CounterRule, Namespace: p.Key.Namespace, Object: p.Key.Name, Egress: d == egress, Rule: r.Index, Audit: p.Audit}
		s.memoCounter(c, func() (string, string) {
			return ruleCounterName(p.Key, d, r.Index), comment("%s %s rule %d: connections", p.Key, d.name, r.Index)
		})
	}
}

// memoCounter declares the counter c, whose name and comment named returns: with a Memo, those
// of the last render for the same counter (they follow from the rest of it).
func (s *script) memoCounter(c Counter, named func() (name, why string)) {
	key := counterKey{c, s.table}
	if m, ok := s.memo.lookupCounter(key); ok {
		c.Name = m.name
		s.object("counter", c.Name, m.decl)
		s.counters = append(s.counters, c)
		return
	}
	name, why := named()
	c.Name = name
	s.counter(c, why)
	s.memo.storeCounter(key, &memoCounter{name: name, decl: s.tab.objects["counter "+name].decl})
}

// podCounters declares the counter of what a pod's chain drops, or would drop in audit mode.
func (s *script) podCounter(pod *ruleset.Target, d direction, audit bool) {
	c := Counter{Kind: CounterDenied, Namespace: pod.Namespace, Object: pod.Name, Egress: d == egress}
	if audit {
		c.Kind = CounterAuditDenied
	}
	s.memoCounter(c, func() (string, string) {
		if audit {
			return podCounterName(audit, pod, d), comment("%s of pod %s: new packets audit policies would drop", d.name, podID(pod))
		}
		return podCounterName(audit, pod, d), comment("%s of pod %s: new packets dropped", d.name, podID(pod))
	})
}

// dropLogObjects declares the dynamic sets and the limit of the drop logs.
func (s *script) dropLogObjects(rate int) {
	s.object("limit", dropLogLimit, fmt.Sprintf("add limit inet %s %s { rate %d/second burst %d packets; comment %s; }",
		s.table, dropLogLimit, rate, 2*rate, comment("drop log lines of the node")))
	for _, f := range families {
		e := s.set(dropLogSet+f.suffix, f.addrType+" . "+f.addrType+" . inet_proto . inet_service . inet_service",
			fmt.Sprintf(" size %d; flags dynamic,timeout; timeout %s;", dropLogSize, dropLogDedup),
			comment("5-tuples logged in the last %s", dropLogDedup))
		e.end()
	}
}

// logRules write the rules that log the first packet of a connection to the drop-log group.
func (s *script) logRules(chain string, audit bool, d direction) {
	for _, f := range families {
		key := fmt.Sprintf("%s saddr . %s daddr . meta l4proto . th sport . th dport", f.proto, f.proto)
		s.rule(chain, fmt.Sprintf("%s != @%s%s add @%s%s { %s } limit name %q log prefix %q group %d snaplen %d",
			key, dropLogSet, f.suffix, dropLogSet, f.suffix, key, dropLogLimit, LogPrefix(audit, d == egress), s.logGroup, snaplen))
	}
}

func auditsOf(pod *ruleset.Target, d direction) []ruleset.PolicyKey {
	if d == ingress {
		return pod.AuditIngress
	}
	return pod.AuditEgress
}

// reportChainName names the chain that counts what a policy in audit mode would allow, for pods
// that enforced policies isolate.
func reportChainName(d direction, k ruleset.PolicyKey) string {
	return generatedName("audit-"+d.short, k.String(), k.String(), "")
}
