package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SetChange is what one update does to the elements of one set or map of the table, in the
// script's text (package render's ElementChange, which converts to it): Delete holds keys (a
// map's without their values), Add whole elements, "KEY", "KEY : VERDICT", either with
// ` comment "TEXT"` after it. Decl is the set's declaration as the script writes it
// (`add set inet TABLE NAME { type ...; ...`), which gives the type of its keys and values.
type SetChange struct {
	Set, Decl   string
	Delete, Add []string
}

// ErrUnsupportedSet means that an element change cannot go over netlink because this package
// does not encode the set's type (an interval set, a type other than those the renderer writes
// for elements that change: addresses, named-port endpoints, verdict maps, marks, families). The caller
// applies the change with nft instead.
var ErrUnsupportedSet = errors.New("the set's elements are not encoded for netlink")

// setType is what encoding a set's elements needs to know of its declaration.
type setType struct {
	key     []string // the key's field types, more than one for a concatenation
	verdict bool     // a map whose values are verdicts
}

// parseSetType reads the type of a set from its declaration: the first clause after the brace,
// `type A . B . C` or `type A : verdict`. A set with flags (interval, timeout, dynamic) or
// another value type is ErrUnsupportedSet.
func parseSetType(decl string) (setType, error) {
	_, rest, ok := strings.Cut(decl, "{ type ")
	if !ok {
		return setType{}, fmt.Errorf("%w: no type in %q", ErrUnsupportedSet, decl)
	}
	typ, rest, _ := strings.Cut(rest, ";")
	if strings.HasPrefix(strings.TrimSpace(rest), "flags ") {
		return setType{}, fmt.Errorf("%w: %q has flags", ErrUnsupportedSet, decl)
	}
	var t setType
	if k, v, isMap := strings.Cut(typ, " : "); isMap {
		if v != "verdict" {
			return setType{}, fmt.Errorf("%w: values of type %s", ErrUnsupportedSet, v)
		}
		typ, t.verdict = k, true
	}
	t.key = strings.Split(typ, " . ")
	for _, f := range t.key {
		if _, ok := fieldLen[f]; !ok {
			return setType{}, fmt.Errorf("%w: key type %s", ErrUnsupportedSet, f)
		}
	}
	return t, nil
}

// fieldLen is the length in the kernel of each key type this package encodes.
var fieldLen = map[string]int{"ipv4_addr": 4, "ipv6_addr": 16, "inet_proto": 1, "inet_service": 2, "mark": 4, "nf_proto": 1}

// setElement is one element as the kernel takes it.
type setElement struct {
	key     []byte
	verdict int32 // for a verdict map (isMap)
	chain   string
	isMap   bool
	comment string
}

// parseElement reads one element in the script's text. key is true for a key alone (a delete).
func parseElement(t setType, text string, keyOnly bool) (setElement, error) {
	var e setElement
	if before, c, ok := strings.Cut(text, ` comment "`); ok {
		e.comment, text = strings.TrimSuffix(c, `"`), before
	}
	keyText, value, hasValue := strings.Cut(text, " : ")
	switch {
	case t.verdict && !keyOnly && !hasValue:
		return setElement{}, fmt.Errorf("element %q of a verdict map has no verdict", text)
	case hasValue && (!t.verdict || keyOnly):
		return setElement{}, fmt.Errorf("element %q has a value where only a key is expected", text)
	}
	fields := strings.Split(keyText, " . ")
	if len(fields) != len(t.key) {
		return setElement{}, fmt.Errorf("element %q does not have the %d fields of its set's key", text, len(t.key))
	}
	for i, f := range fields {
		b, err := encodeField(t.key[i], f)
		if err != nil {
			return setElement{}, fmt.Errorf("element %q: %w", text, err)
		}
		// In a concatenation every field takes whole 32-bit registers.
		for len(t.key) > 1 && len(b)%4 != 0 {
			b = append(b, 0)
		}
		e.key = append(e.key, b...)
	}
	if hasValue {
		verb, chain, _ := strings.Cut(value, " ")
		switch verb {
		case "accept":
			e.verdict = verdictAccept
		case "drop":
			e.verdict = verdictDrop
		case "jump":
			e.verdict = verdictJump
		case "goto":
			e.verdict = verdictGoto
		default:
			return setElement{}, fmt.Errorf("element %q: unknown verdict %q", text, value)
		}
		if (chain != "") != (verb == "jump" || verb == "goto") {
			return setElement{}, fmt.Errorf("element %q: verdict %q", text, value)
		}
		e.chain, e.isMap = chain, true
	}
	return e, nil
}

// encodeField returns one key field in the kernel's byte order: network order for addresses,
// protocols and ports, the host's for a mark (nft's `mark` type).
func encodeField(typ, text string) ([]byte, error) {
	switch typ {
	case "ipv4_addr", "ipv6_addr":
		a, err := netip.ParseAddr(text)
		if err != nil || a.Is4() != (typ == "ipv4_addr") || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an %s", text, typ)
		}
		return a.AsSlice(), nil
	case "inet_proto":
		if p, ok := protocols[text]; ok {
			return []byte{p}, nil
		}
		n, err := strconv.ParseUint(text, 10, 8)
		if err != nil {
			return nil, fmt.Errorf("%q is not a protocol", text)
		}
		return []byte{byte(n)}, nil
	case "inet_service":
		n, err := strconv.ParseUint(text, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%q is not a port number", text)
		}
		return binary.BigEndian.AppendUint16(nil, uint16(n)), nil
	case "nf_proto":
		switch text {
		case "ipv4":
			return []byte{nfprotoIPv4}, nil
		case "ipv6":
			return []byte{nfprotoIPv6}, nil
		}
		return nil, fmt.Errorf("%q is not ipv4 or ipv6", text)
	case "mark":
		n, err := strconv.ParseUint(text, 0, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a mark", text)
		}
		return binary.NativeEndian.AppendUint32(nil, uint32(n)), nil
	}
	return nil, fmt.Errorf("%w: key type %s", ErrUnsupportedSet, typ)
}

// protocols are the protocol names the renderer writes in named-port elements.
var protocols = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

// The families of nf_proto keys (NFPROTO_IPV4, NFPROTO_IPV6).
const (
	nfprotoIPv4 = 2
	nfprotoIPv6 = 10
)

// The kernel's verdict codes (NF_ACCEPT, NF_DROP, NFT_JUMP, NFT_GOTO).
const (
	verdictDrop   = 0
	verdictAccept = 1
	verdictJump   = -3
	verdictGoto   = -4
)

// setChangeElements parses a change's elements: the keys to delete and the elements to add.
func setChangeElements(c SetChange) (del, add []setElement, err error) {
	t, err := parseSetType(c.Decl)
	if err != nil {
		return nil, nil, fmt.Errorf("set %s: %w", c.Set, err)
	}
	for _, text := range c.Delete {
		e, err := parseElement(t, text, true)
		if err != nil {
			return nil, nil, fmt.Errorf("set %s: %w", c.Set, err)
		}
		del = append(del, e)
	}
	for _, text := range c.Add {
		e, err := parseElement(t, text, false)
		if err != nil {
			return nil, nil, fmt.Errorf("set %s: %w", c.Set, err)
		}
		add = append(add, e)
	}
	return del, add, nil
}
