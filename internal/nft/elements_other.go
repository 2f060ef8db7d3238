//go:build !linux

package nft

import (
	"context"
	"errors"
)

// NetlinkElements changes a table's set elements over netlink; only on Linux.
type NetlinkElements struct {
	NetNS int
}

// UpdateElements fails: nftables is Linux's.
func (*NetlinkElements) UpdateElements(context.Context, string, string, []SetChange) error {
	return errors.New("updating nftables elements needs Linux")
}

// Close does nothing.
func (*NetlinkElements) Close() error { return nil }
