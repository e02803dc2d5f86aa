package synth

import (
	"slices"
	"strconv"
	"strings"
)

// A small YAML tree and its encoder. Objects are built as trees of obj, list
// and scalars (string, int, bool) and encoded the way `kubectl get -o yaml`
// prints: block style, mapping keys sorted, sequences not indented under
// their key, strings quoted only where a plain scalar would read as something
// else. Building text directly keeps generation of a full-size cluster fast;
// the tests check every document against the typed Kubernetes objects.

// kv is one mapping entry.
type kv struct {
	k string
	v any
}

// obj is a mapping. The encoder sorts keys, so builders may list them in any
// order; listing them sorted saves the copy.
type obj []kv

// list is a sequence.
type list []any

// strs makes a sequence of strings.
func strs(ss ...string) list {
	l := make(list, len(ss))
	for i, s := range ss {
		l[i] = s
	}
	return l
}

type encoder struct {
	b    []byte
	dash bool // the next mapping key opens a sequence item
}

const spaces = "                                                                "

func (e *encoder) indent(n int) {
	if e.dash {
		e.b = append(e.b, spaces[:n-2]...)
		e.b = append(e.b, "- "...)
		e.dash = false
		return
	}
	e.b = append(e.b, spaces[:n]...)
}

// doc encodes one document, preceded by a "---" line.
func (e *encoder) doc(o obj) {
	e.b = append(e.b, "---\n"...)
	e.obj(o, 0)
}

func sortedKeys(o obj) bool {
	for i := 1; i < len(o); i++ {
		if o[i-1].k >= o[i].k {
			return false
		}
	}
	return true
}

func (e *encoder) obj(o obj, ind int) {
	if !sortedKeys(o) {
		// Sort a copy: builders share sub-trees between documents that are
		// encoded concurrently.
		o = slices.Clone(o)
		slices.SortStableFunc(o, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	}
	for _, f := range o {
		e.indent(ind)
		e.b = appendScalar(e.b, f.k)
		switch v := f.v.(type) {
		case obj:
			if len(v) == 0 {
				e.b = append(e.b, ": {}\n"...)
				continue
			}
			e.b = append(e.b, ":\n"...)
			e.obj(v, ind+2)
		case list:
			if len(v) == 0 {
				e.b = append(e.b, ": []\n"...)
				continue
			}
			e.b = append(e.b, ":\n"...)
			e.list(v, ind)
		default:
			e.b = append(e.b, ": "...)
			e.scalar(v)
			e.b = append(e.b, '\n')
		}
	}
}

func (e *encoder) list(l list, ind int) {
	for _, it := range l {
		switch v := it.(type) {
		case obj:
			if len(v) == 0 {
				e.indent(ind)
				e.b = append(e.b, "- {}\n"...)
				continue
			}
			e.dash = true
			e.obj(v, ind+2)
		case list:
			panic("synth: sequence directly inside a sequence")
		default:
			e.indent(ind)
			e.b = append(e.b, "- "...)
			e.scalar(v)
			e.b = append(e.b, '\n')
		}
	}
}

func (e *encoder) scalar(v any) {
	switch v := v.(type) {
	case string:
		e.b = appendScalar(e.b, v)
	case int:
		e.b = strconv.AppendInt(e.b, int64(v), 10)
	case bool:
		e.b = strconv.AppendBool(e.b, v)
	default:
		panic("synth: unsupported scalar type")
	}
}

// appendScalar writes s plain if YAML 1.1 (what sigs.k8s.io/yaml reads) would
// read it back as the same string, else double-quoted.
func appendScalar(b []byte, s string) []byte {
	if plain(s) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

func plain(s string) bool {
	if s == "" || s[len(s)-1] == ':' {
		return false
	}
	c := s[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		return false
	}
	letters, colon, dash := false, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '/':
			letters = true
		case c >= '0' && c <= '9', c == '.':
		case c == '-':
			dash = true
		case c == ':':
			colon = true
		default:
			return false
		}
	}
	if !letters && (colon || dash) {
		// Dates, sexagesimal and negative numbers.
		return false
	}
	if len(s) > 4 && s[4] == '-' && allDigits(s[:4]) {
		// Timestamps.
		return false
	}
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "true", "false", "on", "off", "null":
		return false
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return false
	}
	if _, err := strconv.ParseInt(s, 0, 64); err == nil {
		return false
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
