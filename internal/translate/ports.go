package translate

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// namedPortOwners returns the pods whose named ports a rule may match at every address they
// own: for ingress the policy's local targets; for egress every pod when the rule names no peer.
// (The destination pods that a pod-selecting peer matches come from peerEndpoints; the pods an
// ipBlock peer reaches match only at their addresses inside the block; the caller adds both.)
func (t *translator) namedPortOwners(targets []*indexedPod, egress, anyPeer bool) []*indexedPod {
	if !egress {
		return targets
	}
	var owners []*indexedPod
	if anyPeer {
		for p := range t.everyPod {
			owners = append(owners, p)
		}
	}
	return owners
}

// portEntry translates one port entry into a numeric range, or a protocol and a port name.
func portEntry(p *networkingv1.NetworkPolicyPort) (ruleset.PortRange, string, error) {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	rp, ok := compact.ProtocolOf(proto)
	if !ok || proto == "" {
		return ruleset.PortRange{}, "", fmt.Errorf("unsupported protocol %q", proto)
	}
	pr := ruleset.PortRange{Protocol: rp}
	if p.Port == nil {
		if p.EndPort != nil {
			return pr, "", fmt.Errorf("endPort %d without port", *p.EndPort)
		}
		return pr, "", nil // every port of the protocol
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil {
			return pr, "", fmt.Errorf("endPort cannot be used with named port %q", p.Port.StrVal)
		}
		if p.Port.StrVal == "" {
			return pr, "", fmt.Errorf("empty port name")
		}
		return pr, p.Port.StrVal, nil
	}
	first := p.Port.IntVal
	if first < 1 || first > 65535 {
		return pr, "", fmt.Errorf("port %d out of range 1-65535", first)
	}
	last := first
	if p.EndPort != nil {
		last = *p.EndPort
		if last < first || last > 65535 {
			return pr, "", fmt.Errorf("endPort %d must be between port %d and 65535", last, first)
		}
	}
	pr.First, pr.Last = uint16(first), uint16(last)
	return pr, "", nil
}

// appendEndpoints appends the pod's addresses (those that in accepts, or all when in is nil)
// with the number its port called name has for proto. An address other pods claim too is left
// out unless every claimant gives the name the same number.
func (t *translator) appendEndpoints(dst []ruleset.Endpoint, p *indexedPod, name string, proto ruleset.Protocol, in func(netip.Addr) bool) []ruleset.Endpoint {
	for _, np := range p.src.Ports() {
		if np.Protocol() != proto || np.Name.Value() != name {
			continue
		}
		for a := range p.src.IPs() {
			if (in == nil || in(a)) && (!p.shared || t.claimantsAgree(a, name, proto, np.Number)) {
				dst = append(dst, ruleset.Endpoint{Addr: a, Protocol: proto, Port: np.Number})
			}
		}
	}
	return dst
}
