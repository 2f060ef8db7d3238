package cli

import (
	"strings"
	"testing"
)

// TestCleanupNamesTheFlagWhenNftIsMissing pins that the CLI, not package nft, points at --nft when
// the nft command cannot be executed.
func TestCleanupNamesTheFlagWhenNftIsMissing(t *testing.T) {
	code, _, stderr := runCLI("", "cleanup", "--nft", "flocktest-no-such-nft")
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	for _, want := range []string{`nft command "flocktest-no-such-nft" not found`, "install the nftables package, or pass --nft"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}
