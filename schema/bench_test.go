package schema

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// podsYAML generates n Pods shaped like `kubectl get pods -o yaml` output,
// trimmed of managedFields, as separate documents.
func podsYAML(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata:
  name: web-%[1]d
  namespace: ns-%[2]d
  uid: 3f1c2a9e-0000-4000-8000-%012[1]d
  creationTimestamp: "2025-01-02T03:04:05Z"
  labels:
    app: web-%[3]d
    app.kubernetes.io/name: web
    pod-template-hash: 5d8f7c9b
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: web-%[3]d-5d8f7c9b
    uid: 7a1c2a9e-0000-4000-8000-000000000001
    controller: true
spec:
  nodeName: node-%[4]d
  serviceAccountName: default
  containers:
  - name: web
    image: nginx:1.25
    ports:
    - containerPort: 8080
      name: http
      protocol: TCP
    resources:
      requests:
        cpu: 100m
        memory: 64Mi
status:
  phase: Running
  hostIP: 192.168.%[5]d.%[6]d
  podIP: 10.%[7]d.%[5]d.%[6]d
  podIPs:
  - ip: 10.%[7]d.%[5]d.%[6]d
`, i, i%50, i%100, i%200, i>>8&255, i&255, i>>16&255)
	}
	return b.Bytes()
}

// parseOnly is the baseline: go.yaml.in/yaml/v3 parsing the same stream into
// nodes, without decoding.
func parseOnly(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			return
		} else if err != nil {
			panic(err)
		}
	}
}

func timeIt(runs int, f func()) time.Duration {
	start := time.Now()
	for range runs {
		f()
	}
	return time.Since(start) / time.Duration(runs)
}

// BenchmarkDecodePods decodes 5,000 Pods. It reports, besides MB/s, the
// ratio of its time to two baselines measured in the same run: yaml.v3
// parsing alone (single-threaded, as a parser is), and sigs.k8s.io/yaml
// unmarshalling each document (what kubectl-style decoding costs, without
// positions).
func BenchmarkDecodePods(b *testing.B) {
	data := podsYAML(5000)
	parse := timeIt(3, func() { parseOnly(data) })
	docs := bytes.Split(data, []byte("---\n"))[1:]
	sigs := timeIt(3, func() {
		for _, d := range docs {
			var p corev1.Pod
			if err := sigsyaml.Unmarshal(d, &p); err != nil {
				panic(err)
			}
		}
	})
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		objs, _, ds := Decode("pods.yaml", data)
		if len(ds) > 0 || len(objs) != 5000 {
			b.Fatalf("%d objects, diagnostics: %v", len(objs), ds)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(parse), "x-yaml.v3-parse")
	b.ReportMetric(float64(per)/float64(sigs), "x-sigs-yaml")
}

// podList turns the documents of podsYAML into one `kind: List`, as
// `kubectl get pods -o yaml` prints: a single document, parsed by one
// worker.
func podList(n int) []byte {
	var b bytes.Buffer
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for _, doc := range bytes.Split(podsYAML(n), []byte("---\n"))[1:] {
		for i, l := range bytes.SplitAfter(doc, []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			if i == 0 {
				b.WriteString("- ")
			} else {
				b.WriteString("  ")
			}
			b.Write(l)
		}
	}
	b.WriteString("metadata:\n  resourceVersion: \"\"\n")
	return b.Bytes()
}

// BenchmarkDecodePodList decodes the 5,000 Pods as one List document.
func BenchmarkDecodePodList(b *testing.B) {
	data := podList(5000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		objs, _, ds := Decode("pods.yaml", data)
		if len(ds) > 0 || len(objs) != 5000 {
			b.Fatalf("%d objects, diagnostics: %v", len(objs), ds)
		}
	}
}

// BenchmarkDecodePodsFlow decodes the 5,000 Pods written in flow style
// (JSON), which the fast path leaves to go.yaml.in/yaml/v3.
func BenchmarkDecodePodsFlow(b *testing.B) {
	var buf bytes.Buffer
	for _, doc := range bytes.Split(podsYAML(5000), []byte("---\n"))[1:] {
		var p corev1.Pod
		if err := sigsyaml.Unmarshal(doc, &p); err != nil {
			b.Fatal(err)
		}
		j, err := sigsyaml.Marshal(&p)
		if err != nil {
			b.Fatal(err)
		}
		j, err = sigsyaml.YAMLToJSON(j)
		if err != nil {
			b.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(j)
		buf.WriteString("\n")
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		objs, _, ds := Decode("pods.json", data)
		if len(ds) > 0 || len(objs) != 5000 {
			b.Fatalf("%d objects, diagnostics: %v", len(objs), ds)
		}
	}
}
