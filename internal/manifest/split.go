package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// document is one manifest document cut out of a source, not yet decoded.
type document struct {
	index int    // 1-based position in the source
	line  int    // 1-based line of its first line that is neither blank nor a comment
	data  []byte // the document text; YAML unless isJSON
	// isJSON says data is exactly one JSON value, so it needs no YAML conversion.
	isJSON bool
	// err is set instead of data when the document could not even be cut out, so the problem is
	// reported at its place while the other documents are still read.
	err error
}

var utf8BOM = []byte("\xef\xbb\xbf")

// splitDocuments cuts a source into documents.
//
// It splits on "---" lines itself rather than with k8s.io/apimachinery/pkg/util/yaml's readers,
// because those drop empty documents and do not say where a document starts, and an operator
// fixing a large dump needs the line number. The separator rule is the same as kubectl's: a line
// starting with "---" followed by nothing, or by a comment, ends a document.
func splitDocuments(src []byte) []document {
	// Editors on some platforms prepend a byte order mark; it is not part of the content and would
	// keep a JSON source from being recognised.
	src = bytes.TrimPrefix(src, utf8BOM)

	var (
		docs      []document
		index     int    // number of the last document started
		leading   = true // the section before the first separator
		start     int    // byte offset of the current section
		startLine = 1    // line number of the current section's first line
		lineNo    = 1
		// badSep is set by a "---" line followed by content, which opens a document that cannot
		// be read; the section after it is that document.
		badSep  error
		badLine int
	)
	section := func(text []byte, firstLine int) {
		if badSep != nil {
			index++
			docs = append(docs, document{index: index, line: badLine, err: badSep})
			badSep = nil
			return
		}
		text, firstLine = trimLeadingComments(text, firstLine)
		if len(text) == 0 {
			// An empty section between two separators still counts, so document numbers match
			// what the operator sees by counting "---" lines; a file opening with "---" does not
			// start with an empty document, though.
			if !leading {
				index++
			}
			return
		}
		index++
		if text[0] == '{' {
			docs = append(docs, splitJSON(text, firstLine, &index)...)
			return
		}
		docs = append(docs, document{index: index, line: firstLine, data: text})
	}

	for pos := 0; pos < len(src); lineNo++ {
		end := bytes.IndexByte(src[pos:], '\n')
		if end < 0 {
			end = len(src)
		} else {
			end += pos + 1
		}
		line := src[pos:end]
		if sep, rest := isSeparator(line); sep {
			section(src[start:pos], startLine)
			leading = false
			if rest != "" {
				// YAML allows content after "---" (e.g. "--- {a: 1}"), but kubectl rejects it and
				// manifests never need it; say so rather than guess.
				badSep = fmt.Errorf("unexpected %q after the --- document separator (only a comment may follow it)", rest)
				badLine = lineNo
			}
			start, startLine = end, lineNo+1
		}
		pos = end
	}
	section(src[start:], startLine)
	return docs
}

// isSeparator reports whether line is a YAML document separator, and returns any text after the
// "---" that is not a comment.
func isSeparator(line []byte) (bool, string) {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false, ""
	}
	rest := line[3:]
	// "---foo" is a plain scalar, not a separator: the marker must end the line or be followed by
	// white space.
	if len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '\r' && rest[0] != '\n' {
		return false, ""
	}
	rest = bytes.TrimSpace(rest)
	if len(rest) == 0 || rest[0] == '#' {
		return true, ""
	}
	return true, string(rest)
}

// trimLeadingComments drops the blank and comment lines a document starts with, so the line
// reported for it is where its content starts (license headers are common in manifests), and
// returns the new first line number. A document made only of such lines comes back empty.
// Dropping them does not change the YAML, since nothing can precede them.
func trimLeadingComments(text []byte, firstLine int) ([]byte, int) {
	for len(text) > 0 {
		end := bytes.IndexByte(text, '\n')
		if end < 0 {
			end = len(text)
		} else {
			end++
		}
		trimmed := bytes.TrimSpace(text[:end])
		if len(trimmed) > 0 && trimmed[0] != '#' {
			break
		}
		text = text[end:]
		firstLine++
	}
	return text, firstLine
}

// splitJSON cuts a section that starts with "{" into its JSON values: a JSON source may be a
// stream of concatenated objects (as some tools write them), each one a document of its own,
// numbered from *index on.
func splitJSON(text []byte, firstLine int, index *int) []document {
	dec := json.NewDecoder(bytes.NewReader(text))
	var docs []document
	for {
		offset := int(dec.InputOffset())
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs
		}
		// The first value is the document the caller numbered; later ones get the next numbers,
		// taken only once there is a value, so trailing comments take none.
		n := *index
		if len(docs) > 0 {
			n++
		}
		// The value starts after the white space that separates it from the previous one.
		for offset < len(text) && isJSONSpace(text[offset]) {
			offset++
		}
		line := firstLine + bytes.Count(text[:offset], []byte("\n"))
		if err != nil {
			if len(docs) == 0 {
				// Not JSON after all: YAML flow style ({a: 1}) also starts with "{". Let the YAML
				// decoder have it; if it fails too, its error is as useful as the JSON one.
				return []document{{index: n, line: firstLine, data: text}}
			}
			if rest, _ := trimLeadingComments(text[offset:], 0); len(rest) == 0 {
				// Only comments follow the last value: valid YAML, so accept it as such.
				return docs
			}
			// Mid-stream there is no telling where the next value starts, so the rest of the
			// section is lost; report it at the value that broke, saying where it broke.
			var syntax *json.SyntaxError
			if errors.As(err, &syntax) {
				at := firstLine + bytes.Count(text[:min(int(syntax.Offset), len(text))], []byte("\n"))
				err = fmt.Errorf("invalid JSON at line %d: %w", at, err)
			} else {
				err = fmt.Errorf("invalid JSON: %w", err)
			}
			*index = n
			return append(docs, document{index: n, line: line, err: err})
		}
		*index = n
		docs = append(docs, document{index: n, line: line, data: raw, isJSON: true})
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
