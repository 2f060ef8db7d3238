package nft

// Counter is the state of one named counter (see NetlinkCounters).
type Counter struct {
	Packets, Bytes uint64
}
