//go:build linux

package netns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Long-lived connections, for tests of what happens to a live connection when the rules change
// under it: an EchoServer on a port of an endpoint, and a Stream dialed to it from another
// endpoint's namespace. The test holds both ends, so it can send in the original direction (the
// client's Echo) or only in the reply direction (the server's Push).

// EchoServer serves TCP and UDP on one port of an endpoint, on each of its addresses. TCP: every
// line received is written back on its connection, for as long as the connection lives. UDP: every
// datagram is sent back, unchanged, to its sender. Start it with Bed.ListenEcho; it runs until the
// Bed is closed.
type EchoServer struct {
	name string
	port uint16

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	pcs    []net.PacketConn
	conns  map[netip.AddrPort]net.Conn       // accepted TCP connections, by client address
	peers  map[netip.AddrPort]net.PacketConn // UDP clients heard from, and the socket that heard them
}

// ListenEcho starts an EchoServer on port inside e's namespace (which must belong to b), bound
// to each of e's addresses as Listen binds its servers.
func (b *Bed) ListenEcho(e Endpoint, port uint16) (*EchoServer, error) {
	s := &EchoServer{name: e.Name(), port: port, conns: map[netip.AddrPort]net.Conn{}, peers: map[netip.AddrPort]net.PacketConn{}}
	err := Do(e.Namespace(), func() error {
		for _, a := range e.Addrs() {
			ap := netip.AddrPortFrom(a, port).String()
			ln, err := net.Listen(family("tcp", a), ap)
			if err != nil {
				return err
			}
			s.lns = append(s.lns, ln)
			pc, err := net.ListenPacket(family("udp", a), ap)
			if err != nil {
				return err
			}
			s.pcs = append(s.pcs, pc)
		}
		return nil
	})
	if err == nil {
		err = b.startEcho(s)
	}
	if err != nil {
		_ = s.close()
		return nil, fmt.Errorf("netns: %s: ListenEcho(%d): %w", e.Name(), port, err)
	}
	return s, nil
}

// ServeEcho is ListenEcho that fails the test on error. Call it from the test goroutine.
func (b *Bed) ServeEcho(e Endpoint, port uint16) *EchoServer {
	if b.t != nil {
		b.t.Helper()
	}
	s, err := b.ListenEcho(e, port)
	if err != nil {
		b.fatal(err)
	}
	return s
}

func (b *Bed) startEcho(s *EchoServer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("bed already closed")
	}
	// One closer for the server and every connection it accepts: Close holds b.mu while it
	// waits for the server loops, so they must not register anything with the bed themselves.
	b.closers = append(b.closers, s.close)
	for _, ln := range s.lns {
		b.servers.Add(1)
		go s.acceptLoop(&b.servers, ln)
	}
	for _, pc := range s.pcs {
		b.servers.Add(1)
		go s.udpLoop(&b.servers, pc)
	}
	return nil
}

// close closes the sockets and every accepted connection; later accepts are closed at once.
func (s *EchoServer) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for _, pc := range s.pcs {
		pc.Close()
	}
	for _, c := range s.conns {
		c.Close()
	}
	return nil
}

func (s *EchoServer) acceptLoop(wg *sync.WaitGroup, ln net.Listener) {
	defer wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		client := addrPort(c.RemoteAddr())
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[client] = c
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, client)
				s.mu.Unlock()
				c.Close()
			}()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
	}
}

func (s *EchoServer) udpLoop(wg *sync.WaitGroup, pc net.PacketConn) {
	defer wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.peers[addrPort(from)] = pc
		s.mu.Unlock()
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// Push sends msg to a client without being asked, on the connection the client opened: a line
// on its TCP connection, or a datagram from the socket that heard it over UDP. client is the
// client's address as the server sees it (Stream.Local; there is no SNAT in the bed). The packets
// travel only in the reply direction of the client's connection.
func (s *EchoServer) Push(proto string, client netip.AddrPort, msg string) error {
	s.mu.Lock()
	c, pc := s.conns[client], s.peers[client]
	s.mu.Unlock()
	switch {
	case proto == "tcp" && c != nil:
		_, err := io.WriteString(c, msg+"\n")
		return err
	case proto == "udp" && pc != nil:
		_, err := pc.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(client))
		return err
	}
	return fmt.Errorf("netns: %s: no %s client %v on port %d", s.name, proto, client, s.port)
}

// Stream is the client end of a long-lived TCP connection or UDP flow, opened from inside an
// endpoint's namespace with Bed.DialStream. Its methods must not be called concurrently.
type Stream struct {
	proto         string
	conn          net.Conn
	r             *bufio.Reader // tcp
	local, remote netip.AddrPort
	broken        error // a TCP read that failed left the stream at an unknown place
}

// DialStream opens a stream from endpoint from to to over proto ("tcp" or "udp"), from from's
// address of to's family. TCP connects within timeout (with no keepalives, so that only the test's
// data crosses); UDP only creates a connected socket: nothing is sent before the first Echo. The
// bed closes the stream when it closes, if the test has not.
func (b *Bed) DialStream(from Endpoint, proto string, to netip.AddrPort, timeout time.Duration) (*Stream, error) {
	dst := to.Addr().Unmap()
	if !allowed4.Contains(dst) && !allowed6.Contains(dst) {
		return nil, fmt.Errorf("netns: destination %v outside 10.0.0.0/8 and fd00::/8", dst)
	}
	src := from.Addr(dst.Is6())
	if !src.IsValid() {
		return nil, fmt.Errorf("netns: %s has no address of the family of %v", from.Name(), dst)
	}
	if proto != "tcp" && proto != "udp" {
		return nil, fmt.Errorf("netns: unknown protocol %q", proto)
	}
	var c net.Conn
	err := Do(from.Namespace(), func() error {
		d := net.Dialer{Timeout: timeout, KeepAlive: -1}
		if proto == "tcp" {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		} else {
			d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		var err error
		c, err = d.Dial(family(proto, src), netip.AddrPortFrom(dst, to.Port()).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s -> %v: %w", proto, from.Name(), to, err)
	}
	s := &Stream{proto: proto, conn: c, local: addrPort(c.LocalAddr()), remote: netip.AddrPortFrom(dst, to.Port())}
	if proto == "tcp" {
		s.r = bufio.NewReader(c)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		c.Close()
		return nil, errors.New("netns: bed already closed")
	}
	b.closers = append(b.closers, s.Close)
	return s, nil
}

// Local is the client's address and port: the connection's original source.
func (s *Stream) Local() netip.AddrPort { return s.local }

func (s *Stream) String() string { return fmt.Sprintf("%s %v -> %v", s.proto, s.local, s.remote) }

// Echo sends msg (a line without "\n") and waits until the server's echo of it is back, within
// timeout. Over TCP the next line received must be msg; anything else is an error (data lost or
// reordered). Over UDP msg is sent again every third of the timeout, in case a datagram is lost
// to a neighbour resolution, and datagrams other than msg are ignored.
func (s *Stream) Echo(msg string, timeout time.Duration) error {
	if s.proto == "udp" {
		deadline := time.Now().Add(timeout)
		for i := 1; ; i++ {
			if _, err := s.conn.Write([]byte(msg)); err != nil {
				return fmt.Errorf("%v: send %q: %w", s, msg, err)
			}
			wait := min(timeout/3, time.Until(deadline))
			if i == 3 {
				wait = time.Until(deadline)
			}
			err := s.receive(msg, wait)
			if err == nil || !isTimeout(err) || time.Now().After(deadline) || i == 3 {
				return err
			}
		}
	}
	if s.broken != nil {
		return fmt.Errorf("%v: broken by an earlier read: %w", s, s.broken)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(s.conn, msg+"\n"); err != nil {
		return fmt.Errorf("%v: send %q: %w", s, msg, err)
	}
	return s.receive(msg, timeout)
}

// Receive waits for msg from the server without sending anything (see EchoServer.Push), within
// timeout. Over TCP the next line must be msg; over UDP other datagrams are ignored.
func (s *Stream) Receive(msg string, timeout time.Duration) error {
	if s.broken != nil {
		return fmt.Errorf("%v: broken by an earlier read: %w", s, s.broken)
	}
	return s.receive(msg, timeout)
}

func (s *Stream) receive(msg string, timeout time.Duration) error {
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
	if s.proto == "tcp" {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.broken = err
			return fmt.Errorf("%v: waiting for %q: %w", s, msg, err)
		}
		if got := strings.TrimSuffix(line, "\n"); got != msg {
			return fmt.Errorf("%v: got %q, want %q (data lost or reordered)", s, got, msg)
		}
		return nil
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return fmt.Errorf("%v: waiting for %q: %w", s, msg, err)
		}
		if string(buf[:n]) == msg {
			return nil
		}
	}
}

// Close closes the client end (TCP: a FIN, which may itself be dropped). It is idempotent.
func (s *Stream) Close() error {
	if err := s.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// addrPort is a socket address as a netip.AddrPort, IPv4 unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
