package droplog

// The kinds Run passes to its stats function, with their number, for the agent's counters.
const (
	// StatDrop and StatAudit: a logged packet, dropped or (audit) accepted.
	StatDrop  = "drop"
	StatAudit = "audit"
	// StatLost: one logged packet that never reached the reader, because the socket's receive
	// buffer was full. Counted from the gaps in the kernel's sequence numbers, so when the next
	// message arrives.
	StatLost = "lost"
	// StatOverrun: the kernel reported (ENOBUFS) that it dropped messages for a full receive
	// buffer; one or more StatLost follow with the next message that gets through.
	StatOverrun = "overrun"
	// StatUnparsed: a message for the group that Parse cannot read: an unknown prefix (another
	// program logging to the group), a truncated or non-IP packet, a malformed message.
	StatUnparsed = "unparsed"
)
