package translate

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// pod is what the translator knows about one pod that owns at least one address. There is one
// per pod of the cluster, so it is kept small.
type pod struct {
	ns *nsView
	// src is the input, read again for labels, for the names of local pods and for named ports.
	src *Pod
	// ips are src.ips, less any address a local pod lost to another one (see loadPods).
	ips   []netip.Addr
	local bool
}

// labels returns the pod's labels for a selector to match.
func (p *pod) labels() *podLabels { return &p.src.labels }

// parseAddr is netip.ParseAddr with a fast path for the plain dotted-quad IPv4 addresses that
// most pods have: it runs for every pod address the cache receives. Anything else
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

// appendEndpoints appends the pod's addresses (those that in accepts, or all when in is nil)
// with the number its port called name has for proto.
func appendEndpoints(dst []ruleset.Endpoint, p *pod, name string, proto ruleset.Protocol, in func(netip.Addr) bool) []ruleset.Endpoint {
	for _, np := range p.src.ports {
		if np.protocol != proto || np.name.Value() != name {
			continue
		}
		for _, a := range p.ips {
			if in == nil || in(a) {
				dst = append(dst, ruleset.Endpoint{Addr: a, Protocol: proto, Port: np.port})
			}
		}
	}
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
