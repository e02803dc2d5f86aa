package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/golden")

// sluice runs the CLI in-process.
func sluice(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), rc
}

// readTree returns every file under dir, by slash path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		data, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// The examples compile to the golden dumps; go test -update rewrites them.
func TestGoldenExamples(t *testing.T) {
	manifests, _ := filepath.Glob("../../examples/*/*.yaml")
	var examples []string
	for _, m := range manifests {
		if d := filepath.Dir(m); len(examples) == 0 || examples[len(examples)-1] != d {
			examples = append(examples, d)
		}
	}
	if len(examples) == 0 {
		t.Fatal("no examples found")
	}
	for _, ex := range examples {
		name := filepath.Base(ex)
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			// Relative inputs keep absolute paths out of the golden text.
			if _, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/"+name, "-o", out); rc != 0 {
				t.Fatalf("compile: rc %d\n%s", rc, errs)
			}
			got := readTree(t, out)
			golden := filepath.Join("testdata", "golden", name)
			if *update {
				os.RemoveAll(golden)
				for rel, data := range got {
					if !strings.Contains(rel, "/dump/") && !strings.Contains(rel, "/programs/") && !strings.HasSuffix(rel, "manifest.json") && !strings.HasSuffix(rel, "node.json") {
						continue // binary maps and ir.json are covered by the manifest's sums
					}
					p := filepath.Join(golden, filepath.FromSlash(rel))
					os.MkdirAll(filepath.Dir(p), 0o755)
					if err := os.WriteFile(p, data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := readTree(t, golden)
			if len(want) == 0 {
				t.Fatalf("no golden files in %s; run go test -update", golden)
			}
			var names []string
			for rel := range want {
				names = append(names, rel)
			}
			sort.Strings(names)
			for _, rel := range names {
				if diff := cmp.Diff(string(want[rel]), string(got[rel])); diff != "" {
					t.Errorf("%s differs from the golden file (-want +got); run go test ./cmd/sluice -update after a deliberate change:\n%s", rel, diff)
				}
			}
		})
	}
}

// The same input gives the same bytes: run twice, and with the inputs in
// another order.
func TestDeterminism(t *testing.T) {
	files, _ := filepath.Glob("../../examples/seed/*.yaml")
	sort.Strings(files)
	compile := func(args []string) map[string][]byte {
		out := filepath.Join(t.TempDir(), "out")
		a := []string{"compile", "-q", "-o", out}
		for _, f := range args {
			a = append(a, "-f", f)
		}
		if _, errs, rc := sluice(t, "", a...); rc != 0 {
			t.Fatalf("compile: %s", errs)
		}
		return readTree(t, out)
	}
	first := compile(files)
	rev := append([]string(nil), files...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	for _, order := range [][]string{files, rev, {rev[1], rev[0], rev[3], rev[2]}} {
		got := compile(order)
		if diff := cmp.Diff(first, got); diff != "" {
			t.Fatalf("output differs for input order %v:\n%s", order, diff)
		}
	}

	// Documents shuffled inside one file: positions change, so dumps that
	// cite lines may differ, but not a byte of the maps.
	var docs []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, d := range strings.Split(string(data), "\n---\n") {
			docs = append(docs, d)
		}
	}
	maps := func(tree map[string][]byte) map[string][]byte {
		out := map[string][]byte{}
		for k, v := range tree {
			if strings.Contains(k, "/maps/") {
				out[k] = v
			}
		}
		return out
	}
	dir := t.TempDir()
	write := func(name string, ds []string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Join(ds, "\n---\n")), 0o644)
		return p
	}
	forward := compile([]string{write("a.yaml", docs)})
	shuffled := append([]string(nil), docs...)
	for i := range shuffled {
		j := (i*7 + 3) % len(shuffled)
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	backward := compile([]string{write("a.yaml", shuffled)})
	if diff := cmp.Diff(maps(forward), maps(backward)); diff != "" {
		t.Fatalf("map images differ when documents are shuffled:\n%s", diff)
	}
	if len(maps(forward)) == 0 {
		t.Fatal("no map images found")
	}
}
