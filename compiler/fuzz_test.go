package compiler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/compiler/compilertest"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/schema"
)

// FuzzCompile feeds arbitrary manifests through decode, compile and emit:
// bad input must give diagnostics, never a panic, and whatever compiles
// must lower. The seeds are the bundled examples and the semantics
// fixtures; they run in every go test.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob("../examples/*/*.yaml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err == nil {
			f.Add(string(data))
		}
	}
	f.Add(compilertest.Fixture() + "\n---\n" + compilertest.NP("x", "p", "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.0.16/29]}\n  ports: [{port: http}, {port: 80, endPort: 90}]"))
	f.Add(compilertest.Fixture() + "\n---\n" + compilertest.CNP("x", "c", "endpointSelector: {}\ningressDeny: [{fromEntities: [world]}]\negress:\n- toCIDRSet: [{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}]\n  toPorts: [{ports: [{port: \"53\", protocol: ANY}]}]\n- icmps: [{fields: [{type: EchoRequest}]}]"))
	f.Add("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, clusterIP: 10.96.0.9, ports: [{port: 80, nodePort: 30080}], selector: {a: b}}")
	f.Fuzz(func(t *testing.T, manifests string) {
		set, diags := schema.Load([]string{"-"}, strings.NewReader(manifests))
		if len(diags) > 0 {
			return
		}
		cl, diags := Compile(set, Options{DropUnenforceable: true})
		if len(diags) > 0 {
			for _, d := range diags {
				if d.Pos.Line < 1 && d.Pos.File != "" {
					t.Fatalf("diagnostic without a line: %s", d)
				}
			}
			return
		}
		emit.Build(cl, emit.Options{}) // an error (capacity, conflicts) is fine; a panic is not
	})
}
