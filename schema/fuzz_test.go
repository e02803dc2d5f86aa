package schema

import (
	"errors"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// fuzzSeeds are small manifests, valid and invalid, covering the decoder's
// paths: every policy kind, Lists, flow style, JSON, anchors and merges,
// json.Unmarshaler fields, Opaque content and broken YAML.
var fuzzSeeds = []string{
	np("web", "prod"),
	ns("a") + "---\n" + ns("b") + "---\n",
	lines(
		"apiVersion: networking.k8s.io/v1",
		"kind: NetworkPolicy",
		"metadata: {name: n}",
		"spec:",
		"  podSelector: {matchLabels: {app: web}}",
		"  ingress:",
		"  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]",
		"    ports: [{port: 80}, {port: http, protocol: UDP, endPort: 90}]",
	),
	lines(
		"apiVersion: cilium.io/v2",
		"kind: CiliumNetworkPolicy",
		"metadata: {name: c}",
		"spec:",
		"  endpointSelector: {matchExpressions: [{key: 'k8s:a', operator: In, values: [x]}]}",
		"  egress:",
		"  - toFQDNs: [{matchName: example.com}]",
		"    toPorts: [{ports: [{port: 53, protocol: ANY}], rules: {dns: [{matchPattern: '*'}]}}]",
	),
	lines(
		"apiVersion: cilium.io/v2",
		"kind: CiliumClusterwideNetworkPolicy",
		"metadata: {name: h}",
		"specs:",
		"- nodeSelector: {}",
		"  ingress: [{icmps: [{fields: [{type: 8}]}], fromEntities: [cluster]}]",
	),
	lines(
		"apiVersion: v1",
		"kind: List",
		"items:",
		"- {apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: 10.0.0.1}}",
		"- {apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80, targetPort: 8080}]}}",
	),
	`{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}`,
	"{apiVersion: apps/v1, kind: Deployment, metadata: {name: d,}, spec: {replicas: 2, template: {spec: {containers: [{name: c, resources: {limits: {cpu: 500m}}},],},},},}\n",
	lines(
		"apiVersion: v1",
		"kind: Pod",
		"metadata: &m {name: p, labels: &l {a: b}}",
		"spec:",
		"  nodeSelector: {<<: *l, c: d}",
		"  containers: [{name: c}]",
	),
	"apiversion: v1\nKind: Pod\n",
	"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999999999}]}\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n",
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: [}\n---\napiVersion: v1\n",
	"a: &a [*a]\n",
	"---\n# comment\n...\n%YAML 1.1\n--- !!map\napiVersion: batch/v1\nkind: Job\nmetadata: {name: j, creationTimestamp: 2024-01-01T00:00:00Z}\n",
	"  ingress:\n  - ports: [{port: api-port}]\n",
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _, diags := Decode("fuzz.yaml", data)
		for _, d := range diags {
			if d.Pos.File != "fuzz.yaml" || d.Pos.Line < 1 || d.Pos.Col < 1 {
				t.Errorf("diagnostic without a position: %#v", d)
			}
			if d.Message == "" {
				t.Errorf("diagnostic without a message: %#v", d)
			}
		}
		for _, o := range objs {
			if o.Name == "" || o.Kind == "" || o.APIVersion == "" || o.Obj == nil {
				t.Errorf("incomplete object %#v", o)
			}
			for _, field := range []string{"", "metadata.name", "spec.ingress[0].from[0]", `metadata.labels["a.b"]`} {
				if p := o.PosOf(field); p.Line < 1 || p.Col < 1 || p.Line < o.Pos.Line && field != "" {
					t.Errorf("%s: PosOf(%q) = %v, object at %v", o.Ref(), field, p, o.Pos)
				}
			}
		}
		checkSplit(t, data)
	})
}

// checkSplit compares our document splitting with go.yaml.in/yaml/v3
// reading the whole stream: when the stream parses, the chunks must parse
// to the same documents. Two differences are accepted, both cases where
// yaml.v3 is more lenient than YAML and than kubectl, which splits streams
// on "---" lines before parsing: an alias to an anchor of an earlier
// document (yaml.v3 keeps anchors across documents), and a "%" directive
// line right after a document's content (yaml.v3 ends the document there
// without the "..." marker YAML requires).
func checkSplit(t *testing.T, data []byte) {
	whole, err := parseChunk(data, nil)
	if err != nil {
		return
	}
	var split []*yaml.Node
	var offsets []int
	for _, ch := range splitDocuments(data) {
		docs, err := parseChunk(data[ch.start:ch.end], nil)
		if err != nil {
			if strings.Contains(err.Error(), "unknown anchor") || hasDirectiveLine(data[ch.start:ch.end]) {
				return
			}
			t.Fatalf("chunk %q fails (%v) but the whole stream parses", data[ch.start:ch.end], err)
		}
		for _, d := range docs {
			split = append(split, d)
			offsets = append(offsets, ch.line0)
		}
	}
	if len(split) != len(whole) {
		t.Fatalf("split into %d documents, whole stream has %d", len(split), len(whole))
	}
	for i := range whole {
		if err := sameTree(whole[i], split[i], offsets[i], 0); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
	}
}

func sameTree(a, b *yaml.Node, line0, depth int) error {
	if depth > 50 {
		return nil
	}
	if a.Kind != b.Kind || a.Tag != b.Tag || a.Value != b.Value || a.Style != b.Style || a.Anchor != b.Anchor ||
		len(a.Content) != len(b.Content) {
		return errors.New("nodes differ: " + describe(a) + " vs " + describe(b))
	}
	// A document node's own position is where the parser was, which may be
	// a comment before it; only content positions matter.
	if a.Kind != yaml.DocumentNode && (a.Line != b.Line+line0 || a.Column != b.Column) {
		return errors.New("positions differ at " + describe(a))
	}
	for i := range a.Content {
		if err := sameTree(a.Content[i], b.Content[i], line0, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func hasDirectiveLine(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "%") {
			return true
		}
	}
	return false
}

// FuzzFastParse checks fastParse against go.yaml.in/yaml/v3: whenever the
// fast path accepts a document, yaml.v3 must parse it to the same tree.
func FuzzFastParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add(podsYAML(2))
	f.Add([]byte(fastSeed))
	f.Add([]byte(jsonSeed))
	f.Add([]byte(strings.Replace(jsonSeed, ` \/`, "", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast := fastParse(data, nil)
		if fast == nil {
			return
		}
		docs, err := parseYAML(data)
		if err != nil {
			t.Fatalf("fast path accepted what yaml.v3 rejects (%v)", err)
		}
		if len(docs) != 1 {
			t.Fatalf("fast path found one document, yaml.v3 %d", len(docs))
		}
		if err := sameTree(docs[0], fast, 0, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// fastSeed exercises everything fastParse accepts.
const fastSeed = "# leading comment\r\n---   # marker\r\n" + `apiVersion: v1
kind: Pod   # trailing comment
metadata:
  name: 'it''s'
  labels:
    "k8s:app": "wéb"
    k8s:tier: front
    empty: ""
    n: 1
    y: yes
    t: true
    f: 1.5
    d: 2024-01-01
    z: ~
    neg: -3
    url: http://example.com/a#b
  annotations:
    last-applied: |
      {"a": 1,

        "b": "#2"}
    strip: |-
      one
      two
    x: y
spec:
  nodeSelector: {}
  tolerations: []
  containers:
  - name: c
    args:
    - -x
    -
    - "quoted"
    env:
  - name: d

    ports:
      - containerPort: 80
        protocol: TCP
  volumes:
status:
`

// jsonSeed exercises the JSON fast path.
const jsonSeed = "---\r\n" + `{
  "apiVersion": "v1", "kind":"Pod",
  "metadata": {"name": "caf\u00e9 \"q\" \\ \n\t\b\f\r \u0000 \/", "labels": {}, "n": -1.5e+3, "z": 0,
    "ü": "wörd", "t": true, "f": false, "x": null, "a": [], "b": [1, [2, {"c": "d"}]]
  }
}
`
