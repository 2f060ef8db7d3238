package translate

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// pod is what the translator knows about one pod that owns at least one address. There is one
// per pod of the cluster, so it is kept small.
type pod struct {
	ns     *nsView
	labels labels.Set
	// src is the API object, read again for the names of local pods and for named ports (few
	// pods are asked for them).
	src *corev1.Pod
	// The pod's addresses are translator.addrs[first:first+n], sorted (IPv4 first).
	first, n uint32
	local    bool
}

// ips returns the addresses of p.
func (t *translator) ips(p *pod) []netip.Addr {
	return t.addrs[p.first : p.first+p.n : p.first+p.n]
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

// parseIPs appends the addresses of pod p to t.addrs, sorted and without duplicates, and returns
// where they are; n is 0 when none is usable. The addresses are podIPs (p's status.podIPs, as
// loadPods read them), or the older status.podIP when that is empty. Unparsable addresses are
// reported and skipped.
func (t *translator) parseIPs(p *corev1.Pod, podIPs []corev1.PodIP) (first, n uint32) {
	start := len(t.addrs)
	for i := range podIPs {
		t.addIP(p, start, podIPs[i].IP)
	}
	if len(podIPs) == 0 && p.Status.PodIP != "" {
		t.addIP(p, start, p.Status.PodIP)
	}
	if ips := t.addrs[start:]; len(ips) > 1 {
		slices.SortFunc(ips, netip.Addr.Compare) // IPv4 sorts before IPv6
	}
	return uint32(start), uint32(len(t.addrs) - start)
}

// addIP appends the address s of pod p to t.addrs unless t.addrs[start:] holds it already.
func (t *translator) addIP(p *corev1.Pod, start int, s string) {
	a, err := parseAddr(s)
	if err != nil || a.Zone() != "" {
		t.report("Pod "+p.Namespace+"/"+p.Name, "ignoring unparsable pod IP %q", s)
		return
	}
	if a = a.Unmap(); !slices.Contains(t.addrs[start:], a) {
		t.addrs = append(t.addrs, a)
	}
}

// parseAddr is netip.ParseAddr with a fast path for the plain dotted-quad IPv4 addresses that
// most pods have: it runs for every pod address of the cluster on every recompute. Anything else
// (IPv6, and IPv4 that is not plain, such as a leading zero, which ParseAddr rejects) is left to
// ParseAddr, so the result is always ParseAddr's.
func parseAddr(s string) (netip.Addr, error) {
	var b [4]byte
	field, digits, value := 0, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9' && !(digits > 0 && value == 0):
			value = value*10 + int(c-'0')
			digits++
			if value > 255 {
				return netip.ParseAddr(s)
			}
		case c == '.' && digits > 0 && field < 3:
			b[field] = byte(value)
			field, digits, value = field+1, 0, 0
		default:
			return netip.ParseAddr(s)
		}
	}
	if field != 3 || digits == 0 {
		return netip.ParseAddr(s)
	}
	b[3] = byte(value)
	return netip.AddrFrom4(b), nil
}

// endpoints appends the pod's addresses with the number its port called name has for proto. The
// named ports are those of the pod's containers and of its restartable (sidecar) init
// containers, whose ports serve traffic for the pod's whole life.
func (t *translator) endpoints(dst []ruleset.Endpoint, p *pod, name string, proto ruleset.Protocol) []ruleset.Endpoint {
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
				for _, a := range t.ips(p) {
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
