//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flock-net/flock-netpol/test/netns"
)

// The load generator runs in this process. Sockets belong to the network namespace of the thread
// that creates them, so the client side runs on threads that test/netns.Do has moved into the
// client's namespace, and the server's listener is created the same way; after that, I/O works
// from any thread. Nothing is forked, so there is no process to leak.

// Request bytes: the first byte a client sends tells the server what the connection is for.
const (
	reqConn = 'c' // connection-rate probe: the server answers one byte and closes
	reqBulk = 'b' // bulk transfer: the server reads and counts until EOF
)

// server accepts on one address in a namespace and serves both kinds of request.
type server struct {
	ln       net.Listener
	bulk     atomic.Int64 // bytes received on bulk connections
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// startServer listens on addr inside namespace ns and serves until close.
func startServer(ns string, addr netip.AddrPort) (*server, error) {
	s := &server{}
	err := netns.Do(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	// A few acceptors, so that a slow handshake on one does not leave the backlog unserved.
	for range 4 {
		s.wg.Go(s.acceptLoop)
	}
	return s, nil
}

func (s *server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.accepted.Add(1)
		s.wg.Go(func() { s.handle(c) })
	}
}

func (s *server) handle(c net.Conn) {
	defer c.Close()
	var req [1]byte
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	switch req[0] {
	case reqConn:
		_, _ = c.Write([]byte{'x'})
	case reqBulk:
		_ = c.SetReadDeadline(time.Time{})
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			s.bulk.Add(int64(n))
			if err != nil {
				return
			}
		}
	}
}

// close stops accepting and waits for the handlers (bulk ones end when their client closes).
func (s *server) close() {
	_ = s.ln.Close()
	s.wg.Wait()
}

// dialOnce makes one connection-rate probe from the calling thread's namespace: connect, send the
// request byte, read the one-byte answer, close. It uses blocking system calls on a fresh socket
// so that a worker is a plain loop on its own thread, without netpoller hand-offs. SO_LINGER 0
// makes close send a RST instead of a FIN, so the client keeps no TIME_WAIT socket and its
// ephemeral ports never run out; the server has already closed its end by then.
func dialOnce(dst unix.SockaddrInet4, timeout time.Duration) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return err
	}
	// Linux applies SO_SNDTIMEO to a blocking connect and SO_RCVTIMEO to read: a dropped SYN
	// fails after timeout instead of after the kernel's minutes of retransmissions.
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.Connect(fd, &dst); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if _, err := unix.Write(fd, []byte{reqConn}); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	var ans [1]byte
	if n, err := unix.Read(fd, ans[:]); err != nil || n != 1 {
		return fmt.Errorf("read: %d bytes, %v", n, err)
	}
	return nil
}

// sockaddr converts an IPv4 address and port for unix.Connect.
func sockaddr(ap netip.AddrPort) unix.SockaddrInet4 {
	return unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
}

// connLoad is a running connection-rate load: workers loops of dialOnce from one namespace.
type connLoad struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	errs       chan error
}

// startConnLoad starts workers concurrent connection loops from namespace ns to dst. Each
// worker is a thread of its own inside ns for as long as the load runs.
func startConnLoad(ns string, dst netip.AddrPort, workers int) *connLoad {
	l := &connLoad{stop: make(chan struct{}), errs: make(chan error, workers)}
	sa := sockaddr(dst)
	for range workers {
		l.wg.Go(func() {
			l.errs <- netns.Do(ns, func() error {
				for {
					select {
					case <-l.stop:
						return nil
					default:
					}
					if dialOnce(sa, time.Second) != nil {
						l.failed.Add(1)
					} else {
						l.ok.Add(1)
					}
				}
			})
		})
	}
	return l
}

// Stop ends the load and waits for the workers; the error is about the namespace switch, not
// about connections (those are counted in failed).
func (l *connLoad) Stop() error {
	close(l.stop)
	l.wg.Wait()
	close(l.errs)
	var err error
	for e := range l.errs {
		err = errors.Join(err, e)
	}
	return err
}

// bulkLoad is one TCP connection sending as fast as it can.
type bulkLoad struct {
	c    net.Conn
	stop chan struct{}
	done chan error
}

// startBulkLoad connects from namespace ns to the server at dst and starts sending; the server
// counts what it receives (server.bulk).
func startBulkLoad(ns string, dst netip.AddrPort) (*bulkLoad, error) {
	l := &bulkLoad{stop: make(chan struct{}), done: make(chan error, 1)}
	err := netns.Do(ns, func() error {
		var err error
		l.c, err = net.DialTimeout("tcp4", dst.String(), time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, err := l.c.Write([]byte{reqBulk}); err != nil {
		l.c.Close()
		return nil, err
	}
	go func() {
		buf := make([]byte, 256<<10)
		for {
			select {
			case <-l.stop:
				l.done <- nil
				return
			default:
			}
			if _, err := l.c.Write(buf); err != nil {
				l.done <- err
				return
			}
		}
	}()
	return l, nil
}

// Stop ends the transfer and closes the connection.
func (l *bulkLoad) Stop() error {
	close(l.stop)
	err := <-l.done
	return errors.Join(err, l.c.Close())
}

// rateOver returns how fast counter grows over the next d, per second.
func rateOver(counter func() int64, d time.Duration) float64 {
	c0, t0 := counter(), time.Now()
	time.Sleep(d)
	c1, t1 := counter(), time.Now()
	return float64(c1-c0) / t1.Sub(t0).Seconds()
}
