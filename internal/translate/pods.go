package translate

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// pod is what the translator knows about one pod that owns at least one address.
type pod struct {
	namespace string
	name      string
	labels    labels.Set
	local     bool
	ips       []netip.Addr
	ports     []namedPort
}

// namedPort is a named container port.
type namedPort struct {
	name     string
	protocol ruleset.Protocol
	number   uint16
}

// ownsAddresses reports whether a pod takes part in policy at all: hostNetwork pods use the node's
// address, and a finished pod's address may already belong to a new pod.
func ownsAddresses(p *corev1.Pod) bool {
	if p.Spec.HostNetwork {
		return false
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return false
	}
	return true
}

// newPod builds the translator's view of p, or returns nil when p owns no address. Unparsable
// addresses are reported and skipped.
func newPod(p *corev1.Pod, node string, report func(string, ...any)) *pod {
	if !ownsAddresses(p) {
		return nil
	}
	var raw []string
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && p.Status.PodIP != "" {
		raw = append(raw, p.Status.PodIP)
	}
	var ips []netip.Addr
	for _, s := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			report("ignoring unparsable pod IP %q", s)
			continue
		}
		a = a.Unmap()
		if !containsAddr(ips, a) {
			ips = append(ips, a)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	slices.SortFunc(ips, netip.Addr.Compare) // IPv4 sorts before IPv6
	return &pod{
		namespace: p.Namespace,
		name:      p.Name,
		labels:    labels.Set(p.Labels),
		local:     p.Spec.NodeName == node && node != "",
		ips:       ips,
		ports:     containerPorts(p),
	}
}

// containerPorts returns the pod's named ports: those of its containers and of its restartable
// (sidecar) init containers, whose ports serve traffic for the pod's whole life.
func containerPorts(p *corev1.Pod) []namedPort {
	var out []namedPort
	add := func(c *corev1.Container) {
		for _, cp := range c.Ports {
			if cp.Name == "" || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				continue
			}
			proto, ok := protocolOf(cp.Protocol)
			if !ok {
				continue
			}
			out = append(out, namedPort{name: cp.Name, protocol: proto, number: uint16(cp.ContainerPort)})
		}
	}
	for i := range p.Spec.Containers {
		add(&p.Spec.Containers[i])
	}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	return out
}

// protocolOf maps an API protocol to ours; empty means TCP, the API default.
func protocolOf(p corev1.Protocol) (ruleset.Protocol, bool) {
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

// endpoints appends the pod's addresses with the number its port called name has for protocol.
func (p *pod) endpoints(dst []ruleset.Endpoint, name string, proto ruleset.Protocol) []ruleset.Endpoint {
	for _, np := range p.ports {
		if np.name != name || np.protocol != proto {
			continue
		}
		for _, a := range p.ips {
			dst = append(dst, ruleset.Endpoint{Addr: a, Protocol: proto, Port: np.number})
		}
	}
	return dst
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}
