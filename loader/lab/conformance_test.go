package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/ir"
)

// The conformance model: namespaces x, y, z, each with pods a, b, c, on
// two nodes, every pod serving 80/TCP, 81/TCP and 80/UDP.
func conformanceBase() string {
	var b strings.Builder
	for i, n := range []string{"n1", "n2"} {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Node\nmetadata: {name: %s}\nspec: {podCIDR: 10.60.%d.0/24}\nstatus: {addresses: [{type: InternalIP, address: 192.168.60.%d}]}\n---\n", n, i+1, i+1)
	}
	node := map[string]string{"x": "n1", "y": "n2"}
	for ni, ns := range []string{"x", "y", "z"} {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {ns: %s}}\n---\n", ns, ns)
		for pi, pod := range []string{"a", "b", "c"} {
			n := node[ns]
			if n == "" { // z: split over both nodes
				n = []string{"n1", "n2", "n1"}[pi]
			}
			subnet := map[string]int{"n1": 1, "n2": 2}[n]
			fmt.Fprintf(&b, `apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {pod: %s}}
spec:
  nodeName: %s
  containers: [{name: c, image: i, ports: [{containerPort: 80}, {containerPort: 81}, {containerPort: 80, protocol: UDP}]}]
status: {podIP: 10.60.%d.%d}
---
`, pod, ns, pod, n, subnet, 10+ni*3+pi)
		}
	}
	return b.String()
}

// Cases written from the Kubernetes documentation of NetworkPolicy
// (isolation per direction, the union of allows, namespace and pod
// selectors alone and together, ports and endPort, ipBlock with except).
var conformanceCases = []struct{ name, yaml string }{
	{"default deny ingress in x", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
`},
	{"allow within x only", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: same-ns, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
`},
	{"y may reach x/a", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
`},
	{"x/b may reach x/a on 80/TCP only", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-to-a-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80, protocol: TCP}]}]
`},
	{"default deny egress in y", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: y}
spec: {podSelector: {}, policyTypes: [Egress]}
`},
	{"y/a may send to x on 81 only", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-x-81, namespace: y}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{port: 81}]}]
`},
	{"z/c from node n1's pods by ipBlock with except", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ipblock, namespace: z}
spec:
  podSelector: {matchLabels: {pod: c}}
  ingress: [{from: [{ipBlock: {cidr: 10.60.0.0/16, except: [10.60.2.0/24]}}]}]
`},
	{"namespace y AND pod a, in one peer", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: z}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]
`},
	{"namespace y OR pod a, in two peers", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: z}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: a}}}]}]
`},
	{"a port range (endPort) to x/c from z", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: x}
spec:
  podSelector: {matchLabels: {pod: c}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 80, endPort: 81, protocol: TCP}]}]
`},
	{"UDP only to y/b", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: udp-only, namespace: y}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{ports: [{port: 80, protocol: UDP}]}]
`},
}

// Each case applied to a running lab: the matrix measured by real
// connections through the kernel equals, entry for entry, the one the
// reference evaluator computes (sluice trace --matrix). Then a policy
// change leaves a long-lived connection alone and stops new ones.
func TestLabConformance(t *testing.T) {
	requireRoot(t)
	bin := buildBinaries(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.yaml")
	if err := os.WriteFile(base, []byte(conformanceBase()), 0o644); err != nil {
		t.Fatal(err)
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	l, err := Up(Config{Name: "c" + hex.EncodeToString(rnd[:]), Manifests: []string{base}, Root: t.TempDir(), BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Down() })
	p := l.Prober()
	p.Timeout = 200 * time.Millisecond
	defer p.Close()
	ports := []ir.PortProto{{Port: 80, Proto: ir.ProtoTCP}, {Port: 81, Proto: ir.ProtoTCP}, {Port: 80, Proto: ir.ProtoUDP}}
	caseFile := filepath.Join(dir, "case.yaml")
	for _, c := range append([]struct{ name, yaml string }{{"no policy", ""}}, conformanceCases...) {
		if err := os.WriteFile(caseFile, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		files := []string{base}
		if c.yaml != "" {
			files = append(files, caseFile)
		}
		if err := l.Apply(files); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, cl, diags := compiler.Load(files, nil, compiler.Options{})
		if len(diags) > 0 {
			t.Fatal(diags.Err())
		}
		want := ir.NewEvaluator(cl).Matrix(ports)
		got, err := p.Matrix(ports)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries measured, %d evaluated", c.name, len(got), len(want))
		}
		bad := 0
		for i := range want {
			if got[i] != want[i] {
				bad++
				if bad <= 5 {
					t.Errorf("%s: %s -> %s %s: the lab says %s, the evaluator %s", c.name, want[i].From, want[i].To, ir.PortString(want[i].Proto, want[i].Port), got[i].Verdict, want[i].Verdict)
				}
			}
		}
		denied := 0
		for _, e := range want {
			if e.Verdict == ir.Deny {
				denied++
			}
		}
		t.Logf("%s: %d entries agree (%d denied)", c.name, len(want)-bad, denied)
	}

	// A long-lived connection x/b -> x/a across a change that isolates x.
	if err := os.WriteFile(caseFile, []byte(""), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply([]string{base}); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Do("x/b", "hold 10.60.1.10:80 x/a"); err != nil || got != "held x/a" {
		t.Fatalf("hold a connection to x/a: %q %v", got, err)
	}
	if err := os.WriteFile(caseFile, []byte(conformanceCases[0].yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply([]string{base, caseFile}); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Do("x/b", "echo"); err != nil || got != "echoed x/a" {
		t.Errorf("the connection held across the policy change: %q %v", got, err)
	}
	if res, err := p.Probe("x/b", "x/a", 80, "TCP"); err != nil || res.Reached {
		t.Errorf("a new connection after x was isolated: %+v %v", res, err)
	}
	// Apply cannot change the pods: other manifests are refused, and the
	// agents keep what they serve.
	if err := l.Apply([]string{"../../examples/seed"}); err == nil || !strings.Contains(err.Error(), "pods cannot change") {
		t.Errorf("apply of manifests with other pods: %v", err)
	}
}
