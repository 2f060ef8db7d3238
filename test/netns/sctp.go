//go:build linux

package netns

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"slices"
	"time"
)

// SCTP without an SCTP stack. A kernel built without SCTP sockets (CONFIG_IP_SCTP unset) still
// routes SCTP packets, conntrack still tracks them (CONFIG_NF_CT_PROTO_SCTP) and nftables still
// matches their ports, so policy for SCTP can be checked with real packets: the client sends an
// INIT chunk from a raw IP socket (protocol 132) and the server, on a raw socket of its own, answers
// with an INIT ACK whose State Cookie carries the server's name. That is the first exchange of a
// real association, well formed enough for conntrack (verification tags, CRC32c checksum), so the
// INIT is a new flow and the INIT ACK its reply, exactly what a policy decides on. Nothing goes
// further: no association is ever set up.

// The SCTP kinds of ProbeMatrix (not in AllKinds: a matrix probes them only when asked).
const (
	SCTP4 Kind = "sctp4"
	SCTP6 Kind = "sctp6"
)

const (
	ipProtoSCTP = 132
	// Chunk and parameter types (RFC 9260).
	chunkInit      = 1
	chunkInitAck   = 2
	paramCookie    = 7
	sctpHeaderLen  = 12
	initChunkLen   = 20 // type, flags, length, initiate tag, a_rwnd, streams, initial TSN
	sctpInitPktLen = sctpHeaderLen + initChunkLen
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpPacket is a common header and one chunk of the INIT family (INIT or INIT ACK: initiate tag,
// window, streams, initial TSN), with an optional State Cookie parameter.
func sctpPacket(srcPort, dstPort uint16, vtag uint32, chunk byte, initTag uint32, cookie []byte) []byte {
	chunkLen := initChunkLen
	if cookie != nil {
		chunkLen += 4 + len(cookie)
	}
	pkt := make([]byte, sctpHeaderLen+(chunkLen+3)&^3)
	binary.BigEndian.PutUint16(pkt[0:], srcPort)
	binary.BigEndian.PutUint16(pkt[2:], dstPort)
	binary.BigEndian.PutUint32(pkt[4:], vtag)
	c := pkt[sctpHeaderLen:]
	c[0] = chunk
	binary.BigEndian.PutUint16(c[2:], uint16(chunkLen))
	binary.BigEndian.PutUint32(c[4:], initTag)
	binary.BigEndian.PutUint32(c[8:], 65535) // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // inbound streams
	binary.BigEndian.PutUint32(c[16:], initTag)
	if cookie != nil {
		binary.BigEndian.PutUint16(c[20:], paramCookie)
		binary.BigEndian.PutUint16(c[22:], uint16(4+len(cookie)))
		copy(c[24:], cookie)
	}
	// CRC32c over the whole packet with the checksum field zero, stored little-endian (as the
	// kernel's sctp_compute_cksum does); conntrack checks it.
	binary.LittleEndian.PutUint32(pkt[8:], crc32.Checksum(pkt, castagnoli))
	return pkt
}

// sctpChunk parses what sctpPacket builds: ports, verification tag, the first chunk's type and
// initiate tag, and the State Cookie if there is one. ok is false for anything shorter or with a
// bad checksum.
type sctpChunk struct {
	srcPort, dstPort uint16
	vtag             uint32
	chunk            byte
	initTag          uint32
	cookie           []byte
}

func parseSCTP(pkt []byte) (p sctpChunk, ok bool) {
	if len(pkt) < sctpInitPktLen {
		return p, false
	}
	sum := binary.LittleEndian.Uint32(pkt[8:])
	zeroed := slices.Clone(pkt)
	binary.LittleEndian.PutUint32(zeroed[8:], 0)
	if crc32.Checksum(zeroed, castagnoli) != sum {
		return p, false
	}
	c := pkt[sctpHeaderLen:]
	p = sctpChunk{
		srcPort: binary.BigEndian.Uint16(pkt[0:]),
		dstPort: binary.BigEndian.Uint16(pkt[2:]),
		vtag:    binary.BigEndian.Uint32(pkt[4:]),
		chunk:   c[0],
		initTag: binary.BigEndian.Uint32(c[4:]),
	}
	chunkLen := int(binary.BigEndian.Uint16(c[2:]))
	if chunkLen > len(c) {
		return p, false
	}
	if chunkLen >= initChunkLen+4 && binary.BigEndian.Uint16(c[20:]) == paramCookie {
		if n := int(binary.BigEndian.Uint16(c[22:])); n >= 4 && initChunkLen+n <= chunkLen {
			p.cookie = c[24 : initChunkLen+n]
		}
	}
	return p, true
}

func randUint32() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

// ListenSCTP answers SCTP INITs to the given ports, on each of the endpoint's addresses, with an
// INIT ACK whose State Cookie is the endpoint's name (see the comment at the top of sctp.go). One
// raw socket per address serves all ports; it runs until the Bed is closed.
func (e *endpoint) ListenSCTP(ports ...uint16) error {
	var conns []net.PacketConn
	err := e.Do(func() error {
		for _, a := range e.addrs {
			c, err := net.ListenPacket(fmt.Sprintf("%s:%d", family("ip", a), ipProtoSCTP), a.String())
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err == nil {
		err = e.bed.startSCTPServers(e.name, conns, ports)
	}
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return fmt.Errorf("netns: %s: ServeSCTP(%v): %w", e.name, ports, err)
	}
	return nil
}

// ServeSCTP is ListenSCTP that fails the test on error. Call it from the test goroutine.
func (e *endpoint) ServeSCTP(ports ...uint16) {
	if e.bed.t != nil {
		e.bed.t.Helper()
	}
	if err := e.ListenSCTP(ports...); err != nil {
		e.bed.fatal(err)
	}
}

func (b *Bed) startSCTPServers(name string, conns []net.PacketConn, ports []uint16) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("bed already closed")
	}
	for _, c := range conns {
		b.closers = append(b.closers, c.Close)
		b.servers.Add(1)
		go b.serveSCTP(name, c, slices.Clone(ports))
	}
	return nil
}

func (b *Bed) serveSCTP(name string, c net.PacketConn, ports []uint16) {
	defer b.servers.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		in, ok := parseSCTP(buf[:n])
		if !ok || in.chunk != chunkInit || in.vtag != 0 || !slices.Contains(ports, in.dstPort) {
			continue
		}
		// The reply's verification tag is the INIT's initiate tag, as conntrack expects of the
		// reply direction.
		_, _ = c.WriteTo(sctpPacket(in.dstPort, in.srcPort, in.initTag, chunkInitAck, randUint32(), []byte(name)), from)
	}
}

// probeSCTP sends an INIT from src to dst and waits for the INIT ACK (resending a few times within
// the timeout, as the UDP probe does); it returns the name in the answer's State Cookie.
func probeSCTP(src netip.Addr, dst netip.AddrPort, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	// A connected raw socket receives only what dst sends to src (the kernel matches both
	// addresses of a raw socket), not every SCTP packet of the pod: the other probes from the same
	// pod would otherwise each wake every probe's socket, which on a small machine delays them
	// past their timeout.
	c, err := net.DialIP(fmt.Sprintf("%s:%d", family("ip", src), ipProtoSCTP),
		&net.IPAddr{IP: src.AsSlice()}, &net.IPAddr{IP: dst.Addr().AsSlice()})
	if err != nil {
		return "", err
	}
	defer c.Close()
	// A source port of our own (the raw socket has none) and a fresh initiate tag tell our answer
	// from the answers to other probes between the same two addresses.
	srcPort := uint16(32768 + randUint32()%28232)
	tag := randUint32()
	init := sctpPacket(srcPort, dst.Port(), 0, chunkInit, tag, nil)
	// ReadFrom, unlike Read, strips the IPv4 header a raw socket receives.
	read := func(b []byte) (int, error) {
		n, _, err := c.ReadFrom(b)
		return n, err
	}
	return exchange(c, init, timeout, deadline, read, func(pkt []byte) (string, bool) {
		in, ok := parseSCTP(pkt)
		if ok && in.chunk == chunkInitAck && in.vtag == tag && in.srcPort == dst.Port() && in.dstPort == srcPort {
			return string(in.cookie), true
		}
		return "", false
	})
}
