package agent

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
)

// addrRange is an inclusive range of addresses, as an interval set element covers.
type addrRange struct{ lo, hi netip.Addr }

// addrSet is the addresses a set holds, as ranges.
type addrSet []addrRange

// contains reports whether a is inside one of the ranges. Matching is on parsed addresses, never
// on text: 10.0.0.1 is not inside an element 10.0.0.10, and 10.0.0.8 is inside 10.0.0.7-10.0.0.9
// (the renderer merges adjacent peer addresses into ranges, and a CIDR covers many).
func (s addrSet) contains(a netip.Addr) bool {
	return slices.ContainsFunc(s, func(r addrRange) bool {
		return r.lo.BitLen() == a.BitLen() && r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0
	})
}

// parseElement parses one set element: an address, a range lo-hi or a prefix, optionally
// followed by more (" . tcp . 80" in a concatenation, " : jump chain" in a map), which is
// ignored. ok is false when it is none of these.
func parseElement(e string) (addrRange, bool) {
	f := strings.Fields(e)
	if len(f) == 0 {
		return addrRange{}, false
	}
	e = f[0]
	if lo, hi, ok := strings.Cut(e, "-"); ok {
		l, err1 := netip.ParseAddr(lo)
		h, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil {
			return addrRange{}, false
		}
		return addrRange{l, h}, true
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return addrRange{}, false
		}
		p = p.Masked()
		return addrRange{p.Addr(), lastAddr(p)}, true
	}
	a, err := netip.ParseAddr(e)
	if err != nil {
		return addrRange{}, false
	}
	return addrRange{a, a}, true
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// parseElements parses the body of an element list, "{ a, b-c,\n\td/24 }" (braces optional).
func parseElements(body string) addrSet {
	body = strings.TrimSpace(body)
	body = strings.TrimSuffix(strings.TrimPrefix(body, "{"), "}")
	var out addrSet
	for e := range strings.SplitSeq(body, ",") {
		if r, ok := parseElement(e); ok {
			out = append(out, r)
		}
	}
	return out
}

// scriptSetAddrs returns the addresses that the sets of a script whose names contain fragment
// hold, from the elements clauses of its "add set inet T NAME { ...; elements = {" ... "}; }"
// commands. A script without such a set holds none.
func scriptSetAddrs(script []byte, fragment string) addrSet {
	var out addrSet
	rest := script
	for {
		i := bytes.Index(rest, []byte("\nadd set inet "))
		if i < 0 {
			return out
		}
		rest = rest[i+1:]
		eol := bytes.IndexByte(rest, '\n')
		if eol < 0 {
			eol = len(rest)
		}
		line := string(rest[:eol])
		f := strings.Fields(line) // add set inet TABLE NAME { ...
		open := strings.Index(line, "elements = {")
		if len(f) < 5 || !strings.Contains(f[4], fragment) || open < 0 {
			continue // another set, or one without elements
		}
		open += len("elements = ")
		end := bytes.IndexByte(rest[open:], '}')
		if end < 0 {
			return out
		}
		out = append(out, parseElements(string(rest[open:open+end+1]))...)
		rest = rest[open+end:]
	}
}

// listingSetAddrs returns the addresses the sets whose names contain fragment hold in the output
// of `nft list table` ("set NAME {" ... "elements = { a, b,\n\t\tc }" ... "}").
func listingSetAddrs(listing, fragment string) addrSet {
	var out addrSet
	in, collecting := false, false
	var body strings.Builder
	for raw := range strings.SplitSeq(listing, "\n") {
		l := strings.TrimSpace(raw)
		switch {
		case collecting:
			body.WriteString(" " + l)
			if strings.Contains(l, "}") {
				out = append(out, parseElements(body.String())...)
				body.Reset()
				collecting = false
			}
		case strings.HasPrefix(l, "set ") && strings.HasSuffix(l, "{"):
			in = strings.Contains(l, fragment)
		case l == "}":
			in = false
		case in && strings.HasPrefix(l, "elements = {"):
			body.WriteString(strings.TrimPrefix(l, "elements = "))
			if strings.Contains(l, "}") {
				out = append(out, parseElements(body.String())...)
				body.Reset()
			} else {
				collecting = true
			}
		}
	}
	return out
}
