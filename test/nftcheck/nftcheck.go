// Package nftcheck gives tests an nft client that checks scripts (`nft -c -f -`) in a network
// namespace of its own: `unshare --net nft`, whose namespace ends with the nft process, so nothing
// is left behind and the host's ruleset is never consulted. Test code only.
package nftcheck

import (
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// Client returns the checking client, or nil when this machine cannot run nft (not root, no
// nft), which tb logs; with FLOCK_REQUIRE_KERNEL_TESTS set that fails tb instead.
func Client(tb testing.TB) *nft.Client {
	tb.Helper()
	if err := testenv.CheckKernel(); err != nil {
		if testenv.Required() {
			tb.Fatalf("nft check: %v [FLOCK_REQUIRE_KERNEL_TESTS is set]", err)
		}
		tb.Logf("nft check: skipped, needs root and nft: %v", err)
		return nil
	}
	c, err := nft.New(nft.Config{Command: []string{"unshare", "--net", "nft"}, Timeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
