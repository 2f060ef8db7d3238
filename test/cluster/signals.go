//go:build linux

package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Cleanup when the process does not end normally.
//
// t.Cleanup does not run when the process is killed by a signal. For SIGINT and SIGTERM (Ctrl-C,
// a CI timeout that terminates politely) a process-wide handler ends what the clusters of this
// process started, by PID: the agents (which get a terminal's SIGINT themselves anyway, being in
// our process group), the agent build, and kube-apiserver and etcd (which envtest starts in
// process groups of their own, out of reach of the terminal's signal). Then it removes the
// clusters' directories. test/netns has its own handler, which deletes the namespaces and then
// re-raises the signal to end the process; when no bed was ever created, this handler ends the
// process itself.
//
// Two handlers race, and the process may also die from SIGKILL or a `go test -timeout` panic. So
// every cluster also records, in a file beside its directory (<dir>.owner), who owns it (PID and start
// time) and the envtest processes and directories it started; Start sweeps the records of owners
// that are gone: it kills their kube-apiserver and etcd (by PID, checked against the recorded
// start time and name) and removes their directories. Agents need no record: they die with their
// parent (parent death signal).

const dirPrefix = "flock-cluster-"

var live struct {
	sync.Mutex
	clusters map[*Cluster]struct{}
	install  sync.Once
}

// bedStarted is set once any cluster of this process created a test/netns bed, i.e. once
// test/netns's signal handler is (about to be) installed.
var bedStarted atomic.Bool

// dying is set once a SIGINT or SIGTERM arrived: Start and agent spawns refuse to go on.
var dying atomic.Bool

var errInterrupted = errors.New("interrupted (SIGINT or SIGTERM): not starting anything")

func registerLive(c *Cluster) {
	live.install.Do(installSignalHandler)
	live.Lock()
	defer live.Unlock()
	if live.clusters == nil {
		live.clusters = map[*Cluster]struct{}{}
	}
	live.clusters[c] = struct{}{}
}

func unregisterLive(c *Cluster) {
	live.Lock()
	defer live.Unlock()
	delete(live.clusters, c)
}

func liveClusters() []*Cluster {
	live.Lock()
	defer live.Unlock()
	out := make([]*Cluster, 0, len(live.clusters))
	for c := range live.clusters {
		out = append(out, c)
	}
	return out
}

func installSignalHandler() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		dying.Store(true)
		// The interrupted code goes on running meanwhile (envtest may be starting etcd or
		// kube-apiserver right now), so the sweep repeats until the process is gone.
		sweep := func() {
			clusters := liveClusters()
			// Signals first (quick), file system last.
			for _, c := range clusters {
				c.killProcesses()
			}
			killHelpers()
			killEnvtestChildren()
			for _, c := range clusters {
				c.removeDirs()
			}
		}
		sweep()
		fmt.Fprintf(os.Stderr, "cluster: %v: stopped the agents and the control plane\n", sig)
		if bedStarted.Load() {
			// test/netns's handler ends the process once the namespaces are gone; the exit
			// here is only the backstop should it not.
			for range 45 * 50 {
				time.Sleep(20 * time.Millisecond)
				sweep()
			}
			os.Exit(1)
		}
		for range 10 {
			time.Sleep(20 * time.Millisecond)
			sweep()
		}
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if s, ok := sig.(syscall.Signal); ok {
			_ = syscall.Kill(os.Getpid(), s)
		}
		// Still here: the signal is ignored (as for background jobs of a non-interactive shell).
		for range 25 {
			time.Sleep(20 * time.Millisecond)
			sweep()
		}
		os.Exit(1)
	}()
}

// proc identifies a process across PID reuse.
type proc struct {
	pid   int
	start string // field 22 of /proc/<pid>/stat
}

func (p proc) alive() bool { return p.start != "" && procStart(p.pid) == p.start }

// killProcesses kills, by PID, the agents and the recorded envtest processes of c.
func (c *Cluster) killProcesses() {
	for _, n := range c.nodes {
		if a := n.agent.Load(); a != nil {
			a.kill()
		}
	}
	c.mu.Lock()
	ps := c.envtestProcs
	c.mu.Unlock()
	for _, p := range ps {
		if p.alive() {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

// removeDirs removes the cluster's directories, retrying briefly: a process killed a moment ago
// (etcd) may still be writing into one.
func (c *Cluster) removeDirs() {
	if c.Dir == "" {
		return
	}
	c.mu.Lock()
	dirs := append(append([]string(nil), c.extraDirs...), c.Dir)
	c.mu.Unlock()
	for _, d := range dirs {
		for range 20 {
			if os.RemoveAll(d) == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The record goes last: should the process die half-way, SweepStale finishes the job.
	_ = os.Remove(ownerPath(c.Dir))
}

// ownerPath is the owner record of a cluster directory: beside it, not in it, so that it outlives
// a removal of the directory cut short.
func ownerPath(dir string) string { return dir + ".owner" }

// writeOwner (re)writes the owner record of c's directory.
func (c *Cluster) writeOwner() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	self := proc{os.Getpid(), procStart(os.Getpid())}
	var sb strings.Builder
	fmt.Fprintf(&sb, "owner %d %s\n", self.pid, self.start)
	for _, p := range c.envtestProcs {
		fmt.Fprintf(&sb, "child %d %s\n", p.pid, p.start)
	}
	for _, d := range c.extraDirs {
		fmt.Fprintf(&sb, "dir %s\n", d)
	}
	return os.WriteFile(ownerPath(c.Dir), []byte(sb.String()), 0o600)
}

// recordEnvtest records the running envtest processes (our children named kube-apiserver or etcd)
// and envtest's serving-certificate directory, in memory and in the owner record.
func (c *Cluster) recordEnvtest() error {
	ps := envtestChildren()
	c.mu.Lock()
	c.envtestProcs = ps
	if d := c.env.WebhookInstallOptions.LocalServingCertDir; d != "" {
		c.extraDirs = append(c.extraDirs, d)
	}
	c.mu.Unlock()
	return c.writeOwner()
}

// SweepStale removes what clusters of processes that are gone left behind: it kills their
// kube-apiserver and etcd processes (by PID, when still the same process) and removes their
// directories. Directories of running processes are never touched. Start calls it.
func SweepStale() ([]string, error) {
	records, err := filepath.Glob(ownerPath(filepath.Join(os.TempDir(), dirPrefix+"*")))
	if err != nil {
		return nil, err
	}
	var swept []string
	var errs []error
	for _, record := range records {
		dir := strings.TrimSuffix(record, ".owner")
		b, err := os.ReadFile(record)
		if err != nil {
			continue
		}
		var owner proc
		var children []proc
		var extra []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && (f[0] == "owner" || f[0] == "child"):
				pid, err := strconv.Atoi(f[1])
				if err != nil {
					continue
				}
				if f[0] == "owner" {
					owner = proc{pid, f[2]}
				} else {
					children = append(children, proc{pid, f[2]})
				}
			case len(f) == 2 && f[0] == "dir" && strings.HasPrefix(filepath.Base(f[1]), "envtest-serving-certs-"):
				extra = append(extra, f[1])
			}
		}
		if owner.pid == 0 || owner.alive() {
			continue
		}
		for _, p := range children {
			if p.alive() && isEnvtestBinary(p.pid) {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
				swept = append(swept, fmt.Sprintf("process %d", p.pid))
			}
		}
		failed := false
		for _, d := range append(extra, dir) {
			if _, err := os.Stat(d); err != nil {
				continue
			}
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
				failed = true
			} else {
				swept = append(swept, d)
			}
		}
		if !failed {
			_ = os.Remove(record)
		}
	}
	return swept, errors.Join(errs...)
}

// Helper processes (the agent build) run in process groups of their own.
var helpers struct {
	sync.Mutex
	cmds map[*exec.Cmd]struct{}
}

// startHelper starts cmd (which must have Setpgid) and registers it for the signal handler.
func startHelper(cmd *exec.Cmd) error {
	helpers.Lock()
	defer helpers.Unlock()
	if dying.Load() {
		return errInterrupted
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	if helpers.cmds == nil {
		helpers.cmds = map[*exec.Cmd]struct{}{}
	}
	helpers.cmds[cmd] = struct{}{}
	return nil
}

// helperDone unregisters a helper after its Wait returned.
func helperDone(cmd *exec.Cmd) {
	helpers.Lock()
	defer helpers.Unlock()
	delete(helpers.cmds, cmd)
}

// killHelpers kills the process group of every running helper.
func killHelpers() {
	helpers.Lock()
	defer helpers.Unlock()
	for cmd := range helpers.cmds {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// envtestChildren lists the child processes of this process that run kube-apiserver or etcd.
func envtestChildren() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentPID(pid) != self || !isEnvtestBinary(pid) {
			continue
		}
		if start := procStart(pid); start != "" {
			out = append(out, proc{pid, start})
		}
	}
	return out
}

// killEnvtestChildren kills our kube-apiserver and etcd children, including ones that envtest is
// starting right now and that no record names yet.
func killEnvtestChildren() {
	for _, p := range envtestChildren() {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

func isEnvtestBinary(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	base := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	return base == "kube-apiserver" || base == "etcd"
}

// statFields returns the fields of /proc/<pid>/stat after the command name (field 3 onwards).
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// parentPID returns field 4 of /proc/<pid>/stat, or -1.
func parentPID(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

// procStart returns field 22 (start time since boot) of /proc/<pid>/stat, or "" when the process
// does not exist or is a zombie.
func procStart(pid int) string {
	f := statFields(pid)
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}
