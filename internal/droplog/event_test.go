package droplog

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/flock-net/flock-netpol/internal/render"
)

// Address plan: local pods 10.0.1.0/24 and fd00:1::/64, remote pods 10.0.2.0/24 and fd00:2::/64,
// 192.0.2.1 and 2001:db8::1 no pod's.
var (
	localA  = netip.MustParseAddr("10.0.1.1")  // x/a, isolated for ingress and egress by x/deny, x/web
	localB  = netip.MustParseAddr("10.0.1.2")  // x/b, audited for ingress by x/audit, not isolated
	remoteC = netip.MustParseAddr("10.0.2.3")  // y/c
	outside = netip.MustParseAddr("192.0.2.1") // nobody's
	local6  = netip.MustParseAddr("fd00:1::1") // x/a6, isolated for ingress by x/deny
	remote6 = netip.MustParseAddr("fd00:2::3") // y/c6
)

type isoKey struct {
	addr          netip.Addr
	egress, audit bool
}

type fakeResolver struct {
	pods     map[netip.Addr]string
	isolated map[isoKey][]string // the pod is pods[addr]
	calls    []isoKey
}

func (f *fakeResolver) Pod(a netip.Addr) string { return f.pods[a] }

func (f *fakeResolver) Isolation(a netip.Addr, egress, audit bool) (string, []string, bool) {
	k := isoKey{a, egress, audit}
	f.calls = append(f.calls, k)
	pols, ok := f.isolated[k]
	if !ok {
		return "", nil, false
	}
	return f.pods[a], pols, true
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{
		pods: map[netip.Addr]string{
			localA: "x/a", localB: "x/b", remoteC: "y/c", local6: "x/a6", remote6: "y/c6",
		},
		isolated: map[isoKey][]string{
			{localA, false, false}: {"x/deny", "x/web"},
			{localA, true, false}:  {"x/deny", "x/web"},
			{localB, false, true}:  {"x/audit"},
			{local6, false, false}: {"x/deny"},
		},
	}
}

// ipv4 builds an IPv4 packet with ihl 32-bit words of header (5: no options) followed by l4.
func ipv4(src, dst netip.Addr, proto uint8, ihl int, fragOff uint16, l4 []byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:4], uint16(len(h)+len(l4)))
	binary.BigEndian.PutUint16(h[6:8], fragOff)
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	return append(h, l4...)
}

// ipv6 builds an IPv6 packet: next is the first next-header value, rest the extension headers and
// the transport header, already chained.
func ipv6(src, dst netip.Addr, next uint8, rest []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(len(rest)))
	h[6] = next
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return append(h, rest...)
}

// ext is an IPv6 extension header of 8*(1+units) bytes whose next header is next.
func ext(next uint8, units int) []byte {
	b := make([]byte, 8*(1+units))
	b[0], b[1] = next, byte(units)
	return b
}

// frag is an IPv6 fragment header for the fragment at offset (in bytes, a multiple of 8).
func frag(next uint8, offset uint16, more bool) []byte {
	b := make([]byte, 8)
	b[0] = next
	v := offset // the offset in 8-octet units sits in the top 13 bits: offset/8<<3 == offset
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:4], v)
	return b
}

// ports is the start of a TCP, UDP or SCTP header, padded to n bytes.
func ports(sport, dport uint16, n int) []byte {
	b := make([]byte, max(n, 4))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	return b[:n]
}

func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

var ts = time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)

func TestParse(t *testing.T) {
	ap := netip.AddrPortFrom
	ip := func(a netip.Addr) netip.AddrPort { return ap(a, 0) }
	cases := []struct {
		name    string
		prefix  string
		payload []byte
		want    Event
		wantOK  bool
	}{
		{
			name:    "IPv4 TCP: addresses and ports from the headers; for ingress the destination is the local pod",
			prefix:  PrefixDropIngress,
			payload: ipv4(remoteC, localA, protoTCP, 5, 0, ports(40000, 80, 20)),
			want: Event{Protocol: "tcp", Src: ap(remoteC, 40000), Dst: ap(localA, 80),
				SrcPod: "y/c", DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		{
			name:    "IPv4 options: the transport header starts after IHL words",
			prefix:  PrefixDropIngress,
			payload: ipv4(remoteC, localA, protoUDP, 7, 0, ports(53, 5353, 8)),
			want: Event{Protocol: "udp", Src: ap(remoteC, 53), Dst: ap(localA, 5353),
				SrcPod: "y/c", DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		{
			name:    "IPv4 first fragment (more fragments, offset 0) has its ports",
			prefix:  PrefixDropIngress,
			payload: ipv4(remoteC, localA, protoUDP, 5, 0x2000, ports(1, 2, 8)),
			want: Event{Protocol: "udp", Src: ap(remoteC, 1), Dst: ap(localA, 2),
				SrcPod: "y/c", DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		{
			name:    "IPv6 UDP after hop-by-hop and destination-options headers",
			prefix:  PrefixDropIngress,
			payload: ipv6(remote6, local6, ipv6HopByHop, cat(ext(ipv6DestOpts, 0), ext(protoUDP, 1), ports(5000, 53, 8))),
			want: Event{Protocol: "udp", Src: ap(remote6, 5000), Dst: ap(local6, 53),
				SrcPod: "y/c6", DstPod: "x/a6", Pod: "x/a6", Policies: []string{"x/deny"}},
			wantOK: true,
		},
		{
			name:    "IPv6 routing header and first fragment are skipped",
			prefix:  PrefixDropIngress,
			payload: ipv6(remote6, local6, ipv6Routing, cat(ext(ipv6Fragment, 2), frag(protoTCP, 0, true), ports(1234, 443, 20))),
			want: Event{Protocol: "tcp", Src: ap(remote6, 1234), Dst: ap(local6, 443),
				SrcPod: "y/c6", DstPod: "x/a6", Pod: "x/a6", Policies: []string{"x/deny"}},
			wantOK: true,
		},
		{
			name:    "IPv6 authentication header (length in 4-octet units) is skipped",
			prefix:  PrefixDropIngress,
			payload: ipv6(remote6, local6, ipv6AH, cat([]byte{protoSCTP, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ports(7, 8, 12))),
			want: Event{Protocol: "sctp", Src: ap(remote6, 7), Dst: ap(local6, 8),
				SrcPod: "y/c6", DstPod: "x/a6", Pod: "x/a6", Policies: []string{"x/deny"}},
			wantOK: true,
		},
		{
			name:    "ICMP has no ports",
			prefix:  PrefixDropIngress,
			payload: ipv4(remoteC, localA, protoICMP, 5, 0, []byte{8, 0, 0xf7, 0xff, 0, 1, 0, 1}),
			want: Event{Protocol: "icmp", Src: ip(remoteC), Dst: ip(localA),
				SrcPod: "y/c", DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		{
			name:    "ICMPv6 has no ports, even with no ICMP header in the snapshot",
			prefix:  PrefixDropIngress,
			payload: ipv6(remote6, local6, protoICMPv6, nil),
			want: Event{Protocol: "ipv6-icmp", Src: ip(remote6), Dst: ip(local6),
				SrcPod: "y/c6", DstPod: "x/a6", Pod: "x/a6", Policies: []string{"x/deny"}},
			wantOK: true,
		},
		{
			name:    "another protocol is named by its number, without ports",
			prefix:  PrefixDropIngress,
			payload: ipv4(remoteC, localA, 47, 5, 0, []byte{0, 0, 0x08, 0}),
			want: Event{Protocol: "47", Src: ip(remoteC), Dst: ip(localA),
				SrcPod: "y/c", DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		{
			name:    "reply packet: for ingress, a destination not isolated makes the source the local pod",
			prefix:  PrefixDropIngress,
			payload: ipv4(localA, remoteC, protoTCP, 5, 0, ports(80, 40000, 20)),
			want: Event{Protocol: "tcp", Src: ap(localA, 80), Dst: ap(remoteC, 40000),
				SrcPod: "x/a", DstPod: "y/c", Pod: "x/a", Policies: []string{"x/deny", "x/web"}, Reply: true},
			wantOK: true,
		},
		{
			name:    "egress: the source is the local pod",
			prefix:  PrefixDropEgress,
			payload: ipv4(localA, outside, protoUDP, 5, 0, ports(33000, 53, 8)),
			want: Event{Egress: true, Protocol: "udp", Src: ap(localA, 33000), Dst: ap(outside, 53),
				SrcPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		{
			name:    "egress reply packet: a source not isolated makes the destination the local pod",
			prefix:  PrefixDropEgress,
			payload: ipv4(outside, localA, protoUDP, 5, 0, ports(53, 33000, 8)),
			want: Event{Egress: true, Protocol: "udp", Src: ap(outside, 53), Dst: ap(localA, 33000),
				DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}, Reply: true},
			wantOK: true,
		},
		{
			name:    "audit: the local pod is the one audited, not the one isolated",
			prefix:  PrefixAuditIngress,
			payload: ipv4(remoteC, localB, protoTCP, 5, 0, ports(40000, 8080, 20)),
			want: Event{Audit: true, Protocol: "tcp", Src: ap(remoteC, 40000), Dst: ap(localB, 8080),
				SrcPod: "y/c", DstPod: "x/b", Pod: "x/b", Policies: []string{"x/audit"}},
			wantOK: true,
		},
		{
			name:    "audit egress with no audited pod at either end: parsed, no local pod",
			prefix:  PrefixAuditEgress,
			payload: ipv4(localA, remoteC, protoTCP, 5, 0, ports(1, 2, 4)),
			want: Event{Audit: true, Egress: true, Protocol: "tcp", Src: ap(localA, 1), Dst: ap(remoteC, 2),
				SrcPod: "x/a", DstPod: "y/c"},
			wantOK: true,
		},
		{
			name:    "NFLOG's terminating NUL is not part of the prefix",
			prefix:  PrefixDropIngress + "\x00",
			payload: ipv4(outside, localA, protoICMP, 5, 0, nil),
			want: Event{Protocol: "icmp", Src: ip(outside), Dst: ip(localA),
				DstPod: "x/a", Pod: "x/a", Policies: []string{"x/deny", "x/web"}},
			wantOK: true,
		},
		// Not parsed.
		{name: "unknown prefix", prefix: "fnp drop", payload: ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 20))},
		{name: "prefixes are exact (case)", prefix: "FNP DROP IN", payload: ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 20))},
		{name: "empty prefix", prefix: "", payload: ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 20))},
		{name: "truncated: empty payload", prefix: PrefixDropIngress, payload: nil},
		{name: "truncated: IPv4 header cut short", prefix: PrefixDropIngress, payload: ipv4(remoteC, localA, protoTCP, 5, 0, nil)[:19]},
		{name: "truncated: IPv4 options beyond the payload", prefix: PrefixDropIngress, payload: ipv4(remoteC, localA, protoTCP, 15, 0, nil)[:40]},
		{name: "bad IPv4 header length (IHL < 5)", prefix: PrefixDropIngress, payload: func() []byte {
			p := ipv4(remoteC, localA, protoICMP, 5, 0, nil)
			p[0] = 0x44
			return p
		}()},
		{name: "truncated: TCP ports cut short", prefix: PrefixDropIngress, payload: ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 3))},
		{name: "truncated: UDP with no transport header", prefix: PrefixDropIngress, payload: ipv4(remoteC, localA, protoUDP, 5, 0, nil)},
		{name: "truncated: IPv6 header cut short", prefix: PrefixDropIngress, payload: ipv6(remote6, local6, protoICMPv6, nil)[:39]},
		{name: "truncated: IPv6 extension header beyond the payload", prefix: PrefixDropIngress, payload: ipv6(remote6, local6, ipv6HopByHop, ext(protoUDP, 3)[:16])},
		{name: "truncated: IPv6 extension header length byte missing", prefix: PrefixDropIngress, payload: ipv6(remote6, local6, ipv6DestOpts, []byte{protoUDP})},
		{name: "truncated: IPv6 fragment header cut short", prefix: PrefixDropIngress, payload: ipv6(remote6, local6, ipv6Fragment, frag(protoUDP, 0, true)[:6])},
		{name: "truncated: IPv6 UDP ports cut short", prefix: PrefixDropIngress, payload: ipv6(remote6, local6, protoUDP, ports(1, 2, 2))},
		{name: "IPv4 non-first fragment: no transport header", prefix: PrefixDropIngress, payload: ipv4(remoteC, localA, protoUDP, 5, 185, ports(1, 2, 8))},
		{name: "IPv6 non-first fragment: no transport header", prefix: PrefixDropIngress, payload: ipv6(remote6, local6, ipv6Fragment, cat(frag(protoUDP, 1480, false), ports(1, 2, 8)))},
		{name: "not IP (version 5)", prefix: PrefixDropIngress, payload: func() []byte {
			p := ipv4(remoteC, localA, protoICMP, 5, 0, nil)
			p[0] = 0x55
			return p
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse(c.prefix, c.payload, ts, newFakeResolver())
			if ok != c.wantOK {
				t.Fatalf("Parse ok = %v, want %v (event %+v)", ok, c.wantOK, got)
			}
			if !ok {
				if got.Protocol != "" || got.Src.IsValid() {
					t.Errorf("Parse returned a partial event with ok=false: %+v", got)
				}
				return
			}
			c.want.Time = ts
			if !eventsEqual(got, c.want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func eventsEqual(a, b Event) bool {
	return a.Time.Equal(b.Time) && a.Audit == b.Audit && a.Egress == b.Egress && a.Protocol == b.Protocol &&
		a.Src == b.Src && a.Dst == b.Dst && a.SrcPod == b.SrcPod && a.DstPod == b.DstPod &&
		a.Pod == b.Pod && slices.Equal(a.Policies, b.Policies) && a.Reply == b.Reply
}

// TestParseAsksIsolationForTheDirectionAndVerdict: the resolver is asked about the near end first,
// with the direction and the audit flag of the prefix, and about the far end only when the near
// end is no such pod.
func TestParseAsksIsolationForTheDirectionAndVerdict(t *testing.T) {
	p := ipv4(remoteC, outside, protoTCP, 5, 0, ports(1, 2, 20))
	for _, c := range []struct {
		prefix string
		want   []isoKey
	}{
		{PrefixDropIngress, []isoKey{{outside, false, false}, {remoteC, false, false}}},
		{PrefixDropEgress, []isoKey{{remoteC, true, false}, {outside, true, false}}},
		{PrefixAuditIngress, []isoKey{{outside, false, true}, {remoteC, false, true}}},
		{PrefixAuditEgress, []isoKey{{remoteC, true, true}, {outside, true, true}}},
	} {
		r := newFakeResolver()
		if _, ok := Parse(c.prefix, p, ts, r); !ok {
			t.Fatalf("%s: not parsed", c.prefix)
		}
		if !slices.Equal(r.calls, c.want) {
			t.Errorf("%s: Isolation calls %v, want %v", c.prefix, r.calls, c.want)
		}
	}
	// The near end found: the far end is not asked.
	r := newFakeResolver()
	Parse(PrefixDropIngress, ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 20)), ts, r)
	if len(r.calls) != 1 {
		t.Errorf("Isolation calls %v, want only the destination's", r.calls)
	}
}

func TestParseWithoutResolver(t *testing.T) {
	e, ok := Parse(PrefixDropEgress, ipv4(localA, remoteC, protoUDP, 5, 0, ports(1, 2, 8)), ts, nil)
	if !ok || e.Pod != "" || e.SrcPod != "" || e.Src != netip.AddrPortFrom(localA, 1) {
		t.Errorf("Parse with a nil resolver = %+v, %v", e, ok)
	}
}

// logLine runs e.Log through a JSON logger and returns the line's fields.
func logLine(t *testing.T, e Event) map[string]any {
	t.Helper()
	var lines []string
	l := funcr.NewJSON(func(obj string) { lines = append(lines, obj) }, funcr.Options{})
	e.Log(l)
	if len(lines) != 1 {
		t.Fatalf("Log wrote %d lines, want 1: %q", len(lines), lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "logger")
	delete(m, "level")
	return m
}

func TestLog(t *testing.T) {
	r := newFakeResolver()
	parse := func(prefix string, p []byte) Event {
		e, ok := Parse(prefix, p, ts, r)
		if !ok {
			t.Fatalf("not parsed")
		}
		return e
	}
	cases := []struct {
		name string
		e    Event
		want map[string]any
	}{
		{
			name: "drop, IPv4 TCP, both pods known",
			e:    parse(PrefixDropIngress, ipv4(remoteC, localA, protoTCP, 5, 0, ports(40000, 80, 20))),
			want: map[string]any{
				"msg": "connection dropped", "direction": "ingress", "protocol": "tcp",
				"src": "10.0.2.3:40000", "dst": "10.0.1.1:80", "srcPod": "y/c", "dstPod": "x/a",
				"pod": "x/a", "policies": "x/deny, x/web", "reason": "no ingress rule of x/deny, x/web matched",
			},
		},
		{
			name: "IPv6 in brackets; no srcPod for an address that is no pod's",
			e:    parse(PrefixDropIngress, ipv6(netip.MustParseAddr("2001:db8::1"), local6, protoUDP, ports(5000, 53, 8))),
			want: map[string]any{
				"msg": "connection dropped", "direction": "ingress", "protocol": "udp",
				"src": "[2001:db8::1]:5000", "dst": "[fd00:1::1]:53", "dstPod": "x/a6",
				"pod": "x/a6", "policies": "x/deny", "reason": "no ingress rule of x/deny matched",
			},
		},
		{
			name: "ICMP without ports; egress; reply",
			e:    parse(PrefixDropEgress, ipv4(outside, localA, protoICMP, 5, 0, nil)),
			want: map[string]any{
				"msg": "connection dropped", "direction": "egress", "protocol": "icmp",
				"src": "192.0.2.1", "dst": "10.0.1.1", "dstPod": "x/a", "reply": true,
				"pod": "x/a", "policies": "x/deny, x/web", "reason": "no egress rule of x/deny, x/web matched",
			},
		},
		{
			name: "audit",
			e:    parse(PrefixAuditIngress, ipv4(remoteC, localB, protoTCP, 5, 0, ports(40000, 8080, 20))),
			want: map[string]any{
				"msg": "connection would be dropped (audit)", "direction": "ingress", "protocol": "tcp",
				"src": "10.0.2.3:40000", "dst": "10.0.1.2:8080", "srcPod": "y/c", "dstPod": "x/b",
				"pod": "x/b", "policies": "x/audit",
				"reason": "no ingress rule of x/audit matched (audit mode: the packet was accepted)",
			},
		},
		{
			name: "no local pod any more: no pod or policies keys",
			e:    parse(PrefixDropIngress, ipv4(outside, remoteC, protoTCP, 5, 0, ports(1, 2, 20))),
			want: map[string]any{
				"msg": "connection dropped", "direction": "ingress", "protocol": "tcp",
				"src": "192.0.2.1:1", "dst": "10.0.2.3:2", "dstPod": "y/c",
				"reason": "no local pod at either address is isolated for ingress any more",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := logLine(t, c.e)
			c.want["time"] = ts.UTC().Format(time.RFC3339Nano)
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := c.want[k]; !ok {
					t.Errorf("unexpected key %s = %#v", k, got[k])
				}
			}
		})
	}
}

// FuzzParse: no input makes Parse (or logging what it returns) panic, and what it returns is
// consistent with its input.
func FuzzParse(f *testing.F) {
	seeds := [][]byte{
		ipv4(remoteC, localA, protoTCP, 5, 0, ports(40000, 80, 20)),
		ipv4(remoteC, localA, protoUDP, 15, 0, ports(1, 2, 8)),
		ipv4(localA, outside, protoICMP, 5, 0, nil),
		ipv6(remote6, local6, ipv6HopByHop, cat(ext(ipv6DestOpts, 0), ext(protoUDP, 1), ports(5000, 53, 8))),
		ipv6(remote6, local6, ipv6Routing, cat(ext(ipv6Fragment, 2), frag(protoTCP, 0, true), ports(1234, 443, 20))),
		ipv6(remote6, local6, ipv6AH, cat([]byte{protoSCTP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ports(7, 8, 12))),
		ipv6(remote6, local6, ipv6Fragment, frag(protoUDP, 8, false)),
		{0x4f}, {0x60}, nil,
	}
	for _, p := range []string{PrefixDropIngress, PrefixDropEgress, PrefixAuditIngress, PrefixAuditEgress + "\x00", "x"} {
		for _, s := range seeds {
			f.Add(p, s)
		}
	}
	sink := funcr.New(func(string, string) {}, funcr.Options{})
	f.Fuzz(func(t *testing.T, prefix string, payload []byte) {
		r := newFakeResolver()
		// Make whatever addresses the input holds someone's, to reach the resolution paths.
		if len(payload) >= 20 {
			a := netip.AddrFrom4([4]byte(payload[12:16]))
			r.pods[a] = "f/src"
			r.isolated[isoKey{a, payload[0]&1 == 1, payload[1]&1 == 1}] = []string{"f/p"}
		}
		e, ok := Parse(prefix, payload, ts, r)
		if !ok {
			return
		}
		audit, egress, known := prefixKind(prefix)
		if !known || e.Audit != audit || e.Egress != egress {
			t.Fatalf("prefix %q parsed as audit=%v egress=%v", prefix, e.Audit, e.Egress)
		}
		if !e.Src.Addr().IsValid() || !e.Dst.Addr().IsValid() || e.Src.Addr().Is4() != e.Dst.Addr().Is4() {
			t.Fatalf("addresses %v %v", e.Src, e.Dst)
		}
		if e.Src.Addr().Is4() != (payload[0]>>4 == 4) {
			t.Fatalf("IP version %d parsed as %v", payload[0]>>4, e.Src)
		}
		if e.Protocol == "" || (e.Protocol != "tcp" && e.Protocol != "udp" && e.Protocol != "sctp" && (e.Src.Port() != 0 || e.Dst.Port() != 0)) {
			t.Fatalf("protocol %q with ports %v %v", e.Protocol, e.Src, e.Dst)
		}
		if e.Reason() == "" || (e.Reply && e.Pod == "") {
			t.Fatalf("event %+v", e)
		}
		e.Log(sink)
		e.Log(logr.Discard())
		if strings.Contains(e.Reason(), "%!") {
			t.Fatalf("reason %q", e.Reason())
		}
	})
}

// TestPrefixesAreTheRenderers pins that the reader knows every prefix the renderer's log
// statements write.
func TestPrefixesAreTheRenderers(t *testing.T) {
	for _, audit := range []bool{false, true} {
		for _, egress := range []bool{false, true} {
			gotAudit, gotEgress, ok := prefixKind(render.LogPrefix(audit, egress))
			if !ok || gotAudit != audit || gotEgress != egress {
				t.Errorf("render.LogPrefix(%v, %v) = %q reads as audit=%v egress=%v ok=%v", audit, egress, render.LogPrefix(audit, egress), gotAudit, gotEgress, ok)
			}
		}
	}
}
