//go:build linux

package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Listen starts, inside the endpoint's namespace, a TCP listener and a UDP socket on each port for
// each of the endpoint's addresses (so IPv4 and IPv6 for a dual-stack endpoint). TCP: every
// accepted connection gets the endpoint's name plus "\n" and is closed. UDP: every datagram is
// answered with name + "\n" + the datagram. Probes use the name to report who answered, which
// shows where DNAT sent a flow.
//
// Sockets are bound to the endpoint's own addresses rather than the wildcard so that UDP replies
// always leave from the address the client sent to (an external host also has an underlay
// address). Servers run until the Bed is closed. A port that cannot be bound is an error, and then
// none of the ports is served.
func (e *endpoint) Listen(ports ...uint16) error {
	b := e.bed
	var lns []net.Listener
	var pcs []net.PacketConn
	err := e.Do(func() error {
		for _, port := range ports {
			for _, a := range e.addrs {
				ap := netip.AddrPortFrom(a, port).String()
				ln, err := net.Listen(family("tcp", a), ap)
				if err != nil {
					return err
				}
				lns = append(lns, ln)
				pc, err := net.ListenPacket(family("udp", a), ap)
				if err != nil {
					return err
				}
				pcs = append(pcs, pc)
			}
		}
		return nil
	})
	if err == nil {
		err = b.startServers(e.name, lns, pcs)
	}
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		for _, pc := range pcs {
			pc.Close()
		}
		return fmt.Errorf("netns: %s: Serve(%v): %w", e.name, ports, err)
	}
	return nil
}

// Serve is Listen that fails the test on error. Call it from the test goroutine.
func (e *endpoint) Serve(ports ...uint16) {
	if e.bed.t != nil {
		e.bed.t.Helper()
	}
	if err := e.Listen(ports...); err != nil {
		e.bed.fatal(err)
	}
}

// startServers registers the sockets for Close and starts their loops. The accept and read loops
// end when Close closes the sockets; Close waits for them (and for in-flight TCP replies).
func (b *Bed) startServers(name string, lns []net.Listener, pcs []net.PacketConn) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("bed already closed")
	}
	for _, ln := range lns {
		b.closers = append(b.closers, ln.Close)
		b.servers.Add(1)
		go b.serveTCP(name, ln)
	}
	for _, pc := range pcs {
		b.closers = append(b.closers, pc.Close)
		b.servers.Add(1)
		go b.serveUDP(name, pc)
	}
	return nil
}

func (b *Bed) serveTCP(name string, ln net.Listener) {
	defer b.servers.Done()
	reply := []byte(name + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		b.servers.Add(1)
		go func() {
			defer b.servers.Done()
			defer c.Close()
			// Bounded so that a client whose return path is being dropped cannot stall Close.
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write(reply)
		}()
	}
}

func (b *Bed) serveUDP(name string, pc net.PacketConn) {
	defer b.servers.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		_, _ = pc.WriteTo(append([]byte(name+"\n"), buf[:n]...), from)
	}
}

// family turns "tcp"/"udp" into the address-family-specific network name for a.
func family(proto string, a netip.Addr) string {
	if a.Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// String is for debugging, e.g. "a1 [10.1.0.2 fd00:1::2]".
func (e *endpoint) String() string { return fmt.Sprintf("%s %v", e.name, e.addrs) }
