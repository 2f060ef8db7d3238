// Package trace follows real packets through the agent's table: it marks the packets of one
// connection with `meta nftrace set 1`, reads their traces from `nft monitor`, and maps each step
// back to the pod, policy and rule it belongs to.
//
// The mark is set by a chain of a table of its own, `inet flock-netpol-trace-<pid>`, hooked at
// forward just before the agent's chain (priority -1). The agent never reads, changes or repairs
// it, and its applies never touch it, so tracing neither disturbs enforcement nor yields to an
// apply. The table is created with nft's owner flag by an `nft -i` session that lives as long as
// the trace: the kernel deletes the table as soon as that session ends, however it ends (the
// trace finishing, Ctrl-C, or the trace command killed, which closes the session's input).
package trace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flock-net/flock-netpol/internal/nft"
)

// Filter selects the packets to trace: both directions of the connections from Src to Dst, on
// one protocol and destination port (zero values: any).
type Filter struct {
	Src, Dst netip.Addr
	Protocol string // "tcp", "udp", "sctp", or "" for any
	Port     uint16 // 0 for any; needs Protocol
}

// Validate reports a filter that cannot be written.
func (f Filter) Validate() error {
	switch {
	case !f.Src.IsValid() || !f.Dst.IsValid():
		return errors.New("both ends are required")
	case f.Src.Is4() != f.Dst.Is4():
		return fmt.Errorf("%s and %s are of different address families", f.Src, f.Dst)
	case f.Port != 0 && f.Protocol == "":
		return errors.New("a port needs a protocol")
	case f.Protocol != "" && f.Protocol != "tcp" && f.Protocol != "udp" && f.Protocol != "sctp":
		return fmt.Errorf("unknown protocol %q: want tcp, udp or sctp", f.Protocol)
	}
	return nil
}

// TableName is the trace table of this process.
func TableName() string { return fmt.Sprintf("flock-netpol-trace-%d", os.Getpid()) }

// Script returns the commands that create the trace table: one rule per direction of the
// connection, each setting nftrace.
func Script(table string, f Filter) []byte {
	proto := "ip"
	if !f.Src.Is4() {
		proto = "ip6"
	}
	match := func(src, dst netip.Addr, portField string) string {
		m := fmt.Sprintf("%s saddr %s %s daddr %s", proto, src, proto, dst)
		if f.Protocol != "" {
			m += " meta l4proto " + f.Protocol
		}
		if f.Port != 0 {
			m += fmt.Sprintf(" th %s %d", portField, f.Port)
		}
		return m
	}
	return fmt.Appendf(nil, `add table inet %[1]s { flags owner; comment "flock-netpol trace: marks packets for nft monitor trace; deleted when the trace ends"; }
add chain inet %[1]s select { type filter hook forward priority -1; policy accept; }
add rule inet %[1]s select %[2]s meta nftrace set 1
add rule inet %[1]s select %[3]s meta nftrace set 1
`, table, match(f.Src, f.Dst, "dport"), match(f.Dst, f.Src, "sport"))
}

// Run traces the filter's packets for d (or until ctx ends) and writes each packet's path
// through the agent's table to out.
func Run(ctx context.Context, c *nft.Client, agentTable string, f Filter, d time.Duration, out io.Writer) error {
	if err := f.Validate(); err != nil {
		return err
	}
	table := TableName()
	script := Script(table, f)
	if err := c.Check(ctx, script); err != nil {
		return fmt.Errorf("the trace rules: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	// `nft monitor` (every event, traces included) also shows changes to the trace table: once it
	// shows one made after the session started, the monitor listens, and the marking rules can
	// go in.
	m := NewMapper(agentTable, out)
	marks := make(chan string, 16)
	marker := "add chain inet " + table + " sync-"
	monitorDone := make(chan error, 1)
	go func() {
		monitorDone <- c.Monitor(ctx, func(line string) {
			if tag, ok := strings.CutPrefix(line, marker); ok {
				select {
				case marks <- strings.Fields(tag)[0]:
				default:
				}
			}
			m.Line(line)
		})
	}()

	sess, err := c.Session(ctx)
	if err != nil {
		return fmt.Errorf("starting nft -i: %w", err)
	}
	closed := false
	closeSession := func() error {
		if closed {
			return nil
		}
		closed = true
		err := sess.Close()
		if ctx.Err() != nil {
			err = nil // killed with the context: the table went with it
		}
		return err
	}
	defer closeSession() //nolint:errcheck // the error paths below report the first problem
	// Sync: a marker chain added (and deleted) through the session shows in the monitor once
	// the monitor listens and the session has run everything sent before it. The first sync
	// waits for the monitor, the second for the marking rules.
	n := 0
	sync := func(what string) error {
		for {
			n++
			tag := strconv.Itoa(n)
			if err := sess.Send(fmt.Appendf(nil, "%s%s\ndelete chain inet %s sync-%s\n", marker, tag, table, tag)); err != nil {
				return fmt.Errorf("%s: writing to nft -i: %w", what, err)
			}
			deadline := time.After(200 * time.Millisecond)
			for {
				select {
				case got := <-marks:
					if got != tag {
						continue // an earlier try's, late
					}
					return nil
				case err := <-monitorDone:
					return fmt.Errorf("%s: nft monitor stopped: %w", what, err)
				case <-ctx.Done():
					return fmt.Errorf("%s: %w (%v)", what, ctx.Err(), closeSession())
				case <-deadline:
				}
				break
			}
		}
	}
	header, rules, _ := bytes.Cut(script, []byte("\n"))
	if err := sess.Send(append(header, '\n')); err != nil {
		return fmt.Errorf("creating the trace table: %w", err)
	}
	if err := sync("starting nft monitor"); err != nil {
		return err
	}
	if err := sess.Send(rules); err != nil {
		return fmt.Errorf("writing the trace rules: %w", err)
	}
	if err := sync("adding the trace rules"); err != nil {
		return err
	}
	if listing, err := c.ListTable(ctx, "inet", table); err != nil || strings.Count(listing, "meta nftrace set 1") != 2 {
		return fmt.Errorf("the trace rules did not go in (%v): %s (%v)", err, listing, closeSession())
	}
	fmt.Fprintf(out, "tracing %s for %s (table inet %s, removed when the trace ends)\n", f, d, table)

	select {
	case <-ctx.Done():
	case err := <-monitorDone:
		if ctx.Err() == nil {
			return fmt.Errorf("nft monitor stopped: %w", err)
		}
	}
	serr := closeSession()
	m.Flush()
	cleanup, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelCleanup()
	if err := waitTable(cleanup, c, table, false); err != nil {
		return fmt.Errorf("the trace table is still there (delete it with `nft delete table inet %s`): %w", table, err)
	}
	return serr
}

// waitTable polls until the table exists (or no longer does).
func waitTable(ctx context.Context, c *nft.Client, table string, exists bool) error {
	for {
		got, err := c.TableExists(ctx, "inet", table)
		if err == nil && got == exists {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (f Filter) String() string {
	s := fmt.Sprintf("%s -> %s", f.Src, f.Dst)
	switch {
	case f.Port != 0:
		s += fmt.Sprintf(" %s/%d", f.Protocol, f.Port)
	case f.Protocol != "":
		s += " " + f.Protocol
	}
	return s
}
