package schema

import (
	"unicode/utf8"
	"unsafe"

	yaml "go.yaml.in/yaml/v3"
)

// fastParse parses one document written in the plain block style that
// kubectl, Helm and most people write, several times faster than
// go.yaml.in/yaml/v3, which dominates decoding time otherwise. It returns
// nil for anything outside that subset, and the caller then parses with
// yaml.v3, so the subset can stay small and obviously right:
//
//   - block mappings and sequences (including "- key: value" items and
//     sequences indented level with their key), by indentation with spaces;
//   - single-line plain, 'single-quoted' and "double-quoted" scalars
//     without escapes, literal block scalars ("|", "|-"), and the empty
//     flow collections {} and [];
//   - comments, blank lines, a leading "---" line, and CRLF line ends;
//   - documents that are strict JSON (see fastParser.json).
//
// Anchors, aliases, tags, folded block scalars, multi-line flow scalars,
// non-empty flow collections outside JSON documents, complex keys,
// directives, tabs and unusual line breaks all fall back. For input it
// accepts it must build exactly the tree yaml.v3 builds (comments aside):
// kinds, tags, values, styles, lines and columns. FuzzFastParse checks that
// against yaml.v3, and TestCorpus on the published manifests.
//
// scratch, when not nil, is reused for the nodes and line table: the
// returned tree is then valid only until the next call with the same
// scratch.
func fastParse(data []byte, scratch *fastScratch) *yaml.Node {
	if scratch == nil {
		scratch = &fastScratch{}
	}
	// The document's bytes are never written after they are read, so the
	// parser's string (and every scalar sliced from it) can share them
	// instead of holding a second copy of the input.
	p := fastParser{s: unsafe.String(unsafe.SliceData(data), len(data)), fastScratch: scratch}
	p.nodes = p.nodes[:0]
	p.ptrs = p.ptrs[:0]
	p.stack = p.stack[:0]
	if !p.split() {
		return nil
	}
	// The first content line may be "---"; later markers are left to
	// yaml.v3 (see next).
	li := 0
	for li < len(p.lines) && p.lines[li].blank {
		li++
	}
	if li < len(p.lines) {
		if l := p.lines[li]; isMarker([]byte(p.s[l.start:l.end]), '-') || isMarker([]byte(p.s[l.start:l.end]), '.') {
			if !p.isDocStart(l) {
				return nil // content on the marker line, or an end marker
			}
			li = p.next(li)
		}
	}
	if li < 0 || li >= len(p.lines) || p.failed {
		return nil // empty documents are rare: let yaml.v3 shape them
	}
	l := p.lines[li]
	var root *yaml.Node
	if first := l.start + l.indent; p.s[first] == '{' || p.s[first] == '[' {
		if root = p.json(first); root == nil {
			return nil
		}
	} else {
		root = p.block(li, first)
		if root == nil || p.failed || p.next(p.li) >= 0 || p.failed {
			// Content the root did not take is an error for yaml.v3 to
			// report.
			return nil
		}
	}
	doc := p.node(yaml.DocumentNode, "", "", root.Line, root.Column)
	base := p.push(root)
	doc.Content = p.content(base)
	return doc
}

type fastLine struct {
	start, end int // byte offsets of the line's text, without its line break
	indent     int // leading spaces
	blank      bool
	ascii      bool
	brk        bool // ends with a line break (the last line may not)
}

type fastParser struct {
	s      string
	li     int // the last line consumed
	failed bool
	*fastScratch
}

// fastScratch is memory fastParse can reuse from one document to the next.
type fastScratch struct {
	lines []fastLine
	nodes []yaml.Node  // node slab
	ptrs  []*yaml.Node // slab for Content slices
	stack []*yaml.Node // children of the collections being parsed
}

// split cuts s into lines, refusing characters the subset leaves to yaml.v3:
// tabs, control characters, lone CRs, and the non-ASCII line breaks and
// non-printable characters of YAML.
func (p *fastParser) split() bool {
	s := p.s
	p.lines = p.lines[:0]
	for start := 0; start < len(s); {
		l := fastLine{start: start, ascii: true}
		i := start
		for ; i < len(s) && s[i] != '\n'; i++ {
			c := s[i]
			switch {
			case c >= 0x20 && c < 0x7F:
			case c == '\r' && i+1 < len(s) && s[i+1] == '\n':
			case c >= 0x80:
				r, size := utf8.DecodeRuneInString(s[i:])
				if r == utf8.RuneError || r < 0xA0 || r == 0x2028 || r == 0x2029 || r == 0xFEFF || r == 0xFFFE || r == 0xFFFF {
					return false
				}
				l.ascii = false
				i += size - 1
			default:
				return false
			}
		}
		l.end = i
		l.brk = i < len(s)
		if l.end > l.start && s[l.end-1] == '\r' {
			l.end--
		}
		for l.start+l.indent < l.end && s[l.start+l.indent] == ' ' {
			l.indent++
		}
		l.blank = l.start+l.indent == l.end || s[l.start+l.indent] == '#'
		p.lines = append(p.lines, l)
		start = i + 1
	}
	return true
}

// next returns the index of the first non-blank line after li, or -1.
// Document markers and directives after the first line end the subset.
func (p *fastParser) next(li int) int {
	for li++; li < len(p.lines); li++ {
		l := p.lines[li]
		if l.blank {
			continue
		}
		if l.indent == 0 {
			switch p.s[l.start] {
			case '%':
				p.failed = true
				return -1
			case '-', '.':
				t := p.s[l.start:l.end]
				if len(t) >= 3 && (t[:3] == "---" || t[:3] == "...") && (len(t) == 3 || t[3] == ' ') {
					p.failed = true
					return -1
				}
			}
		}
		return li
	}
	return -1
}

// isDocStart reports whether l is "---" alone or followed by a comment.
func (p *fastParser) isDocStart(l fastLine) bool {
	t := p.s[l.start:l.end]
	if len(t) < 3 || t[:3] != "---" {
		return false
	}
	rest := trimSpaces(t[3:])
	if len(t) > 3 && t[3] != ' ' {
		return false
	}
	return rest == "" || rest[0] == '#'
}

func trimSpaces(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

func (p *fastParser) fail() *yaml.Node {
	p.failed = true
	return nil
}

// node allocates nodes from a slab, since documents have hundreds. When
// the slab is full a larger one replaces it; nodes in the old one stay
// valid.
func (p *fastParser) node(kind yaml.Kind, tag, value string, line, col int) *yaml.Node {
	if len(p.nodes) == cap(p.nodes) {
		p.nodes = make([]yaml.Node, 0, max(256, 2*cap(p.nodes)))
	}
	p.nodes = append(p.nodes, yaml.Node{Kind: kind, Tag: tag, Value: value, Line: line, Column: col})
	return &p.nodes[len(p.nodes)-1]
}

// push adds a child of the collection being parsed and returns the stack
// depth before it, the base to pass to content.
func (p *fastParser) push(n *yaml.Node) int {
	p.stack = append(p.stack, n)
	return len(p.stack) - 1
}

// content moves the children pushed since base into a Content slice.
func (p *fastParser) content(base int) []*yaml.Node {
	k := len(p.stack) - base
	if cap(p.ptrs)-len(p.ptrs) < k {
		p.ptrs = make([]*yaml.Node, 0, max(1024, k, 2*cap(p.ptrs)))
	}
	at := len(p.ptrs)
	p.ptrs = append(p.ptrs, p.stack[base:]...)
	p.stack = p.stack[:base]
	return p.ptrs[at : at+k : at+k]
}

// col returns the 1-based column of byte offset off on line li.
func (p *fastParser) col(li, off int) int {
	l := p.lines[li]
	if l.ascii {
		return off - l.start + 1
	}
	return utf8.RuneCountInString(p.s[l.start:off]) + 1
}

// isEntry reports whether the text at off is a sequence entry: "-"
// followed by a space or the end of the line.
func (p *fastParser) isEntry(li, off int) bool {
	end := p.lines[li].end
	return off < end && p.s[off] == '-' && (off+1 == end || p.s[off+1] == ' ')
}

// block parses the collection whose first entry starts at byte off of line
// li, and sets p.li to its last line.
func (p *fastParser) block(li, off int) *yaml.Node {
	if p.isEntry(li, off) {
		return p.sequence(li, off)
	}
	return p.mapping(li, off)
}

// mapping parses a block mapping whose first key is at off on line li;
// later keys must start lines at the same column.
func (p *fastParser) mapping(li, off int) *yaml.Node {
	col := off - p.lines[li].start // keys' indentation, in bytes: all spaces
	n := p.node(yaml.MappingNode, mapTag, "", li+1, p.col(li, off))
	base := len(p.stack)
	for {
		key, after := p.key(li, off)
		if key == nil {
			return p.fail()
		}
		p.push(key)
		v := p.value(li, after, col, true)
		if p.failed {
			return nil
		}
		p.push(v)
		nx := p.next(p.li)
		if nx < 0 || p.lines[nx].indent < col {
			n.Content = p.content(base)
			return n
		}
		l := p.lines[nx]
		if l.indent > col || p.isEntry(nx, l.start+l.indent) {
			return p.fail()
		}
		li, off = nx, l.start+l.indent
	}
}

// sequence parses a block sequence whose first "-" is at off on line li.
func (p *fastParser) sequence(li, off int) *yaml.Node {
	col := off - p.lines[li].start
	n := p.node(yaml.SequenceNode, seqTag, "", li+1, p.col(li, off))
	base := len(p.stack)
	for {
		v := p.value(li, off+1, col, false)
		if p.failed {
			return nil
		}
		p.push(v)
		nx := p.next(p.li)
		if nx < 0 || p.lines[nx].indent < col {
			n.Content = p.content(base)
			return n
		}
		l := p.lines[nx]
		if l.indent > col {
			return p.fail()
		}
		if !p.isEntry(nx, l.start+l.indent) {
			// A key at the sequence's column ends an indentless sequence;
			// the enclosing mapping takes it (or fails on it).
			n.Content = p.content(base)
			return n
		}
		li, off = nx, l.start+l.indent
	}
}

// value parses what follows a key's ":" or an entry's "-" (at byte off of
// line li); col is the column of the key or "-". Mapping values may be
// sequences at the key's own column.
func (p *fastParser) value(li, off, col int, inMapping bool) *yaml.Node {
	l := p.lines[li]
	p.li = li
	at := off
	for at < l.end && p.s[at] == ' ' {
		at++
	}
	if at == l.end || (p.s[at] == '#' && at > off) {
		// The value is on the following lines, or empty.
		nx := p.next(li)
		if p.failed {
			return nil
		}
		if nx >= 0 {
			nl := p.lines[nx]
			first := nl.start + nl.indent
			switch {
			case nl.indent > col:
				if !p.isEntry(nx, first) && !p.isKey(nx, first) {
					return p.fail() // a scalar on its own line: maybe multi-line
				}
				return p.block(nx, first)
			case nl.indent == col && inMapping && p.isEntry(nx, first):
				return p.sequence(nx, first)
			}
		}
		return p.node(yaml.ScalarNode, nullTag, "", li+1, p.col(li, off))
	}
	if at == off && inMapping {
		return p.fail() // "key:value" is a plain scalar, not a key
	}
	if !inMapping && at == off {
		return p.fail() // "-x" is a plain scalar, not an entry
	}
	if p.isEntry(li, at) {
		return p.fail() // nested "- - x" or "key: - x"
	}
	if !inMapping && p.isKey(li, at) {
		// "- key: value": a mapping in the entry, its keys at this column.
		return p.mapping(li, at)
	}
	if p.s[at] == '|' {
		return p.literal(li, at, col)
	}
	v, end := p.scalar(li, at)
	if v == nil || !p.restIsComment(li, end) {
		return p.fail()
	}
	// A following line indented deeper would continue the scalar (or be an
	// error): leave both to yaml.v3.
	if nx := p.next(li); nx >= 0 && p.lines[nx].indent > col {
		return p.fail()
	}
	return v
}

// literal parses a literal block scalar ("|" or "|-", the forms kubectl
// writes for multi-line annotations) whose indicator is at off on line li;
// col is the column of its key or "-". Its content must be indented deeper
// than col, with the indentation of its first line; lines of spaces only,
// explicit indentation and "keep" chomping fall back.
func (p *fastParser) literal(li, off, col int) *yaml.Node {
	l := p.lines[li]
	header := trimSpaces(p.s[off:l.end])
	if header != "|" && header != "|-" {
		return p.fail()
	}
	indent := -1
	var b []byte
	empty := 0 // empty lines not yet known to be inside the scalar
	last := li
	for j := li + 1; j < len(p.lines); j++ {
		cl := p.lines[j]
		switch {
		case cl.start == cl.end:
			empty++
			continue
		case cl.indent == cl.end-cl.start:
			return p.fail() // spaces only: indentation rules we leave to yaml.v3
		case indent < 0:
			if cl.indent <= col {
				return p.fail() // an empty block scalar
			}
			indent = cl.indent
		case cl.indent < indent:
			j = len(p.lines) // ends the scalar
			continue
		}
		for ; empty > 0; empty-- {
			b = append(b, '\n')
		}
		b = append(b, p.s[cl.start+indent:cl.end]...)
		if cl.brk {
			b = append(b, '\n')
		}
		last = j
	}
	if indent < 0 {
		return p.fail()
	}
	if header == "|-" && len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	p.li = last
	n := p.node(yaml.ScalarNode, strTag, string(b), li+1, p.col(li, off))
	n.Style = yaml.LiteralStyle
	return n
}

// restIsComment reports whether line li has only spaces and an optional
// comment from byte off on.
func (p *fastParser) restIsComment(li, off int) bool {
	l := p.lines[li]
	at := off
	for at < l.end && p.s[at] == ' ' {
		at++
	}
	return at == l.end || (p.s[at] == '#' && at > off)
}

// isKey reports whether the text at off on line li is a simple mapping key
// followed by ":".
func (p *fastParser) isKey(li, off int) bool {
	k, _ := p.scanKey(li, off)
	return k >= 0
}

// scanKey returns the end of the key text at off and the offset after its
// ":", or -1. Keys over 1000 bytes are refused: YAML limits simple keys to
// 1024 characters.
func (p *fastParser) scanKey(li, off int) (keyEnd, after int) {
	keyEnd, after = p.scanKey1(li, off)
	if keyEnd-off > 1000 {
		return -1, 0
	}
	return keyEnd, after
}

func (p *fastParser) scanKey1(li, off int) (keyEnd, after int) {
	l := p.lines[li]
	s := p.s
	if off >= l.end {
		return -1, 0
	}
	switch c := s[off]; c {
	case '"', '\'':
		end := p.quotedEnd(li, off)
		if end < 0 || end >= l.end || s[end] != ':' || (end+1 < l.end && s[end+1] != ' ') {
			return -1, 0
		}
		return end, end + 1
	}
	if !plainStart(s, off, l.end) {
		return -1, 0
	}
	for i := off; i < l.end; i++ {
		switch s[i] {
		case ':':
			if i+1 == l.end || s[i+1] == ' ' {
				if s[i-1] == ' ' {
					return -1, 0 // "key :" is valid YAML, but rare
				}
				return i, i + 1
			}
		case '#':
			if s[i-1] == ' ' {
				return -1, 0
			}
		case '[', ']', '{', '}', ',':
			// Fine in block plain scalars, but a key with them is unusual
			// enough to leave to yaml.v3.
			return -1, 0
		}
	}
	return -1, 0
}

// key parses the key at off on line li and returns it with the offset after
// its ":".
func (p *fastParser) key(li, off int) (*yaml.Node, int) {
	end, after := p.scanKey(li, off)
	if end < 0 {
		return nil, 0
	}
	if c := p.s[off]; c == '"' || c == '\'' {
		k, _ := p.scalar(li, off)
		return k, after
	}
	v := p.s[off:end]
	tag := plainTag(v)
	if tag == "" {
		return nil, 0
	}
	return p.node(yaml.ScalarNode, tag, v, li+1, p.col(li, off)), after
}

// plainStart reports whether a plain scalar may start at off: not with an
// indicator, except "-" followed by a non-space ("-1").
func plainStart(s string, off, end int) bool {
	switch s[off] {
	case '-':
		return off+1 < end && s[off+1] != ' '
	case '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', ' ':
		return false
	}
	return true
}

// quotedEnd returns the offset just after the closing quote of the quoted
// scalar at off, or -1 when it does not close on this line or (double
// quoted) has an escape.
func (p *fastParser) quotedEnd(li, off int) int {
	l := p.lines[li]
	q := p.s[off]
	for i := off + 1; i < l.end; i++ {
		switch p.s[i] {
		case '\\':
			if q == '"' {
				return -1
			}
		case q:
			if q == '\'' && i+1 < l.end && p.s[i+1] == '\'' {
				i++
				continue
			}
			return i + 1
		}
	}
	return -1
}

// scalar parses the single-line scalar or empty flow collection at off and
// returns it with the offset after it.
func (p *fastParser) scalar(li, off int) (*yaml.Node, int) {
	l := p.lines[li]
	s := p.s
	line, col := li+1, p.col(li, off)
	switch s[off] {
	case '"', '\'':
		end := p.quotedEnd(li, off)
		if end < 0 {
			return nil, 0
		}
		v := s[off+1 : end-1]
		n := p.node(yaml.ScalarNode, strTag, v, line, col)
		n.Style = yaml.DoubleQuotedStyle
		if s[off] == '\'' {
			n.Style = yaml.SingleQuotedStyle
			n.Value = unquoteSingle(v)
		}
		return n, end
	case '{', '[':
		if off+1 >= l.end || (s[off] == '{' && s[off+1] != '}') || (s[off] == '[' && s[off+1] != ']') {
			return nil, 0
		}
		kind, tag := yaml.MappingNode, mapTag
		if s[off] == '[' {
			kind, tag = yaml.SequenceNode, seqTag
		}
		n := p.node(kind, tag, "", line, col)
		n.Style = yaml.FlowStyle
		return n, off + 2
	}
	if !plainStart(s, off, l.end) {
		return nil, 0
	}
	end := off
	for i := off; i < l.end; i++ {
		c := s[i]
		if c == ':' && (i+1 == l.end || s[i+1] == ' ') {
			return nil, 0 // "a: b: c" is an error in YAML
		}
		if c == '#' && s[i-1] == ' ' {
			break
		}
		if c != ' ' {
			end = i + 1
		}
	}
	v := s[off:end]
	tag := plainTag(v)
	if tag == "" {
		return nil, 0
	}
	return p.node(yaml.ScalarNode, tag, v, line, col), end
}

func unquoteSingle(v string) string {
	for i := 0; i+1 < len(v); i++ {
		if v[i] == '\'' {
			b := make([]byte, 0, len(v))
			for j := 0; j < len(v); j++ {
				b = append(b, v[j])
				if v[j] == '\'' {
					j++
				}
			}
			return string(b)
		}
	}
	return v
}

// plainTag resolves a plain scalar's tag as go.yaml.in/yaml/v3 does, from
// the same first-character hints. Most values start with a character that
// can only begin a string, or are words checked against the same table
// yaml.v3 uses; values that could be numbers or timestamps go through
// yaml.v3's own resolver (Node.ShortTag), unless they hold a character no
// number or timestamp has. Tags other than the plain scalar ones (a merge
// key "<<") return "", so that the caller falls back.
func plainTag(v string) string {
	if v == "" {
		return nullTag
	}
	switch v[0] {
	case 'y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O', '~', '<':
		switch v {
		case "true", "True", "TRUE", "false", "False", "FALSE":
			return boolTag
		case "null", "Null", "NULL", "~":
			return nullTag
		case "<<":
			return ""
		}
		return strTag
	case '+', '-', '.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		for i := 0; i < len(v); i++ {
			if !numericChar[v[i]] {
				return strTag
			}
		}
		n := yaml.Node{Kind: yaml.ScalarNode, Value: v}
		switch tag := n.ShortTag(); tag {
		case strTag, intTag, floatTag, boolTag, nullTag, timestampTag:
			return tag
		}
		return ""
	}
	return strTag
}

// numericChar holds every character of the integers (0x, 0o, 0b, _),
// floats (.inf, .nan, exponents) and timestamps yaml.v3 resolves.
var numericChar = func() (t [256]bool) {
	for _, c := range "0123456789+-._: abcdefABCDEFxXoObBtTzZiInN" {
		t[c] = true
	}
	return t
}()
