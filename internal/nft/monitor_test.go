//go:build linux

package nft

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/flock-net/flock-netpol/internal/render"
)

// nftMessage builds an nftables notification as the kernel sends it.
func nftMessage(tb testing.TB, typ int, family netfilter.ProtoFamily, flags netlink.HeaderFlags, attrs ...netfilter.Attribute) netlink.Message {
	tb.Helper()
	m, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: unix.NFNL_SUBSYS_NFTABLES,
		MessageType: netfilter.MessageType(typ),
		Family:      family,
		Flags:       flags,
	}, attrs)
	if err != nil {
		tb.Fatal(err)
	}
	m.Header.Length = uint32(16 + len(m.Data))
	return m
}

func strAttr(typ uint16, s string) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Data: append([]byte(s), 0)}
}

func u32Attr(typ uint16, v uint32) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Data: binary.BigEndian.AppendUint32(nil, v)}
}

func ruleHandle(h uint64) netfilter.Attribute {
	return netfilter.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, h)}
}

// udata is a rule's NFTA_RULE_USERDATA holding TLVs as nft writes them.
func udata(tlvs ...[]byte) netfilter.Attribute {
	var b []byte
	for _, t := range tlvs {
		b = append(b, t...)
	}
	return netfilter.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: b}
}

func tlv(typ byte, value []byte) []byte {
	return append([]byte{typ, byte(len(value))}, value...)
}

func commentTLV(c string) []byte { return tlv(nftnlUdataRuleComment, append([]byte(c), 0)) }

// elementList is a set element list as the kernel nests it, of one element without a comment.
var elementList = netfilter.Attribute{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS, Nested: true, Children: []netfilter.Attribute{
	{Type: 1, Nested: true, Children: []netfilter.Attribute{{Type: unix.NFTA_SET_ELEM_KEY, Nested: true, Children: []netfilter.Attribute{
		{Type: unix.NFTA_DATA_VALUE, Data: []byte{10, 0, 1, 1}},
	}}}},
}}

// element is one NFTA_LIST_ELEM of an element list, with an IPv4 key and, when given, the user
// data TLVs nft writes (an element's comment among them).
func element(tlvs ...[]byte) netfilter.Attribute {
	e := netfilter.Attribute{Type: unix.NFTA_LIST_ELEM, Nested: true, Children: []netfilter.Attribute{{Type: unix.NFTA_SET_ELEM_KEY, Nested: true, Children: []netfilter.Attribute{
		{Type: unix.NFTA_DATA_VALUE, Data: []byte{10, 0, 1, 1}},
	}}}}
	if len(tlvs) > 0 {
		u := udata(tlvs...)
		u.Type = unix.NFTA_SET_ELEM_USERDATA
		e.Children = append(e.Children, u)
	}
	return e
}

// elements is an element list holding the given elements.
func elements(elems ...netfilter.Attribute) netfilter.Attribute {
	return netfilter.Attribute{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS, Nested: true, Children: elems}
}

func elemCommentTLV(c string) []byte { return tlv(nftnlUdataSetElemComment, append([]byte(c), 0)) }

// digestElement is a notification of the element that carries a digest, of type typ.
func digestElement(tb testing.TB, typ int, digest string) netlink.Message {
	return nftMessage(tb, typ, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
		strAttr(unix.NFTA_SET_ELEM_LIST_SET, render.DigestSet), elements(element(elemCommentTLV("ruleset "+digest))))
}

const (
	appended = netlink.Request | netlink.Create | netlink.Append
	created  = netlink.Request | netlink.Create
)

// TestMonitorDecoderPrintsNftsLines pins the line of each kind of notification: the verb, the
// object, the family, the table and the name, as `nft monitor` prints them and drift detection
// (internal/controller's batchReader: "<verb> <object> inet <table>") reads them.
func TestMonitorDecoderPrintsNftsLines(t *testing.T) {
	const digestComment = "ruleset 0123456789abcdef"
	for _, c := range []struct {
		name string
		msg  netlink.Message
		want string // "" when nothing is printed
	}{
		{"an added table",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoInet, created, strAttr(unix.NFTA_TABLE_NAME, "flock-netpol")),
			"add table inet flock-netpol"},
		{"a deleted table",
			nftMessage(t, unix.NFT_MSG_DELTABLE, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_TABLE_NAME, "flock-netpol")),
			"delete table inet flock-netpol"},
		{"a destroyed table (Linux 6.3's NFT_MSG_DESTROYTABLE) is a deletion",
			nftMessage(t, nftMsgDestroyTable, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_TABLE_NAME, "flock-netpol")),
			"delete table inet flock-netpol"},
		{"the families by nft's names: ip",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoIPv4, created, strAttr(unix.NFTA_TABLE_NAME, "other")),
			"add table ip other"},
		{"ip6",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoIPv6, created, strAttr(unix.NFTA_TABLE_NAME, "other")),
			"add table ip6 other"},
		{"arp",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoARP, created, strAttr(unix.NFTA_TABLE_NAME, "other")),
			"add table arp other"},
		{"bridge",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoBridge, created, strAttr(unix.NFTA_TABLE_NAME, "other")),
			"add table bridge other"},
		{"netdev",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoNetDev, created, strAttr(unix.NFTA_TABLE_NAME, "other")),
			"add table netdev other"},
		{"a family nft does not know",
			nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoDECNet, created, strAttr(unix.NFTA_TABLE_NAME, "other")),
			"add table unknown other"},
		{"a chain created with NLM_F_EXCL (`nft create chain`)",
			nftMessage(t, unix.NFT_MSG_NEWCHAIN, netfilter.ProtoInet, created|netlink.Excl,
				strAttr(unix.NFTA_CHAIN_TABLE, "flock-netpol"), strAttr(unix.NFTA_CHAIN_NAME, "pod-in-EN3T6OWG-shop/web-1")),
			"create chain inet flock-netpol pod-in-EN3T6OWG-shop/web-1"},
		{"a deleted chain",
			nftMessage(t, unix.NFT_MSG_DELCHAIN, netfilter.ProtoInet, netlink.Request,
				strAttr(unix.NFTA_CHAIN_TABLE, "flock-netpol"), strAttr(unix.NFTA_CHAIN_NAME, "ingress-dispatch")),
			"delete chain inet flock-netpol ingress-dispatch"},
		{"a set",
			nftMessage(t, unix.NFT_MSG_NEWSET, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_NAME, "fresh-in-v4"), u32Attr(unix.NFTA_SET_FLAGS, unix.NFT_SET_INTERVAL)),
			"add set inet flock-netpol fresh-in-v4"},
		{"a verdict map is a map",
			nftMessage(t, unix.NFT_MSG_NEWSET, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_NAME, "ingress-pods-v4"), u32Attr(unix.NFTA_SET_FLAGS, unix.NFT_SET_MAP)),
			"add map inet flock-netpol ingress-pods-v4"},
		{"an object map is a map",
			nftMessage(t, unix.NFT_MSG_DELSET, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_SET_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_NAME, "counters"), u32Attr(unix.NFTA_SET_FLAGS, unix.NFT_SET_OBJECT)),
			"delete map inet flock-netpol counters"},
		{"an element, without its value",
			nftMessage(t, unix.NFT_MSG_DELSETELEM, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_ELEM_LIST_SET, "ingress-pods-v4"), elementList),
			"delete element inet flock-netpol ingress-pods-v4 { ... }"},
		{"an added element with a comment, which carries the digest of the agent's scripts",
			digestElement(t, unix.NFT_MSG_NEWSETELEM, "0123456789abcdef"),
			`add element inet flock-netpol digest { ... comment "ruleset 0123456789abcdef" }`},
		{"an added element without a comment",
			nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_ELEM_LIST_SET, "ingress-pods-v4"), elementList),
			"add element inet flock-netpol ingress-pods-v4 { ... }"},
		{"the element's comment among other user data (NFTNL_UDATA_SET_ELEM_FLAGS)",
			nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_ELEM_LIST_SET, "s"), elements(element(tlv(1, []byte{0, 0, 0, 1}), elemCommentTLV("x")))),
			`add element inet flock-netpol s { ... comment "x" }`},
		{"each element of a list, with its comment if any",
			nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_ELEM_LIST_SET, "s"), elements(element(), element(elemCommentTLV("b")))),
			`add element inet flock-netpol s { ..., ... comment "b" }`},
		{"element user data cut short hides the comment, and nothing else",
			nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_ELEM_LIST_SET, "s"), elements(element([]byte{0, 30, 'r'}))),
			"add element inet flock-netpol s { ... }"},
		{"an element list that cannot be decoded prints as elements",
			nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_SET_ELEM_LIST_SET, "s"), netfilter.Attribute{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: []byte{1, 0, 0}}),
			"add element inet flock-netpol s { ... }"},
		{"a deleted element shows not its comment (see TestMonitorDecoderDeletedDigestIsNotOurs)",
			digestElement(t, unix.NFT_MSG_DELSETELEM, "0123456789abcdef"),
			"delete element inet flock-netpol digest { ... }"},
		{"an appended rule, with its comment and handle",
			nftMessage(t, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, appended, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), ruleHandle(26),
				netfilter.Attribute{Type: unix.NFTA_RULE_EXPRESSIONS, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: []byte("x")}}},
				udata(commentTLV(digestComment))),
			`add rule inet flock-netpol filter-forward ... comment "ruleset 0123456789abcdef" # handle 26`},
		{"the comment among other user data",
			nftMessage(t, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, appended, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), udata(tlv(1, []byte{0, 0, 0, 1}), commentTLV("x/p ingress rule 0"))),
			`add rule inet flock-netpol filter-forward ... comment "x/p ingress rule 0"`},
		{"a rule without a comment",
			nftMessage(t, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, appended, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), ruleHandle(3)),
			`add rule inet flock-netpol filter-forward ... # handle 3`},
		{"user data cut short hides the comment, and nothing else",
			nftMessage(t, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, appended, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), udata([]byte{0, 30, 'r'})),
			`add rule inet flock-netpol filter-forward ...`},
		{"a rule without NLM_F_APPEND was inserted",
			nftMessage(t, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, created, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), ruleHandle(40)),
			`insert rule inet flock-netpol filter-forward ... # handle 40`},
		{"a deleted rule shows its handle and not its comment (see TestMonitorDecoderDeletedDigestIsNotOurs)",
			nftMessage(t, unix.NFT_MSG_DELRULE, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), ruleHandle(26), udata(commentTLV(digestComment))),
			"delete rule inet flock-netpol filter-forward handle 26"},
		{"a counter",
			nftMessage(t, unix.NFT_MSG_NEWOBJ, netfilter.ProtoInet, created, strAttr(unix.NFTA_OBJ_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_OBJ_NAME, "denied-in-BIIL3AZS-shop/web-1"), u32Attr(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_COUNTER)),
			"add counter inet flock-netpol denied-in-BIIL3AZS-shop/web-1"},
		{"a limit",
			nftMessage(t, unix.NFT_MSG_DELOBJ, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_OBJ_TABLE, "flock-netpol"),
				strAttr(unix.NFTA_OBJ_NAME, "drop-log"), u32Attr(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_LIMIT)),
			"delete limit inet flock-netpol drop-log"},
		{"a ct helper, two words as nft prints it",
			nftMessage(t, unix.NFT_MSG_NEWOBJ, netfilter.ProtoIPv4, created, strAttr(unix.NFTA_OBJ_TABLE, "t"),
				strAttr(unix.NFTA_OBJ_NAME, "ftp"), u32Attr(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_CT_HELPER)),
			"add ct helper ip t ftp"},
		{"a flowtable",
			nftMessage(t, unix.NFT_MSG_NEWFLOWTABLE, netfilter.ProtoInet, created, strAttr(nftaFlowtableTable, "t"), strAttr(nftaFlowtableName, "ft")),
			"add flowtable inet t ft"},
		{"the end of a transaction",
			nftMessage(t, unix.NFT_MSG_NEWGEN, netfilter.ProtoUnspec, 0, u32Attr(unix.NFTA_GEN_ID, 2),
				u32Attr(unix.NFTA_GEN_PROC_PID, 28869), strAttr(unix.NFTA_GEN_PROC_NAME, "nft")),
			"# new generation 2 by process 28869 (nft)"},
		{"the end of a transaction, whatever it lacks",
			nftMessage(t, unix.NFT_MSG_NEWGEN, netfilter.ProtoUnspec, 0),
			"# new generation"},
		{"a message of another subsystem prints nothing",
			func() netlink.Message {
				m := nftMessage(t, unix.NFT_MSG_NEWTABLE, netfilter.ProtoInet, created, strAttr(unix.NFTA_TABLE_NAME, "t"))
				m.Header.Type = netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | unix.NFT_MSG_NEWTABLE)
				return m
			}(),
			""},
		{"a message type nft does not print either (a trace)",
			nftMessage(t, unix.NFT_MSG_TRACE, netfilter.ProtoInet, 0, strAttr(unix.NFTA_TRACE_TABLE, "t")),
			""},
		{"a message too short for its header prints nothing",
			netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE)}, Data: []byte{1, 0}},
			""},
		{"attributes that cannot be decoded are an error, which drift detection treats as lost events",
			netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELTABLE)}, Data: []byte{1, 0, 0, 0, 200, 0, 1, 0}},
			"# ERROR: undecodable nftables event: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := newMonitorDecoder().line(c.msg)
			if c.want == "" {
				if ok {
					t.Errorf("line = %q; want none", got)
				}
				return
			}
			if !ok {
				t.Fatalf("no line; want %q", c.want)
			}
			if strings.HasPrefix(c.want, "# ERROR") {
				if !strings.HasPrefix(got, c.want) {
					t.Errorf("line = %q; want it to start with %q", got, c.want)
				}
				return
			}
			if got != c.want {
				t.Errorf("line = %q\n        want %q", got, c.want)
			}
		})
	}
}

// TestMonitorDecoderFindsTheDigest pins what drift detection needs of an added element:
// render.Digest finds the digest of the script in the line of the element whose comment carries
// it (and in that of a rule with such a comment).
func TestMonitorDecoderFindsTheDigest(t *testing.T) {
	for _, m := range []netlink.Message{
		digestElement(t, unix.NFT_MSG_NEWSETELEM, "7ae4c34cd4a82d57"),
		nftMessage(t, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, appended, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
			strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), ruleHandle(26), udata(commentTLV("ruleset 7ae4c34cd4a82d57"))),
	} {
		l, _ := newMonitorDecoder().line(m)
		if d, ok := render.Digest([]byte(l)); !ok || d != "7ae4c34cd4a82d57" {
			t.Errorf("render.Digest(%q) = %q, %v; want 7ae4c34cd4a82d57", l, d, ok)
		}
	}
}

// TestMonitorDecoderDeletedDigestIsNotOurs pins that the line of a deleted element or rule
// carries no digest: another process replacing the table deletes the element with the agent's
// digest in the same transaction, which must not pass for the agent's own apply.
func TestMonitorDecoderDeletedDigestIsNotOurs(t *testing.T) {
	for _, typ := range []int{unix.NFT_MSG_DELSETELEM, nftMsgDestroySetElem} {
		l, _ := newMonitorDecoder().line(digestElement(t, typ, "7ae4c34cd4a82d57"))
		if d, ok := render.Digest([]byte(l)); ok {
			t.Errorf("type %d: render.Digest(%q) = %q; want none", typ, l, d)
		}
	}
	for _, typ := range []int{unix.NFT_MSG_DELRULE, nftMsgDestroyRule} {
		m := nftMessage(t, typ, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_RULE_TABLE, "flock-netpol"),
			strAttr(unix.NFTA_RULE_CHAIN, "filter-forward"), ruleHandle(26), udata(commentTLV("ruleset 7ae4c34cd4a82d57")))
		l, _ := newMonitorDecoder().line(m)
		if d, ok := render.Digest([]byte(l)); ok {
			t.Errorf("type %d: render.Digest(%q) = %q; want none", typ, l, d)
		}
	}
}

// TestMonitorDecoderSkipsAnonymousSets pins that, like nft, the decoder prints neither the
// anonymous sets of rules nor their elements nor their deletion (notified without the flags that
// say anonymous), but does print a named set and its elements once an anonymous set of that name
// is gone, with its table or by itself.
func TestMonitorDecoderSkipsAnonymousSets(t *testing.T) {
	d := newMonitorDecoder()
	anon := func(typ int) netlink.Message {
		return nftMessage(t, typ, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_TABLE, "flock-netpol"),
			strAttr(unix.NFTA_SET_NAME, "__set0"), u32Attr(unix.NFTA_SET_FLAGS, unix.NFT_SET_ANONYMOUS|unix.NFT_SET_CONSTANT))
	}
	elem := nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
		strAttr(unix.NFTA_SET_ELEM_LIST_SET, "__set0"), elementList)
	otherTable := nftMessage(t, unix.NFT_MSG_NEWSETELEM, netfilter.ProtoIPv4, created, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "flock-netpol"),
		strAttr(unix.NFTA_SET_ELEM_LIST_SET, "__set0"), elementList)
	delTable := nftMessage(t, unix.NFT_MSG_DELTABLE, netfilter.ProtoInet, netlink.Request, strAttr(unix.NFTA_TABLE_NAME, "flock-netpol"))

	for _, s := range []struct {
		what string
		msg  netlink.Message
		want bool
	}{
		{"the anonymous set", anon(unix.NFT_MSG_NEWSET), false},
		{"its element", elem, false},
		{"an element of a set of that name in another family's table", otherTable, true},
		{"the table's deletion", delTable, true},
		{"an element of a named set of that name, after", elem, true},
		{"an anonymous set again", anon(unix.NFT_MSG_NEWSET), false},
		{"its deletion", anon(unix.NFT_MSG_DELSET), false},
		{"the anonymous set again", anon(unix.NFT_MSG_NEWSET), false},
		{"its deletion, notified without flags", nftMessage(t, unix.NFT_MSG_DELSET, netfilter.ProtoInet, netlink.Request,
			strAttr(unix.NFTA_SET_TABLE, "flock-netpol"), strAttr(unix.NFTA_SET_NAME, "__set0")), false},
		{"the deletion of a set of that name, notified without flags", nftMessage(t, unix.NFT_MSG_DELSET, netfilter.ProtoInet, netlink.Request,
			strAttr(unix.NFTA_SET_TABLE, "flock-netpol"), strAttr(unix.NFTA_SET_NAME, "__set0")), true},
		{"the anonymous set again", anon(unix.NFT_MSG_NEWSET), false},
		{"a named set of that name, without flags (a notification missed)", nftMessage(t, unix.NFT_MSG_NEWSET, netfilter.ProtoInet, created,
			strAttr(unix.NFTA_SET_TABLE, "flock-netpol"), strAttr(unix.NFTA_SET_NAME, "__set0")), true},
		{"its element", elem, true},
		{"an element of a named set of that name, after its deletion", elem, true},
	} {
		if l, ok := d.line(s.msg); ok != s.want {
			t.Errorf("%s: line = %q, %v; want printed: %v", s.what, l, ok, s.want)
		}
	}
}

// FuzzMonitorMessage pins that no message, however malformed, panics the decoder, and that a line
// it prints is never empty.
func FuzzMonitorMessage(f *testing.F) {
	seeds := []netlink.Message{
		nftMessage(f, unix.NFT_MSG_NEWTABLE, netfilter.ProtoInet, created, strAttr(unix.NFTA_TABLE_NAME, "flock-netpol")),
		nftMessage(f, unix.NFT_MSG_NEWSET, netfilter.ProtoInet, created, strAttr(unix.NFTA_SET_TABLE, "t"),
			strAttr(unix.NFTA_SET_NAME, "__set0"), u32Attr(unix.NFTA_SET_FLAGS, unix.NFT_SET_ANONYMOUS)),
		nftMessage(f, unix.NFT_MSG_DELSETELEM, netfilter.ProtoInet, 0, strAttr(unix.NFTA_SET_ELEM_LIST_TABLE, "t"),
			strAttr(unix.NFTA_SET_ELEM_LIST_SET, "s"), elementList),
		digestElement(f, unix.NFT_MSG_NEWSETELEM, "0123456789abcdef"),
		nftMessage(f, unix.NFT_MSG_NEWRULE, netfilter.ProtoInet, appended, strAttr(unix.NFTA_RULE_TABLE, "t"),
			strAttr(unix.NFTA_RULE_CHAIN, "c"), ruleHandle(26), udata(tlv(1, []byte{1}), commentTLV("ruleset 0123456789abcdef"))),
		nftMessage(f, unix.NFT_MSG_NEWOBJ, netfilter.ProtoInet, created, strAttr(unix.NFTA_OBJ_TABLE, "t"),
			strAttr(unix.NFTA_OBJ_NAME, "o"), u32Attr(unix.NFTA_OBJ_TYPE, 99)),
		nftMessage(f, unix.NFT_MSG_NEWGEN, netfilter.ProtoUnspec, 0, u32Attr(unix.NFTA_GEN_ID, 2),
			u32Attr(unix.NFTA_GEN_PROC_PID, 1), strAttr(unix.NFTA_GEN_PROC_NAME, "nft")),
	}
	for _, m := range seeds {
		f.Add(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
	}
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(flags)}, Data: data}
		d := newMonitorDecoder()
		for range 2 { // the second time with what the first left in the decoder
			if l, ok := d.line(m); ok && l == "" {
				t.Errorf("an empty line for %x", data)
			}
		}
	})
}
