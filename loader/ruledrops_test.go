package loader

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/ir"
)

const denyToB9090 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: NAME, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: a}}]
    toPorts: [{ports: [{port: "PORT", protocol: TCP}]}]
---
`

func denyPolicy(name, port string) string {
	return strings.NewReplacer("NAME", name, "PORT", port).Replace(denyToB9090)
}

// Policy drops are counted by the deny rule or the default deny that made
// them, named from the artifact (policy, field, position), and the counts
// keep their names across swaps that renumber the rules.
func TestRuleDrops(t *testing.T) {
	requireBPF(t)
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	cl1, _ := compileYAML(t, swapPods+denyPolicy("deny-a", "9090")+swapAllow)
	gen1 := swapArtifact(t, denyPolicy("deny-a", "9090")+swapAllow)
	// Generation 2 adds a deny rule that sorts first: every rule number moves.
	gen2 := swapArtifact(t, denyPolicy("aaa-deny", "6000")+denyPolicy("deny-a", "9090")+swapAllow)
	a, b := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	sport := uint16(50000)
	send := func(port uint16, times int) {
		t.Helper()
		tr := &Tracer{ev: ir.NewEvaluator(cl1), nodes: map[string]*Datapath{cl1.Endpoints[0].Node: sw.gen}, sport: sport}
		for range times {
			kv, err := tr.Trace(ir.Query{Src: a, Dst: b, Proto: ir.ProtoTCP, Port: port})
			if err != nil {
				t.Fatal(err)
			}
			if kv.Verdict != ir.Deny {
				t.Fatalf("a -> b %d: %s, want deny", port, kv.Verdict)
			}
		}
		sport = tr.sport
	}
	want := func(what string, deny, def uint64) {
		t.Helper()
		got, err := sw.RuleDrops()
		if err != nil {
			t.Fatal(err)
		}
		var gotDeny, gotDef uint64
		for k, n := range got {
			switch {
			case k.Verdict == "deny" && k.Policy == "CiliumNetworkPolicy default/deny-a" && k.Rule == "spec.ingressDeny[0]" && k.Direction == "ingress" && strings.HasSuffix(k.Source, ":5"):
				gotDeny += n
			case k.Verdict == "default_deny" && k.Direction == "ingress" && strings.Contains(k.Policy, "NetworkPolicy default/b-from-a"):
				gotDef += n
			default:
				t.Errorf("%s: unexpected %d drops by %+v", what, n, k)
			}
		}
		if gotDeny != deny || gotDef != def {
			t.Errorf("%s: %d drops by the deny rule and %d by default deny, want %d and %d (%s)", what, gotDeny, gotDef, deny, def, fmt.Sprint(got))
		}
	}
	if err := sw.Swap(gen1); err != nil {
		t.Fatal(err)
	}
	send(9090, 3)
	send(7070, 2)
	want("generation 1", 3, 2)
	if err := sw.Swap(gen2); err != nil {
		t.Fatal(err)
	}
	send(9090, 1)
	want("generation 2", 4, 2)
	if err := sw.Swap(gen1); err != nil { // rewrites generation 1, harvesting it first
		t.Fatal(err)
	}
	send(7070, 1)
	want("generation 1 again", 4, 3)
	if err := sw.Swap(gen2); err != nil {
		t.Fatal(err)
	}
	want("generation 2 again", 4, 3)
}
