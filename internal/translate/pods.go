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
	// src is the API object, read again only for named ports (few pods are asked for them).
	src *corev1.Pod
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
func (t *translator) newPod(p *corev1.Pod, node string) *pod {
	if !ownsAddresses(p) {
		return nil
	}
	var ips []netip.Addr
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			t.report("Pod "+p.Namespace+"/"+p.Name, "ignoring unparsable pod IP %q", s)
			return
		}
		if a = a.Unmap(); !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
	}
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	if len(p.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		add(p.Status.PodIP)
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
		src:       p,
	}
}

// endpoints appends the pod's addresses with the number its port called name has for proto. The
// named ports are those of the pod's containers and of its restartable (sidecar) init
// containers, whose ports serve traffic for the pod's whole life.
func (p *pod) endpoints(dst []ruleset.Endpoint, name string, proto ruleset.Protocol) []ruleset.Endpoint {
	match := func(cs []corev1.Container, init bool) {
		for i := range cs {
			c := &cs[i]
			if init && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, cp := range c.Ports {
				if cp.Name != name || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
					continue
				}
				if pr, ok := protocolOf(cp.Protocol); !ok || pr != proto {
					continue
				}
				for _, a := range p.ips {
					dst = append(dst, ruleset.Endpoint{Addr: a, Protocol: proto, Port: uint16(cp.ContainerPort)})
				}
			}
		}
	}
	match(p.src.Spec.Containers, false)
	match(p.src.Spec.InitContainers, true)
	return dst
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
