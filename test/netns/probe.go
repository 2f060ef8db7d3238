//go:build linux

package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Flow is one connection attempt: from an endpoint's namespace to To:Port over Proto ("tcp",
// "udp" or "sctp", see sctp.go). The source address is From's address of To's family.
type Flow struct {
	From  Endpoint
	To    netip.Addr
	Proto string
	Port  uint16
}

func (f Flow) String() string {
	from := "<nil>"
	if f.From != nil {
		from = f.From.Name()
	}
	return fmt.Sprintf("%s %s -> %s", f.Proto, from, netip.AddrPortFrom(f.To, f.Port))
}

// Result is the outcome of probing a Flow.
type Result struct {
	Flow Flow
	// OK means the flow worked end to end: TCP connected and the server's reply was read; UDP got
	// its datagram echoed.
	OK bool
	// Reply is the name of the endpoint that answered (see Serve), when OK.
	Reply string
	// Err says why the flow failed: a timeout usually means a drop, "connection refused" a reject
	// (TCP RST or ICMP unreachable) or no server.
	Err  error
	Took time.Duration
}

// Probe tries all flows concurrently (at most ProbeConcurrency at a time, each bounded by
// ProbeTimeout) and returns one Result per flow, in order. Probe never fails the test by itself;
// compare the results. Safe to call from any goroutine.
func (b *Bed) Probe(flows []Flow) []Result {
	timeout, conc := b.ProbeTimeout, b.ProbeConcurrency
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	if conc <= 0 {
		conc = DefaultProbeConcurrency
	}
	results := make([]Result, len(flows))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, f := range flows {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			reply, err := probe(f, timeout)
			results[i] = Result{Flow: f, OK: err == nil, Reply: reply, Err: err, Took: time.Since(start)}
		})
	}
	wg.Wait()
	return results
}

// Reachable probes a single flow and reports whether it worked.
func (b *Bed) Reachable(from Endpoint, to netip.Addr, proto string, port uint16) bool {
	return b.Probe([]Flow{{From: from, To: to, Proto: proto, Port: port}})[0].OK
}

func probe(f Flow, timeout time.Duration) (string, error) {
	if f.From == nil {
		return "", errors.New("flow has no source")
	}
	to := f.To.Unmap()
	if !allowed4.Contains(to) && !allowed6.Contains(to) {
		// The bed is isolated from real networks anyway; refusing here keeps tests honest.
		return "", fmt.Errorf("destination %v outside 10.0.0.0/8 and fd00::/8", to)
	}
	src := f.From.Addr(to.Is6())
	if !src.IsValid() {
		return "", fmt.Errorf("%s has no address of the family of %v", f.From.Name(), to)
	}
	dst := netip.AddrPortFrom(to, f.Port)
	var reply string
	// The whole exchange runs on a thread inside the source namespace. Only socket creation needs
	// that, but keeping the goroutine there for the few hundred milliseconds is simpler.
	err := Do(f.From.Namespace(), func() error {
		var err error
		switch f.Proto {
		case "tcp":
			reply, err = probeTCP(src, dst, timeout)
		case "udp":
			reply, err = probeUDP(src, dst, timeout)
		case "sctp":
			reply, err = probeSCTP(src, dst, timeout)
		default:
			err = fmt.Errorf("unknown protocol %q", f.Proto)
		}
		return err
	})
	return reply, err
}

func probeTCP(src netip.Addr, dst netip.AddrPort, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), KeepAlive: -1}
	c, err := d.DialContext(ctx, family("tcp", src), dst.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	buf, err := io.ReadAll(io.LimitReader(c, 1024))
	name, ok := strings.CutSuffix(string(buf), "\n")
	if !ok {
		if err == nil {
			err = errors.New("connected, but the reply was incomplete")
		}
		return "", fmt.Errorf("connected, no reply: %w", err)
	}
	return name, nil
}

func probeUDP(src netip.Addr, dst netip.AddrPort, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	// A connected socket only accepts datagrams from dst and reports ICMP unreachables as
	// ECONNREFUSED, so a reject is distinguishable from a drop.
	c, err := d.DialContext(ctx, family("udp", src), dst.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	token := []byte(randString(16))
	name, err := exchange(c, token, timeout, deadline, c.Read, func(in []byte) (string, bool) {
		// Every attempt sends the same token, so the echo of any attempt counts; anything else
		// is not ours and is ignored.
		name, ok := bytes.CutSuffix(in, append([]byte("\n"), token...))
		return string(name), ok
	})
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "", fmt.Errorf("udp: %w", err)
	}
	return name, err
}

// exchange sends req and waits for the reply that answer recognises, ignoring every other
// datagram; it sends req again a few times within timeout, since datagrams can be lost without
// a policy being involved (e.g. the very first one while a neighbour entry is being resolved).
// read reads one datagram from c.
func exchange(c net.Conn, req []byte, timeout time.Duration, deadline time.Time, read func([]byte) (int, error), answer func([]byte) (string, bool)) (string, error) {
	buf := make([]byte, 64<<10)
	const attempts = 3
	step := timeout / attempts
	for i := 1; ; i++ {
		if _, err := c.Write(req); err != nil {
			return "", err
		}
		next := time.Now().Add(step)
		if i == attempts || next.After(deadline) {
			next = deadline
		}
		_ = c.SetReadDeadline(next)
		for {
			n, err := read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) {
					break // resend
				}
				return "", err
			}
			if reply, ok := answer(buf[:n]); ok {
				return reply, nil
			}
		}
	}
}
