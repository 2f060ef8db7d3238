//go:build linux

package netns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces. iproute2 uses /var/run/netns (on
// current systems a symlink to /run/netns); we open the same path so that names mean the same thing
// to `ip` and to the in-process code.
const netnsDir = "/var/run/netns"

// run is the package's only door to external processes: it runs argv[0] with argv[1:], feeding
// stdin if non-empty, and returns combined output. Errors carry the command line and output, so a
// failing topology step explains itself in the test log without extra context.
func run(stdin string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if stdin != "" {
			msg += "\n--- stdin ---\n" + strings.TrimRight(stdin, "\n")
		}
		return out.String(), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, msg)
	}
	return out.String(), nil
}

// ipBatch runs several iproute2 commands (one per line, without the leading "ip") inside namespace
// ns with a single `ip -n ns -batch -` process. Batching keeps topology setup fast (one fork per
// step instead of one per command); `ip` stops at the first failing line and names it.
func ipBatch(ns string, lines ...string) error {
	if len(lines) == 0 {
		return nil
	}
	_, err := run(strings.Join(lines, "\n")+"\n", "ip", "-n", ns, "-batch", "-")
	return err
}

// waitLinksUp waits until the named links in namespace ns are operationally up with their real
// qdisc attached. `ip link set up` returns before that: the kernel applies carrier changes later
// from its shared "linkwatch" worker, and until then the device transmits into the noop qdisc,
// which drops everything. A first ARP/ND request lost that way delays the first flows by the
// one-second neighbour retransmit time, which a probe would report as "blocked". Under load (many
// namespaces being created or destroyed elsewhere on the machine) the window is long enough to
// matter, so setup waits it out here.
func waitLinksUp(ns string, links ...string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := run("", "ip", "-n", ns, "-o", "link", "show")
		if err != nil {
			return err
		}
		pending := ""
		for _, l := range links {
			ok := false
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) > 1 && strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0] == l {
					ok = strings.Contains(line, " state UP ") && !strings.Contains(line, " qdisc noop ")
					break
				}
			}
			if !ok {
				pending = l
				break
			}
		}
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: %s: link %s not up after 10s:\n%s", ns, pending, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Do runs fn on an OS thread that has been switched into the named network namespace (a name as
// listed by `ip netns list`), and returns fn's error. A panic in fn is re-raised in the caller.
//
// Sockets keep the namespace they were created in, so fn may create listeners or connections and
// hand them back; they can then be used from any goroutine. Anything else fn starts (goroutines,
// processes via os/exec) does NOT reliably inherit the namespace: other goroutines run on other
// threads, and os/exec may fork from a different thread.
//
// fn runs on a fresh goroutine locked to its thread. Afterwards the thread is switched back to the
// namespace it came from and only then unlocked, so it can safely serve other goroutines again. If
// switching back fails, the thread stays locked: the goroutine then exits locked and the Go runtime
// terminates the thread instead of reusing it, so no goroutine ever runs in a foreign namespace by
// accident.
func Do(ns string, fn func() error) error {
	type outcome struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		var o outcome
		defer func() { done <- o }()
		// Where this thread belongs. /proc/thread-self, not /proc/self: namespaces are per thread.
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			o.err = fmt.Errorf("netns: open own namespace: %w", err)
			runtime.UnlockOSThread() // still in its own namespace: safe to reuse
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			o.err = fmt.Errorf("netns: open namespace %q: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			// Setns is all-or-nothing, but stay locked anyway: the thread is then discarded.
			o.err = fmt.Errorf("netns: setns into %q: %w", ns, err)
			return
		}
		defer func() {
			// Runs before done is sent, also when fn panics.
			if r := recover(); r != nil {
				o = outcome{panicked: true, panicVal: r}
			}
			if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		o.err = fn()
	}()
	o := <-done
	if o.panicked {
		panic(o.panicVal)
	}
	return o.err
}

// sysctl is one /proc/sys/net entry, e.g. {"ipv4/ip_forward", "1"}.
type sysctl struct{ key, val string }

// setSysctls writes the given net.* sysctls inside namespace ns. /proc/sys/net resolves against the
// network namespace of the thread that opens the file, so this works in-process via Do without
// spawning `ip netns exec ns sysctl`.
func setSysctls(ns string, kv []sysctl) error {
	return Do(ns, func() error {
		for _, s := range kv {
			p := "/proc/sys/net/" + s.key
			if err := os.WriteFile(p, []byte(s.val), 0o644); err != nil {
				return fmt.Errorf("netns: %s: sysctl %s=%s: %w", ns, s.key, s.val, err)
			}
		}
		return nil
	})
}
