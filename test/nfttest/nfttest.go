// Package nfttest gives kernel tests a throwaway network namespace to program nftables in, so the
// host's own ruleset is never touched.
package nfttest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flock-net/flock-netpol/test/testenv"
)

// Kernel tests program real nftables, always inside a throwaway network namespace so the host's
// own ruleset is never touched. They need root plus the nft and ip binaries and skip otherwise.
// Set FLOCK_REQUIRE_KERNEL_TESTS=1 (as CI should) to turn a skip into a failure, so a broken CI
// setup cannot silently stop running them.

const skipReason = "kernel test: needs root and the nft binary (run as root in CI)"

// NewNetns creates a fresh network namespace named flocktest-<random>, deletes it when the
// test ends, and returns its name. It skips the test when the environment cannot run kernel tests.
func NewNetns(t testing.TB) string {
	t.Helper()
	skip := func(why string) {
		t.Helper()
		if testenv.Required() {
			t.Fatalf("%s: %s (FLOCK_REQUIRE_KERNEL_TESTS is set)", skipReason, why)
		}
		t.Skipf("%s: %s", skipReason, why)
	}
	if os.Geteuid() != 0 {
		skip("not running as root")
	}
	for _, bin := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			skip(bin + " not found in $PATH")
		}
	}

	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	name := "flocktest-" + hex.EncodeToString(suffix[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		skip("cannot create a network namespace: " + strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("deleting network namespace %s: %v: %s", name, err, out)
		}
	})

	// A new namespace starts with an empty ruleset; anything else means we are not where we
	// think we are, and must not go on programming.
	out, err := exec.Command("ip", "netns", "exec", name, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v: %s", name, err, out)
	}
	if strings.TrimSpace(string(out)) != "" {
		t.Fatalf("fresh namespace %s has a non-empty ruleset:\n%s", name, out)
	}
	return name
}
