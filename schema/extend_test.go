package schema

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExtend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(path, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"), 0o644)
	set, diags := Load([]string{path}, nil)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	srcs := []Source{
		{Name: "mem:c", Data: []byte(`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}`)},
		{Name: "mem:a", Data: []byte("{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {\"name\": \"a\"}\n}\n")},
		{Name: "mem:bad", Data: []byte("{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"metadata\": {\"name\": \"p\"},\n  \"spec\": {\"nodeName\": 7}\n}\n")},
	}
	// b is left out; a is kept, so mem:a duplicates it.
	out, diags := set.Extend(func(o *Object) bool { return o.Name != "b" }, srcs)
	var names []string
	for _, o := range out.Objects {
		names = append(names, o.Name+"@"+o.Pos.File)
	}
	if got, want := strings.Join(names, " "), "a@"+path+" c@mem:c"; got != want {
		t.Errorf("objects %s, want %s", got, want)
	}
	if len(diags) != 2 {
		t.Fatalf("diagnostics %v; want the duplicate and the bad field", diags)
	}
	if d := diags[0]; d.Pos.File != "mem:a" || d.Pos.Line != 4 || !strings.Contains(d.Message, "duplicate Namespace a: already defined at "+path+":3:") {
		t.Errorf("duplicate: %s", d)
	}
	if d := diags[1]; d.Pos.String() != "mem:bad:5:24" || d.Field != "spec.nodeName" {
		t.Errorf("bad field: %s", d)
	}
	if out.Files != 1 || out.Sources != 3 || out.Read["Namespace"] != 2 {
		t.Errorf("files %d, sources %d, read %v", out.Files, out.Sources, out.Read)
	}
	if out.Source("mem:c") == nil || out.Source(path) == nil || out.Source("nope") != nil {
		t.Error("Source does not serve both the files and the sources")
	}
	if len(set.Objects) != 2 {
		t.Error("Extend changed the set it extends")
	}
}
