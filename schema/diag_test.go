package schema

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKey(t *testing.T) {
	for k, want := range map[string]string{
		"app":                    ".app",
		"_x9":                    "._x9",
		"app.kubernetes.io/name": `["app.kubernetes.io/name"]`,
		"kube-system":            `["kube-system"]`,
		"9lives":                 `["9lives"]`,
		"":                       `[""]`,
		`say "hi"`:               `["say \"hi\""]`,
	} {
		if got := Key(k); got != want {
			t.Errorf("Key(%q) = %s, want %s", k, got, want)
		}
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{Pos: Pos{File: "a.yaml", Line: 3, Col: 5}, Field: "spec.x", Message: "bad"}
	if got, want := d.String(), "a.yaml:3:5: spec.x: bad"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	d.Field = ""
	if got, want := d.String(), "a.yaml:3:5: bad"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	d.Pos = Pos{File: "gone.yaml"}
	if got, want := d.String(), "gone.yaml: bad"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestSortAndErr(t *testing.T) {
	mk := func(file string, line, col int, field, msg string) Diagnostic {
		return Diagnostic{Pos: Pos{File: file, Line: line, Col: col}, Field: field, Message: msg}
	}
	ds := Diagnostics{
		mk("b.yaml", 1, 1, "", "z"),
		mk("a.yaml", 10, 1, "", "y"),
		mk("a.yaml", 9, 7, "spec", "x"),
		mk("a.yaml", 9, 3, "spec", "x"),
		mk("a.yaml", 9, 3, "metadata", "x"),
		mk("a.yaml", 9, 3, "spec", "x"), // duplicate
		mk("a.yaml", 9, 3, "spec", "w"),
	}
	ds.Sort()
	want := Diagnostics{
		mk("a.yaml", 9, 3, "metadata", "x"),
		mk("a.yaml", 9, 3, "spec", "w"),
		mk("a.yaml", 9, 3, "spec", "x"),
		mk("a.yaml", 9, 7, "spec", "x"),
		mk("a.yaml", 10, 1, "", "y"),
		mk("b.yaml", 1, 1, "", "z"),
	}
	if diff := cmp.Diff(want, ds); diff != "" {
		t.Errorf("Sort (-want +got):\n%s", diff)
	}
	if Diagnostics(nil).Err() != nil {
		t.Errorf("Err of no diagnostics is not nil")
	}
	err := ds.Err()
	var back Diagnostics
	if !errors.As(err, &back) || len(back) != 6 {
		t.Fatalf("errors.As(%v) gave %v", err, back)
	}
	if got, want := err.Error(), "a.yaml:9:3: metadata: x (and 5 more errors)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestFormat(t *testing.T) {
	src := map[string][]byte{
		"a.yaml": []byte("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\nspec: {näme: y}\r\n"),
	}
	ds := Diagnostics{
		{Pos: Pos{File: "a.yaml", Line: 5, Col: 8}, Field: "spec.näme", Message: "unknown field"},
		{Pos: Pos{File: "a.yaml", Line: 4, Col: 2}, Field: "metadata", Message: "tab"},
		{Pos: Pos{File: "a.yaml", Line: 99, Col: 1}, Message: "past the end"},
		{Pos: Pos{File: "other.yaml", Line: 1, Col: 1}, Message: "no source"},
		{Pos: Pos{File: "z.yaml"}, Message: "unreadable"},
	}
	var b bytes.Buffer
	ds.Format(&b, 3, func(f string) []byte { return src[f] })
	want := "a.yaml:4:2: metadata: tab\n" +
		" | \tname: x\n" +
		" | \t^\n" +
		"a.yaml:5:8: spec.näme: unknown field\n" +
		" | spec: {näme: y}\n" +
		" |        ^\n" +
		"a.yaml:99:1: past the end\n" +
		"... and 2 more errors\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("Format (-want +got):\n%s", diff)
	}

	b.Reset()
	ds.Format(&b, 0, nil)
	want = "a.yaml:4:2: metadata: tab\n" +
		"a.yaml:5:8: spec.näme: unknown field\n" +
		"a.yaml:99:1: past the end\n" +
		"other.yaml:1:1: no source\n" +
		"z.yaml: unreadable\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("Format without sources (-want +got):\n%s", diff)
	}
	if ds[0].Pos.Line != 5 {
		t.Errorf("Format reordered its receiver")
	}
}
