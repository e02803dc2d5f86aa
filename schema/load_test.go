package schema

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeTree writes files (path → content) under a new temporary directory
// and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ns(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", name)
}

func np(name, namespace string) string {
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec: {podSelector: {}}\n", name, namespace)
}

// positions lists "Ref@file:line:col" for the objects of a set.
func positions(s *Set) []string {
	var out []string
	for _, o := range s.Objects {
		out = append(out, o.Ref()+"@"+o.Pos.String())
	}
	return out
}

func TestLoadDirectoryRecursion(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"b.yaml":          ns("b"),
		"a/z.yml":         ns("z"),
		"a/y.json":        `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}`,
		"a/x.txt":         ns("not-read"),
		"a/README.md":     "# not a manifest",
		"a/deeper/c.yaml": ns("c") + "---\n" + ns("c2"),
		"UPPER.YAML":      ns("not-read-either"),
	})
	set, diags := Load([]string{dir}, nil)
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	rel := func(p string) string { return strings.TrimPrefix(p, dir+string(filepath.Separator)) }
	var got []string
	for _, o := range set.Objects {
		got = append(got, o.Name+"@"+rel(o.Pos.File))
	}
	want := []string{"c@a/deeper/c.yaml", "c2@a/deeper/c.yaml", "y@a/y.json", "z@a/z.yml", "b@b.yaml"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects in walk order (-want +got):\n%s", diff)
	}
	if set.Files != 4 {
		t.Errorf("Files = %d, want 4", set.Files)
	}
	if diff := cmp.Diff(map[string]int{"Namespace": 5}, set.Read); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
}

// A directory without manifests is an error, not an empty cluster.
func TestLoadEmptyDirectory(t *testing.T) {
	empty := writeTree(t, map[string]string{"README.md": "# no manifests", "10-net.conflist": "{}"})
	full := writeTree(t, map[string]string{"a.yaml": ns("a")})
	set, diags := Load([]string{full, empty}, nil)
	if len(diags) != 1 || diags[0].Pos.File != empty || !strings.Contains(diags[0].Message, "no manifests") {
		t.Fatalf("diagnostics %v, want one naming %s", diags, empty)
	}
	if len(set.Objects) != 1 {
		t.Errorf("objects %d, want the one from the other directory", len(set.Objects))
	}
}

func TestLoadArgumentsAndStdin(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"one.yaml":     ns("one"),
		"policy.txt":   np("explicit", "prod"), // named explicitly: read whatever its extension
		"dir/two.yaml": ns("two"),
	})
	stdin := strings.NewReader(lines(
		"apiVersion: v1",
		"kind: ConfigMap",
		"metadata: {name: cm}",
		"---",
		"apiVersion: v1",
		"kind: Namespace",
		"metadata: {name: from-stdin}",
	))
	set, diags := Load([]string{
		filepath.Join(dir, "policy.txt"),
		"-",
		filepath.Join(dir, "dir"),
		filepath.Join(dir, "one.yaml"),
	}, stdin)
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	want := []string{
		"NetworkPolicy prod/explicit@" + filepath.Join(dir, "policy.txt") + ":1:1",
		"Namespace from-stdin@<stdin>:5:1",
		"Namespace two@" + filepath.Join(dir, "dir", "two.yaml") + ":1:1",
		"Namespace one@" + filepath.Join(dir, "one.yaml") + ":1:1",
	}
	if diff := cmp.Diff(want, positions(set)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"v1 ConfigMap": 1}, set.Skipped); diff != "" {
		t.Errorf("Skipped (-want +got):\n%s", diff)
	}
	if got := string(set.Source("<stdin>")); !strings.Contains(got, "from-stdin") {
		t.Errorf("Source(<stdin>) = %q", got)
	}
	if set.Source("unknown.yaml") != nil {
		t.Errorf("Source of an unread file is not nil")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a.yaml": np("web", "prod") + "---\n" + np("web", "staging"),
		"b.yaml": ns("x") + "---\n" + np("web", "prod"),
		"c.yaml": "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: web}\n",
	})
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	missing := filepath.Join(dir, "missing.yaml")
	set, diags := Load([]string{a, b, filepath.Join(dir, "c.yaml"), missing, "-", "-"}, strings.NewReader(""))
	var got []string
	for _, d := range diags {
		got = append(got, d.String())
	}
	// Sorted by file name: the temporary directory's "/" sorts before "<".
	want := []string{
		b + ":7:18: metadata.name: duplicate NetworkPolicy prod/web: already defined at " + a + ":3:18; names must be unique per kind and namespace",
		missing + ": cannot read: no such file or directory; give a manifest file, a directory or - for standard input",
		"<stdin>: standard input (-) given more than once; give it once",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	// The duplicate is dropped; the same name in another namespace or kind
	// is not a duplicate.
	if diff := cmp.Diff(map[string]int{"NetworkPolicy": 2, "Namespace": 1, "CiliumClusterwideNetworkPolicy": 1}, set.Read); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
}

// TestLoadDeterministic loads the same inputs with one worker and with
// many, and in a different argument order for the file-order part, and
// compares everything observable.
func TestLoadDeterministic(t *testing.T) {
	files := map[string]string{}
	for i := range 40 {
		var b strings.Builder
		for j := range 25 {
			fmt.Fprintf(&b, "---\n%s", np(fmt.Sprintf("p%d-%d", i, j), "ns"))
			if j%7 == 3 {
				fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d-%d}\nspec: {ports: [{port: x}]}\n", i, j)
			}
		}
		files[fmt.Sprintf("f%02d.yaml", i)] = b.String()
	}
	dir := writeTree(t, files)
	render := func() string {
		set, diags := Load([]string{dir}, nil)
		var b bytes.Buffer
		fmt.Fprintln(&b, positions(set), set.Read, set.Skipped, set.Files)
		diags.Format(&b, 0, set.Source)
		return b.String()
	}
	prev := runtime.GOMAXPROCS(1)
	one := render()
	runtime.GOMAXPROCS(8)
	many := render()
	runtime.GOMAXPROCS(prev)
	if one != many {
		t.Errorf("output differs between 1 and 8 workers:\n%s", cmp.Diff(one, many))
	}
	if !strings.Contains(one, "expected integer, got string \"x\"") {
		t.Errorf("expected diagnostics missing from:\n%.500s", one)
	}
}
