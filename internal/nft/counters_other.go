//go:build !linux

package nft

import (
	"context"
	"errors"
)

// NetlinkCounters reads a table's named counters over netlink; only on Linux.
type NetlinkCounters struct {
	NetNS int
}

// Counters fails: nftables is Linux's.
func (NetlinkCounters) Counters(context.Context, string, string) (map[string]Counter, error) {
	return nil, errors.New("reading nftables counters needs Linux")
}
