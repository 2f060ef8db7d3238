//go:build linux

package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// NetlinkMonitor reports every change committed to the nftables ruleset of a network namespace,
// like `nft monitor`, by reading the kernel's notifications (the NFNLGRP_NFTABLES multicast group)
// itself. NetNS is the file descriptor of the namespace (an open /var/run/netns/NAME or
// /proc/PID/ns/net; 0: the caller's). It needs CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter another
// namespace.
//
// It exists because nft 1.0.6's monitor cannot print an element of a set whose key is a
// concatenation with intervals (our table held such sets until issue 17, and another table may):
// it reads garbage, then crashes or fails with "Memory allocation failure", so a monitor that
// runs `nft monitor` died after most applies.
// This one decodes only what drift detection needs: of an element, its comment, never its key or
// data.
type NetlinkMonitor struct {
	NetNS int
}

// monitorReadBuffer is the socket's receive buffer. A transaction of 100,000 elements makes as
// many notifications, queued faster than any reader takes them; 16 MiB is what nft asks for too
// (NFTABLES_NLEVENT_BUFSIZ), so this loses events no sooner than `nft monitor` did. The memory is
// only taken while notifications wait.
const monitorReadBuffer = 16 << 20

// Lines about the monitor rather than a change: the first as nft prints it, the second ours.
const (
	lostEventsLine = "# ERROR: We lost some netlink events!"
	undecodedLine  = "# ERROR: undecodable nftables event: "
)

// Monitor hands line one line per change, in the text of `nft monitor`, until ctx ends (then it
// returns nil) or reading fails. See monitorDecoder for the lines. When the socket's buffer
// overflows, the lost notifications are reported with the line nft prints for them, "# ERROR: We
// lost some netlink events!", and monitoring goes on.
func (m NetlinkMonitor) Monitor(ctx context.Context, line func(string)) error {
	return m.monitor(ctx, line, monitorReadBuffer)
}

// monitor is Monitor with a receive buffer of readBuffer bytes: tests make it small, to overrun.
func (m NetlinkMonitor) monitor(ctx context.Context, line func(string), readBuffer int) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: m.NetNS})
	if err != nil {
		return fmt.Errorf("nftables monitor: opening a netfilter netlink socket: %w", err)
	}
	defer func() { _ = conn.Close() }()
	if err := SetReadBuffer(conn, readBuffer); err != nil {
		return fmt.Errorf("nftables monitor: setting the receive buffer to %d bytes: %w", readBuffer, err)
	}
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("nftables monitor: joining the nftables multicast group (this needs CAP_NET_ADMIN): %w", err)
	}

	// A read blocks in the kernel; a deadline in the past wakes it when ctx ends.
	stop, woken := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(woken)
		select {
		case <-ctx.Done():
			_ = conn.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	defer func() { close(stop); <-woken }() // before Close: nothing touches a closed socket

	d := newMonitorDecoder()
	for {
		msgs, err := conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, syscall.ENOBUFS) {
			// The kernel dropped notifications for a full buffer; the socket itself is fine.
			line(lostEventsLine)
			continue
		}
		if err != nil {
			return fmt.Errorf("nftables monitor: reading notifications: %w", err)
		}
		for _, msg := range msgs {
			if l, ok := d.line(msg); ok {
				line(l)
			}
		}
	}
}

// SetReadBuffer sets a netlink socket's receive buffer to n bytes: what the kernel may queue for
// a reader of its notifications before it drops them. SO_RCVBUFFORCE goes past
// net.core.rmem_max (often 208 KiB) with CAP_NET_ADMIN in the initial user namespace, which a
// privileged agent has; without it, the plain setting is capped at rmem_max.
func SetReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		})
		if err == nil && serr == nil {
			return nil
		}
	}
	return c.SetReadBuffer(n)
}

// Message types and attributes that golang.org/x/sys/unix v0.47 lacks, from the kernel's
// include/uapi/linux/netfilter/nf_tables.h. The DESTROY messages (Linux 6.3, `nft destroy`,
// nft 1.0.8) delete what exists and ignore what does not; the kernel notifies them under their own
// type, which nft 1.0.6 does not know and skips.
const (
	nftMsgDestroyTable     = 0x1a
	nftMsgDestroyChain     = 0x1b
	nftMsgDestroyRule      = 0x1c
	nftMsgDestroySet       = 0x1d
	nftMsgDestroySetElem   = 0x1e
	nftMsgDestroyObj       = 0x1f
	nftMsgDestroyFlowtable = 0x20

	nftaFlowtableTable = 0x1 // NFTA_FLOWTABLE_TABLE
	nftaFlowtableName  = 0x2 // NFTA_FLOWTABLE_NAME
)

// nftnlUdataRuleComment is the type of a rule comment among the TLVs (one byte of type, one of
// length) that nft stores in a rule's NFTA_RULE_USERDATA: NFTNL_UDATA_RULE_COMMENT of libnftnl's
// include/libnftnl/udata.h.
const nftnlUdataRuleComment = 0

// nftnlUdataSetElemComment is the type of an element comment among the TLVs that nft stores in
// an element's NFTA_SET_ELEM_USERDATA: NFTNL_UDATA_SET_ELEM_COMMENT of libnftnl's
// include/libnftnl/udata.h.
const nftnlUdataSetElemComment = 0

// familyNames are nft's names of the nfgenmsg families (family2str).
var familyNames = map[netfilter.ProtoFamily]string{
	netfilter.ProtoInet:   "inet",
	netfilter.ProtoIPv4:   "ip",
	netfilter.ProtoARP:    "arp",
	netfilter.ProtoNetDev: "netdev",
	netfilter.ProtoBridge: "bridge",
	netfilter.ProtoIPv6:   "ip6",
}

// objectNames are nft's names of the stateful object types (obj_type_name). Two of them are two
// words, as nft prints them: a line about a ct helper is "add ct helper inet TABLE NAME".
var objectNames = map[uint32]string{
	unix.NFT_OBJECT_COUNTER:    "counter",
	unix.NFT_OBJECT_QUOTA:      "quota",
	unix.NFT_OBJECT_CT_HELPER:  "ct helper",
	unix.NFT_OBJECT_LIMIT:      "limit",
	unix.NFT_OBJECT_CT_TIMEOUT: "ct timeout",
	unix.NFT_OBJECT_SECMARK:    "secmark",
	unix.NFT_OBJECT_CT_EXPECT:  "ct expectation",
	unix.NFT_OBJECT_SYNPROXY:   "synproxy",
}

// setID names a set: its family, table and name.
type setID struct {
	family netfilter.ProtoFamily
	table  string
	name   string
}

// monitorDecoder turns nftables notifications into the lines `nft monitor` prints, as far as
// drift detection reads them (internal/controller's batchReader): "<verb> <object> <family>
// <table> <name>" for a change to an object, and "# new generation N by process PID (NAME)" at
// the end of each transaction. What it prints of each object:
//
//   - table, chain, set or map (a set with NFT_SET_MAP or NFT_SET_OBJECT), counter and the other
//     stateful objects, flowtable: the verb and the names, not the definition;
//   - element: "{ ... }" for the elements, one line per notification (the kernel sends one per
//     element, so a range is two lines, where nft joins them into one); an added element with a
//     comment as `add element inet TABLE SET { ... comment "TEXT" }` (the key left out; the
//     comment kept, as the element of render.DigestSet carries the digest of the agent's
//     scripts), a deleted one without its comment: another process's replacing or flushing the
//     table deletes the element with the agent's digest, and that must not read as the agent's
//     own apply;
//   - rule: an added rule as `add rule inet TABLE CHAIN ... comment "TEXT" # handle N` (the
//     expressions left out; the comment kept, which tells whose rule it is in the log; the
//     handle as `nft -a monitor` prints it), a deleted one as nft prints it, `delete rule inet
//     TABLE CHAIN handle N`, without its comment, for the same reason as a deleted element's.
//
// Comments are quoted as Go quotes, which for printable text without quotes is nft's way.
//
// The verbs are nft's: "add", "create" (NLM_F_EXCL), "insert" (a rule without NLM_F_APPEND) and
// "delete" (also for the kernel's DESTROY notifications, which nft 1.0.6 does not print at all).
// Like nft, it leaves out the anonymous sets of rules (`ip daddr { ... }`) and their elements. It
// keeps the names of those it has seen added, to know their elements and their deletion (whose
// notification lacks the flags): the deletion of an anonymous set older than the monitor prints
// as "delete set inet TABLE __set0", with the deletion of its rule. A notification it cannot
// decode gives a line starting "# ERROR", which drift detection takes for lost events: what
// happened is unknown.
type monitorDecoder struct {
	anonymous map[setID]bool
}

func newMonitorDecoder() *monitorDecoder {
	return &monitorDecoder{anonymous: make(map[setID]bool)}
}

// line returns the line for one notification, and false for a message that prints none (another
// subsystem's, an anonymous set's, a message type nft does not print either).
func (d *monitorDecoder) line(m netlink.Message) (string, bool) {
	h, ad, err := netfilter.DecodeNetlink(m)
	if err != nil {
		return "", false // not even a netfilter header: nothing of nftables
	}
	if h.SubsystemID != unix.NFNL_SUBSYS_NFTABLES {
		return "", false
	}
	// The top-level attributes, unparsed: nested ones (rule expressions, elements) are never read.
	attrs := make(map[uint16][]byte)
	for ad.Next() {
		attrs[ad.Type()] = ad.Bytes()
	}
	if err := ad.Err(); err != nil {
		return undecodedLine + err.Error(), true
	}
	str := func(t uint16) string { return cString(attrs[t]) }
	fam, ok := familyNames[h.Family]
	if !ok {
		fam = "unknown"
	}
	typ := int(h.MessageType)
	verb := eventVerb(typ, h.Flags)

	switch typ {
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, nftMsgDestroyTable:
		table := str(unix.NFTA_TABLE_NAME)
		if verb == "delete" {
			d.forgetTable(h.Family, table)
		}
		return fmt.Sprintf("%s table %s %s", verb, fam, table), true

	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN, nftMsgDestroyChain:
		return fmt.Sprintf("%s chain %s %s %s", verb, fam, str(unix.NFTA_CHAIN_TABLE), str(unix.NFTA_CHAIN_NAME)), true

	case unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET, nftMsgDestroySet:
		id := setID{h.Family, str(unix.NFTA_SET_TABLE), str(unix.NFTA_SET_NAME)}
		flags, hasFlags := beUint32(attrs[unix.NFTA_SET_FLAGS])
		anonymous := flags&unix.NFT_SET_ANONYMOUS != 0
		if verb == "delete" && !hasFlags {
			// The kernel (6.18 at least) notifies a deletion with the set's names only.
			anonymous = d.anonymous[id]
		}
		switch {
		case verb == "delete" || !anonymous:
			delete(d.anonymous, id)
		default:
			d.anonymous[id] = true
		}
		if anonymous {
			return "", false
		}
		kind := "set"
		if flags&(unix.NFT_SET_MAP|unix.NFT_SET_OBJECT) != 0 {
			kind = "map"
		}
		return fmt.Sprintf("%s %s %s %s %s", verb, kind, fam, id.table, id.name), true

	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM, nftMsgDestroySetElem:
		id := setID{h.Family, str(unix.NFTA_SET_ELEM_LIST_TABLE), str(unix.NFTA_SET_ELEM_LIST_SET)}
		if d.anonymous[id] {
			return "", false
		}
		if typ != unix.NFT_MSG_NEWSETELEM {
			return fmt.Sprintf("%s element %s %s %s { ... }", verb, fam, id.table, id.name), true
		}
		return fmt.Sprintf("%s element %s %s %s { %s }", verb, fam, id.table, id.name, elementsText(attrs[unix.NFTA_SET_ELEM_LIST_ELEMENTS])), true

	case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, nftMsgDestroyRule:
		var b strings.Builder
		fmt.Fprintf(&b, "%s rule %s %s %s", verb, fam, str(unix.NFTA_RULE_TABLE), str(unix.NFTA_RULE_CHAIN))
		handle, hasHandle := beUint64(attrs[unix.NFTA_RULE_HANDLE])
		if typ != unix.NFT_MSG_NEWRULE {
			if hasHandle {
				fmt.Fprintf(&b, " handle %d", handle)
			}
			return b.String(), true
		}
		b.WriteString(" ...")
		if c, ok := ruleComment(attrs[unix.NFTA_RULE_USERDATA]); ok {
			fmt.Fprintf(&b, " comment %q", c)
		}
		if hasHandle {
			fmt.Fprintf(&b, " # handle %d", handle)
		}
		return b.String(), true

	case unix.NFT_MSG_NEWOBJ, unix.NFT_MSG_DELOBJ, nftMsgDestroyObj:
		objType, _ := beUint32(attrs[unix.NFTA_OBJ_TYPE])
		kind, ok := objectNames[objType]
		if !ok {
			kind = "unknown"
		}
		return fmt.Sprintf("%s %s %s %s %s", verb, kind, fam, str(unix.NFTA_OBJ_TABLE), str(unix.NFTA_OBJ_NAME)), true

	case unix.NFT_MSG_NEWFLOWTABLE, unix.NFT_MSG_DELFLOWTABLE, nftMsgDestroyFlowtable:
		return fmt.Sprintf("%s flowtable %s %s %s", verb, fam, str(nftaFlowtableTable), str(nftaFlowtableName)), true

	case unix.NFT_MSG_NEWGEN:
		// The end of a transaction, which drift detection reads the transaction up to: printed
		// even with attributes missing (nft would print nothing without the generation's number).
		var b strings.Builder
		b.WriteString("# new generation")
		if id, ok := beUint32(attrs[unix.NFTA_GEN_ID]); ok {
			b.WriteString(" " + strconv.FormatUint(uint64(id), 10))
		}
		if pid, ok := beUint32(attrs[unix.NFTA_GEN_PROC_PID]); ok {
			fmt.Fprintf(&b, " by process %d (%s)", pid, str(unix.NFTA_GEN_PROC_NAME))
		}
		return b.String(), true
	}
	return "", false
}

// forgetTable drops the anonymous sets of a deleted table, whether or not the kernel notified
// their deletion, so that the names they leave are printed when named sets take them.
func (d *monitorDecoder) forgetTable(family netfilter.ProtoFamily, table string) {
	for id := range d.anonymous {
		if id.family == family && id.table == table {
			delete(d.anonymous, id)
		}
	}
}

// eventVerb is nft's verb for a notification (netlink_msg2cmd).
func eventVerb(typ int, flags netlink.HeaderFlags) string {
	switch typ {
	case unix.NFT_MSG_NEWRULE:
		if flags&netlink.Append != 0 {
			return "add"
		}
		return "insert"
	case unix.NFT_MSG_DELTABLE, unix.NFT_MSG_DELCHAIN, unix.NFT_MSG_DELRULE, unix.NFT_MSG_DELSET,
		unix.NFT_MSG_DELSETELEM, unix.NFT_MSG_DELOBJ, unix.NFT_MSG_DELFLOWTABLE,
		nftMsgDestroyTable, nftMsgDestroyChain, nftMsgDestroyRule, nftMsgDestroySet,
		nftMsgDestroySetElem, nftMsgDestroyObj, nftMsgDestroyFlowtable:
		return "delete"
	}
	if flags&netlink.Excl != 0 {
		return "create"
	}
	return "add"
}

// elementsText returns what an element line prints between its braces: "..." for each element
// of a NFTA_SET_ELEM_LIST_ELEMENTS, with the element's comment when it has one (as the element
// that carries the digest of the agent's scripts does): `... comment "TEXT"`. An element list
// that cannot be decoded prints as elements without comments.
func elementsText(list []byte) string {
	var parts []string
	if ad, err := netlink.NewAttributeDecoder(list); err == nil {
		for ad.Next() {
			if ad.Type() != unix.NFTA_LIST_ELEM {
				continue
			}
			part := "..."
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() != unix.NFTA_SET_ELEM_USERDATA {
						continue
					}
					if c, ok := udataComment(nad.Bytes(), nftnlUdataSetElemComment); ok {
						part += fmt.Sprintf(" comment %q", c)
					}
				}
				return nil
			})
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return "..."
	}
	return strings.Join(parts, ", ")
}

// ruleComment returns the comment among a rule's user data TLVs.
func ruleComment(udata []byte) (string, bool) {
	return udataComment(udata, nftnlUdataRuleComment)
}

// udataComment returns the comment, of TLV type typ, among user data TLVs.
func udataComment(udata []byte, typ byte) (string, bool) {
	for len(udata) >= 2 {
		t, n := udata[0], int(udata[1])
		if len(udata) < 2+n {
			return "", false
		}
		if t == typ {
			return cString(udata[2 : 2+n]), true
		}
		udata = udata[2+n:]
	}
	return "", false
}

func beUint32(b []byte) (uint32, bool) {
	if len(b) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b), true
}

func beUint64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}
