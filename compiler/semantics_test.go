package compiler

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/compiler/compilertest"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/emit/emittest"
	"github.com/sluicenet/sluice/ir"
)

type query struct {
	from, to string
	port     string // "80/TCP"
	want     ir.Action
}

func compileYAML(t *testing.T, docs ...string) *ir.Cluster {
	t.Helper()
	return compileWith(t, Options{}, docs...)
}

func addrOf(t *testing.T, ev *ir.Evaluator, s string) netip.Addr {
	t.Helper()
	cl := ev.Cluster()
	if name, ok := strings.CutPrefix(s, "node:"); ok {
		return ev.Node(name).IPs[0]
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip
	}
	ns, name, _ := strings.Cut(s, "/")
	for _, e := range cl.Endpoints {
		if e.Namespace == ns && e.Name == name {
			return e.IPs[0]
		}
	}
	t.Fatalf("no peer %s", s)
	return netip.Addr{}
}

func parsePP(t *testing.T, s string) (ir.Proto, uint16) {
	t.Helper()
	var n int
	var proto string
	if _, err := fmt.Sscanf(strings.Replace(s, "/", " ", 1), "%d %s", &n, &proto); err != nil {
		t.Fatalf("bad port %q", s)
	}
	p, ok := ir.ParseProto(proto)
	if !ok {
		t.Fatalf("bad proto %q", s)
	}
	return p, uint16(n)
}

// checkCluster runs the queries through the evaluator and checks that the
// compiled maps agree with the evaluator everywhere.
func checkCluster(t *testing.T, cl *ir.Cluster, queries []query) {
	t.Helper()
	ev := ir.NewEvaluator(cl)
	for _, q := range queries {
		proto, port := parsePP(t, q.port)
		d := ev.Evaluate(ir.Query{Src: addrOf(t, ev, q.from), Dst: addrOf(t, ev, q.to), Proto: proto, Port: port})
		if d.Verdict != q.want {
			var b strings.Builder
			ir.WriteDecision(&b, d)
			t.Errorf("%s -> %s %s: got %s, want %s\n%s", q.from, q.to, q.port, d.Verdict, q.want, b.String())
		}
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatalf("emit: %v", err)
	}
	bad, n, err := emittest.Check(cl, out, 10)
	if err != nil {
		t.Fatalf("check maps: %v", err)
	}
	if len(bad) > 0 {
		t.Errorf("maps disagree with the evaluator (%d probes):\n%s", n, emittest.Summary(bad))
	}
}

func runCases(t *testing.T, cases []compilertest.Case) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			cl := compileYAML(t, append([]string{compilertest.Fixture()}, tc.Policies...)...)
			var qs []query
			for _, q := range tc.Queries {
				qs = append(qs, query{q.From, q.To, q.Port, q.Want})
			}
			checkCluster(t, cl, qs)
		})
	}
}

func TestNetworkPolicySemantics(t *testing.T) { runCases(t, compilertest.NetworkPolicyCases) }

func TestCiliumPolicySemantics(t *testing.T) { runCases(t, compilertest.CiliumPolicyCases) }

func TestFailOpenCases(t *testing.T) { runCases(t, compilertest.FailOpenCases) }
