package schema

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// StdinName is the file name of standard input in positions.
const StdinName = "<stdin>"

// Set is everything one Load read.
type Set struct {
	// Objects in a deterministic order: paths in argument order, directory
	// entries in lexical order, documents and List items in file order.
	Objects []*Object
	// Read counts decoded objects by kind.
	Read map[string]int
	// Skipped counts documents of kinds schema does not decode, by
	// "apiVersion Kind". They are not errors.
	Skipped map[string]int
	// Files is the number of files read (standard input counts as one).
	Files int
	// Sources is the number of in-memory sources decoded (Extend).
	Sources int
	// Source returns a file's contents, for Diagnostics.Format; nil for a
	// file that was not read.
	Source func(file string) []byte
}

// Load reads manifests from paths, kubectl style: a file, a directory
// (recursively, taking only *.yaml, *.yml and *.json), or "-" for stdin,
// which is named "<stdin>" in positions. Files are decoded in parallel; the
// result does not depend on scheduling. Diagnostics are sorted; objects of
// documents with errors are left out, and so are duplicates (the same
// apiVersion group, kind, namespace and name), which are errors at the
// second definition.
func Load(paths []string, stdin io.Reader) (*Set, Diagnostics) {
	var srcs []*source
	var diags Diagnostics
	cache := &treeCache{}
	add := func(name string, data []byte) {
		srcs = append(srcs, &source{name: name, data: data, cache: cache})
	}
	fail := func(name string, err error) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		diags = append(diags, Diagnostic{
			Pos:     Pos{File: name},
			Message: "cannot read: " + err.Error() + "; give a manifest file, a directory or - for standard input",
		})
	}
	stdinRead := false
	for _, p := range paths {
		if p == "-" {
			if stdinRead {
				diags = append(diags, Diagnostic{Pos: Pos{File: StdinName}, Message: "standard input (-) given more than once; give it once"})
				continue
			}
			stdinRead = true
			if stdin == nil {
				fail(StdinName, errors.New("no standard input"))
				continue
			}
			data, err := io.ReadAll(stdin)
			if err != nil {
				fail(StdinName, err)
				continue
			}
			add(StdinName, data)
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			fail(p, err)
			continue
		}
		if !info.IsDir() {
			// An explicitly named file is read whatever its extension, as
			// kubectl does (and so is a pipe such as /dev/fd/3).
			data, err := os.ReadFile(p)
			if err != nil {
				fail(p, err)
				continue
			}
			add(p, data)
			continue
		}
		// WalkDir visits entries in lexical order.
		before := len(srcs)
		filepath.WalkDir(p, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				fail(path, err)
				return nil
			}
			if de.IsDir() || !isManifestName(path) {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				fail(path, err)
				return nil
			}
			add(path, data)
			return nil
		})
		if len(srcs) == before {
			// A pipeline pointed at the wrong directory fails rather than
			// compiling an empty cluster and shipping it.
			diags = append(diags, Diagnostic{Pos: Pos{File: p},
				Message: "no manifests in this directory; sluice reads *.yaml, *.yml and *.json files in it and below"})
		}
	}

	objs, skipped, ds := decodeSources(srcs)
	diags = append(diags, ds...)
	set := &Set{Skipped: skipped, Files: len(srcs)}
	diags = append(diags, set.add(objs)...)
	files := make(map[string][]byte, len(srcs))
	for _, s := range srcs {
		files[s.name] = s.data
	}
	set.Source = func(file string) []byte { return files[file] }
	diags.Sort()
	return set, diags
}

// add appends objects, leaving out and reporting duplicates: the same
// apiVersion group, kind, namespace and name as an object before.
func (set *Set) add(objs []*Object) Diagnostics {
	var diags Diagnostics
	if set.Read == nil {
		set.Read = map[string]int{}
	}
	seen := make(map[string]*Object, len(set.Objects)+len(objs))
	key := func(o *Object) string { return group(o.APIVersion) + "/" + o.Kind + "/" + o.Namespace + "/" + o.Name }
	for _, o := range set.Objects {
		seen[key(o)] = o
	}
	for _, o := range objs {
		k := key(o)
		if first := seen[k]; first != nil {
			diags = append(diags, o.Errorf("metadata.name",
				"duplicate %s: already defined at %s; names must be unique per kind and namespace", o.Ref(), first.PosOf("metadata.name")))
			continue
		}
		seen[k] = o
		set.Objects = append(set.Objects, o)
		set.Read[o.Kind]++
	}
	return diags
}

// Source is an input held in memory rather than read from a file, such
// as an object read from the API server. Its Name stands for a file name
// in positions and in Set.Source.
type Source struct {
	Name string
	Data []byte
}

// Extend returns a new set: the objects of set for which keep returns
// true, then the objects decoded from srcs, with the diagnostics of
// decoding srcs (duplicates among all the objects included, as Load
// reports them). Files still counts the files of set; Sources counts srcs.
func (set *Set) Extend(keep func(*Object) bool, srcs []Source) (*Set, Diagnostics) {
	cache := &treeCache{}
	ss := make([]*source, len(srcs))
	data := make(map[string][]byte, len(srcs))
	for i, s := range srcs {
		ss[i] = &source{name: s.Name, data: s.Data, cache: cache}
		data[s.Name] = s.Data
	}
	objs, skipped, diags := decodeSources(ss)
	out := &Set{Read: map[string]int{}, Skipped: map[string]int{}, Files: set.Files, Sources: set.Sources + len(srcs)}
	for _, o := range set.Objects {
		if keep(o) {
			out.Objects = append(out.Objects, o)
			out.Read[o.Kind]++
		}
	}
	for _, m := range []map[string]int{set.Skipped, skipped} {
		for k, n := range m {
			out.Skipped[k] += n
		}
	}
	diags = append(diags, out.add(objs)...)
	prev := set.Source
	out.Source = func(file string) []byte {
		if d, ok := data[file]; ok {
			return d
		}
		if prev != nil {
			return prev(file)
		}
		return nil
	}
	diags.Sort()
	return out, diags
}

// isManifestName reports whether a file found in a directory is read: the
// extensions kubectl takes.
func isManifestName(path string) bool {
	switch filepath.Ext(path) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// group returns the API group of an apiVersion ("" for the core group).
func group(apiVersion string) string {
	g, _, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return ""
	}
	return g
}
