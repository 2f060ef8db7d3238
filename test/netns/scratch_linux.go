//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/flock-net/flock-netpol/test/testenv"
)

// Add creates the named network namespace (`ip netns add`): the one place of the repository that
// creates one. Prefer Scratch or New, which pick unique names, record the owner for SweepStale and
// clean up; Add is for tests that need a given name (such as faking a dead process's leftovers).
func Add(name string) error {
	_, err := run("", "ip", "netns", "add", name)
	return err
}

// Delete deletes the named network namespaces, in the order given, and returns an error naming those
// that still exist afterwards (a name that never existed is not an error).
func Delete(names ...string) error {
	if len(names) == 0 {
		return nil
	}
	var script strings.Builder
	for _, ns := range names {
		fmt.Fprintf(&script, "netns del %s\n", ns)
	}
	// -force: keep going past a namespace that is gone already, or whose creation had failed.
	_, _ = run(script.String(), "ip", "-force", "-batch", "-")
	var errs []error
	for _, ns := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
			errs = append(errs, fmt.Errorf("namespace %s still exists after `ip netns del`", ns))
		}
	}
	return errors.Join(errs...)
}

// scratchSuffix ends the name of every scratch namespace: "fnp-<6 random chars>-scratch".
const scratchSuffix = "scratch"

var scratchSweep sync.Once

// Scratch creates a throwaway network namespace with an empty nftables ruleset, for programming
// nftables without touching the host's: a kernel test, or one agent under test
// (`--nft "ip netns exec NAME nft"`). It returns the namespace's name, fnp-<random>-scratch, and
// cleanup, which deletes it; the caller must run cleanup (t.Cleanup, Ginkgo's DeferCleanup, defer).
//
// The namespace records its owner (pid, start time) in the alias of its loopback link, so
// SweepStale deletes it should the process die before cleanup runs (SIGKILL, Ctrl-C, an expiring
// `go test -timeout`); the first Scratch of a process runs SweepStale. Scratch installs no signal
// handler: Ginkgo handles interrupts itself and runs DeferCleanup.
//
// It needs root, `ip` and `nft` (testenv.CheckKernel); when those are missing, or the namespace
// cannot be created, or nft does not work in it, the error wraps ErrUnavailable. A namespace whose
// ruleset is not empty is an error of its own: nothing may be programmed there.
func Scratch() (name string, cleanup func() error, err error) {
	if err := testenv.CheckKernel(); err != nil {
		return "", nil, unavailable("%v", err)
	}
	scratchSweep.Do(func() { _, _ = SweepStale() })
	name = "fnp-" + randString(6) + "-" + scratchSuffix
	cleanup = func() error { return Delete(name) }
	if err := Add(name); err != nil {
		_ = cleanup()
		return "", nil, unavailable("cannot create a network namespace: %v", err)
	}
	// Quoted: ip batch lines are split on blanks.
	if err := ipBatch(name, fmt.Sprintf("link set lo alias %q", ownerTag())); err != nil {
		_ = cleanup()
		return "", nil, fmt.Errorf("netns: %s: recording the owner: %w", name, err)
	}
	out, err := exec.Command("ip", "netns", "exec", name, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		_ = cleanup()
		return "", nil, unavailable("nft does not work inside a network namespace (no nf_tables in this kernel?): %v: %s", err, strings.TrimSpace(string(out)))
	}
	// A new namespace starts with an empty ruleset; anything else means we are not where we
	// think we are, and must not go on programming.
	if strings.TrimSpace(string(out)) != "" {
		_ = cleanup()
		return "", nil, fmt.Errorf("netns: fresh namespace %s has a non-empty ruleset:\n%s", name, out)
	}
	return name, cleanup, nil
}
