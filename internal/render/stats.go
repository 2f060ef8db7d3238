package render

import "bytes"

// Stats counts what a rendered script installs, for metrics and benchmarks.
type Stats struct {
	Bytes    int
	Rules    int
	Sets     int // named sets and maps
	Elements int
}

// Count returns the statistics of a script produced by Render. It relies on Render's layout: one
// command per line, and one set element per tab-indented line.
func Count(script []byte) Stats {
	st := Stats{Bytes: len(script)}
	for line := range bytes.Lines(script) {
		switch {
		case bytes.HasPrefix(line, []byte("\t")):
			st.Elements++
		case bytes.HasPrefix(line, []byte("add rule ")):
			st.Rules++
		case bytes.HasPrefix(line, []byte("add set ")), bytes.HasPrefix(line, []byte("add map ")):
			st.Sets++
		}
	}
	return st
}
