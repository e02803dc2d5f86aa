package schema

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Pos is a position in a source file. Line and Col are 1-based; Col counts
// characters (runes), as go.yaml.in/yaml/v3 does. A zero Line means the
// position names a whole file (for example one that could not be read).
type Pos struct {
	File      string
	Line, Col int
}

// String formats p as "file:line:col", or just "file" for a file-level
// position.
func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// Diagnostic is one user-facing problem in the input, at a position.
type Diagnostic struct {
	Pos Pos
	// Field is the path of the offending value from the object root in JSON
	// names, for example spec.ingress[0].from[1].ipBlock.cidr; map keys that
	// are not plain identifiers are written ["app.kubernetes.io/name"] (see
	// Key). It is empty for problems at document level. Inside a List, paths
	// are relative to the item.
	Field string
	// Message says what is wrong and what would be accepted.
	Message string
}

// String formats d as "file:line:col: field: message", leaving out the field
// when it is empty.
func (d Diagnostic) String() string {
	if d.Field == "" {
		return d.Pos.String() + ": " + d.Message
	}
	return d.Pos.String() + ": " + d.Field + ": " + d.Message
}

// Diagnostics is a list of problems. Decoding collects all of them rather
// than stopping at the first.
type Diagnostics []Diagnostic

func compareDiag(a, b Diagnostic) int {
	return cmp.Or(
		strings.Compare(a.Pos.File, b.Pos.File),
		cmp.Compare(a.Pos.Line, b.Pos.Line),
		cmp.Compare(a.Pos.Col, b.Pos.Col),
		strings.Compare(a.Field, b.Field),
		strings.Compare(a.Message, b.Message),
	)
}

// Sort orders the diagnostics by file, line, column, field and message, and
// drops exact duplicates. It needs a pointer receiver because dropping
// duplicates shortens the slice.
func (ds *Diagnostics) Sort() {
	slices.SortStableFunc(*ds, compareDiag)
	*ds = slices.Compact(*ds)
}

// Err returns ds as an error, or nil when there are no diagnostics. The
// error's dynamic type is Diagnostics, so callers can recover the list with
// errors.As.
func (ds Diagnostics) Err() error {
	if len(ds) == 0 {
		return nil
	}
	return ds
}

// Error implements error: the first diagnostic, and how many follow.
func (ds Diagnostics) Error() string {
	switch len(ds) {
	case 0:
		return "no errors"
	case 1:
		return ds[0].String()
	}
	return fmt.Sprintf("%s (and %d more errors)", ds[0], len(ds)-1)
}

// Format writes at most max diagnostics (all of them when max <= 0), sorted,
// each followed by its source line and a caret under the column, then
// "... and N more errors" when capped. src maps a file name to its contents;
// a nil src, an unknown file or a line out of range leaves out the source
// excerpt.
func (ds Diagnostics) Format(w io.Writer, max int, src func(file string) []byte) {
	sorted := slices.Clone(ds)
	sorted.Sort()
	n := len(sorted)
	if max > 0 && n > max {
		n = max
	}
	var b bytes.Buffer
	for _, d := range sorted[:n] {
		b.WriteString(d.String())
		b.WriteByte('\n')
		if src != nil && d.Pos.Line > 0 {
			if line, ok := sourceLine(src(d.Pos.File), d.Pos.Line); ok {
				writeExcerpt(&b, line, d.Pos.Col)
			}
		}
	}
	if rest := len(sorted) - n; rest > 0 {
		if rest == 1 {
			b.WriteString("... and 1 more error\n")
		} else {
			fmt.Fprintf(&b, "... and %d more errors\n", rest)
		}
	}
	w.Write(b.Bytes())
}

// sourceLine returns the 1-based line of data, without its line ending.
func sourceLine(data []byte, line int) ([]byte, bool) {
	if data == nil {
		return nil, false
	}
	for i := 1; i < line; i++ {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil, false
		}
		data = data[nl+1:]
	}
	if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
		data = data[:nl]
	}
	return bytes.TrimSuffix(data, []byte("\r")), true
}

// writeExcerpt writes the source line and a caret under column col, in the
// style of cel-go. Tabs before the column are copied so that the caret lines
// up however the terminal renders them.
func writeExcerpt(b *bytes.Buffer, line []byte, col int) {
	b.WriteString(" | ")
	b.Write(line)
	b.WriteString("\n | ")
	for i := 1; i < col && len(line) > 0; i++ {
		r, size := utf8.DecodeRune(line)
		line = line[size:]
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	b.WriteString("^\n")
}

// Key returns the field path element for the map key k: ".k" when k is a
// plain identifier ([A-Za-z_][A-Za-z0-9_]*), and ["k"] (Go-quoted) otherwise.
// Callers append it to a path: "metadata.labels" + Key("app.kubernetes.io/name").
func Key(k string) string {
	if isIdent(k) {
		return "." + k
	}
	return "[" + strconv.Quote(k) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// appendKey appends the path element for k to path, without a leading dot
// at the root.
func appendKey(path []byte, k string) []byte {
	if isIdent(k) {
		if len(path) > 0 {
			path = append(path, '.')
		}
		return append(path, k...)
	}
	path = append(path, '[')
	path = strconv.AppendQuote(path, k)
	return append(path, ']')
}

func appendIndex(path []byte, i int) []byte {
	path = append(path, '[')
	path = strconv.AppendInt(path, int64(i), 10)
	return append(path, ']')
}

// pathElem is one step of a parsed field path: a mapping key or a list
// index.
type pathElem struct {
	key   string
	index int // -1 for a key
}

// parsePath splits a field path written as Diagnostic.Field into steps. It
// stops at the first malformed step and returns the steps before it: PosOf
// then reports the nearest existing ancestor, which is the useful answer for
// a malformed path too.
func parsePath(p string) []pathElem {
	var elems []pathElem
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
			continue
		case '[':
			if len(p) > 1 && p[1] == '"' {
				q, err := strconv.QuotedPrefix(p[1:])
				if err != nil || !strings.HasPrefix(p[1+len(q):], "]") {
					return elems
				}
				k, _ := strconv.Unquote(q)
				elems = append(elems, pathElem{key: k, index: -1})
				p = p[1+len(q)+1:]
				continue
			}
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return elems
			}
			i, err := strconv.Atoi(p[1:end])
			if err != nil || i < 0 {
				return elems
			}
			elems = append(elems, pathElem{index: i})
			p = p[end+1:]
			continue
		}
		end := strings.IndexAny(p, ".[")
		if end < 0 {
			end = len(p)
		}
		elems = append(elems, pathElem{key: p[:end], index: -1})
		p = p[end:]
	}
	return elems
}
