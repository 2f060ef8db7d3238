//go:build linux

package droplog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/netlink"

	"github.com/flock-net/flock-netpol/internal/nft"
)

// readBuffer is the socket's receive buffer: what the kernel may queue for the reader before it
// drops messages. The kernel doubles the setting for its bookkeeping; a 16 KiB setting held 225
// logged packets (TestKernelOverrunIsCountedAndReadPast), so 1 MiB holds over 10,000.
const readBuffer = 1 << 20

// bindTimeout bounds the wait for the kernel's answer to the bind.
const bindTimeout = 5 * time.Second

// overrunLogEvery limits the log lines about overruns; the counter counts every one.
const overrunLogEvery = time.Minute

// Reader receives the NFLOG messages of one group. Only one socket in a network namespace can bind
// a group: another Open of the same group fails (EPERM) until the first Reader is closed.
type Reader struct {
	conn  *netlink.Conn
	group uint16

	closeOnce sync.Once
	closeErr  error

	// nextSeq is the sequence number the next message should carry.
	nextSeq uint32
}

// Open binds NFLOG group on a new netlink socket in the network namespace of the file descriptor
// netnsFD (an open /proc/PID/ns/net or /var/run/netns/NAME; 0: the caller's), for Run to read.
// It needs CAP_NET_ADMIN in that namespace (CAP_SYS_ADMIN too to enter another one). The kernel
// unbinds the group when the socket closes: at the end of Run, or with Close.
func Open(group uint16, netnsFD int) (*Reader, error) {
	conn, err := netlink.Dial(netlinkNetfilter, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, fmt.Errorf("droplog: opening a netfilter netlink socket: %w", err)
	}
	r := &Reader{conn: conn, group: group}
	if err := nft.SetReadBuffer(conn, readBuffer); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("droplog: setting the receive buffer to %d bytes: %w", readBuffer, err)
	}
	if err := r.bind(); err != nil {
		_ = conn.Close()
		if errors.Is(err, syscall.EPERM) {
			// The kernel answers EPERM both ways.
			return nil, fmt.Errorf("droplog: binding NFLOG group %d: either another socket in this network namespace has bound it (another agent, or a logger such as ulogd), or this process lacks CAP_NET_ADMIN: %w", group, err)
		}
		return nil, fmt.Errorf("droplog: binding NFLOG group %d: %w", group, err)
	}
	return r, nil
}

// bind sends the config message and waits for its ACK. Once the group is bound, log messages may
// reach the socket before the ACK; they are dropped (bind happens once, before Run).
func (r *Reader) bind() error {
	msg, err := bindMessage(r.group)
	if err != nil {
		return err
	}
	if err := r.conn.SetReadDeadline(time.Now().Add(bindTimeout)); err != nil {
		return err
	}
	sent, err := r.conn.Send(msg)
	if err != nil {
		return err
	}
	for {
		// An error answer (EBUSY, EPERM) comes back as err.
		msgs, err := r.conn.Receive()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error && m.Header.Sequence == sent.Header.Sequence {
				return r.conn.SetReadDeadline(time.Time{})
			}
		}
	}
}

// Close closes the socket, which unbinds the group; Run does it when it returns. Close may be
// called more than once, and concurrently with Run (which then returns an error).
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.conn.Close() })
	return r.closeErr
}

// Run reads and logs the group's messages, one read at a time, until ctx ends (then it returns
// nil) or reading fails (then it returns the error); it closes the socket when it returns. Each
// packet is parsed with res (nil: no pods named), logged with log, and counted with stats (nil:
// not counted): n occurrences of one of StatDrop, StatAudit, StatLost, StatOverrun, StatUnparsed. A full
// receive buffer loses messages but never ends Run. Run may be called once.
func (r *Reader) Run(ctx context.Context, res Resolver, log logr.Logger, stats func(kind string, n int)) error {
	defer func() { _ = r.Close() }()
	if stats == nil {
		stats = func(string, int) {}
	}
	// A read blocks in the kernel; a deadline in the past wakes it when ctx ends.
	stop, woken := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(woken)
		select {
		case <-ctx.Done():
			_ = r.conn.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	defer func() { close(stop); <-woken }() // before Close: nothing touches a closed socket

	var overruns int
	var lastOverrunLog time.Time
	for {
		msgs, err := r.conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, syscall.ENOBUFS) {
			// The kernel could not queue messages for a full buffer; the socket itself is fine.
			stats(StatOverrun, 1)
			overruns++
			if now := time.Now(); now.Sub(lastOverrunLog) >= overrunLogEvery {
				log.Info("NFLOG receive buffer overrun: logged packets were lost", "group", r.group, "overruns", overruns)
				lastOverrunLog, overruns = now, 0
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("droplog: reading NFLOG group %d: %w", r.group, err)
		}
		for _, m := range msgs {
			r.handle(m, res, log, stats)
		}
	}
}

// handle logs and counts one message.
func (r *Reader) handle(m netlink.Message, res Resolver, log logr.Logger, stats func(string, int)) {
	if !isPacketMessage(m) {
		return
	}
	p, ok := decodePacket(m)
	if !ok {
		stats(StatUnparsed, 1)
		log.V(1).Info("malformed NFLOG message", "group", r.group, "bytes", len(m.Data))
		return
	}
	if p.hasSeq {
		// A gap in the numbering is what a full buffer lost; a number from the past (which the
		// kernel never sends) only resets the count.
		if gap := p.seq - r.nextSeq; gap > 0 && gap < 1<<31 {
			stats(StatLost, int(gap))
		}
		r.nextSeq = p.seq + 1
	}
	ts := p.time
	if ts.IsZero() {
		ts = time.Now()
	}
	ev, ok := Parse(p.prefix, p.payload, ts, res)
	if !ok {
		stats(StatUnparsed, 1)
		log.V(1).Info("unparsed NFLOG packet", "group", r.group, "prefix", p.prefix, "bytes", len(p.payload))
		return
	}
	if ev.Audit {
		stats(StatAudit, 1)
	} else {
		stats(StatDrop, 1)
	}
	ev.Log(log)
}
