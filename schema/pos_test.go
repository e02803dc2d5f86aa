package schema

import (
	"testing"
)

// posSource is a file with a policy in its second document and a List in
// its third, so that PosOf has to find its way in both.
var posSource = lines(
	"apiVersion: v1", // 1
	"kind: Namespace",
	"metadata: {name: first}",
	"---",
	"apiVersion: networking.k8s.io/v1", // 5
	"kind: NetworkPolicy",
	"metadata:",
	"  name: np",
	"  labels:",
	"    app.kubernetes.io/name: web", // 10
	"    tier: &tier front",
	"spec:",
	"  podSelector:",
	"    matchLabels: &sel {app: web}",
	"  ingress:", // 15
	"  - from:",
	"    - podSelector: {matchLabels: *sel}",
	"    - ipBlock:",
	"        cidr: 10.0.0.0/8",
	"        except:", // 20
	"        - 10.1.0.0/16",
	"        - 10.2.0.0/16",
	"  egress:",
	"  - to:",
	"    - podSelector:", // 25
	"        matchLabels:",
	"          <<: *sel",
	"          tier: *tier",
	"---",
	"apiVersion: v1", // 30
	"kind: List",
	"items:",
	"- apiVersion: v1",
	"  kind: Service",
	"  metadata: {name: a}", // 35
	"- apiVersion: v1",
	"  kind: Service",
	"  metadata: {name: b}",
	"  spec:",
	"    ports:", // 40
	"    - port: 80",
	"    - port: 443",
	"      targetPort: https",
)

func TestPosOf(t *testing.T) {
	objs, _, diags := Decode("pos.yaml", []byte(posSource))
	if len(diags) > 0 || len(objs) != 4 {
		t.Fatalf("%d objects, diagnostics %v", len(objs), diags)
	}
	np, svcB := objs[1], objs[3]
	if np.Ref() != "NetworkPolicy default/np" || svcB.Ref() != "Service default/b" {
		t.Fatalf("objects %s, %s", np.Ref(), svcB.Ref())
	}
	tests := []struct {
		obj   *Object
		field string
		want  string
	}{
		{objs[0], "", "pos.yaml:1:1"},
		{objs[0], "metadata.name", "pos.yaml:3:18"},
		{np, "", "pos.yaml:5:1"},
		{np, "spec.ingress[0].from[1].ipBlock.except[0]", "pos.yaml:21:11"},
		{np, "spec.ingress[0].from[1].ipBlock.except[1]", "pos.yaml:22:11"},
		{np, "spec.ingress[0].from[1].ipBlock.cidr", "pos.yaml:19:15"},
		// Missing elements fall back to the nearest ancestor that exists.
		{np, "spec.ingress[0].from[1].ipBlock.except[7]", "pos.yaml:21:9"},
		{np, "spec.ingress[0].ports[0].port", "pos.yaml:16:5"},
		{np, "spec.policyTypes", "pos.yaml:13:3"},
		{np, "status.whatever", "pos.yaml:5:1"},
		// Quoted keys, aliases (the use, then the anchored content) and
		// merge keys.
		{np, `metadata.labels["app.kubernetes.io/name"]`, "pos.yaml:10:29"},
		{np, "spec.ingress[0].from[0].podSelector.matchLabels", "pos.yaml:17:34"},
		{np, "spec.ingress[0].from[0].podSelector.matchLabels.app", "pos.yaml:14:29"},
		{np, "spec.egress[0].to[0].podSelector.matchLabels.app", "pos.yaml:14:29"},
		{np, "spec.egress[0].to[0].podSelector.matchLabels.tier", "pos.yaml:28:17"},
		// Malformed paths stop at the last good step.
		{np, "spec.ingress[x].from", "pos.yaml:16:3"},
		{np, `metadata.labels["unterminated`, "pos.yaml:10:5"},
		// Inside a List item, paths are relative to the item.
		{svcB, "", "pos.yaml:36:3"},
		{svcB, "metadata.name", "pos.yaml:38:20"},
		{svcB, "spec.ports[1].targetPort", "pos.yaml:43:19"},
		{svcB, "spec.ports[1].nodePort", "pos.yaml:42:7"},
		{objs[2], "spec", "pos.yaml:33:3"},
	}
	for _, tc := range tests {
		if got := tc.obj.PosOf(tc.field).String(); got != tc.want {
			t.Errorf("%s PosOf(%q) = %s, want %s", tc.obj.Ref(), tc.field, got, tc.want)
		}
	}
	// PosOf on a List item parses only the item's lines.
	svcB.PosOf("metadata")
	if c := svcB.src.cache; c.lines != svcB.lines || svcB.lines[0] != 8 || len(c.docs) != 1 {
		t.Errorf("PosOf on a List item parsed lines %v (%d documents), want from line 8 of the chunk", c.lines, len(c.docs))
	}
	d := svcB.Errorf("spec.ports[0].port", "port %d is reserved; use one of %s", 80, "8080, 8443")
	if got, want := d.String(), "pos.yaml:41:13: spec.ports[0].port: port 80 is reserved; use one of 8080, 8443"; got != want {
		t.Errorf("Errorf = %s, want %s", got, want)
	}
}

// TestPosOfFlowList checks List items that cannot be parsed on their own
// (flow style, several on a line), which fall back to the whole document.
func TestPosOfFlowList(t *testing.T) {
	src := lines(
		`{"apiVersion": "v1", "kind": "List", "items": [`,
		`  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},`,
		`  {"apiVersion": "v1", "kind": "Namespace",`,
		`   "metadata": {"name": "b", "labels": {"x": "y"}}}, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}`,
		`]}`,
	)
	objs, _, diags := Decode("list.json", []byte(src))
	if len(diags) > 0 || len(objs) != 3 {
		t.Fatalf("%d objects, diagnostics %v", len(objs), diags)
	}
	for i, want := range []string{"list.json:2:66", "list.json:4:25", "list.json:4:117"} {
		if got := objs[i].PosOf("metadata.name").String(); got != want {
			t.Errorf("item %d: PosOf(metadata.name) = %s, want %s", i, got, want)
		}
	}
	if got, want := objs[1].PosOf("metadata.labels.x").String(), "list.json:4:46"; got != want {
		t.Errorf("PosOf(metadata.labels.x) = %s, want %s", got, want)
	}
}

// TestPosOfWithCRLFAndMarkers checks positions in later chunks of a file
// with CRLF line endings and document end markers.
func TestPosOfWithCRLFAndMarkers(t *testing.T) {
	src := "# header\r\n---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: a\r\n...\r\n---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: b\r\n"
	objs, _, diags := Decode("crlf.yaml", []byte(src))
	if len(diags) > 0 || len(objs) != 2 {
		t.Fatalf("%d objects, diagnostics %v", len(objs), diags)
	}
	for i, want := range []string{"crlf.yaml:6:9", "crlf.yaml:12:9"} {
		if got := objs[i].PosOf("metadata.name").String(); got != want {
			t.Errorf("object %d: PosOf(metadata.name) = %s, want %s", i, got, want)
		}
	}
}

func TestParsePath(t *testing.T) {
	for _, p := range []string{
		"",
		"spec",
		"spec.ingress[0].from[1].ipBlock.except[0]",
		`metadata.labels["app.kubernetes.io/name"]`,
		`metadata.annotations["a\"b]c"].x`,
		`a[""]`,
	} {
		var back []byte
		for _, e := range parsePath(p) {
			if e.index >= 0 {
				back = appendIndex(back, e.index)
			} else {
				back = appendKey(back, e.key)
			}
		}
		if string(back) != p {
			t.Errorf("parsePath(%q) printed back as %q", p, back)
		}
	}
}
