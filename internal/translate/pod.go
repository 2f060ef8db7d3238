package translate

import (
	"net/netip"
	"slices"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Pod is what the translator reads of a Pod: its name, namespace, node, labels, addresses, named
// ports and whether it takes part in policy at all. The agent caches one per pod of the cluster,
// so it is kept small: the strings that repeat from pod to pod (namespaces, node names, label
// keys and values, port names) are interned handles, the labels a slice sorted by key rather
// than a map, and nothing the translator does not read is kept. A *corev1.Pod is 1,240 bytes
// before any of its strings; a Pod with its labels, addresses and ports is a few hundred.
//
// A Pod is immutable: NewPod builds it and nothing changes it afterwards, so copies may share
// its slices.
type Pod struct {
	name      string
	namespace unique.Handle[string]
	node      unique.Handle[string]
	labels    podLabels
	// ips are the addresses of status.podIPs, or of the older status.podIP when that is empty,
	// parsed once here rather than on every recompute: sorted (IPv4 first), IPv4-mapped IPv6
	// unmapped, without duplicates. badIPs are the ones that do not parse, which the translator
	// reports.
	ips    []netip.Addr
	badIPs []string
	ports  []namedPort
	// hostNetwork pods use the node's address, and a finished pod's address may already belong
	// to a new pod: neither owns its addresses.
	hostNetwork, finished bool
}

// namedPort is a named container port. Ports that can never match (no name, a number outside
// 1-65535, an unknown protocol) are not kept.
type namedPort struct {
	name     unique.Handle[string]
	protocol ruleset.Protocol
	port     uint16
}

type label struct{ key, value unique.Handle[string] }

// podLabels is a label set sorted by key. *podLabels is a labels.Labels, so selectors match it
// directly (a pointer, unlike a slice, goes into the interface without an allocation).
type podLabels []label

var _ labels.Labels = (*podLabels)(nil)

func (l *podLabels) Lookup(key string) (string, bool) {
	for _, kv := range *l {
		if kv.key.Value() == key {
			return kv.value.Value(), true
		}
	}
	return "", false
}

func (l *podLabels) Has(key string) bool {
	_, ok := l.Lookup(key)
	return ok
}

func (l *podLabels) Get(key string) string {
	v, _ := l.Lookup(key)
	return v
}

// intern returns the canonical handle of s. Handles are weak: a string no pod uses any more is
// dropped from the table.
func intern(s string) unique.Handle[string] { return unique.Make(s) }

// value returns the string of h; the zero Handle (of a zero Pod) reads as "".
func value(h unique.Handle[string]) string {
	if h == (unique.Handle[string]{}) {
		return ""
	}
	return h.Value()
}

// NewPod returns the part of p the translator reads. p is not kept.
func NewPod(p *corev1.Pod) *Pod {
	out := &Pod{
		name:        p.Name,
		namespace:   intern(p.Namespace),
		node:        intern(p.Spec.NodeName),
		hostNetwork: p.Spec.HostNetwork,
		finished:    p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	if len(p.Labels) > 0 {
		out.labels = make(podLabels, 0, len(p.Labels))
		for k, v := range p.Labels {
			out.labels = append(out.labels, label{intern(k), intern(v)})
		}
		slices.SortFunc(out.labels, func(a, b label) int { return strings.Compare(a.key.Value(), b.key.Value()) })
	}
	if len(p.Status.PodIPs) > 0 {
		for i := range p.Status.PodIPs {
			out.addIP(p.Status.PodIPs[i].IP, len(p.Status.PodIPs))
		}
	} else if p.Status.PodIP != "" {
		out.addIP(p.Status.PodIP, 1)
	}
	if len(out.ips) > 1 {
		slices.SortFunc(out.ips, netip.Addr.Compare) // IPv4 sorts before IPv6
	}
	out.ports = appendNamedPorts(out.ports, p.Spec.Containers, false)
	out.ports = appendNamedPorts(out.ports, p.Spec.InitContainers, true)
	return out
}

// addIP adds the address s to p.ips, or to p.badIPs when it does not parse (or has a zone, which a
// pod address cannot have). n is how many addresses the pod lists, to size p.ips at once.
func (p *Pod) addIP(s string, n int) {
	a, err := parseAddr(s)
	if err != nil || a.Zone() != "" {
		p.badIPs = append(p.badIPs, s)
		return
	}
	if a = a.Unmap(); !slices.Contains(p.ips, a) {
		if p.ips == nil {
			p.ips = make([]netip.Addr, 0, n)
		}
		p.ips = append(p.ips, a)
	}
}

// appendNamedPorts appends the usable named ports of cs. Of init containers only the restartable
// (sidecar) ones count: their ports serve traffic for the pod's whole life.
func appendNamedPorts(dst []namedPort, cs []corev1.Container, init bool) []namedPort {
	for i := range cs {
		c := &cs[i]
		if init && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			continue
		}
		for _, cp := range c.Ports {
			proto, ok := protocolOf(cp.Protocol)
			if cp.Name == "" || cp.ContainerPort < 1 || cp.ContainerPort > 65535 || !ok {
				continue
			}
			dst = append(dst, namedPort{name: intern(cp.Name), protocol: proto, port: uint16(cp.ContainerPort)})
		}
	}
	return slices.Clip(dst)
}

// NewPods returns NewPod of each pod.
func NewPods(pods []*corev1.Pod) []*Pod {
	out := make([]*Pod, len(pods))
	for i, p := range pods {
		out[i] = NewPod(p)
	}
	return out
}

// Name returns the pod's name.
func (p *Pod) Name() string { return p.name }

// Namespace returns the pod's namespace.
func (p *Pod) Namespace() string { return value(p.namespace) }

// Labels returns a copy of the pod's labels.
func (p *Pod) Labels() map[string]string {
	if len(p.labels) == 0 {
		return nil
	}
	m := make(map[string]string, len(p.labels))
	for _, kv := range p.labels {
		m[kv.key.Value()] = kv.value.Value()
	}
	return m
}

// Equal reports whether p and o hold the same values: an update between them changes nothing
// the translator reads.
func (p *Pod) Equal(o *Pod) bool {
	return p.name == o.name && p.namespace == o.namespace && p.node == o.node &&
		p.hostNetwork == o.hostNetwork && p.finished == o.finished &&
		slices.Equal(p.labels, o.labels) && slices.Equal(p.ips, o.ips) && slices.Equal(p.badIPs, o.badIPs) &&
		slices.Equal(p.ports, o.ports)
}

// ownsAddresses reports whether the pod takes part in policy at all.
func (p *Pod) ownsAddresses() bool { return !p.hostNetwork && !p.finished }
