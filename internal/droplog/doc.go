// Package droplog turns the kernel's NFLOG messages for denied connections into one structured
// log line per logged packet.
//
// The renderer ends the chain of a pod isolated in a direction with a log statement that sends,
// rate limited and once per connection tuple, the first bytes of the first denied packet to an
// NFLOG group (default 100) under one of four prefixes (PrefixDropIngress, PrefixDropEgress,
// PrefixAuditIngress, PrefixAuditEgress). Parse decodes such a packet (a pure function, fuzzed);
// Event.Log writes it; Reader binds the group and feeds every message through both.
//
// Library: NFLOG is a subsystem of nfnetlink, spoken here with github.com/ti-mo/netfilter, the
// maintained nfnetlink library over github.com/mdlayher/netlink that github.com/ti-mo/conntrack is
// built on: it gives typed nfnetlink framing (the nfgenmsg header, big-endian attributes), and the
// socket underneath comes with deadlines, network namespaces and errnos. The usual NFLOG library,
// github.com/florianl/go-nflog, is not available from our module proxy; the NFLOG protocol itself
// is the few constants and two messages of nflog.go. The bind goes through netlink.Conn.Send rather
// than netfilter.Conn.Query, which fails when a log message reaches the socket before the ACK (as
// one can on a busy node, once the group is bound).
//
// Memory stays bounded under a burst: messages are handled one read at a time, straight from a
// socket with a fixed 1 MiB receive buffer, and when the kernel finds that buffer full it drops
// the message and says so (ENOBUFS), which the reader counts and reads past. The kernel's
// per-group sequence numbers tell how many packets were lost.
package droplog
