//go:build linux

package droplog

import (
	"bytes"
	"encoding/binary"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// TestBindMessage pins the bytes of the config message: type ULOG/CONFIG, a request for an ACK,
// nfgenmsg {AF_UNSPEC, v0, group big-endian}, then CMD BIND, MODE {be32 range, COPY_PACKET, pad},
// TIMEOUT be32, FLAGS be16 SEQ, each attribute padded to 4 bytes.
func TestBindMessage(t *testing.T) {
	m, err := bindMessage(100)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Type != 0x0401 || m.Header.Flags != netlink.Request|netlink.Acknowledge {
		t.Errorf("header type %#x flags %v", m.Header.Type, m.Header.Flags)
	}
	want := []byte{
		0, 0, 0, 100, // nfgenmsg
		5, 0, 1, 0, 1, 0, 0, 0, // NFULA_CFG_CMD: BIND
		10, 0, 2, 0, 0, 0, 1, 0, 2, 0, 0, 0, // NFULA_CFG_MODE: 256 bytes, COPY_PACKET
		8, 0, 4, 0, 0, 0, 0, 10, // NFULA_CFG_TIMEOUT: 0.1 s
		6, 0, 6, 0, 0, 1, 0, 0, // NFULA_CFG_FLAGS: SEQ
	}
	if !bytes.Equal(m.Data, want) {
		t.Errorf("data\n got %v\nwant %v", m.Data, want)
	}
}

// packetMessage builds an NFLOG packet message as the kernel sends it.
func packetMessage(t testing.TB, prefix string, payload []byte, seq uint32, stamp bool) netlink.Message {
	t.Helper()
	attrs := []netfilter.Attribute{
		{Type: 1, Data: []byte{0x08, 0x00, 3, 0}}, // NFULA_PACKET_HDR: IPv4, output hook
		{Type: nfulaPrefix, Data: append([]byte(prefix), 0)},
		{Type: 5, Data: []byte{0, 0, 0, 1}}, // NFULA_IFINDEX_OUTDEV
		{Type: nfulaPayload, Data: payload},
		{Type: nfulaSeq, Data: binary.BigEndian.AppendUint32(nil, seq)},
	}
	if stamp {
		b := binary.BigEndian.AppendUint64(nil, uint64(ts.Unix()))
		attrs = append(attrs, netfilter.Attribute{Type: nfulaTimestamp, Data: binary.BigEndian.AppendUint64(b, 250000)})
	}
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysULOG, MessageType: nfulnlMsgPacket, Family: netfilter.ProtoIPv4, ResourceID: 100}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDecodePacket(t *testing.T) {
	payload := ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 20))
	p, ok := decodePacket(packetMessage(t, PrefixDropIngress, payload, 7, true))
	if !ok {
		t.Fatal("not decoded")
	}
	if p.prefix != PrefixDropIngress || !bytes.Equal(p.payload, payload) || p.seq != 7 || !p.hasSeq {
		t.Errorf("decoded %+v", p)
	}
	if want := ts.Add(250 * time.Millisecond); !p.time.Equal(want) {
		t.Errorf("time %v, want %v", p.time, want)
	}
	if p, _ := decodePacket(packetMessage(t, PrefixDropIngress, payload, 0, false)); !p.time.IsZero() {
		t.Errorf("no timestamp attribute, time %v", p.time)
	}

	ack := netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}
	if _, ok := decodePacket(ack); ok {
		t.Error("an ACK decoded as a packet")
	}
	short := netlink.Message{Header: netlink.Header{Type: 0x0400}, Data: []byte{2, 0}}
	if _, ok := decodePacket(short); ok {
		t.Error("a message shorter than nfgenmsg decoded")
	}
	m := packetMessage(t, PrefixDropIngress, payload, 0, false)
	m.Data = m.Data[:len(m.Data)-3] // the last attribute cut short
	if _, ok := decodePacket(m); ok {
		t.Error("a message with a truncated attribute decoded")
	}
	noPayload, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysULOG, MessageType: nfulnlMsgPacket},
		[]netfilter.Attribute{{Type: nfulaPrefix, Data: []byte("fnp drop in\x00")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := decodePacket(noPayload); ok {
		t.Error("a message without payload decoded")
	}
}

type counts map[string]int

func (c counts) add(kind string, n int) { c[kind] += n }

// TestHandleCountsKinds: each message is counted once by its kind, gaps in the sequence numbers
// count the messages lost, and what is not an NFLOG packet is ignored.
func TestHandleCountsKinds(t *testing.T) {
	r := &Reader{group: 100}
	c := counts{}
	res := newFakeResolver()
	tcp := ipv4(remoteC, localA, protoTCP, 5, 0, ports(1, 2, 20))
	for _, m := range []netlink.Message{
		packetMessage(t, PrefixDropIngress, tcp, 0, false),
		packetMessage(t, PrefixAuditEgress, tcp, 1, false),
		packetMessage(t, PrefixDropIngress, tcp, 4, false), // 2 and 3 lost
		packetMessage(t, "someone else", tcp, 5, false),
		packetMessage(t, PrefixDropIngress, tcp[:10], 6, false),
		{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)},
		packetMessage(t, PrefixDropEgress, tcp, 3, false), // from the past: resets, counts nothing lost
		packetMessage(t, PrefixDropEgress, tcp, 4, false),
	} {
		r.handle(m, res, logr.Discard(), c.add)
	}
	want := counts{StatDrop: 4, StatAudit: 1, StatLost: 2, StatUnparsed: 2}
	if len(c) != len(want) {
		t.Errorf("counts %v, want %v", c, want)
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, c[k], v, c)
		}
	}
}

// TestConstantsMatchUAPIHeader checks the protocol constants against the kernel's UAPI header,
// when it is installed (Debian: linux-libc-dev).
func TestConstantsMatchUAPIHeader(t *testing.T) {
	const path = "/usr/include/linux/netfilter/nfnetlink_log.h"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("%s not installed (apt-get install linux-libc-dev): %v", path, err)
	}
	values := map[string]int{}
	// Enums: each member is its predecessor plus one, from 0.
	for _, m := range regexp.MustCompile(`(?s)enum \w+ \{(.*?)\}`).FindAllStringSubmatch(string(b), -1) {
		n := 0
		for _, line := range strings.Split(m[1], "\n") {
			line = strings.TrimSpace(strings.SplitN(line, "/*", 2)[0])
			name := strings.TrimSuffix(line, ",")
			if name == "" || strings.Contains(name, "=") {
				continue
			}
			values[name] = n
			n++
		}
	}
	for _, m := range regexp.MustCompile(`#define (NFULNL_\w+)\s+(0x[0-9a-fA-F]+|\d+)`).FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseInt(m[2], 0, 32)
		if err != nil {
			t.Fatal(err)
		}
		values[m[1]] = int(v)
	}
	for name, got := range map[string]int{
		"NFULNL_MSG_PACKET":      nfulnlMsgPacket,
		"NFULNL_MSG_CONFIG":      nfulnlMsgConfig,
		"NFULA_PACKET_HDR":       1,
		"NFULA_IFINDEX_OUTDEV":   5,
		"NFULA_TIMESTAMP":        nfulaTimestamp,
		"NFULA_PAYLOAD":          nfulaPayload,
		"NFULA_PREFIX":           nfulaPrefix,
		"NFULA_SEQ":              nfulaSeq,
		"NFULA_CFG_CMD":          nfulaCfgCmd,
		"NFULA_CFG_MODE":         nfulaCfgMode,
		"NFULA_CFG_TIMEOUT":      nfulaCfgTimeout,
		"NFULA_CFG_FLAGS":        nfulaCfgFlags,
		"NFULNL_CFG_CMD_BIND":    nfulnlCfgCmdBind,
		"NFULNL_COPY_PACKET":     nfulnlCopyPacket,
		"NFULNL_CFG_F_SEQ":       nfulnlCfgFSeq,
		"NFULA_VLAN_PROTO":       1, // the parser's own check: a second enum
		"NFULNL_CFG_F_CONNTRACK": 4,
	} {
		want, ok := values[name]
		if !ok {
			t.Errorf("%s not found in %s", name, path)
		} else if got != want {
			t.Errorf("%s = %d, the header says %d", name, got, want)
		}
	}
}
