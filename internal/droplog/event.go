package droplog

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// The prefixes of the renderer's log statements, one per verdict and direction. "drop": no rule of
// the policies isolating the pod allowed the packet, and it was dropped. "audit": a policy in audit
// mode would have dropped it; it was accepted. "in" is the ingress of a local pod, "out" its egress.
const (
	PrefixDropIngress  = "fnp drop in"
	PrefixDropEgress   = "fnp drop out"
	PrefixAuditIngress = "fnp audit in"
	PrefixAuditEgress  = "fnp audit out"
)

// Resolver tells the reader who is behind an address; the agent implements it from its cache and
// its last rule set. The reader calls it from its own goroutine, one packet at a time, so it must
// be safe to call concurrently with the agent's updates, and fast.
type Resolver interface {
	// Pod returns "namespace/name" of the pod owning addr anywhere in the cluster, or "".
	Pod(addr netip.Addr) string
	// Isolation returns, for a local pod at addr isolated (audit: audited) in the direction
	// (egress, or else ingress), its "namespace/name" and the policies ("namespace/name") whose
	// rules it was judged by; ok is false when addr is no such local pod.
	Isolation(addr netip.Addr, egress, audit bool) (pod string, policies []string, ok bool)
}

// Event is one logged packet: the first packet of a connection (or a reply packet of an
// established one being cut) that a policy dropped, or in audit mode would have dropped.
type Event struct {
	// Time is when the kernel logged the packet, or when it was read when the kernel did not say.
	Time time.Time
	// Audit: a policy in audit mode would have dropped the packet; it was accepted.
	Audit bool
	// Egress: judged on the egress of the local pod; otherwise on its ingress.
	Egress bool
	// Protocol is "tcp", "udp", "sctp", "icmp", "ipv6-icmp", or else the IP protocol number.
	Protocol string
	// Src and Dst are the packet's addresses and, for TCP, UDP and SCTP, ports (0 otherwise).
	Src, Dst netip.AddrPort
	// SrcPod and DstPod are the pods ("namespace/name") owning Src and Dst, or "".
	SrcPod, DstPod string
	// Pod is the local pod the packet was judged for, "" when the resolver knows of none (it
	// changed since the rule was written), and Policies the policies that judged it.
	Pod      string
	Policies []string
	// Reply: Pod is at the other end of the packet from where its direction puts it (the
	// destination for ingress, the source for egress), as for a reply packet of an established
	// connection that a changed policy cuts.
	Reply bool
}

// Parse decodes a packet logged under prefix: payload starts at its IPv4 or IPv6 header (as NFLOG
// copies it), ts is when it was logged, and r (nil: no resolution) names pods and policies. It
// reports false for an unknown prefix, a payload that is not an IP packet or is cut short before
// the transport ports it needs, and a non-first fragment (which has no transport header, so the
// renderer's rules, which match on it, never log one). Parse never panics, whatever its input.
//
// The local pod: for ingress the destination when r says it is isolated for ingress, or else the
// source (a reply packet); for egress the source, or else the destination.
func Parse(prefix string, payload []byte, ts time.Time, r Resolver) (Event, bool) {
	audit, egress, ok := prefixKind(prefix)
	if !ok {
		return Event{}, false
	}
	h, ok := decodeIP(payload)
	if !ok {
		return Event{}, false
	}
	e := Event{
		Time:     ts,
		Audit:    audit,
		Egress:   egress,
		Protocol: protocolName(h.proto),
		Src:      netip.AddrPortFrom(h.src, h.sport),
		Dst:      netip.AddrPortFrom(h.dst, h.dport),
	}
	if r == nil {
		return e, true
	}
	e.SrcPod, e.DstPod = r.Pod(h.src), r.Pod(h.dst)
	near, far := h.dst, h.src // ingress: the packet's destination, normally
	if egress {
		near, far = h.src, h.dst
	}
	if pod, pols, ok := r.Isolation(near, egress, audit); ok {
		e.Pod, e.Policies = pod, pols
	} else if pod, pols, ok := r.Isolation(far, egress, audit); ok {
		e.Pod, e.Policies, e.Reply = pod, pols, true
	}
	return e, true
}

// prefixKind maps a log prefix to its verdict and direction. NFLOG's prefix attribute ends with a
// NUL, which does not count.
func prefixKind(prefix string) (audit, egress, ok bool) {
	switch strings.TrimRight(prefix, "\x00") {
	case PrefixDropIngress:
		return false, false, true
	case PrefixDropEgress:
		return false, true, true
	case PrefixAuditIngress:
		return true, false, true
	case PrefixAuditEgress:
		return true, true, true
	}
	return false, false, false
}

// IP protocol numbers (IANA) that Parse names or looks into.
const (
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoICMPv6   = 58
	protoSCTP     = 132
	ipv6HopByHop  = 0
	ipv6Routing   = 43
	ipv6Fragment  = 44
	ipv6AH        = 51
	ipv6DestOpts  = 60
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
)

func protocolName(p uint8) string {
	switch p {
	case protoICMP:
		return "icmp"
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMPv6:
		return "ipv6-icmp"
	case protoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// hasPorts: the protocols whose ports NetworkPolicy matches, the first 4 bytes of their headers.
func hasPorts(p uint8) bool { return p == protoTCP || p == protoUDP || p == protoSCTP }

type ipHeader struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
}

// decodeIP reads the addresses, transport protocol and ports of an IPv4 or IPv6 packet.
func decodeIP(p []byte) (ipHeader, bool) {
	if len(p) == 0 {
		return ipHeader{}, false
	}
	var h ipHeader
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < ipv4HeaderLen {
			return ipHeader{}, false
		}
		ihl := int(p[0]&0x0f) * 4
		if ihl < ipv4HeaderLen || len(p) < ihl {
			return ipHeader{}, false
		}
		if binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 { // fragment offset
			return ipHeader{}, false
		}
		h.proto = p[9]
		h.src = netip.AddrFrom4([4]byte(p[12:16]))
		h.dst = netip.AddrFrom4([4]byte(p[16:20]))
		l4 = p[ihl:]
	case 6:
		if len(p) < ipv6HeaderLen {
			return ipHeader{}, false
		}
		h.src = netip.AddrFrom16([16]byte(p[8:24]))
		h.dst = netip.AddrFrom16([16]byte(p[24:40]))
		next, off, ok := skipIPv6Extensions(p, p[6], ipv6HeaderLen)
		if !ok {
			return ipHeader{}, false
		}
		h.proto = next
		l4 = p[off:]
	default:
		return ipHeader{}, false
	}
	if hasPorts(h.proto) {
		if len(l4) < 4 {
			return ipHeader{}, false
		}
		h.sport = binary.BigEndian.Uint16(l4[0:2])
		h.dport = binary.BigEndian.Uint16(l4[2:4])
	}
	return h, true
}

// skipIPv6Extensions walks the extension headers starting with next at offset off, and returns
// the transport protocol and where its header starts. It reports false when an extension header
// does not fit in p, or the packet is a non-first fragment. Every step moves off forward by at
// least 8 bytes, so the walk ends.
func skipIPv6Extensions(p []byte, next uint8, off int) (uint8, int, bool) {
	for {
		var n int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if len(p) < off+2 {
				return 0, 0, false
			}
			n = (int(p[off+1]) + 1) * 8 // in 8-octet units, not counting the first 8
		case ipv6AH:
			if len(p) < off+2 {
				return 0, 0, false
			}
			n = (int(p[off+1]) + 2) * 4 // in 4-octet units, less 2
		case ipv6Fragment:
			n = 8
			if len(p) >= off+4 && binary.BigEndian.Uint16(p[off+2:off+4])&0xfff8 != 0 {
				return 0, 0, false // a non-first fragment: no transport header
			}
		default:
			return next, off, true
		}
		if len(p) < off+n {
			return 0, 0, false
		}
		next, off = p[off], off+n
	}
}

// Log writes the event as one line: "connection dropped", or for audit "connection would be
// dropped (audit)", with the keys direction, protocol, src, dst, srcPod and dstPod (when known),
// reply (when true), pod and policies (when known) and reason.
func (e Event) Log(l logr.Logger) {
	msg := "connection dropped"
	if e.Audit {
		msg = "connection would be dropped (audit)"
	}
	ports := e.Protocol == "tcp" || e.Protocol == "udp" || e.Protocol == "sctp"
	kv := []any{
		"time", e.Time.UTC().Format(time.RFC3339Nano), // the kernel's, when it said
		"direction", e.direction(),
		"protocol", e.Protocol,
		"src", endpoint(e.Src, ports),
		"dst", endpoint(e.Dst, ports),
	}
	if e.SrcPod != "" {
		kv = append(kv, "srcPod", e.SrcPod)
	}
	if e.DstPod != "" {
		kv = append(kv, "dstPod", e.DstPod)
	}
	if e.Reply {
		kv = append(kv, "reply", true)
	}
	if e.Pod != "" {
		kv = append(kv, "pod", e.Pod, "policies", strings.Join(e.Policies, ", "))
	}
	kv = append(kv, "reason", e.Reason())
	l.Info(msg, kv...)
}

// Reason says in words why the packet was (or in audit mode would have been) dropped.
func (e Event) Reason() string {
	dir := e.direction()
	switch {
	case e.Pod == "" && e.Audit:
		return fmt.Sprintf("no local pod at either address is audited for %s any more", dir)
	case e.Pod == "":
		return fmt.Sprintf("no local pod at either address is isolated for %s any more", dir)
	case len(e.Policies) == 0:
		return fmt.Sprintf("the pod is isolated for %s and no rule matched", dir)
	case e.Audit:
		return fmt.Sprintf("no %s rule of %s matched (audit mode: the packet was accepted)", dir, strings.Join(e.Policies, ", "))
	}
	return fmt.Sprintf("no %s rule of %s matched", dir, strings.Join(e.Policies, ", "))
}

func (e Event) direction() string {
	if e.Egress {
		return "egress"
	}
	return "ingress"
}

// endpoint prints ip:port ([ip]:port for IPv6), or the bare address for a protocol without ports.
func endpoint(ap netip.AddrPort, ports bool) string {
	if ports {
		return ap.String()
	}
	return ap.Addr().String()
}
