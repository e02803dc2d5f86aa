package adversary

import (
	"math/rand"
	"regexp"
	"strconv"
	"strings"
)

// Manifests are kept as trees of mappings, sequences and scalars, so that
// a failing case can be shrunk by deleting parts of it, and written as
// YAML text whose style (block or flow collections, quoting, sequence
// indentation) varies with a seed, as hand-written manifests do.

// kv is one entry of a mapping.
type kv struct {
	k string
	v any
}

// mapping is a YAML mapping in key order.
type mapping []kv

// seq is a YAML sequence.
type seq []any

// get returns the value of a key, or nil.
func (m mapping) get(k string) any {
	for _, e := range m {
		if e.k == k {
			return e.v
		}
	}
	return nil
}

// yamlWriter writes trees; style decides block or flow and quoting.
type yamlWriter struct {
	b     strings.Builder
	style *rand.Rand // nil: plain block style, quoting only where needed
	// seqIndent indents block sequences under their key (kubectl does
	// not, many editors do).
	seqIndent int
}

// render writes documents as one YAML stream.
func render(docs []mapping, style int64, plain bool) string {
	w := &yamlWriter{}
	if !plain {
		w.style = rand.New(rand.NewSource(style))
		w.seqIndent = 2 * w.style.Intn(2)
		if w.style.Intn(3) == 0 {
			w.b.WriteString("---\n")
		}
	}
	for i, d := range docs {
		if i > 0 {
			w.b.WriteString("---\n")
		}
		w.blockMapping(d, 0)
	}
	return w.b.String()
}

func (w *yamlWriter) chance(n int) bool { return w.style != nil && w.style.Intn(n) == 0 }

// flowable reports whether a collection is small enough to write on one
// line.
func flowable(v any, depth int) bool {
	switch x := v.(type) {
	case mapping:
		if len(x) > 3 || depth > 2 {
			return false
		}
		for _, e := range x {
			if !flowable(e.v, depth+1) {
				return false
			}
		}
	case seq:
		if len(x) > 3 || depth > 2 {
			return false
		}
		for _, e := range x {
			if !flowable(e, depth+1) {
				return false
			}
		}
	}
	return true
}

func isCollection(v any) bool {
	switch x := v.(type) {
	case mapping:
		return len(x) > 0
	case seq:
		return len(x) > 0
	}
	return false
}

func (w *yamlWriter) pad(n int) { w.b.WriteString(strings.Repeat(" ", n)) }

func (w *yamlWriter) blockMapping(m mapping, indent int) {
	for i, e := range m {
		if i > 0 {
			w.pad(indent)
		}
		w.b.WriteString(w.scalar(e.k))
		w.b.WriteByte(':')
		w.afterKey(e.v, indent)
	}
}

// afterKey writes a mapping value: inline when a scalar, empty or chosen
// to flow; otherwise as a block on the next lines.
func (w *yamlWriter) afterKey(v any, indent int) {
	if !isCollection(v) || flowable(v, 0) && w.chance(3) {
		w.b.WriteByte(' ')
		w.flow(v)
		w.b.WriteByte('\n')
		return
	}
	w.b.WriteByte('\n')
	switch x := v.(type) {
	case mapping:
		w.pad(indent + 2)
		w.blockMapping(x, indent+2)
	case seq:
		w.blockSeq(x, indent+w.seqIndent)
	}
}

func (w *yamlWriter) blockSeq(s seq, indent int) {
	for _, item := range s {
		w.pad(indent)
		w.b.WriteString("- ")
		if m, ok := item.(mapping); ok && len(m) > 0 && !(flowable(m, 0) && w.chance(3)) {
			w.blockMapping(m, indent+2)
			continue
		}
		w.flow(item)
		w.b.WriteByte('\n')
	}
}

func (w *yamlWriter) flow(v any) {
	switch x := v.(type) {
	case mapping:
		w.b.WriteByte('{')
		for i, e := range x {
			if i > 0 {
				w.b.WriteString(", ")
			}
			w.b.WriteString(w.scalar(e.k))
			w.b.WriteString(": ")
			w.flow(e.v)
		}
		w.b.WriteByte('}')
	case seq:
		w.b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				w.b.WriteString(", ")
			}
			w.flow(e)
		}
		w.b.WriteByte(']')
	case string:
		w.b.WriteString(w.scalar(x))
	case int:
		w.b.WriteString(strconv.Itoa(x))
	case bool:
		w.b.WriteString(strconv.FormatBool(x))
	}
}

var (
	plainWord = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)
	plainAddr = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(/[0-9]+)?$`)
	keywords  = map[string]bool{"true": true, "false": true, "yes": true, "no": true, "on": true, "off": true, "y": true, "n": true, "null": true}
)

// scalar quotes a string where YAML would read it as something else, and
// sometimes where it would not.
func (w *yamlWriter) scalar(s string) string {
	plain := (plainWord.MatchString(s) || plainAddr.MatchString(s)) && !keywords[strings.ToLower(s)]
	switch {
	case !plain || w.chance(10):
		return strconv.Quote(s)
	case w.chance(12):
		return "'" + s + "'"
	}
	return s
}
