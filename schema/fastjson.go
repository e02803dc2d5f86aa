package schema

import (
	"strconv"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// json parses a document that is strict JSON (kubectl get -o json),
// building the tree go.yaml.in/yaml/v3 would build for it (JSON is YAML
// flow style), several times faster. Like fastParse it returns nil for
// anything it is not sure of, and the caller falls back to yaml.v3: JSON
// that is not strict (comments, trailing commas, KYAML's bare keys), tabs,
// lone CRs, the escapes yaml.v3 reads differently or not at all (\/ and
// surrogates), and characters YAML treats specially.
// FuzzFastParse checks it against yaml.v3.
func (p *fastParser) json(off int) *yaml.Node {
	j := jsonParser{fastParser: p, off: off}
	// The caller found the value at off after blank lines and an optional
	// "---" line: count the lines before it.
	for i := 0; i < off; i++ {
		if p.s[i] == '\n' {
			j.line++
			j.lineStart = i + 1
		}
	}
	j.line++
	j.ascii = true
	for i := j.lineStart; i < off; i++ {
		if p.s[i] >= utf8.RuneSelf {
			j.ascii = false
		}
	}
	root := j.value(0)
	if root == nil || (root.Kind != yaml.MappingNode && root.Kind != yaml.SequenceNode) {
		return nil
	}
	if j.space(); j.off != len(p.s) {
		return nil // trailing content: a comment, another value, an error
	}
	return root
}

type jsonParser struct {
	*fastParser
	off       int
	line      int  // 1-based line of off
	lineStart int  // offset where that line starts
	ascii     bool // no multi-byte characters on the line so far

	colOff, colRunes int // characters from lineStart to colOff
}

// col returns the 1-based column of j.off in characters. Offsets only grow
// within a line, so characters are counted from the last call on: a long
// single-line document stays linear.
func (j *jsonParser) col() int {
	if j.ascii {
		return j.off - j.lineStart + 1
	}
	if j.colOff < j.lineStart {
		j.colOff, j.colRunes = j.lineStart, 0
	}
	j.colRunes += utf8.RuneCountInString(j.s[j.colOff:j.off])
	j.colOff = j.off
	return j.colRunes + 1
}

// space skips JSON white space other than tabs, and reports false on a
// character that cannot follow.
func (j *jsonParser) space() bool {
	s := j.s
	for j.off < len(s) {
		switch s[j.off] {
		case ' ':
			j.off++
		case '\n':
			j.off++
			j.line++
			j.lineStart = j.off
			j.ascii = true
		case '\r':
			if j.off+1 >= len(s) || s[j.off+1] != '\n' {
				return false
			}
			j.off++
		default:
			return true
		}
	}
	return true
}

const maxJSONDepth = 1000

func (j *jsonParser) value(depth int) *yaml.Node {
	if depth > maxJSONDepth || !j.space() || j.off >= len(j.s) {
		return nil
	}
	line, col := j.line, j.col()
	switch c := j.s[j.off]; {
	case c == '{':
		return j.object(depth, line, col)
	case c == '[':
		return j.array(depth, line, col)
	case c == '"':
		v, ok := j.str()
		if !ok {
			return nil
		}
		n := j.node(yaml.ScalarNode, strTag, v, line, col)
		n.Style = yaml.DoubleQuotedStyle
		return n
	case c == '-' || '0' <= c && c <= '9':
		start := j.off
		if !j.number() {
			return nil
		}
		v := j.s[start:j.off]
		tag := plainTag(v)
		if tag != intTag && tag != floatTag {
			return nil
		}
		return j.node(yaml.ScalarNode, tag, v, line, col)
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(j.s)-j.off >= len(lit) && j.s[j.off:j.off+len(lit)] == lit {
			j.off += len(lit)
			tag := boolTag
			if lit == "null" {
				tag = nullTag
			}
			return j.node(yaml.ScalarNode, tag, lit, line, col)
		}
	}
	return nil
}

// after checks the character that follows a value inside a collection: the
// separator or the closing bracket, on any line.
func (j *jsonParser) after(close byte) (more, ok bool) {
	if !j.space() || j.off >= len(j.s) {
		return false, false
	}
	switch j.s[j.off] {
	case ',':
		j.off++
		return true, true
	case close:
		j.off++
		return false, true
	}
	return false, false
}

func (j *jsonParser) object(depth, line, col int) *yaml.Node {
	n := j.node(yaml.MappingNode, mapTag, "", line, col)
	n.Style = yaml.FlowStyle
	j.off++ // {
	base := len(j.stack)
	if !j.space() {
		return nil
	}
	if j.off < len(j.s) && j.s[j.off] == '}' {
		j.off++
		n.Content = j.content(base)
		return n
	}
	for {
		if !j.space() || j.off >= len(j.s) || j.s[j.off] != '"' {
			return nil
		}
		kline, kcol, kstart := j.line, j.col(), j.off
		k, ok := j.str()
		if !ok || j.off-kstart > 1000 {
			return nil // YAML limits implicit keys to 1024 characters
		}
		// The ":" must be on the key's line: YAML keys are single-line.
		for j.off < len(j.s) && j.s[j.off] == ' ' {
			j.off++
		}
		if j.off >= len(j.s) || j.s[j.off] != ':' {
			return nil
		}
		j.off++
		key := j.node(yaml.ScalarNode, strTag, k, kline, kcol)
		key.Style = yaml.DoubleQuotedStyle
		j.push(key)
		v := j.value(depth + 1)
		if v == nil {
			return nil
		}
		j.push(v)
		more, ok := j.after('}')
		if !ok {
			return nil
		}
		if !more {
			n.Content = j.content(base)
			return n
		}
	}
}

func (j *jsonParser) array(depth, line, col int) *yaml.Node {
	n := j.node(yaml.SequenceNode, seqTag, "", line, col)
	n.Style = yaml.FlowStyle
	j.off++ // [
	base := len(j.stack)
	if !j.space() {
		return nil
	}
	if j.off < len(j.s) && j.s[j.off] == ']' {
		j.off++
		n.Content = j.content(base)
		return n
	}
	for {
		v := j.value(depth + 1)
		if v == nil {
			return nil
		}
		j.push(v)
		more, ok := j.after(']')
		if !ok {
			return nil
		}
		if !more {
			n.Content = j.content(base)
			return n
		}
	}
}

// number scans a JSON number.
func (j *jsonParser) number() bool {
	s := j.s
	i := j.off
	digits := func() bool {
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i > start
	}
	if s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	j.off = i
	return true
}

// str scans a JSON string at j.off and returns its value. Strings without
// escapes are substrings of the input.
func (j *jsonParser) str() (string, bool) {
	s := j.s
	start := j.off + 1
	var b []byte // the value so far, once an escape is seen
	i := start
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			j.off = i + 1
			if b == nil {
				return s[start:i], true
			}
			return string(b), true
		case c == '\\':
			if b == nil {
				b = append(make([]byte, 0, i-start+16), s[start:i]...)
			}
			if i+1 >= len(s) {
				return "", false
			}
			switch e := s[i+1]; e {
			case '"', '\\':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				if i+6 > len(s) {
					return "", false
				}
				r, err := strconv.ParseUint(s[i+2:i+6], 16, 32)
				if err != nil || 0xD800 <= r && r <= 0xDFFF {
					return "", false // surrogates: yaml.v3 and JSON disagree
				}
				b = utf8.AppendRune(b, rune(r))
				i += 4
			default:
				return "", false
			}
			i += 2
			continue
		case c < 0x20 || c == 0x7F:
			return "", false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError || r < 0xA0 || r == 0x2028 || r == 0x2029 || r == 0xFEFF || r == 0xFFFE || r == 0xFFFF {
				return "", false
			}
			j.ascii = false
			if b != nil {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		if b != nil {
			b = append(b, c)
		}
		i++
	}
	return "", false
}
