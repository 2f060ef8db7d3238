//go:build linux

package datapath

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flock-net/flock-netpol/test/netns"
)

// Policies and pods come from package test/objects; these are shorthands for the scenarios.

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

const (
	ingressType = networkingv1.PolicyTypeIngress
	egressType  = networkingv1.PolicyTypeEgress
)

// truthTable parses a hand-written reachability table in the layout the bed prints (and the
// Kubernetes network policy e2e tests use): a header row of destination names, then one row per
// source, each cell one character per kind in kinds order ('.' reachable, 'X' blocked) and
// "----" on the diagonal. Every endpoint must appear exactly once as a row and as a column.
// Text after '#' on a line is a comment.
func truthTable(eps []netns.Endpoint, kinds []netns.Kind, text string) (func(from, to netns.Endpoint, k netns.Kind) bool, error) {
	var names []string
	for _, e := range eps {
		names = append(names, e.Name())
	}
	var lines [][]string
	for _, l := range strings.Split(text, "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, f)
		}
	}
	if len(lines) == 0 || lines[0][0] != `from\to` {
		return nil, fmt.Errorf(`table must start with a "from\to" header row`)
	}
	cols := lines[0][1:]
	if !sameNames(cols, names) {
		return nil, fmt.Errorf("columns %v, want each of %v once", cols, names)
	}
	cells := map[[2]string]string{}
	var rows []string
	for _, row := range lines[1:] {
		from := row[0]
		rows = append(rows, from)
		if len(row)-1 != len(cols) {
			return nil, fmt.Errorf("row %s has %d cells, want %d", from, len(row)-1, len(cols))
		}
		for i, cell := range row[1:] {
			to := cols[i]
			if len(cell) != len(kinds) {
				return nil, fmt.Errorf("cell %s -> %s is %q, want %d characters", from, to, cell, len(kinds))
			}
			if from == to {
				if cell != strings.Repeat("-", len(kinds)) {
					return nil, fmt.Errorf("cell %s -> %s is %q, want dashes (never probed)", from, to, cell)
				}
				continue
			}
			if strings.Trim(cell, ".X") != "" {
				return nil, fmt.Errorf("cell %s -> %s is %q, want only '.' and 'X'", from, to, cell)
			}
			cells[[2]string{from, to}] = cell
		}
	}
	if !sameNames(rows, names) {
		return nil, fmt.Errorf("rows %v, want each of %v once", rows, names)
	}
	return func(from, to netns.Endpoint, k netns.Kind) bool {
		cell, ok := cells[[2]string{from.Name(), to.Name()}]
		i := slices.Index(kinds, k)
		if !ok || i < 0 {
			panic(fmt.Sprintf("truth table has no cell for %s -> %s %s", from.Name(), to.Name(), k))
		}
		return cell[i] == '.'
	}, nil
}

func sameNames(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}
