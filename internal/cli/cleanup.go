package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
)

func runCleanup(ctx context.Context, args []string, stdio IO) int {
	fs := newFlagSet("cleanup", "[--table NAME] [--nft COMMAND]",
		"Deletes the agent's nft table, and with it every rule the agent installed. Run it on each\n"+
			"node after removing the DaemonSet: the agent itself never removes its rules, so that\n"+
			"pods stay protected across restarts and upgrades. Deleting a missing table succeeds.",
		stdio.Stderr)
	table := fs.String("table", render.DefaultTable, "name of the agent's nft table (family inet)")
	nftCmd := fs.String("nft", "nft", "the nft command, split on spaces (e.g. \"ip netns exec node1 nft\")")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if err := render.ValidateTableName(*table); err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol cleanup: --table: %v\n", err)
		return 2
	}
	client, err := newNFT(*nftCmd, nft.DefaultTimeout)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol cleanup: %v\n", err)
		return 2
	}
	if err := client.Apply(ctx, render.DeleteTable(*table)); err != nil {
		fmt.Fprintf(stdio.Stderr, "flock-netpol cleanup: deleting table inet %s: %v\n", *table, withNFTFlagHint(err))
		return 1
	}
	fmt.Fprintf(stdio.Stderr, "deleted table inet %s\n", *table)
	return 0
}

// withNFTFlagHint adds to a missing-nft error the flag that names another command: the nft
// package knows nothing of flags.
func withNFTFlagHint(err error) error {
	if nft.IsCommandNotFound(err) {
		return fmt.Errorf("%w, or pass --nft with the command that runs it", err)
	}
	return err
}

func newNFT(command string, timeout time.Duration) (*nft.Client, error) {
	argv, err := nft.ParseCommand(command)
	if err != nil {
		return nil, fmt.Errorf("--nft: %w", err)
	}
	return nft.New(nft.Config{Command: argv, Timeout: timeout})
}
