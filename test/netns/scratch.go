package netns

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/flock-net/flock-netpol/test/testenv"
)

// ErrUnavailable is wrapped by the errors of New and Scratch when this machine cannot host network
// namespaces or nftables in them (not root, no `ip` or `nft`, namespaces or nf_tables not
// available), as opposed to a failure of the code under test. The testing.TB forms (NewBed,
// NewScratch) skip the test on it, or fail it when FLOCK_REQUIRE_KERNEL_TESTS is set; programs
// report it and stop.
var ErrUnavailable = errors.New("this machine cannot run network-namespace tests")

func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}

// NewScratch is Scratch for tests and benchmarks: it deletes the namespace when tb ends (an error
// deleting it fails tb), skips tb when the machine cannot run it (fails it when
// FLOCK_REQUIRE_KERNEL_TESTS is set), and fails it on any other error.
func NewScratch(tb testing.TB) string {
	tb.Helper()
	name, cleanup, err := Scratch()
	if errors.Is(err, ErrUnavailable) {
		testenv.Strict(tb).Skipf("kernel test: skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := cleanup(); err != nil {
			tb.Errorf("netns: %v", err)
		}
	})
	return name
}

// OpenFD opens the named namespace's file for netlink sockets in it (as the agent's --netns does)
// and closes it when tb ends.
func OpenFD(tb testing.TB, name string) int {
	tb.Helper()
	f, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return int(f.Fd())
}
