package compact

import (
	"encoding/binary"
	"iter"
	"math"
	"net/netip"
	"slices"
	"unique"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Pod is what the agent keeps of a Pod. The agent caches one per pod of the cluster, so it is
// kept small: the strings that repeat from pod to pod (namespaces, node names, label keys and
// values, port names) are interned handles, the labels a slice sorted by key rather than a map,
// the label sets and named-port lists shared by the pods that have the same (a workload's), and
// nothing the translator does not read is kept. A *corev1.Pod is 1,240 bytes before any of
// its strings; a Pod with its labels, addresses and ports is a few hundred (docs/performance.md
// has the measured figure).
//
// A Pod is immutable: NewPod builds it and nothing changes it afterwards, so copies may share its
// slices. It is also a client.Object (see object.go), so that the informer can key, index and
// deliver it like the *corev1.Pod it replaces.
type Pod struct {
	// nameVersion is the pod's name followed by its resourceVersion, nameLen bytes of name: one
	// string rather than two, for the Pod's size class and one object fewer per pod.
	nameVersion string
	namespace   unique.Handle[string]
	node        unique.Handle[string]
	// labels and ports are interned (see table): shared by every pod that has the same. nil
	// when the pod has none.
	labels *Labels
	// The pod's addresses (IP) are those of status.podIPs, or of the older status.podIP when
	// that is empty, parsed once here rather than on every recompute: sorted (IPv4 first),
	// IPv4-mapped IPv6 unmapped, without duplicates. A pod with one IPv4 address (most pods)
	// keeps it in keys[0], which is the address itself, and ips is nil: an array of its own
	// was 24 bytes and one object more per cluster pod, and the Pod's slice header 16 bytes
	// more. ips holds the addresses of any other pod.
	ips *[]netip.Addr
	// badIPs are the addresses that do not parse, which the translator reports; a pointer, nil
	// for all but a broken pod, to keep the Pod in a smaller size class.
	badIPs *[]string
	ports  *[]NamedPort
	// keys are the AddrKeys of the first two addresses, computed here so that the translator's
	// search for addresses several pods claim reads them from the pod rather than from the
	// addresses (most pods have one or two; IPKey computes the others).
	keys [2]uint32
	// hostNetwork pods use the node's address, and a finished pod's address may already belong
	// to a new pod: neither owns its addresses.
	hostNetwork, finished bool
	// ipv4s is how many of the addresses are IPv4 (they come first), up to 255: what the
	// translator sizes its address sets by without reading the addresses.
	ipv4s   uint8
	nameLen uint16 // a name is at most 253 bytes (a DNS subdomain); see NewPod
}

// NamedPort is a named container port. Ports that can never match (no name, a number outside
// 1-65535, an unknown protocol) are not kept.
type NamedPort struct {
	Name   unique.Handle[string]
	Number uint16
	// proto is the protocol in one byte, not as ruleset.Protocol's string: every pod of the
	// cluster keeps its named ports, and this halves them (16 bytes rather than 32).
	proto protocol
}

// Protocol returns the port's protocol.
func (n NamedPort) Protocol() ruleset.Protocol { return protocols[n.proto] }

// protocol indexes protocols.
type protocol uint8

var protocols = [...]ruleset.Protocol{ruleset.TCP, ruleset.UDP, ruleset.SCTP}

// protocolIndex returns the index of p in protocols.
func protocolIndex(p ruleset.Protocol) protocol {
	return protocol(slices.Index(protocols[:], p))
}

// Intern returns the canonical handle of s. Handles are weak: a string no pod uses any more is
// dropped from the table.
func Intern(s string) unique.Handle[string] { return unique.Make(s) }

// value returns the string of h; the zero Handle (of a zero Pod) reads as "".
func value(h unique.Handle[string]) string {
	if h == (unique.Handle[string]{}) {
		return ""
	}
	return h.Value()
}

// NewPod returns the compact form of p. p is not kept.
func NewPod(p *corev1.Pod) *Pod {
	// The API server allows no longer name; one that is longer anyway keeps its first 65,535
	// bytes, which still name it uniquely within its namespace in any cluster there is.
	name := p.Name[:min(len(p.Name), math.MaxUint16)]
	out := &Pod{
		nameVersion: name + p.ResourceVersion,
		nameLen:     uint16(len(name)),
		namespace:   Intern(p.Namespace),
		node:        Intern(p.Spec.NodeName),
		hostNetwork: p.Spec.HostNetwork,
		finished:    p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	if len(p.Labels) > 0 {
		out.labels = internLabels(p.Labels)
	}
	var ips []netip.Addr
	if len(p.Status.PodIPs) > 0 {
		for i := range p.Status.PodIPs {
			ips = out.addIP(ips, p.Status.PodIPs[i].IP, len(p.Status.PodIPs))
		}
	} else if p.Status.PodIP != "" {
		ips = out.addIP(ips, p.Status.PodIP, 1)
	}
	slices.SortFunc(ips, netip.Addr.Compare) // IPv4 sorts before IPv6
	for i := range min(len(ips), len(out.keys)) {
		out.keys[i] = AddrKey(ips[i])
	}
	for _, a := range ips {
		if a.Is4() && out.ipv4s < math.MaxUint8 {
			out.ipv4s++
		}
	}
	if len(ips) > 1 || (len(ips) == 1 && !ips[0].Is4()) {
		out.ips = &ips
	}
	if ports := appendNamedPorts(appendNamedPorts(nil, p.Spec.Containers, false), p.Spec.InitContainers, true); len(ports) > 0 {
		out.ports = internPorts(ports)
	}
	return out
}

// The pods' label sets and named-port lists, interned.
var (
	labelSets = newTable[Labels]()
	portLists = newTable[[]NamedPort]()
)

// internLabels returns the interned label set of m.
func internLabels(m map[string]string) *Labels {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var key []byte
	for _, k := range keys {
		key = appendString(appendString(key, k), m[k])
	}
	return labelSets.intern(key, func() *Labels {
		l := make(Labels, len(keys))
		for i, k := range keys {
			l[i] = label{Intern(k), Intern(m[k])}
		}
		return &l
	})
}

// internPorts returns the interned copy of ports.
func internPorts(ports []NamedPort) *[]NamedPort {
	var key []byte
	for _, p := range ports {
		key = append(binary.BigEndian.AppendUint16(appendString(key, p.Name.Value()), p.Number), byte(p.proto))
	}
	return portLists.intern(key, func() *[]NamedPort { return &ports })
}

// NewPods returns NewPod of each pod.
func NewPods(pods []*corev1.Pod) []*Pod {
	out := make([]*Pod, len(pods))
	for i, p := range pods {
		out[i] = NewPod(p)
	}
	return out
}

// addIP adds the address s to ips, or to p.badIPs when it does not parse (or has a zone, which a
// pod address cannot have), and returns ips. n is how many addresses the pod lists, to size ips
// at once.
func (p *Pod) addIP(ips []netip.Addr, s string, n int) []netip.Addr {
	a, err := parseAddr(s)
	if err != nil || a.Zone() != "" {
		if p.badIPs == nil {
			p.badIPs = new([]string)
		}
		*p.badIPs = append(*p.badIPs, s)
		return ips
	}
	if a = a.Unmap(); !slices.Contains(ips, a) {
		if ips == nil && n > 1 {
			ips = make([]netip.Addr, 0, n)
		}
		ips = append(ips, a)
	}
	return ips
}

// appendNamedPorts appends the usable named ports of cs. Of init containers only the restartable
// (sidecar) ones count: their ports serve traffic for the pod's whole life.
func appendNamedPorts(dst []NamedPort, cs []corev1.Container, init bool) []NamedPort {
	for i := range cs {
		c := &cs[i]
		if init && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			continue
		}
		for _, cp := range c.Ports {
			proto, ok := ProtocolOf(cp.Protocol)
			if cp.Name == "" || cp.ContainerPort < 1 || cp.ContainerPort > 65535 || !ok {
				continue
			}
			dst = append(dst, NamedPort{Name: Intern(cp.Name), Number: uint16(cp.ContainerPort), proto: protocolIndex(proto)})
		}
	}
	return slices.Clip(dst)
}

// ProtocolOf maps an API protocol to the rule set's; empty means TCP, the API default.
func ProtocolOf(p corev1.Protocol) (ruleset.Protocol, bool) {
	switch p {
	case "", corev1.ProtocolTCP:
		return ruleset.TCP, true
	case corev1.ProtocolUDP:
		return ruleset.UDP, true
	case corev1.ProtocolSCTP:
		return ruleset.SCTP, true
	}
	return "", false
}

// Name returns the pod's name.
func (p *Pod) Name() string { return p.nameVersion[:p.nameLen] }

// Namespace returns the pod's namespace.
func (p *Pod) Namespace() string { return value(p.namespace) }

// NamespaceHandle returns the interned namespace, for cheap comparisons.
func (p *Pod) NamespaceHandle() unique.Handle[string] { return p.namespace }

// NodeHandle returns the interned spec.nodeName.
func (p *Pod) NodeHandle() unique.Handle[string] { return p.node }

// LabelSet returns the pod's labels for a selector to match. It shares the pod's memory.
func (p *Pod) LabelSet() *Labels {
	if p.labels == nil {
		return &noLabels
	}
	return p.labels
}

// noLabels is the label set of a pod without labels. It is never modified.
var noLabels Labels

// NumIPs returns the number of the pod's parsed addresses (see Pod.ips).
func (p *Pod) NumIPs() int {
	if p.ips == nil {
		return int(p.ipv4s) // one IPv4 address, or none
	}
	return len(*p.ips)
}

// IP returns the pod's address i, 0 <= i < NumIPs().
func (p *Pod) IP(i int) netip.Addr {
	if p.ips == nil && uint(i) < uint(p.ipv4s) { // the one IPv4 address: keys[0] (AddrKey)
		k := p.keys[0]
		return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
	}
	return (*p.ips)[i] // out of range, or nil when the pod has no address: panics
}

// IPs yields the pod's addresses in order.
func (p *Pod) IPs() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for i := range p.NumIPs() {
			if !yield(p.IP(i)) {
				return
			}
		}
	}
}

// AppendIPs appends the pod's addresses to dst and returns it.
func (p *Pod) AppendIPs(dst []netip.Addr) []netip.Addr { return slices.AppendSeq(dst, p.IPs()) }

// HasIP reports whether a is one of the pod's addresses.
func (p *Pod) HasIP(a netip.Addr) bool {
	for b := range p.IPs() {
		if b == a {
			return true
		}
	}
	return false
}

// SameIPs reports whether the two pods have the same addresses.
func (p *Pod) SameIPs(o *Pod) bool {
	if p.NumIPs() != o.NumIPs() {
		return false
	}
	for i := range p.NumIPs() {
		if p.IP(i) != o.IP(i) {
			return false
		}
	}
	return true
}

// IPv4Count returns how many of IPs are IPv4, up to 255 (a pod has one address per family). It is
// a capacity hint: it reads no address.
func (p *Pod) IPv4Count() int { return int(p.ipv4s) }

// IPKey returns AddrKey(p.IP(i)).
func (p *Pod) IPKey(i int) uint32 {
	if i < len(p.keys) {
		return p.keys[i]
	}
	return AddrKey(p.IP(i))
}

// AddrKey reduces an address to 32 bits, for sorting addresses cheaply: an IPv4 address is its
// own key; an IPv6 address is hashed so that the key's bits all vary (a radix sort wastes no
// pass, and structured addresses do not collide systematically). Equal keys do not mean equal
// addresses: two IPv6 addresses may collide, and an IPv6 address may collide with an IPv4 one.
func AddrKey(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := a.As16()
	x := binary.BigEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.BigEndian.Uint64(b[8:])*0xbf58476d1ce4e5b9
	return uint32(x >> 32)
}

// BadIPs returns the addresses the pod lists that do not parse.
func (p *Pod) BadIPs() []string {
	if p.badIPs == nil {
		return nil
	}
	return *p.badIPs
}

// Ports returns the pod's usable named ports. The slice is shared: do not modify it.
func (p *Pod) Ports() []NamedPort {
	if p.ports == nil {
		return nil
	}
	return *p.ports
}

// OwnsAddresses reports whether the pod takes part in policy at all: it is neither hostNetwork
// nor finished.
func (p *Pod) OwnsAddresses() bool { return !p.hostNetwork && !p.finished }

// Equal reports whether p and o hold the same values, whatever their resourceVersions: an update
// between them changes nothing the translator reads.
func (p *Pod) Equal(o *Pod) bool {
	return p.Name() == o.Name() && p.namespace == o.namespace && p.node == o.node &&
		p.hostNetwork == o.hostNetwork && p.finished == o.finished &&
		// Interned: equal labels and ports are the same pointer.
		p.labels == o.labels && p.SameIPs(o) && slices.Equal(p.BadIPs(), o.BadIPs()) &&
		p.ports == o.ports
}
