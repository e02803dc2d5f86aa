package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kindInfo describes a kind we decode.
type kindInfo struct {
	apiVersion    string
	typ           reflect.Type
	clusterScoped bool
	// policy kinds must never be skipped: a wrong apiVersion is an error.
	policy bool
}

var kinds = map[string]kindInfo{
	"NetworkPolicy":                  {"networking.k8s.io/v1", reflect.TypeFor[networkingv1.NetworkPolicy](), false, true},
	"CiliumNetworkPolicy":            {"cilium.io/v2", reflect.TypeFor[CiliumNetworkPolicy](), false, true},
	"CiliumClusterwideNetworkPolicy": {"cilium.io/v2", reflect.TypeFor[CiliumClusterwideNetworkPolicy](), true, true},
	"Service":                        {"v1", reflect.TypeFor[corev1.Service](), false, false},
	"Endpoints":                      {"v1", reflect.TypeFor[corev1.Endpoints](), false, false},
	"Pod":                            {"v1", reflect.TypeFor[corev1.Pod](), false, false},
	"Namespace":                      {"v1", reflect.TypeFor[corev1.Namespace](), true, false},
	"Node":                           {"v1", reflect.TypeFor[corev1.Node](), true, false},
	"EndpointSlice":                  {"discovery.k8s.io/v1", reflect.TypeFor[discoveryv1.EndpointSlice](), false, false},
	"Deployment":                     {"apps/v1", reflect.TypeFor[appsv1.Deployment](), false, false},
	"ReplicaSet":                     {"apps/v1", reflect.TypeFor[appsv1.ReplicaSet](), false, false},
	"StatefulSet":                    {"apps/v1", reflect.TypeFor[appsv1.StatefulSet](), false, false},
	"DaemonSet":                      {"apps/v1", reflect.TypeFor[appsv1.DaemonSet](), false, false},
	"Job":                            {"batch/v1", reflect.TypeFor[batchv1.Job](), false, false},
}

// Object is one decoded manifest: a document of a file, or an item of a
// List.
type Object struct {
	APIVersion, Kind string
	// Namespace is "default" for namespaced kinds that name none, as kubectl
	// does, and "" for cluster-scoped kinds (Namespace, Node,
	// CiliumClusterwideNetworkPolicy). The typed object's
	// metadata.namespace is set to the same value.
	Namespace, Name string
	// Pos is the position of the document's (or List item's) root mapping.
	Pos Pos
	// Obj points to the typed object: *networkingv1.NetworkPolicy,
	// *CiliumNetworkPolicy, *corev1.Pod, ... (see the kind table in doc.go).
	Obj any

	// Enough to find positions again without keeping the parsed tree.
	src  *source
	ch   chunk
	doc  int // document index within the chunk
	item int // index in the List's items, or -1
	// lines holds the lines [first, end) of the chunk (1-based) that a List
	// item spans, when known, so that PosOf can parse just the item.
	lines [2]int
}

// Ref names the object for messages: "Kind namespace/name", or "Kind name"
// for cluster-scoped kinds.
func (o *Object) Ref() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// PosOf returns the position of the value at a field path (the syntax of
// Diagnostic.Field, relative to the object, also inside a List), or of its
// nearest existing ancestor. It parses the object's document again, so it
// is meant for reporting errors, not for every field of every object; the
// last parsed document is cached.
func (o *Object) PosOf(field string) Pos {
	if o.src == nil {
		return o.Pos
	}
	return o.src.cache.locate(o, parsePath(field))
}

// Errorf returns a diagnostic at PosOf(field).
func (o *Object) Errorf(field, format string, args ...any) Diagnostic {
	return Diagnostic{Pos: o.PosOf(field), Field: field, Message: fmt.Sprintf(format, args...)}
}

// source is one input file.
type source struct {
	name  string
	data  []byte
	cache *treeCache
}

// treeCache holds the most recently re-parsed document for PosOf, shared by
// the objects of one Load or Decode. One tree at a time keeps memory flat
// however many objects report errors, and consecutive errors in the same
// document (the usual case) parse it once.
type treeCache struct {
	mu    sync.Mutex
	src   *source
	ch    chunk
	lines [2]int // the List item lines parsed, or zero for the whole chunk
	docs  []*yaml.Node
	// scratch is reused by every re-parse: only Pos values leave locate,
	// so the previous tree is garbage when the next one overwrites it.
	scratch fastScratch
}

func (c *treeCache) locate(o *Object, path []pathElem) Pos {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, line0 := c.item(o); n != nil {
		d := &decoder{file: o.src.name, line0: line0, quiet: 1, budget: budgetFor(o.ch)}
		return d.pos(d.locate(n, path))
	}
	if c.src != o.src || c.ch != o.ch || c.lines != [2]int{} || c.docs == nil {
		c.docs, _ = parseChunk(o.src.data[o.ch.start:o.ch.end], &c.scratch)
		c.src, c.ch, c.lines = o.src, o.ch, [2]int{}
	}
	if o.doc >= len(c.docs) || len(c.docs[o.doc].Content) == 0 {
		return o.Pos
	}
	d := &decoder{file: o.src.name, line0: o.ch.line0, quiet: 1, budget: budgetFor(o.ch)}
	n := c.docs[o.doc].Content[0]
	if o.item >= 0 {
		items := d.child(d.enter(n), pathElem{key: "items", index: -1})
		if items = d.enter(items); items == nil || items.Kind != yaml.SequenceNode || o.item >= len(items.Content) {
			return o.Pos
		}
		n = items.Content[o.item]
	}
	return d.pos(d.locate(n, path))
}

// item parses only the lines of a List item, so that errors in a List of
// thousands of objects do not each parse the whole List. The text before
// the item on its first line ("- ", or "[" and earlier items of a flow
// list) is blanked, keeping columns. The parse is used only if it yields a
// mapping exactly where the item was found; otherwise (flow lists, odd
// layouts) nil sends the caller to the whole document.
func (c *treeCache) item(o *Object) (*yaml.Node, int) {
	if o.item < 0 || o.lines == [2]int{} {
		return nil, 0
	}
	if c.src != o.src || c.ch != o.ch || c.lines != o.lines || c.docs == nil {
		c.src, c.ch, c.lines = o.src, o.ch, o.lines
		c.docs = nil
		data := o.src.data[o.ch.start:o.ch.end]
		start, end := lineOffset(data, o.lines[0]), lineOffset(data, o.lines[1])
		col := o.Pos.Col - 1
		if start+col > end {
			return nil, 0
		}
		frag := []byte(string(data[start:end]))
		for i := range col {
			if frag[i] >= utf8.RuneSelf {
				return nil, 0
			}
			frag[i] = ' '
		}
		c.docs, _ = parseChunk(frag, &c.scratch)
	}
	line0 := o.ch.line0 + o.lines[0] - 1
	if len(c.docs) != 1 || len(c.docs[0].Content) == 0 {
		return nil, 0
	}
	n := c.docs[0].Content[0]
	if n.Kind != yaml.MappingNode || line0+n.Line != o.Pos.Line || n.Column != o.Pos.Col {
		return nil, 0
	}
	return n, line0
}

// lineOffset returns the byte offset where 1-based line starts in data,
// or len(data) for lines past the end.
func lineOffset(data []byte, line int) int {
	off := 0
	for i := 1; i < line; i++ {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			return len(data)
		}
		off += nl + 1
	}
	return off
}

// locate walks path from n and returns the node found, or the last node
// that exists on the way.
func (d *decoder) locate(n *yaml.Node, path []pathElem) *yaml.Node {
	for _, e := range path {
		cur := d.enter(n)
		if cur == nil {
			return n
		}
		next := d.child(cur, e)
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// child returns the value under key or index e of collection n, or nil.
// Merge keys are honoured.
func (d *decoder) child(n *yaml.Node, e pathElem) *yaml.Node {
	if n == nil {
		return nil
	}
	switch {
	case e.index >= 0 && n.Kind == yaml.SequenceNode:
		if e.index < len(n.Content) {
			return n.Content[e.index]
		}
	case e.index < 0 && n.Kind == yaml.MappingNode:
		var found *yaml.Node
		d.eachPair(n, func(_ *yaml.Node, key string, v *yaml.Node) {
			if found == nil && key == e.key {
				found = v
			}
		})
		return found
	}
	return nil
}

// budgetFor bounds the nodes visited in a chunk: far more than any document
// without aliases can have, far less than an alias bomb expands to.
func budgetFor(ch chunk) int {
	return 8*(ch.end-ch.start) + 1<<16
}

// parseChunk parses every YAML document in data. Documents before a syntax
// error are returned with the error.
//
// scratch, when not nil, lets the fast path reuse memory: the documents
// are then valid only until the next call with the same scratch.
func parseChunk(data []byte, scratch *fastScratch) ([]*yaml.Node, error) {
	if doc := fastParse(data, scratch); doc != nil {
		return []*yaml.Node{doc}, nil
	}
	return parseYAML(data)
}

// parseYAML parses data with go.yaml.in/yaml/v3.
func parseYAML(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		// The parser is third-party code: turn its rare panics into a
		// syntax error rather than a crash of the whole compile.
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal parser error: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		n := new(yaml.Node)
		if err := dec.Decode(n); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return docs, err
		}
		docs = append(docs, n)
	}
}

var (
	yamlErrLine   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// parserErrors are the go.yaml.in/yaml/v3 messages that come from its
// parser rather than its scanner. For those it prints the 0-based line of
// the error mark where scanner errors print the 1-based one.
var parserErrors = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxDiag turns a go.yaml.in/yaml/v3 error into a diagnostic at the line
// it names, column 1 (the parser reports no column). The parser names the
// line where it noticed the problem, or where the enclosing collection
// starts, so the hints say to look around it.
func syntaxDiag(file string, ch chunk, data []byte, err error) Diagnostic {
	msg := err.Error()
	line, col := 1, 1
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserErrors[msg] {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if m := unknownAnchor.FindStringSubmatch(err.Error()); m != nil {
			line, col = findAlias(data, m[1])
		} else if parserErrors[msg] {
			// The error mark was on the chunk's first line.
			line = 1
		}
	}
	hint := ""
	switch {
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "did not find expected '-' indicator"):
		hint = "; check the indentation here and in the lines below"
	case strings.Contains(msg, "mapping values are not allowed"):
		hint = "; check the indentation, or quote a value that contains \": \""
	case strings.Contains(msg, "found character that cannot start any token"):
		hint = "; YAML indents with spaces, not tabs, and values starting with @ or ` must be quoted"
	case strings.Contains(msg, "incompatible YAML document"):
		hint = "; only %YAML 1.1 directives are accepted (or none)"
	case strings.HasPrefix(msg, "unknown anchor"):
		hint = "; define it with &name before using it"
	}
	return Diagnostic{Pos: Pos{File: file, Line: ch.line0 + line, Col: col}, Message: "invalid YAML: " + msg + hint}
}

// findAlias returns the 1-based line and column of the first use of alias
// *name in data, or 1, 1.
func findAlias(data []byte, name string) (line, col int) {
	pat := []byte("*" + name)
	for off := 0; ; {
		i := bytes.Index(data[off:], pat)
		if i < 0 {
			return 1, 1
		}
		at := off + i
		end := at + len(pat)
		if end == len(data) || bytes.IndexByte([]byte(" \t\r\n,]}"), data[end]) >= 0 {
			before := data[:at]
			line = bytes.Count(before, []byte("\n")) + 1
			col = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
			return line, col
		}
		off = end
	}
}

// unit is one chunk of one file: the unit of parallel work.
type unit struct {
	src *source
	ch  chunk
}

type unitResult struct {
	objs    []*Object
	skipped map[string]int
	diags   Diagnostics
}

// decodeUnit parses and decodes one chunk. scratch is the worker's parse
// memory: trees do not outlive the call.
func decodeUnit(u unit, scratch *fastScratch) unitResult {
	var r unitResult
	data := u.src.data[u.ch.start:u.ch.end]
	docs, err := parseChunk(data, scratch)
	d := &decoder{file: u.src.name, line0: u.ch.line0, budget: budgetFor(u.ch)}
	for i, doc := range docs {
		if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
			r.manifest(d, u, i, doc.Content[0], -1, [2]int{})
		}
	}
	r.diags = d.diags
	if err != nil {
		r.diags = append(r.diags, syntaxDiag(u.src.name, u.ch, data, err))
	}
	return r
}

// manifest decodes one document root, or one List item (item >= 0) that
// spans the chunk's lines [lines[0], lines[1]) if known.
func (r *unitResult) manifest(d *decoder, u unit, doc int, root *yaml.Node, item int, lines [2]int) {
	d.path = d.path[:0]
	n := d.enter(root)
	if n == nil {
		return
	}
	if isNull(n) && item < 0 {
		return // an empty document: only comments, or a trailing ---
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a Kubernetes object (a mapping with apiVersion and kind), got %s", describe(n))
		return
	}
	var avNode, kindNode, items *yaml.Node
	var avLike, kindLike *yaml.Node // keys that differ only in case
	d.quiet++                       // duplicate keys are reported by the typed decode
	d.eachPair(n, func(k *yaml.Node, key string, v *yaml.Node) {
		switch {
		case key == "apiVersion":
			avNode = v
		case key == "kind":
			kindNode = v
		case key == "items":
			items = v
		case strings.EqualFold(key, "apiVersion"):
			avLike = k
		case strings.EqualFold(key, "kind"):
			kindLike = k
		}
	})
	d.quiet--
	apiVersion, okAV := d.topString(avNode, "apiVersion")
	kind, okKind := d.topString(kindNode, "kind")
	if !okAV || !okKind {
		return
	}
	if apiVersion == "" || kind == "" {
		d.missing(n, apiVersion == "", kind == "", avLike, kindLike)
		return
	}

	if kind == "List" || strings.HasSuffix(kind, "List") && items != nil && isSeq(items) {
		if item >= 0 {
			d.errorf(n, "a %s inside a List is not supported; put its items in the outer List", kind)
			return
		}
		if items == nil {
			return
		}
		list := d.enter(items)
		if list == nil || isNull(list) {
			return
		}
		if list.Kind != yaml.SequenceNode {
			d.path = append(d.path[:0], "items"...)
			d.typeError(list, "a list of objects")
			return
		}
		// Where the last item ends: at the List's next key, if any.
		last := 0
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Line > list.Line && (last == 0 || k.Line < last) {
				last = k.Line
			}
		}
		if last == 0 {
			last = math.MaxInt32 // the end of the chunk
		}
		pushed := d.push(list)
		for i, e := range list.Content {
			var lines [2]int
			end := last
			if i+1 < len(list.Content) {
				end = list.Content[i+1].Line
			}
			if e.Kind == yaml.MappingNode && e.Line < end {
				lines = [2]int{e.Line, end}
			}
			r.manifest(d, u, doc, e, i, lines)
		}
		d.pop(pushed)
		return
	}

	ki, known := kinds[kind]
	if !known || ki.apiVersion != apiVersion {
		if known && ki.policy {
			d.path = append(d.path[:0], "apiVersion"...)
			d.errorf(avNode, "%s must have apiVersion %s, got %q; a policy must not be skipped, so this is an error",
				kind, ki.apiVersion, apiVersion)
			return
		}
		for name, pk := range kinds {
			if pk.policy && strings.EqualFold(name, kind) {
				d.path = append(d.path[:0], "kind"...)
				d.errorf(kindNode, "unknown kind %q; did you mean %s? (kinds are case-sensitive)", kind, name)
				return
			}
		}
		if r.skipped == nil {
			r.skipped = map[string]int{}
		}
		r.skipped[apiVersion+" "+kind]++
		return
	}

	before := len(d.diags)
	ptr := reflect.New(ki.typ)
	pushed := d.push(n)
	d.object(n, ptr.Elem(), typeInfoOf(ki.typ))
	d.pop(pushed)
	d.path = d.path[:0]
	if len(d.diags) > before {
		return // a partly decoded object would only cause follow-on errors
	}
	meta := ptr.Interface().(metav1.Object)
	name, ns := meta.GetName(), meta.GetNamespace()
	if name == "" {
		d.path = append(d.path, "metadata.name"...)
		at := d.locate(n, []pathElem{{key: "metadata", index: -1}, {key: "name", index: -1}})
		d.errorf(at, "missing metadata.name; every %s needs a name", kind)
		return
	}
	switch {
	case ki.clusterScoped:
		ns = ""
	case ns == "":
		ns = "default"
	}
	meta.SetNamespace(ns)
	r.objs = append(r.objs, &Object{
		APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name,
		Pos: d.pos(n), Obj: ptr.Interface(),
		src: u.src, ch: u.ch, doc: doc, item: item, lines: lines,
	})
}

func isSeq(n *yaml.Node) bool {
	n = keyNode(n)
	return n.Kind == yaml.SequenceNode
}

// topString decodes apiVersion or kind. A missing or null value is "";
// ok is false when the value is not a string (and has been reported).
func (d *decoder) topString(n *yaml.Node, name string) (s string, ok bool) {
	if n == nil {
		return "", true
	}
	d.path = append(d.path[:0], name...)
	defer func() { d.path = d.path[:0] }()
	if n = d.enter(n); n == nil || isNull(n) {
		return "", n != nil
	}
	return d.str(n, false)
}

// missing reports a document without apiVersion or kind, pointing at a key
// that differs only in case when there is one.
func (d *decoder) missing(n *yaml.Node, noAV, noKind bool, avLike, kindLike *yaml.Node) {
	d.path = d.path[:0]
	var what []string
	if noAV {
		what = append(what, "apiVersion")
	}
	if noKind {
		what = append(what, "kind")
	}
	msg := "missing " + strings.Join(what, " and ")
	at := n
	var hints []string
	if noAV && avLike != nil {
		hints = append(hints, fmt.Sprintf("found key %q: did you mean apiVersion?", avLike.Value))
		at = avLike
	}
	if noKind && kindLike != nil {
		hints = append(hints, fmt.Sprintf("found key %q: did you mean kind?", kindLike.Value))
		if at == n {
			at = kindLike
		}
	}
	if len(hints) > 0 {
		msg += "; " + strings.Join(hints, "; ") + " (keys are case-sensitive)"
	} else {
		msg += "; every manifest needs both, for example apiVersion: networking.k8s.io/v1 and kind: NetworkPolicy"
	}
	d.errorf(at, "%s", msg)
}

// Decode decodes one file's bytes: every YAML document in it, and the items
// of Lists. It returns the objects in file order, the count of skipped
// documents by "apiVersion Kind", and sorted diagnostics. Objects whose
// documents have errors are left out. Duplicate objects are not checked
// here but by Load, across all files.
func Decode(file string, data []byte) ([]*Object, map[string]int, Diagnostics) {
	src := &source{name: file, data: data, cache: &treeCache{}}
	return decodeSources([]*source{src})
}

// decodeSources decodes all documents of all sources on GOMAXPROCS workers
// and returns the results in source and document order.
func decodeSources(srcs []*source) ([]*Object, map[string]int, Diagnostics) {
	var units []unit
	for _, s := range srcs {
		for _, ch := range splitDocuments(s.data) {
			units = append(units, unit{s, ch})
		}
	}
	results := make([]unitResult, len(units))
	workers := min(runtime.GOMAXPROCS(0), len(units))
	if workers <= 1 {
		scratch := &fastScratch{}
		for i, u := range units {
			results[i] = decodeUnit(u, scratch)
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				scratch := &fastScratch{}
				for {
					i := int(next.Add(1) - 1)
					if i >= len(units) {
						return
					}
					results[i] = decodeUnit(units[i], scratch)
				}
			})
		}
		wg.Wait()
	}
	var objs []*Object
	skipped := map[string]int{}
	var diags Diagnostics
	for _, r := range results {
		objs = append(objs, r.objs...)
		for k, n := range r.skipped {
			skipped[k] += n
		}
		diags = append(diags, r.diags...)
	}
	diags.Sort()
	return objs, skipped, diags
}
