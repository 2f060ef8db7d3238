//go:build linux

package netns

import (
	"fmt"
	"net/netip"
	"strings"
)

// Kind is a protocol and address family combination probed by ProbeMatrix.
type Kind string

const (
	TCP4 Kind = "tcp4"
	UDP4 Kind = "udp4"
	TCP6 Kind = "tcp6"
	UDP6 Kind = "udp6"
)

// AllKinds is what ProbeMatrix probes when no kinds are given.
var AllKinds = []Kind{TCP4, UDP4, TCP6, UDP6}

// Proto is "tcp" or "udp".
func (k Kind) Proto() string { return strings.TrimRight(string(k), "46") }

// IPv6 reports whether the kind uses IPv6 addresses.
func (k Kind) IPv6() bool { return strings.HasSuffix(string(k), "6") }

// State is one cell entry of a Matrix.
type State int8

const (
	// NotProbed: source and destination are the same endpoint, or one of them lacks an address
	// of the kind's family.
	NotProbed State = iota
	Reachable
	Blocked
)

func (s State) String() string {
	switch s {
	case Reachable:
		return "reachable"
	case Blocked:
		return "blocked"
	}
	return "not probed"
}

// glyph follows the Kubernetes network policy e2e truth tables: '.' connected, 'X' blocked.
func (s State) glyph() byte {
	switch s {
	case Reachable:
		return '.'
	case Blocked:
		return 'X'
	}
	return '-'
}

type cellKey struct {
	from, to string
	kind     Kind
}

// Matrix is a reachability table: rows are sources, columns destinations, and each cell holds one
// State per Kind (printed as one character each, in Kinds order).
type Matrix struct {
	Port     uint16
	Kinds    []Kind
	From, To []Endpoint

	cells   map[cellKey]State
	results map[cellKey]Result // observed matrices only, for Diff's explanations
}

// ProbeMatrix probes port from every endpoint in from to every endpoint in to, for each kind
// (default AllKinds), skipping an endpoint to itself (that traffic never leaves the pod and so
// never reaches a node's hooks). The destination address is the target's first address of the
// kind's family. The targets must Serve port.
func (b *Bed) ProbeMatrix(port uint16, from, to []Endpoint, kinds ...Kind) *Matrix {
	if len(kinds) == 0 {
		kinds = AllKinds
	}
	m := &Matrix{Port: port, Kinds: kinds, From: from, To: to,
		cells: map[cellKey]State{}, results: map[cellKey]Result{}}
	var flows []Flow
	var keys []cellKey
	m.each(func(f, t Endpoint, k Kind) {
		flows = append(flows, Flow{From: f, To: t.Addr(k.IPv6()), Proto: k.Proto(), Port: port})
		keys = append(keys, cellKey{f.Name(), t.Name(), k})
	})
	for i, r := range b.Probe(flows) {
		m.results[keys[i]] = r
		m.cells[keys[i]] = Blocked
		if r.OK {
			m.cells[keys[i]] = Reachable
		}
	}
	return m
}

// each calls fn for every probeable cell.
func (m *Matrix) each(fn func(from, to Endpoint, k Kind)) {
	for _, f := range m.From {
		for _, t := range m.To {
			if f.Name() == t.Name() {
				continue
			}
			for _, k := range m.Kinds {
				if f.Addr(k.IPv6()).IsValid() && t.Addr(k.IPv6()).IsValid() {
					fn(f, t, k)
				}
			}
		}
	}
}

// Get returns the state of one cell.
func (m *Matrix) Get(from, to Endpoint, k Kind) State {
	return m.cells[cellKey{from.Name(), to.Name(), k}]
}

// Result returns the probe result behind one cell of an observed matrix (ok=false if the cell was
// not probed), e.g. to check Reply.
func (m *Matrix) Result(from, to Endpoint, k Kind) (r Result, ok bool) {
	r, ok = m.results[cellKey{from.Name(), to.Name(), k}]
	return r, ok
}

// Count returns how many probeable cells of m are reachable and how many blocked.
func (m *Matrix) Count() (reachable, blocked int) {
	m.each(func(f, t Endpoint, k Kind) {
		switch m.Get(f, t, k) {
		case Reachable:
			reachable++
		case Blocked:
			blocked++
		}
	})
	return reachable, blocked
}

// Misrouted lists the reachable cells of an observed matrix that were answered by another endpoint
// than the one probed: a routing fault of the bed, which would make a cell's verdict meaningless.
func (m *Matrix) Misrouted() []string {
	var bad []string
	m.each(func(f, t Endpoint, k Kind) {
		if r, ok := m.Result(f, t, k); ok && r.OK && r.Reply != t.Name() {
			bad = append(bad, fmt.Sprintf("%v was answered by %q, not %q", r.Flow, r.Reply, t.Name()))
		}
	})
	return bad
}

// Expect returns a matrix of the same shape as m in which every probeable cell is Reachable if
// reachable(from, to, kind) is true and Blocked otherwise. Use it to build the expected matrix for
// Diff.
func (m *Matrix) Expect(reachable func(from, to Endpoint, k Kind) bool) *Matrix {
	e := &Matrix{Port: m.Port, Kinds: m.Kinds, From: m.From, To: m.To, cells: map[cellKey]State{}}
	m.each(func(f, t Endpoint, k Kind) {
		s := Blocked
		if reachable(f, t, k) {
			s = Reachable
		}
		e.cells[cellKey{f.Name(), t.Name(), k}] = s
	})
	return e
}

// String prints the matrix as a grid with a legend, e.g.
//
//	port 8080, each cell: tcp4 udp4 tcp6 udp6 ('.' reachable, 'X' blocked, '-' not probed)
//	from\to  a1    a2    b1    ext
//	a1       ----  ....  ....  ....
//	ext      XXXX  XXXX  ....  ----
func (m *Matrix) String() string {
	return m.legend() + "\n" + strings.Join(m.grid(), "\n") + "\n"
}

func (m *Matrix) legend() string {
	ks := make([]string, len(m.Kinds))
	for i, k := range m.Kinds {
		ks[i] = string(k)
	}
	return fmt.Sprintf("port %d, each cell: %s ('.' reachable, 'X' blocked, '-' not probed)", m.Port, strings.Join(ks, " "))
}

func (m *Matrix) grid() []string {
	const corner = "from\\to"
	rowW := len(corner)
	for _, f := range m.From {
		rowW = max(rowW, len(f.Name()))
	}
	colW := len(m.Kinds)
	for _, t := range m.To {
		colW = max(colW, len(t.Name()))
	}
	var lines []string
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-*s", rowW, corner)
	for _, t := range m.To {
		fmt.Fprintf(&sb, "  %-*s", colW, t.Name())
	}
	lines = append(lines, strings.TrimRight(sb.String(), " "))
	for _, f := range m.From {
		sb.Reset()
		fmt.Fprintf(&sb, "%-*s", rowW, f.Name())
		for _, t := range m.To {
			cell := make([]byte, len(m.Kinds))
			for i, k := range m.Kinds {
				cell[i] = m.cells[cellKey{f.Name(), t.Name(), k}].glyph()
			}
			fmt.Fprintf(&sb, "  %-*s", colW, cell)
		}
		lines = append(lines, strings.TrimRight(sb.String(), " "))
	}
	return lines
}

// Diff compares m (observed) with want (expected) and returns "" if they agree. Otherwise it
// returns both grids side by side followed by one line per differing cell, with addresses and the
// probe error.
func (m *Matrix) Diff(want *Matrix) string {
	var mismatches []string
	keys := map[cellKey]bool{}
	for k := range m.cells {
		keys[k] = true
	}
	for k := range want.cells {
		keys[k] = true
	}
	// Walk in grid order so the report is stable and easy to scan.
	seen := map[cellKey]bool{}
	walk := func(from, to []Endpoint, kinds []Kind) {
		for _, f := range from {
			for _, t := range to {
				for _, k := range kinds {
					key := cellKey{f.Name(), t.Name(), k}
					if !keys[key] || seen[key] {
						continue
					}
					seen[key] = true
					got, exp := m.cells[key], want.cells[key]
					if got == exp {
						continue
					}
					line := fmt.Sprintf("  %s -> %s %s (%s): expected %s, observed %s",
						f.Name(), t.Name(), k, netip.AddrPortFrom(t.Addr(k.IPv6()), m.Port), exp, got)
					if r, ok := m.results[key]; ok && r.Err != nil {
						line += ": " + r.Err.Error()
					} else if ok && r.OK {
						line += " (answered by " + r.Reply + ")"
					}
					mismatches = append(mismatches, line)
				}
			}
		}
	}
	walk(m.From, m.To, m.Kinds)
	walk(want.From, want.To, want.Kinds)
	if len(mismatches) == 0 {
		return ""
	}

	left := append([]string{"expected:"}, want.grid()...)
	right := append([]string{"observed:"}, m.grid()...)
	w := 0
	for _, l := range left {
		w = max(w, len(l))
	}
	var sb strings.Builder
	sb.WriteString(m.legend() + "\n")
	for i := range max(len(left), len(right)) {
		var l, r string
		if i < len(left) {
			l = left[i]
		}
		if i < len(right) {
			r = right[i]
		}
		fmt.Fprintf(&sb, "%-*s  |  %s\n", w, l, r)
	}
	fmt.Fprintf(&sb, "%d mismatching flows:\n%s\n", len(mismatches), strings.Join(mismatches, "\n"))
	return sb.String()
}
