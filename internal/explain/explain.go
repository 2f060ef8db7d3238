// Package explain answers "why is this connection allowed or denied?" from the agent's own
// translator and rule set: for each node that judges the connection (the source's and the
// destination's), it translates the cluster for that node exactly as the agent does and asks the
// rule set's evaluator (ruleset.RuleSet.Explain), which follows the rendered datapath. There is no
// second implementation of the semantics to drift from enforcement.
package explain

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// Query is one connection to explain.
type Query struct {
	// From and To are each "namespace/pod" or an address.
	From, To string
	// Port is "80", "80/tcp", "53/udp", or a port name ("http", "dns/udp") resolved on the
	// destination pod. The protocol defaults to TCP.
	Port string
	// IPv6 picks the IPv6 addresses of pods given by name (default: IPv4 when both ends have one).
	IPv6 bool
}

// Report is the answer.
type Report struct {
	From     Endpoint     `json:"from"`
	To       Endpoint     `json:"to"`
	Protocol string       `json:"protocol"`
	Port     uint16       `json:"port"`
	PortName string       `json:"portName,omitempty"`
	Allowed  bool         `json:"allowed"`
	Nodes    []NodeReport `json:"nodes"`
}

// Endpoint is one end of the connection.
type Endpoint struct {
	Addr netip.Addr `json:"address"`
	Pod  string     `json:"pod,omitempty"`  // "namespace/name"; empty for an address no pod owns
	Node string     `json:"node,omitempty"` // the pod's node
}

func (e Endpoint) String() string {
	if e.Pod == "" {
		return e.Addr.String()
	}
	return fmt.Sprintf("%s (%s, %s)", e.Pod, e.Addr, e.Node)
}

// NodeReport is how one node judges the connection.
type NodeReport struct {
	Node    string `json:"node"`
	Role    string `json:"role"` // "source's node", "destination's node" or "both ends' node"
	Allowed bool   `json:"allowed"`
	// Closed is set when one end is an address of the node's pod ranges that no known pod owns.
	Closed string `json:"closed,omitempty"`
	// Self is true when the connection goes from a pod to itself, which is always allowed.
	Self  bool         `json:"self,omitempty"`
	Sides []SideReport `json:"sides"`
}

// SideReport is one local end: egress of the source, ingress of the destination. A local end
// with policies in audit mode has a second SideReport, with Audit set, when they judge the
// connection (see ruleset.Verdict.Audits): Allowed then says whether they would allow it.
type SideReport struct {
	Direction string `json:"direction"`
	Pod       string `json:"pod"`
	Isolated  bool   `json:"isolated"`
	Audit     bool   `json:"audit,omitempty"`
	// Policies isolate the pod in this direction (audit: are in audit mode).
	Policies []string `json:"policies,omitempty"`
	// Tier is "Admin" or "Baseline" when a ClusterNetworkPolicy rule of that tier judged the
	// connection here: Matches holds it, with its action (Isolated is then false).
	Tier       string       `json:"tier,omitempty"`
	Allowed    bool         `json:"allowed"`
	Matches    []RuleReport `json:"allowedBy,omitempty"`
	NearMisses []RuleReport `json:"nearMisses,omitempty"`
	// Map and Chain are where the table sends the pod's traffic in this direction.
	Map   string `json:"map,omitempty"`
	Chain string `json:"chain,omitempty"`
}

// RuleReport is one rule of a policy.
type RuleReport struct {
	Policy string `json:"policy"`
	Rule   int    `json:"rule"`
	// Peer and Port are what matched ("" for what did not).
	Peer string `json:"peer,omitempty"`
	Port string `json:"port,omitempty"`
	// Action is a ClusterNetworkPolicy rule's action ("Accept", "Deny", "Pass"), Name its name;
	// Policy is then the ClusterNetworkPolicy's name.
	Action string `json:"action,omitempty"`
	Name   string `json:"name,omitempty"`
	// Allows describes the rule's peers and ports, for near misses.
	Allows string `json:"allows,omitempty"`
	// Chain and Sets implement the rule in the table.
	Chain string   `json:"chain"`
	Sets  []string `json:"sets,omitempty"`
}

// ErrInput marks a query that cannot be answered: an unknown pod, an unparsable port, a name
// the destination does not define.
var ErrInput = errors.New("bad query")

func inputErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, args...))
}

// Explain answers q over the cluster objs. Each node is translated as the agent translates it,
// with the node's pod ranges from its Node object (closed as with --close-unknown-pod-addresses).
func Explain(objs manifest.Objects, q Query) (Report, error) {
	pods := compact.NewPods(objs.Pods)
	from, fromPod, err := endpoint(objs, pods, q.From)
	if err != nil {
		return Report{}, fmt.Errorf("--from: %w", err)
	}
	to, toPod, err := endpoint(objs, pods, q.To)
	if err != nil {
		return Report{}, fmt.Errorf("--to: %w", err)
	}
	if err := pickAddrs(&from, fromPod, &to, toPod, q.IPv6); err != nil {
		return Report{}, err
	}
	proto, port, name, err := parsePort(q.Port, toPod)
	if err != nil {
		return Report{}, fmt.Errorf("--port: %w", err)
	}
	r := Report{From: from, To: to, Protocol: string(proto), Port: port, PortName: name, Allowed: true}
	f := ruleset.Flow{Src: from.Addr, Dst: to.Addr, Protocol: proto, Port: port}
	for _, node := range judges(from, to) {
		in := translate.Input{Node: node.name, Policies: objs.Policies, Namespaces: objs.Namespaces, Pods: pods,
			ClusterPolicies: objs.ClusterPolicies, Nodes: objs.Nodes}
		for _, n := range objs.Nodes {
			if n.Name == node.name {
				in.PodCIDRs, _ = translate.NodePodCIDRs(n) // a bad range is reported by render and run
			}
		}
		rs, _ := translate.Translate(in)
		r.Nodes = append(r.Nodes, nodeReport(&rs, f, node, from, to, portNames(objs, toPod, proto, port)))
		r.Allowed = r.Allowed && r.Nodes[len(r.Nodes)-1].Allowed
	}
	return r, nil
}

type judge struct {
	name, role string
	src, dst   bool // whether the source, the destination is local
}

// judges are the nodes that see the connection: the source's and the destination's.
func judges(from, to Endpoint) []judge {
	switch {
	case from.Node != "" && from.Node == to.Node:
		return []judge{{from.Node, "both ends' node", true, true}}
	case from.Node != "" && to.Node != "":
		return []judge{{from.Node, "source's node", true, false}, {to.Node, "destination's node", false, true}}
	case from.Node != "":
		return []judge{{from.Node, "source's node", true, false}}
	case to.Node != "":
		return []judge{{to.Node, "destination's node", false, true}}
	}
	return nil
}

func nodeReport(rs *ruleset.RuleSet, f ruleset.Flow, j judge, from, to Endpoint, names namer) NodeReport {
	v := rs.Explain(f)
	nr := NodeReport{Node: j.name, Role: j.role, Allowed: v.Allowed, Self: v.Self}
	if v.Closed.IsValid() {
		nr.Closed = v.Closed.String()
		return nr
	}
	if v.Self {
		return nr
	}
	rules := map[ruleKey]*ruleset.Rule{}
	for i := range rs.Policies {
		p := &rs.Policies[i]
		for j := range p.Ingress {
			rules[ruleKey{p.Key, false, p.Ingress[j].Index}] = &p.Ingress[j]
		}
		for j := range p.Egress {
			rules[ruleKey{p.Key, true, p.Egress[j].Index}] = &p.Egress[j]
		}
	}
	for i := range rs.ClusterPolicies { // keyed by name alone: a NetworkPolicy's key has a namespace
		p := &rs.ClusterPolicies[i]
		for j := range p.Ingress {
			rules[ruleKey{p.Key(), false, p.Ingress[j].Index}] = &p.Ingress[j].Rule
		}
		for j := range p.Egress {
			rules[ruleKey{p.Key(), true, p.Egress[j].Index}] = &p.Egress[j].Rule
		}
	}
	for _, egress := range []bool{true, false} {
		end, local := to, j.dst
		if egress {
			end, local = from, j.src
		}
		if !local {
			continue
		}
		isolated, decided := false, false // by NetworkPolicy; by a tier
		for _, s := range v.Sides {
			if s.Egress == egress {
				isolated = isolated || s.Tier == ""
				decided = decided || (s.Tier != "" && (s.Tier == ruleset.BaselineTier || s.Matches[0].Action != ruleset.Pass))
				nr.Sides = append(nr.Sides, sideReport(s, rules, f, names))
			}
		}
		if !isolated && !decided {
			nr.Sides = append(nr.Sides, SideReport{Direction: direction(egress), Pod: end.Pod, Allowed: true})
		}
		for _, a := range v.Audits {
			if a.Egress == egress {
				sr := sideReport(a, rules, f, names)
				sr.Audit, sr.Isolated = true, isolated
				nr.Sides = append(nr.Sides, sr)
			}
		}
	}
	return nr
}

type ruleKey struct {
	policy ruleset.PolicyKey
	egress bool
	index  int
}

func direction(egress bool) string {
	if egress {
		return "egress"
	}
	return "ingress"
}

func sideReport(s ruleset.Side, rules map[ruleKey]*ruleset.Rule, f ruleset.Flow, names namer) SideReport {
	ns, name, _ := strings.Cut(s.Pod, "/")
	sr := SideReport{
		Direction: direction(s.Egress), Pod: s.Pod, Isolated: s.Tier == "", Allowed: s.Allowed, Tier: string(s.Tier),
		Map: render.DispatchMap(!s.Egress, s.Addr.Is4()), Chain: render.PodChain(!s.Egress, ns, name),
	}
	if s.ToNode {
		sr.Map = render.NodeEgressMap(s.Addr.Is4())
	}
	if s.Tier == ruleset.AdminTier {
		sr.Chain = render.AdminChain(!s.Egress, ns, name)
	}
	for _, k := range s.Policies {
		sr.Policies = append(sr.Policies, k.String())
	}
	report := func(m ruleset.RuleMatch) RuleReport {
		rr := RuleReport{Policy: m.Policy.String(), Rule: m.Index, Peer: m.Peer, Port: m.Port,
			Chain: render.PolicyChain(!s.Egress, m.Policy)}
		if m.ClusterPolicy != "" {
			m.Policy = ruleset.PolicyKey{Name: m.ClusterPolicy}
			rr.Policy, rr.Action, rr.Name = m.ClusterPolicy, string(m.Action), m.Name
			rr.Chain = render.ClusterChain(!s.Egress, m.ClusterPolicy)
		}
		r := rules[ruleKey{m.Policy, s.Egress, m.Index}]
		if r == nil {
			return rr
		}
		if !r.AnyPeer {
			rr.Sets = append(rr.Sets, render.PeerSet(!s.Egress, m.Policy, m.Index, f.Src.Is4()))
		}
		if m.NamedPort {
			rr.Sets = append(rr.Sets, render.NamedPortSet(!s.Egress, m.Policy, m.Index, f.Src.Is4()))
			if name := names(m.Policy, s.Egress, m.Index); name != "" {
				rr.Port = fmt.Sprintf("named port %q = %s/%d on the destination", name, f.Protocol, f.Port)
			}
		}
		if m.Peer == "" || m.Port == "" {
			rr.Allows = describe(r)
		}
		return rr
	}
	for _, m := range s.Matches {
		sr.Matches = append(sr.Matches, report(m))
	}
	for _, m := range s.NearMisses {
		sr.NearMisses = append(sr.NearMisses, report(m))
	}
	return sr
}

// describe summarizes what a rule allows: its peers (counted) and its ports.
func describe(r *ruleset.Rule) string {
	peers := "any peer"
	if !r.AnyPeer {
		n := r.Peers.Len(true) + r.Peers.Len(false)
		switch n {
		case 0:
			peers = "no peer"
		case 1:
			for _, is4 := range []bool{true, false} {
				for pr := range r.Peers.Ranges(is4) {
					peers = "peer " + pr.String()
				}
			}
		default:
			peers = fmt.Sprintf("%d peer ranges", n)
		}
	}
	var ports []string
	if r.AnyPort {
		ports = append(ports, "any port")
	}
	for _, p := range r.Ports {
		ports = append(ports, p.String())
	}
	if len(r.NamedPorts) > 0 {
		ports = append(ports, fmt.Sprintf("named ports at %d pod addresses", len(r.NamedPorts)))
	}
	if len(ports) == 0 {
		ports = append(ports, "no port")
	}
	return peers + " on " + strings.Join(ports, ", ")
}

// endpoint resolves "namespace/pod" or an address.
// pods are objs.Pods in compact form, index for index.
func endpoint(objs manifest.Objects, pods []*compact.Pod, s string) (Endpoint, *corev1.Pod, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		// An address a live pod owns is that pod.
		for i, p := range objs.Pods {
			if cp := pods[i]; cp.OwnsAddresses() && cp.HasIP(a) {
				return Endpoint{Addr: a, Pod: p.Namespace + "/" + p.Name, Node: p.Spec.NodeName}, p, nil
			}
		}
		// An address no pod owns inside a node's pod ranges is judged (closed) by that node.
		for _, n := range objs.Nodes {
			cidrs, _ := translate.NodePodCIDRs(n)
			if slices.ContainsFunc(cidrs, func(c netip.Prefix) bool { return c.Contains(a) }) {
				return Endpoint{Addr: a, Node: n.Name}, nil, nil
			}
		}
		return Endpoint{Addr: a}, nil, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return Endpoint{}, nil, inputErr("%q is neither an address nor namespace/pod", s)
	}
	for i, p := range objs.Pods {
		if p.Namespace == ns && p.Name == name {
			cp := pods[i]
			if !cp.OwnsAddresses() {
				return Endpoint{}, nil, inputErr("pod %s has no address of its own (hostNetwork, or finished): its traffic is the node's, which policy does not govern", s)
			}
			if cp.NumIPs() == 0 {
				return Endpoint{}, nil, inputErr("pod %s has no address yet", s)
			}
			return Endpoint{Pod: s, Node: p.Spec.NodeName}, p, nil
		}
	}
	return Endpoint{}, nil, inputErr("no pod %s", s)
}

// pickAddrs gives pods named by name the address of the family the query uses.
func pickAddrs(from *Endpoint, fromPod *corev1.Pod, to *Endpoint, toPod *corev1.Pod, v6 bool) error {
	switch {
	case from.Addr.IsValid() && to.Addr.IsValid():
		if from.Addr.Is4() != to.Addr.Is4() {
			return inputErr("%s and %s are of different address families", from.Addr, to.Addr)
		}
		return nil
	case from.Addr.IsValid():
		v6 = !from.Addr.Is4()
	case to.Addr.IsValid():
		v6 = !to.Addr.Is4()
	}
	for _, e := range []struct {
		ep  *Endpoint
		pod *corev1.Pod
	}{{from, fromPod}, {to, toPod}} {
		if e.ep.Addr.IsValid() {
			continue
		}
		for a := range compact.NewPod(e.pod).IPs() {
			if a.Is4() != v6 {
				e.ep.Addr = a
				break
			}
		}
		if !e.ep.Addr.IsValid() {
			return inputErr("pod %s has no %s address", e.ep.Pod, map[bool]string{false: "IPv4", true: "IPv6"}[v6])
		}
	}
	return nil
}

// parsePort parses "80", "80/tcp", "name" or "name/udp", resolving a name on the destination pod.
func parsePort(s string, dst *corev1.Pod) (ruleset.Protocol, uint16, string, error) {
	value, protoName, hasProto := strings.Cut(s, "/")
	proto := ruleset.TCP
	if hasProto {
		switch p := ruleset.Protocol(strings.ToLower(protoName)); p {
		case ruleset.TCP, ruleset.UDP, ruleset.SCTP:
			proto = p
		default:
			return "", 0, "", inputErr("unknown protocol %q: want tcp, udp or sctp", protoName)
		}
	}
	if value == "" {
		return "", 0, "", inputErr("a port is required, as 80, 80/tcp, 53/udp or a port name")
	}
	if n, err := strconv.ParseUint(value, 10, 16); err == nil {
		if n == 0 {
			return "", 0, "", inputErr("port 0")
		}
		return proto, uint16(n), "", nil
	}
	if dst == nil {
		return "", 0, "", inputErr("the port name %q needs a destination pod to resolve on", value)
	}
	var found []compact.NamedPort
	for _, p := range compact.NewPod(dst).Ports() {
		if p.Name.Value() == value && (!hasProto || p.Protocol() == proto) {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return "", 0, "", inputErr("pod %s/%s has no container port named %q", dst.Namespace, dst.Name, value)
	}
	slices.SortFunc(found, func(a, b compact.NamedPort) int { return cmp.Compare(a.Protocol(), b.Protocol()) })
	return found[0].Protocol(), found[0].Number, value, nil
}

// namer returns the name of the rule's named port that resolved to the query's port on the
// destination pod ("" when none).
type namer func(policy ruleset.PolicyKey, egress bool, index int) string

func portNames(objs manifest.Objects, dst *corev1.Pod, proto ruleset.Protocol, port uint16) namer {
	return func(k ruleset.PolicyKey, egress bool, index int) string {
		if dst == nil {
			return ""
		}
		for _, np := range objs.Policies {
			if np.Namespace != k.Namespace || np.Name != k.Name {
				continue
			}
			var ports []networkingv1.NetworkPolicyPort
			switch {
			case egress && index < len(np.Spec.Egress):
				ports = np.Spec.Egress[index].Ports
			case !egress && index < len(np.Spec.Ingress):
				ports = np.Spec.Ingress[index].Ports
			}
			for _, pp := range ports {
				if pp.Port == nil || pp.Port.Type != intstr.String {
					continue
				}
				for _, cp := range compact.NewPod(dst).Ports() {
					if cp.Name.Value() == pp.Port.StrVal && cp.Protocol() == proto && cp.Number == port {
						return pp.Port.StrVal
					}
				}
			}
		}
		return ""
	}
}

// Resolve returns the address of "namespace/pod" (its IPv4 address, or IPv6 with v6) or of an
// address given as such.
func Resolve(objs manifest.Objects, s string, v6 bool) (netip.Addr, error) {
	e, pod, err := endpoint(objs, compact.NewPods(objs.Pods), s)
	if err != nil || e.Addr.IsValid() {
		return e.Addr, err
	}
	for a := range compact.NewPod(pod).IPs() {
		if a.Is4() != v6 {
			return a, nil
		}
	}
	return netip.Addr{}, inputErr("pod %s has no %s address", s, map[bool]string{false: "IPv4", true: "IPv6"}[v6])
}
