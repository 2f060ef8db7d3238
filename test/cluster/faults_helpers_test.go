//go:build linux

package cluster_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// faultNFT is the nft wrapper the fault tests give node-1's agent as --nft ("<script> <ctl dir>
// <netns>", split on spaces as the flag is). Every call but an apply (`-f -`) goes straight to
// nft in the node's namespace. An apply is logged to <ctl>/log (begin and end, with the wrapper's
// PID and the exit code). An apply that starts while an earlier one of the same agent still runs
// is written to <ctl>/overlaps; one that starts while an apply of an earlier agent still runs (a
// SIGKILLed agent's nft lives on: it runs in a process group of its own) to <ctl>/orphans. Files in the control directory change what an apply does:
//
//	hang    the apply never ends (until the agent kills it at --nft-timeout)
//	delay   seconds to sleep before nft runs (a slow apply, to be hit by a restart)
//	reject  a string: a script that contains it is refused as nft refuses a script, with the
//	        matching lines on stderr; nothing reaches the kernel
const faultNFT = `#!/bin/sh
ctl=$1; ns=$2; shift 2
if [ "$*" != "-f -" ]; then exec ip netns exec "$ns" nft "$@"; fi
now() { date +%s.%N; }
if [ -s "$ctl/applying" ]; then
	read -r old oldagent < "$ctl/applying"
	if kill -0 "$old" 2>/dev/null && grep -q fault-nft "/proc/$old/cmdline" 2>/dev/null; then
		if [ "$oldagent" = "$PPID" ]; then
			echo "$(now) apply $$ of agent $PPID overlaps apply $old of the same agent" >> "$ctl/overlaps"
		else
			echo "$(now) apply $$ of agent $PPID overlaps apply $old of agent $oldagent, which is gone" >> "$ctl/orphans"
		fi
	fi
fi
echo "$$ $PPID" > "$ctl/applying"
echo "$(now) begin $$" >> "$ctl/log"
script=$(mktemp "$ctl/script.XXXXXX")
cat > "$script"
if [ -f "$ctl/hang" ]; then sleep 3600; fi
if [ -f "$ctl/delay" ]; then sleep "$(cat "$ctl/delay")"; fi
if [ -f "$ctl/reject" ] && grep -qF "$(cat "$ctl/reject")" "$script"; then
	echo "Error: Could not process rule: Operation not supported (fault test: refusing the part that names $(cat "$ctl/reject"))" >&2
	grep -F "$(cat "$ctl/reject")" "$script" | head -n 3 >&2
	rc=1
else
	ip netns exec "$ns" nft -f - < "$script"; rc=$?
fi
rm -f "$script" "$ctl/applying"
echo "$(now) end $$ $rc" >> "$ctl/log"
exit $rc
`

// writeFaultNFT writes the wrapper into dir and returns its path and its control directory.
func writeFaultNFT(dir string) (script, ctl string, err error) {
	script = filepath.Join(dir, "fault-nft.sh")
	ctl = filepath.Join(dir, "ctl")
	if err := os.MkdirAll(ctl, 0o755); err != nil {
		return "", "", err
	}
	return script, ctl, os.WriteFile(script, []byte(faultNFT), 0o755)
}

// applyBegins counts the applies the wrapper has begun.
func applyBegins(ctl string) int {
	b, _ := os.ReadFile(filepath.Join(ctl, "log"))
	return strings.Count(string(b), " begin ")
}

// wrapperLog returns the lines of the wrapper's log written in [from, to], their times in UTC.
func wrapperLog(ctl string, from, to time.Time) string {
	b, _ := os.ReadFile(filepath.Join(ctl, "log"))
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, int64(sec*1e9))
		if !at.Before(from) && !at.After(to) {
			out = append(out, at.UTC().Format("15:04:05.000")+" "+strings.Join(f[1:], " "))
		}
	}
	return strings.Join(out, "\n")
}

// cpuTicks returns a process's user plus system time in clock ticks (USER_HZ, 100 per second on
// Linux), its waited-for children's included.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, errors.New("short /proc stat")
	}
	var sum int64
	for _, k := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// apiProxy is a TCP proxy between an agent and the API server, on loopback, that the test can
// take down (listener and every connection closed: what a client sees when the server process
// stops) or turn into a black hole (connections stay open, new ones are accepted, but no byte
// moves in either direction: a server or path that hangs), and bring back.
type apiProxy struct {
	target, addr string

	mu     sync.Mutex
	cond   *sync.Cond
	ln     net.Listener
	mode   string // "pass", "down", "blackhole"
	closed bool
	conns  map[net.Conn]struct{}
}

func startAPIProxy(target string) (*apiProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &apiProxy{target: target, addr: ln.Addr().String(), ln: ln, mode: "pass", conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept(ln)
	return p, nil
}

func (p *apiProxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *apiProxy) handle(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.closed || p.mode == "down" {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go p.pipe(up, c)
	p.pipe(c, up)
}

func (p *apiProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.mode == "blackhole" && !p.closed {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

// Down closes the listener and every connection.
func (p *apiProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = "down"
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
}

// Blackhole stops every byte, on open connections and new ones.
func (p *apiProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = "blackhole"
}

// Up forwards again (listening again on the same address after Down); data held by a black hole
// is delivered.
func (p *apiProxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == "down" {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return err
		}
		p.ln = ln
		go p.accept(ln)
	}
	p.mode = "pass"
	p.cond.Broadcast()
	return nil
}

// Close ends the proxy and its connections.
func (p *apiProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
}
