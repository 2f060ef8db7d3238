//go:build linux

package demo

import (
	"fmt"
	"strings"
)

// cell is one flow's outcome.
type cell byte

const (
	reachable cell = '.'
	blocked   cell = 'X'
	notTried  cell = '-'
)

// table holds, per client row and server column, the IPv4 and the IPv6 outcome.
type table struct {
	rows  []string
	cols  []column
	cells [][][2]cell
}

func newTable(rows []string, cols []column) *table {
	t := &table{rows: rows, cols: cols, cells: make([][][2]cell, len(rows))}
	for i := range t.cells {
		t.cells[i] = make([][2]cell, len(cols))
	}
	return t
}

func (t *table) rowIndex(name string) int {
	for i, r := range t.rows {
		if r == name {
			return i
		}
	}
	return -1
}

// parseTable reads a table written as in steps.go: one line per row, the row name then one
// two-character cell per column. The rows must be exactly rows, in order.
func parseTable(text string, rows []string, cols []column) (*table, error) {
	t := newTable(rows, cols)
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(rows) {
		return nil, fmt.Errorf("%d rows, want %d (%v)", len(lines), len(rows), rows)
	}
	for i, l := range lines {
		f := strings.Fields(l)
		if f[0] != rows[i] {
			return nil, fmt.Errorf("row %d is %q, want %q", i+1, f[0], rows[i])
		}
		if len(f)-1 != len(cols) {
			return nil, fmt.Errorf("row %s has %d cells, want %d", f[0], len(f)-1, len(cols))
		}
		for j, c := range f[1:] {
			if len(c) != 2 || strings.Trim(c, ".X-") != "" {
				return nil, fmt.Errorf("row %s, column %s: cell %q is not two of '.', 'X', '-'", f[0], cols[j], c)
			}
			t.cells[i][j] = [2]cell{cell(c[0]), cell(c[1])}
		}
	}
	return t, nil
}

func (t *table) widths() (rowW int, colW []int) {
	rowW = len("client")
	for _, r := range t.rows {
		rowW = max(rowW, len(r))
	}
	for _, c := range t.cols {
		colW = append(colW, len(c.String()))
	}
	return rowW, colW
}

// header is the column line.
func (t *table) header() string {
	rowW, colW := t.widths()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-*s", rowW, "client")
	for j, c := range t.cols {
		fmt.Fprintf(&sb, "  %-*s", colW[j], c)
	}
	return strings.TrimRight(sb.String(), " ") + "\n"
}

// String prints the rows (without the header).
func (t *table) String() string {
	rowW, colW := t.widths()
	var sb strings.Builder
	for i, r := range t.rows {
		var line strings.Builder
		fmt.Fprintf(&line, "%-*s", rowW, r)
		for j := range t.cols {
			c := t.cells[i][j]
			fmt.Fprintf(&line, "  %-*s", colW[j], string([]byte{byte(c[0]), byte(c[1])}))
		}
		sb.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	return sb.String()
}

// merge marks reachable every cell that other measured reachable.
func (t *table) merge(other *table) {
	for i := range t.cells {
		for j := range t.cells[i] {
			for fam := range 2 {
				if other.cells[i][j][fam] == reachable {
					t.cells[i][j][fam] = reachable
				}
			}
		}
	}
}

// diff returns "" when t (observed) equals want, else both tables and the differing flows.
func (t *table) diff(want *table) string {
	var flows []string
	for i, r := range t.rows {
		for j, c := range t.cols {
			for fam, name := range []string{"IPv4", "IPv6"} {
				got, exp := t.cells[i][j][fam], want.cells[i][j][fam]
				if got != exp {
					flows = append(flows, fmt.Sprintf("%s -> %s %s: expected %s, measured %s", r, c, name, describe(exp), describe(got)))
				}
			}
		}
	}
	if len(flows) == 0 {
		return ""
	}
	return "expected:\n" + want.header() + want.String() + "measured:\n" + t.header() + t.String() + strings.Join(flows, "\n") + "\n"
}

// changes describes, in one line, the flows that opened or closed since prev.
func (prev *table) changes(now *table) string {
	var opened, closed []string
	for i, r := range now.rows {
		for j, c := range now.cols {
			var fams []string
			var to cell
			for fam, name := range []string{"v4", "v6"} {
				if a, b := prev.cells[i][j][fam], now.cells[i][j][fam]; a != b && b != notTried {
					fams = append(fams, name)
					to = b
				}
			}
			if len(fams) == 0 {
				continue
			}
			flow := fmt.Sprintf("%s->%s", r, c)
			if len(fams) == 1 {
				flow += " (" + fams[0] + ")"
			}
			if to == reachable {
				opened = append(opened, flow)
			} else {
				closed = append(closed, flow)
			}
		}
	}
	list := func(flows []string) string {
		const most = 5
		if len(flows) > most {
			return strings.Join(flows[:most], ", ") + fmt.Sprintf(" and %d more", len(flows)-most)
		}
		return strings.Join(flows, ", ")
	}
	var parts []string
	if len(opened) > 0 {
		parts = append(parts, fmt.Sprintf("%d opened (%s)", len(opened), list(opened)))
	}
	if len(closed) > 0 {
		parts = append(parts, fmt.Sprintf("%d closed (%s)", len(closed), list(closed)))
	}
	if len(parts) == 0 {
		return "nothing."
	}
	return strings.Join(parts, "; ") + "."
}

func describe(c cell) string {
	switch c {
	case reachable:
		return "reachable"
	case blocked:
		return "blocked"
	}
	return "not tried"
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int) string {
	var lines []string
	var line string
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
