//go:build !linux

package nft

import (
	"context"
	"errors"
)

// NetlinkMonitor reports the changes to a namespace's nftables ruleset; only on Linux.
type NetlinkMonitor struct {
	NetNS int
}

// Monitor fails: nftables is Linux's.
func (NetlinkMonitor) Monitor(context.Context, func(string)) error {
	return errors.New("monitoring nftables needs Linux")
}
