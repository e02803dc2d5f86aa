package schema

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Resolved YAML tags, as go.yaml.in/yaml/v3 writes them into Node.Tag.
const (
	nullTag      = "!!null"
	boolTag      = "!!bool"
	strTag       = "!!str"
	intTag       = "!!int"
	floatTag     = "!!float"
	timestampTag = "!!timestamp"
	mergeTag     = "!!merge"
	mapTag       = "!!map"
	seqTag       = "!!seq"
)

// Opaque is a field whose content schema accepts without checking: L7 rules,
// Envoy listeners, TLS contexts, authentication and the like. The compiler
// refuses or drops these with a positioned error of its own (see
// Object.PosOf), so their content must never make decoding fail. A nil
// *Opaque means the field was absent or null.
type Opaque struct {
	// JSON is the content re-encoded as JSON, for messages. It is nil in the
	// rare case the content has no JSON form (a non-finite number, or a key
	// that is itself a collection).
	JSON []byte
}

// tkind is how the decoder treats a Go type.
type tkind uint8

const (
	kString tkind = iota + 1
	kBool
	kInt
	kUint
	kFloat
	kIface
	kPtr
	kSlice
	kBytes
	kArray
	kMap
	kStruct
	kOpaque
	kJSON // implements json.Unmarshaler
	kText // implements encoding.TextUnmarshaler
	kUnsupported
)

// typeInfo is the cached decoding plan for one Go type.
type typeInfo struct {
	kind tkind
	bits int
	// want describes the expected YAML for messages: "string", "integer",
	// "a mapping", ...
	want string
	// strSlice and strMap mark []string and map[string]string, which take
	// a faster path.
	strSlice, strMap bool

	// Structs.
	fields []field
	byName map[string]*field
	names  []string // accepted JSON names, sorted

	// json.Unmarshaler types with a known scalar form (see jsonScalars).
	scalar *scalarForm
}

// field is one JSON-visible struct field, including promoted fields of
// embedded structs.
type field struct {
	name  string
	index []int
	// intString accepts an unquoted integer where a string is expected and
	// stores its decimal form (tag `schema:"intstring"`): Cilium's port
	// field is a string, but manifests write port: 80.
	intString bool
}

var typeCache sync.Map // reflect.Type → *typeInfo

var (
	opaqueType      = reflect.TypeFor[Opaque]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
	strSliceType    = reflect.TypeFor[[]string]()
	strMapType      = reflect.TypeFor[map[string]string]()
)

// scalarForm describes the YAML a json.Unmarshaler accepts, so that common
// mistakes get the same messages as plain fields instead of encoding/json's.
type scalarForm struct {
	want    string
	ints    int // bit size when integers are accepted, 0 otherwise
	floats  bool
	strings bool
}

var jsonScalars = map[reflect.Type]*scalarForm{
	reflect.TypeFor[intstr.IntOrString](): {want: "integer or string", ints: 32, strings: true},
	reflect.TypeFor[resource.Quantity]():  {want: "quantity such as 500m or 1Gi", ints: 64, floats: true, strings: true},
	reflect.TypeFor[metav1.Time]():        {want: "RFC 3339 timestamp", strings: true},
	reflect.TypeFor[metav1.MicroTime]():   {want: "RFC 3339 timestamp", strings: true},
	reflect.TypeFor[metav1.Duration]():    {want: "duration such as 1m30s", strings: true},
}

func typeInfoOf(t reflect.Type) *typeInfo {
	if ti, ok := typeCache.Load(t); ok {
		return ti.(*typeInfo)
	}
	ti, _ := typeCache.LoadOrStore(t, newTypeInfo(t))
	return ti.(*typeInfo)
}

func newTypeInfo(t reflect.Type) *typeInfo {
	ti := &typeInfo{}
	switch {
	case t == opaqueType:
		ti.kind, ti.want = kOpaque, "anything"
		return ti
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType):
		ti.kind, ti.want = kJSON, t.String()
		if sf := jsonScalars[t]; sf != nil {
			ti.scalar, ti.want = sf, sf.want
		}
		return ti
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textType):
		ti.kind, ti.want = kText, "string"
		return ti
	}
	switch t.Kind() {
	case reflect.String:
		ti.kind, ti.want = kString, "string"
	case reflect.Bool:
		ti.kind, ti.want = kBool, "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		ti.kind, ti.want, ti.bits = kInt, "integer", t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		ti.kind, ti.want, ti.bits = kUint, "integer", t.Bits()
	case reflect.Float32, reflect.Float64:
		ti.kind, ti.want, ti.bits = kFloat, "number", t.Bits()
	case reflect.Interface:
		ti.kind, ti.want = kIface, "anything"
		if t.NumMethod() != 0 {
			ti.kind = kUnsupported
		}
	case reflect.Pointer:
		ti.kind = kPtr // decoded as its target
	case reflect.Slice:
		ti.kind, ti.want = kSlice, "a list"
		if t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(unmarshalerType) {
			ti.kind, ti.want = kBytes, "base64 string"
		}
		ti.strSlice = t == strSliceType
	case reflect.Array:
		ti.kind, ti.want = kArray, "a list"
	case reflect.Map:
		ti.kind, ti.want = kMap, "a mapping"
		if t.Key().Kind() != reflect.String {
			ti.kind = kUnsupported
		}
		ti.strMap = t == strMapType
	case reflect.Struct:
		ti.kind, ti.want = kStruct, "a mapping"
		ti.fields = structFields(t)
		ti.byName = make(map[string]*field, len(ti.fields))
		for i := range ti.fields {
			f := &ti.fields[i]
			ti.byName[f.name] = f
			ti.names = append(ti.names, f.name)
		}
		slices.Sort(ti.names)
	default:
		ti.kind, ti.want = kUnsupported, t.String()
	}
	return ti
}

// structFields lists the JSON-visible fields of struct type t the way
// encoding/json does: by json tag name (the Go name when untagged), skipping
// `json:"-"` and unexported fields, and promoting the fields of embedded
// structs without a tag name (`json:",inline"` is such a field; encoding/json
// ignores the inline option itself). A shallower field hides a deeper one of
// the same name; two of the same name at the same depth hide each other.
func structFields(t reflect.Type) []field {
	type level struct {
		t     reflect.Type
		index []int
	}
	var out []field
	taken := map[string]bool{}
	visited := map[reflect.Type]bool{}
	current := []level{{t, nil}}
	for len(current) > 0 {
		var next []level
		var found []field
		count := map[string]int{}
		for _, lv := range current {
			if visited[lv.t] {
				continue
			}
			visited[lv.t] = true
			for i := range lv.t.NumField() {
				sf := lv.t.Field(i)
				ft := sf.Type
				if ft.Kind() == reflect.Pointer && sf.Anonymous {
					ft = ft.Elem()
				}
				if !sf.IsExported() && !(sf.Anonymous && ft.Kind() == reflect.Struct) {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				index := append(slices.Clone(lv.index), i)
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					next = append(next, level{ft, index})
					continue
				}
				if !sf.IsExported() {
					continue
				}
				if name == "" {
					name = sf.Name
				}
				found = append(found, field{
					name:      name,
					index:     index,
					intString: slices.Contains(strings.Split(sf.Tag.Get("schema"), ","), "intstring"),
				})
				count[name]++
			}
		}
		for _, f := range found {
			if taken[f.name] {
				continue
			}
			if count[f.name] == 1 {
				out = append(out, f)
			}
		}
		for _, f := range found {
			taken[f.name] = true
		}
		current = next
	}
	return out
}

// decoder decodes yaml.Node trees into Go values following json struct
// tags, collecting positioned diagnostics instead of stopping at the first.
type decoder struct {
	file  string
	line0 int // lines before the document's chunk in the file
	path  []byte
	diags Diagnostics
	// quiet > 0 suppresses diagnostics (inside Opaque content, and while
	// collecting the pairs of merged mappings, which are checked where they
	// are defined).
	quiet int
	// budget bounds the number of nodes visited, so that aliases cannot
	// expand a small document exponentially ("billion laughs").
	budget    int
	exhausted bool
	// active holds the anchored collections being decoded, to detect alias
	// cycles such as &a [*a].
	active []*yaml.Node
	buf    []byte // scratch JSON for json.Unmarshaler
}

func (d *decoder) pos(n *yaml.Node) Pos {
	return Pos{File: d.file, Line: d.line0 + n.Line, Col: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	if d.quiet > 0 {
		return
	}
	d.diags = append(d.diags, Diagnostic{Pos: d.pos(n), Field: string(d.path), Message: fmt.Sprintf(format, args...)})
}

// enter resolves aliases and charges the node budget. It returns nil when
// the node must not be decoded (alias cycle, budget exhausted).
func (d *decoder) enter(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errorf(n, "unknown alias *%s; define the anchor &%s before using it", n.Value, n.Value)
			return nil
		}
		if slices.Contains(d.active, n.Alias) {
			d.errorf(n, "alias *%s refers to a collection that contains it; aliases must not form a cycle", n.Value)
			return nil
		}
		n = n.Alias
	}
	d.budget--
	if d.budget < 0 {
		if !d.exhausted {
			d.exhausted = true
			q := d.quiet
			d.quiet = 0
			d.errorf(n, "document too large after expanding aliases; use fewer aliases")
			d.quiet = q
		}
		return nil
	}
	return n
}

// push and pop track anchored collections for cycle detection.
func (d *decoder) push(n *yaml.Node) bool {
	if n.Anchor == "" || n.Kind == yaml.ScalarNode {
		return false
	}
	d.active = append(d.active, n)
	return true
}

func (d *decoder) pop(pushed bool) {
	if pushed {
		d.active = d.active[:len(d.active)-1]
	}
}

func tagOf(n *yaml.Node) string {
	if n.Tag == "" || n.Tag == "!" {
		return n.ShortTag()
	}
	return n.Tag
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && tagOf(n) == nullTag
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil {
			return describe(n.Alias)
		}
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch tagOf(n) {
	case nullTag:
		return "null"
	case boolTag:
		return "boolean " + v
	case intTag:
		return "integer " + v
	case floatTag:
		return "float " + v
	case timestampTag:
		return "timestamp " + v
	}
	return "string " + strconv.Quote(v)
}

func (d *decoder) typeError(n *yaml.Node, want string) {
	d.errorf(n, "expected %s, got %s", want, describe(n))
}

// value decodes n into v, which must be settable. f is the struct field
// being decoded, if any. A null node leaves v as it is: the zero value,
// as encoding/json does for everything but json.Unmarshaler types.
func (d *decoder) value(n *yaml.Node, v reflect.Value, f *field) {
	if n = d.enter(n); n == nil || isNull(n) {
		return
	}
	pushed := d.push(n)
	d.dispatch(n, v, f)
	d.pop(pushed)
}

func (d *decoder) dispatch(n *yaml.Node, v reflect.Value, f *field) {
	ti := typeInfoOf(v.Type())
	switch ti.kind {
	case kString:
		if s, ok := d.str(n, f != nil && f.intString); ok {
			v.SetString(s)
		}
	case kBool:
		b, ok := parseBool(n)
		if !ok {
			d.typeError(n, "boolean")
			return
		}
		v.SetBool(b)
	case kInt:
		if x, ok := d.integer(n, ti.bits, false); ok {
			v.SetInt(x)
		}
	case kUint:
		if x, ok := d.integer(n, ti.bits, true); ok {
			v.SetUint(uint64(x))
		}
	case kFloat:
		if n.Kind != yaml.ScalarNode || (tagOf(n) != floatTag && tagOf(n) != intTag) {
			d.typeError(n, "number")
			return
		}
		x, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), ti.bits)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			d.errorf(n, "expected a finite number, got %s", describe(n))
			return
		}
		v.SetFloat(x)
	case kIface:
		if x, ok := d.any(n); ok {
			v.Set(reflect.ValueOf(&x).Elem())
		}
	case kPtr:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.dispatch(n, v.Elem(), f)
	case kStruct:
		d.object(n, v, ti)
	case kMap:
		d.mapping(n, v, ti)
	case kSlice:
		d.list(n, v, ti)
	case kArray:
		d.array(n, v)
	case kBytes:
		s, ok := d.str(n, false)
		if !ok {
			return
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			d.errorf(n, "expected base64 data, got %s: %v", describe(n), err)
			return
		}
		v.SetBytes(b)
	case kOpaque:
		d.quiet++
		b, err := d.appendJSON(nil, n)
		d.quiet--
		o := v.Addr().Interface().(*Opaque)
		if err == nil {
			o.JSON = b
		}
	case kJSON:
		d.unmarshalJSON(n, v, ti)
	case kText:
		if s, ok := d.str(n, false); ok {
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				d.errorf(n, "invalid value %s: %v", describe(n), err)
			}
		}
	default:
		// A Go type with no JSON form: a bug in the type table, not in the
		// input, but still reported rather than panicking.
		d.errorf(n, "cannot decode into Go type %s", v.Type())
	}
}

// str returns the string value of a scalar. Unquoted numbers and booleans
// are refused, as kubectl refuses them, unless intString allows integers.
func (d *decoder) str(n *yaml.Node, intString bool) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, "string")
		return "", false
	}
	switch tagOf(n) {
	case intTag:
		if intString {
			if i, u, isU, ok := parseInt(n.Value); ok {
				if isU {
					return strconv.FormatUint(u, 10), true
				}
				return strconv.FormatInt(i, 10), true
			}
		}
		fallthrough
	case boolTag, floatTag:
		d.errorf(n, "expected string, got %s; quote it", describe(n))
		return "", false
	case mergeTag:
		return n.Value, true
	}
	// !!str, !!timestamp (unquoted dates are strings in JSON), !!binary and
	// application tags.
	return n.Value, true
}

// parseBool parses a !!bool scalar: true, True, TRUE, false, False, FALSE
// (YAML 1.2; yes/no/on/off are strings).
func parseBool(n *yaml.Node) (value, ok bool) {
	if n.Kind != yaml.ScalarNode || tagOf(n) != boolTag {
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

// parseInt parses an !!int scalar the way go.yaml.in/yaml/v3 resolves it:
// underscores ignored, 0x/0o/0b prefixes and a sign allowed.
func parseInt(s string) (i int64, u uint64, isUint, ok bool) {
	plain := strings.ReplaceAll(s, "_", "")
	if x, err := strconv.ParseInt(plain, 0, 64); err == nil {
		return x, 0, false, true
	}
	if x, err := strconv.ParseUint(plain, 0, 64); err == nil {
		return 0, x, true, true
	}
	return 0, 0, false, false
}

func intRange(bits int, unsigned bool) (lo, hi string) {
	if unsigned {
		return "0", strconv.FormatUint(math.MaxUint64>>(64-bits), 10)
	}
	return strconv.FormatInt(math.MinInt64>>(64-bits), 10), strconv.FormatInt(math.MaxInt64>>(64-bits), 10)
}

func (d *decoder) rangeError(n *yaml.Node, bits int, unsigned bool) {
	lo, hi := intRange(bits, unsigned)
	typ := "int"
	if unsigned {
		typ = "uint"
	}
	d.errorf(n, "integer %s out of range for %s%d; accepted: %s to %s", n.Value, typ, bits, lo, hi)
}

var digitsOnly = func(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '_' {
			return false
		}
	}
	return true
}

// integer decodes an !!int scalar into the range of a bits-wide integer.
// Unsigned results are returned as their bit pattern.
func (d *decoder) integer(n *yaml.Node, bits int, unsigned bool) (int64, bool) {
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, "integer")
		return 0, false
	}
	switch tag := tagOf(n); {
	case tag == floatTag && digitsOnly(n.Value):
		// Too large for 64 bits, so go.yaml.in/yaml/v3 called it a float.
		d.rangeError(n, bits, unsigned)
		return 0, false
	case tag == strTag && n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 && digitsOnly(n.Value):
		d.errorf(n, "expected integer, got %s; remove the quotes", describe(n))
		return 0, false
	case tag != intTag:
		d.typeError(n, "integer")
		return 0, false
	}
	i, u, isU, ok := parseInt(n.Value)
	if !ok {
		d.typeError(n, "integer")
		return 0, false
	}
	if unsigned {
		if !isU {
			if i < 0 {
				d.rangeError(n, bits, unsigned)
				return 0, false
			}
			u = uint64(i)
		}
		if bits < 64 && u>>bits != 0 {
			d.rangeError(n, bits, unsigned)
			return 0, false
		}
		return int64(u), true
	}
	if isU || bits < 64 && (i < math.MinInt64>>(64-bits) || i > math.MaxInt64>>(64-bits)) {
		d.rangeError(n, bits, unsigned)
		return 0, false
	}
	return i, true
}

// eachPair calls fn for the effective key/value pairs of mapping n: its own
// pairs in order, except duplicates (reported), then the pairs merged in
// with "<<" that n does not override. fn sees the key node, for positions.
func (d *decoder) eachPair(n *yaml.Node, fn func(k *yaml.Node, key string, v *yaml.Node)) {
	c := n.Content
	merge := false
	var seen map[string]*yaml.Node // only for large mappings; small ones scan
	if len(c) > 32 {
		seen = make(map[string]*yaml.Node, len(c)/2)
	}
	for i := 0; i+1 < len(c); i += 2 {
		k := c[i]
		if k.Kind == yaml.ScalarNode && k.Tag == mergeTag {
			merge = true
			continue
		}
		key, ok := d.key(k)
		if !ok {
			continue
		}
		var first *yaml.Node
		if seen != nil {
			if first = seen[key]; first == nil {
				seen[key] = k
			}
		} else {
			for j := 0; j < i; j += 2 {
				if pk := keyNode(c[j]); pk.Kind == yaml.ScalarNode && pk.Tag != mergeTag && pk.Value == key {
					first = c[j]
					break
				}
			}
		}
		if first != nil {
			l := len(d.path)
			d.path = appendKey(d.path, key)
			d.errorf(k, "duplicate key %q (first at line %d); keys in a mapping must be unique", key, d.line0+first.Line)
			d.path = d.path[:l]
			continue
		}
		fn(k, key, c[i+1])
	}
	if merge {
		d.merge(n, fn)
	}
}

func keyNode(k *yaml.Node) *yaml.Node {
	for k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	return k
}

// key returns a mapping key as a string. Keys that are collections have no
// JSON form.
func (d *decoder) key(k *yaml.Node) (string, bool) {
	k = keyNode(k)
	if k.Kind != yaml.ScalarNode {
		d.errorf(k, "expected a string key, got %s", describe(k))
		return "", false
	}
	return k.Value, true
}

// merge applies the YAML merge keys of mapping n: "<<: *m" or
// "<<: [*m1, *m2]". Keys of n win over merged keys, and earlier merged
// mappings win over later ones.
func (d *decoder) merge(n *yaml.Node, fn func(k *yaml.Node, key string, v *yaml.Node)) {
	have := map[string]bool{}
	c := n.Content
	for i := 0; i+1 < len(c); i += 2 {
		if k := keyNode(c[i]); k.Kind == yaml.ScalarNode && k.Tag != mergeTag {
			have[k.Value] = true
		}
	}
	type pair struct {
		k    *yaml.Node
		key  string
		v    *yaml.Node
		from *yaml.Node
	}
	var pairs []pair
	collect := func(m *yaml.Node) {
		pushed := d.push(m)
		d.quiet++
		d.eachPair(m, func(k *yaml.Node, key string, v *yaml.Node) {
			if !have[key] {
				have[key] = true
				pairs = append(pairs, pair{k, key, v, m})
			}
		})
		d.quiet--
		d.pop(pushed)
	}
	for i := 0; i+1 < len(c); i += 2 {
		if k := c[i]; k.Kind != yaml.ScalarNode || k.Tag != mergeTag {
			continue
		}
		src := d.enter(c[i+1])
		if src == nil {
			continue
		}
		switch src.Kind {
		case yaml.MappingNode:
			collect(src)
		case yaml.SequenceNode:
			for _, e := range src.Content {
				if e = d.enter(e); e == nil {
					continue
				}
				if e.Kind != yaml.MappingNode {
					d.errorf(e, "the merge key << takes a mapping or a list of mappings, got a list holding %s", describe(e))
					continue
				}
				collect(e)
			}
		default:
			if !isNull(src) {
				d.errorf(src, "the merge key << takes a mapping or a list of mappings, got %s", describe(src))
			}
		}
	}
	for _, p := range pairs {
		pushed := d.push(p.from)
		fn(p.k, p.key, p.v)
		d.pop(pushed)
	}
}

func (d *decoder) object(n *yaml.Node, v reflect.Value, ti *typeInfo) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping")
		return
	}
	d.eachPair(n, func(k *yaml.Node, key string, val *yaml.Node) {
		l := len(d.path)
		d.path = appendKey(d.path, key)
		if f := ti.byName[key]; f != nil {
			fv := v
			for i, x := range f.index {
				if i > 0 && fv.Kind() == reflect.Pointer {
					if fv.IsNil() {
						fv.Set(reflect.New(fv.Type().Elem()))
					}
					fv = fv.Elem()
				}
				fv = fv.Field(x)
			}
			d.value(val, fv, f)
		} else {
			d.errorf(k, "%s", unknownField(key, ti.names))
		}
		d.path = d.path[:l]
	})
}

// maxListed caps the accepted names in an unknown-field message.
const maxListed = 16

func unknownField(key string, names []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "unknown field %q", key)
	if s := suggest(key, names); s != "" {
		fmt.Fprintf(&b, " (did you mean %q?)", s)
	}
	switch {
	case len(names) == 0:
		b.WriteString("; this mapping takes no fields")
	case len(names) <= maxListed:
		b.WriteString("; accepted: " + strings.Join(names, ", "))
	default:
		fmt.Fprintf(&b, "; accepted: %s, and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
	}
	return b.String()
}

// suggest returns the accepted name closest to key: one that differs only
// in case, or else one within a small edit distance.
func suggest(key string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
	}
	best, bestD := "", 3
	if len(key) < 6 {
		bestD = 2
	}
	for _, n := range names {
		if d := editDistance(strings.ToLower(key), strings.ToLower(n), bestD); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, or max when it
// is at least max.
func editDistance(a, b string, max int) int {
	if len(a)-len(b) >= max || len(b)-len(a) >= max {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], max)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, ti *typeInfo) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping")
		return
	}
	if ti.strMap {
		// map[string]string (labels, annotations, selectors) is the most
		// common map by far: fill it without reflection per entry.
		m := make(map[string]string, len(n.Content)/2)
		d.eachPair(n, func(k *yaml.Node, key string, val *yaml.Node) {
			l := len(d.path)
			d.path = appendKey(d.path, key)
			if val = d.enter(val); val != nil && !isNull(val) {
				if s, ok := d.str(val, false); ok {
					m[key] = s
				}
			} else if val != nil {
				m[key] = ""
			}
			d.path = d.path[:l]
		})
		v.Set(reflect.ValueOf(m))
		return
	}
	t := v.Type()
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	et := t.Elem()
	d.eachPair(n, func(k *yaml.Node, key string, val *yaml.Node) {
		l := len(d.path)
		d.path = appendKey(d.path, key)
		e := reflect.New(et).Elem()
		d.value(val, e, nil)
		m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), e)
		d.path = d.path[:l]
	})
	v.Set(m)
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, ti *typeInfo) {
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, "a list")
		return
	}
	if ti.strSlice {
		s := make([]string, len(n.Content))
		for i, e := range n.Content {
			l := len(d.path)
			d.path = appendIndex(d.path, i)
			if e = d.enter(e); e != nil && !isNull(e) {
				s[i], _ = d.str(e, false)
			}
			d.path = d.path[:l]
		}
		v.Set(reflect.ValueOf(s))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		l := len(d.path)
		d.path = appendIndex(d.path, i)
		d.value(e, s.Index(i), nil)
		d.path = d.path[:l]
	}
	v.Set(s)
}

func (d *decoder) array(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, "a list")
		return
	}
	if len(n.Content) > v.Len() {
		d.errorf(n, "expected a list of at most %d items, got %d", v.Len(), len(n.Content))
		return
	}
	for i, e := range n.Content {
		l := len(d.path)
		d.path = appendIndex(d.path, i)
		d.value(e, v.Index(i), nil)
		d.path = d.path[:l]
	}
}

// unmarshalJSON re-encodes n as JSON and hands it to the type's
// UnmarshalJSON, which is what sigs.k8s.io/yaml does for the whole document.
func (d *decoder) unmarshalJSON(n *yaml.Node, v reflect.Value, ti *typeInfo) {
	if sf := ti.scalar; sf != nil {
		ok := false
		if n.Kind == yaml.ScalarNode {
			switch tagOf(n) {
			case intTag:
				ok = sf.ints > 0
				if ok {
					if _, good := d.integer(n, sf.ints, false); !good {
						return
					}
				}
			case floatTag:
				ok = sf.floats
			case boolTag:
			default:
				ok = sf.strings
			}
		}
		if !ok {
			d.typeError(n, sf.want)
			return
		}
	}
	b, err := d.appendJSON(d.buf[:0], n)
	d.buf = b
	if err != nil {
		return // reported by appendJSON
	}
	if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
		d.errorf(n, "invalid %s %s: %s", ti.want, describe(n), strings.TrimPrefix(err.Error(), "json: "))
	}
}

// errNoJSON marks content that has no JSON form; the cause has been
// reported (unless quiet).
var errNoJSON = fmt.Errorf("no json form")

// appendJSON appends the JSON form of n to b, resolving aliases and merge
// keys as sigs.k8s.io/yaml would.
func (d *decoder) appendJSON(b []byte, n *yaml.Node) ([]byte, error) {
	if n = d.enter(n); n == nil {
		return b, errNoJSON
	}
	pushed := d.push(n)
	defer d.pop(pushed)
	switch n.Kind {
	case yaml.MappingNode:
		b = append(b, '{')
		first := true
		var err error
		d.eachPair(n, func(k *yaml.Node, key string, v *yaml.Node) {
			if err != nil {
				return
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, key)
			b = append(b, ':')
			b, err = d.appendJSON(b, v)
		})
		return append(b, '}'), err
	case yaml.SequenceNode:
		b = append(b, '[')
		for i, e := range n.Content {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = d.appendJSON(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case yaml.ScalarNode:
		switch tagOf(n) {
		case nullTag:
			return append(b, "null"...), nil
		case boolTag:
			if x, ok := parseBool(n); ok {
				return strconv.AppendBool(b, x), nil
			}
			d.typeError(n, "boolean")
			return b, errNoJSON
		case intTag:
			if i, u, isU, ok := parseInt(n.Value); ok {
				if isU {
					return strconv.AppendUint(b, u, 10), nil
				}
				return strconv.AppendInt(b, i, 10), nil
			}
		case floatTag:
			f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
			if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return strconv.AppendFloat(b, f, 'g', -1, 64), nil
			}
			if digitsOnly(n.Value) {
				// An integer beyond 64 bits: JSON can carry it as written.
				return append(b, strings.TrimPrefix(strings.ReplaceAll(n.Value, "_", ""), "+")...), nil
			}
			d.errorf(n, "expected a finite number, got %s", describe(n))
			return b, errNoJSON
		default:
			return appendJSONString(b, n.Value), nil
		}
		d.typeError(n, "integer")
		return b, errNoJSON
	}
	d.errorf(n, "unexpected %s", describe(n))
	return b, errNoJSON
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 is passed
// through as the bytes it is; encoding/json would replace it, but only
// UnmarshalJSON implementations read this and they accept either.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// any decodes n into the value encoding/json would produce for an
// interface{}: map[string]any, []any, string, float64, bool or nil.
func (d *decoder) any(n *yaml.Node) (any, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		ok := true
		d.eachPair(n, func(k *yaml.Node, key string, v *yaml.Node) {
			l := len(d.path)
			d.path = appendKey(d.path, key)
			if v = d.enter(v); v != nil {
				pushed := d.push(v)
				x, good := d.any(v)
				d.pop(pushed)
				m[key] = x
				ok = ok && good
			}
			d.path = d.path[:l]
		})
		return m, ok
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		ok := true
		for i, e := range n.Content {
			l := len(d.path)
			d.path = appendIndex(d.path, i)
			if e = d.enter(e); e != nil {
				pushed := d.push(e)
				x, good := d.any(e)
				d.pop(pushed)
				s[i] = x
				ok = ok && good
			}
			d.path = d.path[:l]
		}
		return s, ok
	}
	switch tagOf(n) {
	case nullTag:
		return nil, true
	case boolTag:
		if x, ok := parseBool(n); ok {
			return x, true
		}
		d.typeError(n, "boolean")
		return nil, false
	case intTag, floatTag:
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if i, u, isU, ok := parseInt(n.Value); ok {
			err = nil
			f = float64(i)
			if isU {
				f = float64(u)
			}
		}
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.errorf(n, "expected a finite number, got %s", describe(n))
			return nil, false
		}
		return f, true
	}
	return n.Value, true
}
