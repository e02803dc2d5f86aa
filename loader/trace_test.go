package loader

import (
	"net/netip"
	"testing"

	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/emit/emittest"
	"github.com/sluicenet/sluice/ir"
)

// The tracer runs IPv6 queries through the kernel (it once panicked on
// them): the programs drop IPv6 at a pod that a policy isolates in
// either direction and pass it between pods nothing isolates; a query
// that mixes the families is an error.
func TestTracerIPv6(t *testing.T) {
	requireBPF(t)
	cl, _ := compileYAML(t, emittest.OffPathCluster)
	// Dual-stack pods: fd00:77::N beside 10.77.0.N. The artifact has no
	// IPv6 (the datapath keys endpoints by IPv4); the tracer finds the
	// pods by either address.
	v6 := map[string]netip.Addr{}
	for i := range cl.Endpoints {
		e := &cl.Endpoints[i]
		a := e.IPs[0].As4()
		addr := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x77, 15: a[3]})
		e.IPs = append(e.IPs, addr)
		v6[e.Name] = addr
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTracer(cl, out)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ev := ir.NewEvaluator(cl)
	world := netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		src, dst netip.Addr
		proto    ir.Proto
		port     uint16
		want     KernelVerdict
	}{
		{v6["a"], v6["e"], ir.ProtoTCP, 8080, KernelVerdict{Verdict: ir.Allow, Egress: "pass", Ingress: "pass", Reply: "pass"}},
		{v6["a"], v6["e"], ir.ProtoICMPv6, 128, KernelVerdict{Verdict: ir.Allow, Egress: "pass", Ingress: "pass", Reply: "pass"}},
		{v6["a"], v6["b"], ir.ProtoTCP, 8080, KernelVerdict{Verdict: ir.Deny, Egress: "pass", Ingress: "drop", Reply: "-"}},
		{v6["b"], v6["a"], ir.ProtoTCP, 8080, KernelVerdict{Verdict: ir.Deny, Egress: "drop", Ingress: "pass", Reply: "-"}},
		{v6["c"], v6["a"], ir.ProtoUDP, 53, KernelVerdict{Verdict: ir.Deny, Egress: "drop", Ingress: "pass", Reply: "-"}},
		{world, v6["d"], ir.ProtoUDP, 5353, KernelVerdict{Verdict: ir.Deny, Egress: "-", Ingress: "drop", Reply: "-"}},
		{world, v6["a"], ir.ProtoTCP, 443, KernelVerdict{Verdict: ir.Allow, Egress: "-", Ingress: "pass", Reply: "pass"}},
		// IPv4 next to it, as enforced as ever.
		{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3"), ir.ProtoTCP, 8080, KernelVerdict{Verdict: ir.Allow, Egress: "pass", Ingress: "pass", Reply: "pass"}},
		{netip.MustParseAddr("10.77.0.6"), netip.MustParseAddr("10.77.0.3"), ir.ProtoTCP, 8080, KernelVerdict{Verdict: ir.Deny, Egress: "pass", Ingress: "drop", Reply: "-"}},
	} {
		q := ir.Query{Src: c.src, Dst: c.dst, Proto: c.proto, Port: c.port}
		got, err := tr.Trace(q)
		if err != nil {
			t.Errorf("%s -> %s %s: %v", c.src, c.dst, ir.PortString(c.proto, c.port), err)
			continue
		}
		if got != c.want {
			t.Errorf("%s -> %s %s: kernel %+v, want %+v", c.src, c.dst, ir.PortString(c.proto, c.port), got, c.want)
		}
		if d := ev.Evaluate(q); d.Verdict != got.Verdict {
			t.Errorf("%s -> %s %s: kernel %s, evaluator %s (%s / %s)", c.src, c.dst, ir.PortString(c.proto, c.port), got.Verdict, d.Verdict, d.Egress.Reason, d.Ingress.Reason)
		}
	}
	if _, err := tr.Trace(ir.Query{Src: netip.MustParseAddr("10.77.0.2"), Dst: v6["e"], Proto: ir.ProtoTCP, Port: 80}); err == nil {
		t.Error("a query from an IPv4 to an IPv6 address traced without an error")
	}
}
