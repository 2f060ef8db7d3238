package nft

import (
	"bytes"
	"errors"
	"testing"
)

// TestElementEncoding pins the key bytes of each key type the renderer writes (network order;
// each field of a concatenation on whole 32-bit registers; a mark in the host's order) and the
// refusals: a set with flags or another value type is ErrUnsupportedSet, an element that does not
// fit its set's type is an error, never a guess.
func TestElementEncoding(t *testing.T) {
	mark0 := []byte{0, 0, 0, 0}
	for _, tc := range []struct {
		name, decl, elem string
		keyOnly          bool
		key              []byte
		verdict          int32
		chain, comment   string
		err              string
		unsupported      bool
	}{
		{name: "ipv4", decl: "add set inet t s { type ipv4_addr; comment \"c\";", elem: "10.1.2.3", key: []byte{10, 1, 2, 3}},
		{name: "ipv6", decl: "add set inet t s { type ipv6_addr;", elem: "fd00::1",
			key: []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{name: "named port", decl: "add set inet t s { type ipv4_addr . inet_proto . inet_service;", elem: "10.0.0.1 . tcp . 8080",
			key: []byte{10, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0}},
		{name: "numeric protocol", decl: "add set inet t s { type ipv4_addr . inet_proto . inet_service;", elem: "10.0.0.1 . 132 . 9",
			key: []byte{10, 0, 0, 1, 132, 0, 0, 0, 0, 9, 0, 0}},
		{name: "verdict map jump", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1 : jump pod-in-x",
			key: []byte{10, 0, 0, 1}, verdict: verdictJump, chain: "pod-in-x"},
		{name: "verdict map goto", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1 : goto w",
			key: []byte{10, 0, 0, 1}, verdict: verdictGoto, chain: "w"},
		{name: "verdict map drop", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1 : drop",
			key: []byte{10, 0, 0, 1}, verdict: verdictDrop},
		{name: "map key alone", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1", keyOnly: true, key: []byte{10, 0, 0, 1}},
		{name: "comment", decl: "add set inet t digest { type mark;", elem: `0x00000000 comment "ruleset 0123"`, key: mark0, comment: "ruleset 0123"},
		{name: "family", decl: "add map inet t stamp { type nf_proto : verdict;", elem: "ipv6 : goto stamp-2", key: []byte{10}, verdict: verdictGoto, chain: "stamp-2"},
		{name: "interval set", decl: "add set inet t s { type ipv4_addr; flags interval;", elem: "10.0.0.0/8", unsupported: true},
		{name: "other value type", decl: "add map inet t m { type ipv4_addr : mark;", elem: "10.0.0.1 : 0x1", unsupported: true},
		{name: "other key type", decl: "add set inet t s { type ether_addr;", elem: "aa:bb:cc:dd:ee:ff", unsupported: true},
		{name: "v6 in a v4 set", decl: "add set inet t s { type ipv4_addr;", elem: "fd00::1", err: "is not an ipv4_addr"},
		{name: "prefix", decl: "add set inet t s { type ipv4_addr;", elem: "10.0.0.0/8", err: "is not an ipv4_addr"},
		{name: "unknown protocol", decl: "add set inet t s { type ipv4_addr . inet_proto . inet_service;", elem: "10.0.0.1 . quic . 1", err: "is not a protocol"},
		{name: "port too large", decl: "add set inet t s { type ipv4_addr . inet_proto . inet_service;", elem: "10.0.0.1 . tcp . 65536", err: "is not a port"},
		{name: "missing field", decl: "add set inet t s { type ipv4_addr . inet_proto . inet_service;", elem: "10.0.0.1 . tcp", err: "fields"},
		{name: "map without verdict", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1", err: "has no verdict"},
		{name: "value in a set", decl: "add set inet t s { type ipv4_addr;", elem: "10.0.0.1 : accept", err: "has a value"},
		{name: "unknown verdict", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1 : return", err: "unknown verdict"},
		{name: "jump without chain", decl: "add map inet t m { type ipv4_addr : verdict;", elem: "10.0.0.1 : jump", err: "verdict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, err := parseSetType(tc.decl)
			if err == nil {
				var e setElement
				e, err = parseElement(typ, tc.elem, tc.keyOnly)
				if err == nil {
					if !bytes.Equal(e.key, tc.key) || e.verdict != tc.verdict || e.chain != tc.chain || e.comment != tc.comment {
						t.Errorf("element %q = %+v; want key %v verdict %d chain %q comment %q", tc.elem, e, tc.key, tc.verdict, tc.chain, tc.comment)
					}
				}
			}
			switch {
			case tc.unsupported:
				if !errors.Is(err, ErrUnsupportedSet) {
					t.Errorf("err = %v, want ErrUnsupportedSet", err)
				}
			case tc.err != "":
				if err == nil || errors.Is(err, ErrUnsupportedSet) || !bytes.Contains([]byte(err.Error()), []byte(tc.err)) {
					t.Errorf("err = %v, want one saying %q", err, tc.err)
				}
			case err != nil:
				t.Errorf("err = %v", err)
			}
		})
	}
}
