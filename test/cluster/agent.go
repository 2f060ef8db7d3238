//go:build linux

package cluster

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// agent is one `flock-netpol run` process.
type agent struct {
	node    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	health  string // host:port of /healthz and /readyz
	exited  chan struct{}
	once    sync.Once
	stopErr error       // what stop found, once it ran
	stopped atomic.Bool // stopped by stop (StopAgent or the cluster's end), not exited by itself
}

// stopGrace is how long an agent may take to exit after SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// The agents' closed-edge settings, passed as flags and used by Expected to compute what they
// enforce. A Node the harness creates has no spec.podCIDRs, so nothing is closed on it, unless
// Options.PodCIDRs gives them.
const (
	agentAntiSpoofing = true
	agentCloseUnknown = true
)

// startAgent starts a new agent for node n with the cluster's binary and flags and the given
// kubeconfig, and makes it n's current agent. It logs to <dir>/agent-<node>.log, and the agents
// StartAgent starts later to agent-<node>.<run>.log. It does not wait for readiness.
func (c *Cluster) startAgent(n *Node, kubeconfig string, extra ...string) (*agent, error) {
	health, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	n.runs++
	logName := "agent-" + n.Name + ".log"
	if n.runs > 1 {
		logName = fmt.Sprintf("agent-%s.%d.log", n.Name, n.runs)
	}
	a := &agent{
		node:    n.Name,
		logPath: filepath.Join(c.Dir, logName),
		health:  health,
		exited:  make(chan struct{}),
	}
	a.logFile, err = os.Create(a.logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"run",
		"--kubeconfig", kubeconfig,
		"--node-name", n.Name,
		"--nft", "ip netns exec " + n.NS.Namespace() + " nft",
		// What the agent reads over netlink (counters, drop logs, the drift monitor) is read in
		// the node's namespace too, never in the host's.
		"--netns", "/var/run/netns/" + n.NS.Namespace(),
		"--health-probe-bind-address", health,
		"--metrics-bind-address", "0",
		"--zap-devel",
		"--anti-spoofing=" + strconv.FormatBool(agentAntiSpoofing),
		"--close-unknown-pod-addresses=" + strconv.FormatBool(agentCloseUnknown),
	}
	args = append(append(args, c.agentArgs...), extra...)
	a.cmd = exec.Command(c.binary, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.logFile, a.logFile
	// Should this process die without stopping the agent (SIGKILL, a crash), the kernel kills the
	// agent. The signal is tied to the thread that forks, hence the dedicated thread.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(a.cmd); err != nil {
		a.logFile.Close()
		return nil, fmt.Errorf("starting the agent of %s: %w", n.Name, err)
	}
	n.agent.Store(a)
	go func() {
		_ = a.cmd.Wait()
		a.logFile.Close()
		close(a.exited)
	}()
	return a, nil
}

// The spawner thread forks every agent and lives as long as the process, so that the agents'
// parent death signal fires only when the process ends (a Go thread that exits is usually one
// whose goroutine died locked, which would otherwise kill agents at a random moment).
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread stays with this goroutine
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if dying.Load() {
		return errInterrupted
	}
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawner.reqs <- r
	return <-r.done
}

// freeLoopbackAddr returns 127.0.0.1:<a port that was free a moment ago>.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// waitReady polls /readyz until it answers 200, the agent exits, or the deadline passes.
func (a *agent) waitReady(deadline time.Time) error {
	hc := http.Client{Timeout: time.Second}
	var last string
	for {
		select {
		case <-a.exited:
			return fmt.Errorf("exited before becoming ready: %v", a.cmd.ProcessState)
		default:
		}
		resp, err := hc.Get("http://" + a.health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz on %s not OK in time (last: %s)", a.health, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits up to stopGrace, then kills. It returns an error when the agent had
// already exited, did not exit within stopGrace, or exited with a failure. Idempotent: later
// calls return the first call's result.
func (a *agent) stop() error {
	a.once.Do(func() {
		select {
		case <-a.exited:
			a.stopErr = fmt.Errorf("the agent of %s had already exited (%v)", a.node, a.cmd.ProcessState)
			return
		default:
		}
		a.stopped.Store(true)
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
			if !a.cmd.ProcessState.Success() {
				a.stopErr = fmt.Errorf("the agent of %s exited with %v after SIGTERM", a.node, a.cmd.ProcessState)
			}
		case <-time.After(stopGrace):
			_ = a.cmd.Process.Kill()
			<-a.exited
			a.stopErr = fmt.Errorf("the agent of %s did not exit within %v of SIGTERM: killed", a.node, stopGrace)
		}
	})
	return a.stopErr
}

// kill sends SIGKILL without waiting, for the signal handler.
func (a *agent) kill() {
	select {
	case <-a.exited:
	default:
		_ = a.cmd.Process.Kill()
	}
}

// running reports whether the agent process is still alive (false for nil).
func (a *agent) running() bool {
	if a == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// tail returns the last n lines of the agent's log.
func (a *agent) tail(n int) string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return string(bytes.TrimRight([]byte(strings.Join(lines, "\n")), "\n"))
}
