//go:build linux

package droplog

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// The NFLOG protocol, from the kernel's UAPI header linux/netfilter/nfnetlink_log.h
// (golang.org/x/sys/unix defines none of it; TestConstantsMatchUAPIHeader checks these against
// the header when it is installed).
const (
	// netlinkNetfilter is NETLINK_NETFILTER (linux/netlink.h), the netlink family of nfnetlink.
	netlinkNetfilter = 12

	// enum nfulnl_msg_types
	nfulnlMsgPacket = 0 // NFULNL_MSG_PACKET: a logged packet, kernel to user space
	nfulnlMsgConfig = 1 // NFULNL_MSG_CONFIG: configure a group

	// enum nfulnl_attr_type: the attributes of a packet message
	nfulaTimestamp = 3  // NFULA_TIMESTAMP: struct { __be64 sec; __be64 usec }
	nfulaPayload   = 9  // NFULA_PAYLOAD: the packet from its network header, cut at the copy range
	nfulaPrefix    = 10 // NFULA_PREFIX: the log statement's prefix, NUL-terminated
	nfulaSeq       = 12 // NFULA_SEQ: __be32, per group, when NFULNL_CFG_F_SEQ is set

	// enum nfulnl_attr_config: the attributes of a config message
	nfulaCfgCmd     = 1 // NFULA_CFG_CMD: struct { __u8 command }
	nfulaCfgMode    = 2 // NFULA_CFG_MODE: struct { __be32 copy_range; __u8 copy_mode; __u8 pad }
	nfulaCfgTimeout = 4 // NFULA_CFG_TIMEOUT: __be32, in 1/100 s
	nfulaCfgFlags   = 6 // NFULA_CFG_FLAGS: __be16

	nfulnlCfgCmdBind = 1    // NFULNL_CFG_CMD_BIND: bind the group (nfgenmsg res_id) to this socket
	nfulnlCopyPacket = 0x02 // NFULNL_COPY_PACKET: metadata and the packet's first copy_range bytes
	nfulnlCfgFSeq    = 0x01 // NFULNL_CFG_F_SEQ: number the group's messages
)

// How the reader configures its group.
const (
	// copyRange caps the bytes of each packet the kernel copies; the rule's snaplen (128) is
	// normally lower and decides. Headers are all Parse reads.
	copyRange = 256
	// flushTimeout is how long the kernel may hold logged packets to send several in one message,
	// in 1/100 s (its default is 1 s). A log line then trails its packet by 0.1 s at most.
	flushTimeout = 10
)

// bindMessage is the one config message the reader sends: bind group to the sending socket, copy
// packets, flush after flushTimeout, number the messages. The kernel applies it as a whole. The
// nfgenmsg family is AF_UNSPEC: binding a group ignores it. (NFULNL_CFG_CMD_PF_BIND and
// PF_UNBIND, which do read it, set the network namespace's default logger of a family; nftables'
// `log group` never uses that logger, and unbinding it would disturb other users, so the reader
// sends neither.)
func bindMessage(group uint16) (netlink.Message, error) {
	mode := binary.BigEndian.AppendUint32(nil, copyRange)
	mode = append(mode, nfulnlCopyPacket, 0)
	return netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysULOG,
		MessageType: nfulnlMsgConfig,
		Family:      netfilter.ProtoUnspec,
		ResourceID:  group,
		Flags:       netlink.Request | netlink.Acknowledge,
	}, []netfilter.Attribute{
		{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}},
		{Type: nfulaCfgMode, Data: mode},
		{Type: nfulaCfgTimeout, Data: binary.BigEndian.AppendUint32(nil, flushTimeout)},
		{Type: nfulaCfgFlags, Data: binary.BigEndian.AppendUint16(nil, nfulnlCfgFSeq)},
	})
}

// packet is what the reader takes from one NFLOG packet message.
type packet struct {
	prefix  string
	payload []byte    // aliases the message
	time    time.Time // zero when the kernel sent no timestamp
	seq     uint32
	hasSeq  bool
}

// isPacketMessage reports whether m is an NFLOG packet message (rather than, say, an ACK).
func isPacketMessage(m netlink.Message) bool {
	return m.Header.Type == netlink.HeaderType(uint16(netfilter.NFSubsysULOG)<<8|nfulnlMsgPacket)
}

// decodePacket decodes an NFLOG packet message; false when it is malformed or has no payload.
// The kernel sends a timestamp only for packets seen by the prerouting, input and forward hooks,
// and only when the packet was stamped on arrival.
func decodePacket(m netlink.Message) (packet, bool) {
	if !isPacketMessage(m) {
		return packet{}, false
	}
	_, ad, err := netfilter.DecodeNetlink(m)
	if err != nil {
		return packet{}, false
	}
	var p packet
	var havePayload bool
	for ad.Next() {
		switch ad.Type() {
		case nfulaPayload:
			ad.Do(func(b []byte) error {
				p.payload, havePayload = b, true
				return nil
			})
		case nfulaPrefix:
			ad.Do(func(b []byte) error {
				if i := bytes.IndexByte(b, 0); i >= 0 {
					b = b[:i]
				}
				p.prefix = string(b)
				return nil
			})
		case nfulaTimestamp:
			ad.Do(func(b []byte) error {
				if len(b) >= 16 {
					sec, usec := binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])
					if sec != 0 && sec < 1<<40 && usec < 1e6 {
						p.time = time.Unix(int64(sec), int64(usec)*1e3)
					}
				}
				return nil
			})
		case nfulaSeq:
			ad.Do(func(b []byte) error {
				if len(b) >= 4 {
					p.seq, p.hasSeq = binary.BigEndian.Uint32(b), true
				}
				return nil
			})
		}
	}
	if ad.Err() != nil || !havePayload {
		return packet{}, false
	}
	return p, true
}
