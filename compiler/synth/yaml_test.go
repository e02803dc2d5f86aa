package synth

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestPlainScalar(t *testing.T) {
	tests := []struct {
		in    string
		plain bool
	}{
		{"web", true},
		{"10.0.0.1", true},
		{"10.0.0.0/22", true},
		{"registry.example.com/team/web:1.2.3", true},
		{"k8s:io.kubernetes.pod.namespace", true},
		{"node-role.kubernetes.io/control-plane", true},
		{"v1", true},
		{"", false},
		{"8080", false},
		{"1.5", false},
		{"1e5", false},
		{"0x1F", false},
		{"true", false},
		{"True", false},
		{"no", false},
		{"On", false},
		{"y", false},
		{"null", false},
		{"None", true},
		{"1:20", false},
		{"2006-01-02", false},
		{"2025-06-01T12:00:00Z", false},
		{"-1", false},
		{"a b", false},
		{"a:", false},
		{"*x", false},
		{"24567", false},
	}
	for _, tt := range tests {
		if got := plain(tt.in); got != tt.plain {
			t.Errorf("plain(%q) = %v, want %v", tt.in, got, tt.plain)
		}
	}

	// Whatever the encoder chose, YAML must read every value back as the
	// same string.
	o := obj{}
	want := map[string]any{}
	for i, tt := range tests {
		k := "k" + string(rune('a'+i))
		o = append(o, kv{k, tt.in})
		want[k] = tt.in
	}
	var e encoder
	e.obj(o, 0)
	var got map[string]any
	if err := yaml.UnmarshalStrict(e.b, &got); err != nil {
		t.Fatalf("unmarshal:\n%s\n%v", e.b, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", d, e.b)
	}
}

func TestEncoderShape(t *testing.T) {
	o := obj{
		{"kind", "X"},
		{"apiVersion", "v1"},
		{"spec", obj{
			{"empty", obj{}},
			{"none", list{}},
			{"items", list{
				obj{{"b", 1}, {"a", list{obj{{"x", true}}, "s"}}},
				obj{},
				"plain",
			}},
		}},
	}
	var e encoder
	e.doc(o)
	want := `---
apiVersion: v1
kind: X
spec:
  empty: {}
  items:
  - a:
    - x: true
    - s
    b: 1
  - {}
  - plain
  none: []
`
	if d := cmp.Diff(want, string(e.b)); d != "" {
		t.Errorf("encoding (-want +got):\n%s", d)
	}
}
