package loader

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
)

// Tracer answers trace queries with the kernel: it loads each node's
// compiled maps and programs and runs crafted packets through them with
// BPF_PROG_TEST_RUN, nothing attached.
type Tracer struct {
	ev    *ir.Evaluator
	nodes map[string]*Datapath
	sport uint16
}

// NewTracer loads every node's artifact of a build.
func NewTracer(cl *ir.Cluster, out *emit.Output) (*Tracer, error) {
	t := &Tracer{ev: ir.NewEvaluator(cl), nodes: map[string]*Datapath{}, sport: 40000}
	for _, a := range out.Artifacts {
		la, err := FromBuild(a)
		if err != nil {
			t.Close()
			return nil, err
		}
		dp, err := LoadArtifact(la)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("node %s: %w", a.Node, err)
		}
		t.nodes[a.Node] = dp
	}
	return t, nil
}

// Close releases the kernel objects.
func (t *Tracer) Close() {
	for _, dp := range t.nodes {
		dp.Close()
	}
}

// KernelVerdict is what the programs returned for a connection: the first
// packet through the source's from-container and the destination's
// to-container programs (each only where the address is a pod), then the
// reply back through both.
type KernelVerdict struct {
	Verdict ir.Action `json:"verdict"`
	Egress  string    `json:"egress"`  // pass, drop, or "-" (not a pod)
	Ingress string    `json:"ingress"` // pass, drop, or "-"
	Reply   string    `json:"reply"`   // pass, drop, or "-" (no connection)
}

func retName(r uint32) string {
	switch r {
	case bpf.TCXPass:
		return "pass"
	case bpf.TCXDrop:
		return "drop"
	}
	return fmt.Sprintf("ret %d", r)
}

// Trace runs a connection's first packet and its reply through the kernel.
func (t *Tracer) Trace(q ir.Query) (KernelVerdict, error) { return t.TraceTranslated(q, q) }

// testRunIfindex is the interface a BPF_PROG_TEST_RUN packet crosses when
// the run names none: the loopback device, ifindex 1 in every network
// namespace.
const testRunIfindex = 1

// linkForRun makes the pod the one whose veth test-run packets cross, as
// the agent links a pod's veth (see Switch.Attach): its first IPv4
// address in endpoint_links, or no entry for a pod without one.
func linkForRun(dp *Datapath, pod *ir.Endpoint) error {
	var first netip.Addr
	for _, ip := range pod.IPs {
		if ip.Is4() {
			first = ip
			break
		}
	}
	return setEndpointLink(dp.Maps[bpf.MapEndpointLinks], testRunIfindex, first)
}

// TraceTranslated runs a connection that a load balancer between the two
// programs translated: the source's from-container program sees sent, the
// destination's to-container program sees arrived, and the reply goes
// back the same way (arrived reversed, then sent reversed). The
// translation itself is not run. IPv4 queries run IPv4 frames, IPv6 ones
// IPv6 frames.
func (t *Tracer) TraceTranslated(sent, arrived ir.Query) (KernelVerdict, error) {
	for _, q := range []ir.Query{sent, arrived} {
		if q.Src.Is4() != q.Dst.Is4() {
			return KernelVerdict{}, fmt.Errorf("%s -> %s: one address is IPv4 and the other IPv6; no packet has both", q.Src, q.Dst)
		}
	}
	t.sport++
	if t.sport < 40000 {
		t.sport = 40000
	}
	kv := KernelVerdict{Verdict: ir.Allow, Egress: "-", Ingress: "-", Reply: "-"}
	run := func(ip ir.Query, progDir bpf.Direction, pod *ir.Endpoint, sport, dport uint16, flags byte) (string, error) {
		if pod == nil {
			return "-", nil
		}
		dp := t.nodes[pod.Node]
		if dp == nil {
			return "-", nil
		}
		data := bpf.Packet
		if !ip.Src.Is4() {
			// The programs tell whose IPv6 frame it is by the interface.
			if err := linkForRun(dp, pod); err != nil {
				return "", fmt.Errorf("link %s for the run: %w", pod.Key(), err)
			}
			data = bpf.Packet6
		}
		ret, err := dp.ProgramFor(pod.Key(), progDir).Run(&ebpf.RunOptions{Data: data(ip.Src, ip.Dst, uint8(ip.Proto), sport, dport, flags)})
		if err != nil {
			return "", err
		}
		return retName(ret), nil
	}
	src, dst := t.ev.Endpoint(sent.Src), t.ev.Endpoint(arrived.Dst)
	if src != nil && src == dst && sent.Src == arrived.Src {
		return kv, nil // a pod's traffic to itself never leaves it: no program sees it
	}
	var err error
	if kv.Egress, err = run(sent, bpf.FromContainer, src, t.sport, sent.Port, 0x02); err != nil {
		return kv, err
	}
	if kv.Ingress, err = run(arrived, bpf.ToContainer, dst, t.sport, arrived.Port, 0x02); err != nil {
		return kv, err
	}
	if kv.Egress == "drop" || kv.Ingress == "drop" {
		kv.Verdict = ir.Deny
		return kv, nil
	}
	// The reply: destination's egress, then source's ingress (run takes
	// the ports as arguments).
	reply := func(q ir.Query) (ir.Query, uint16, uint16) {
		r := ir.Query{Src: q.Dst, Dst: q.Src, Proto: q.Proto}
		switch q.Proto {
		case ir.ProtoICMP:
			return r, t.sport, 0 // echo reply, same identifier
		case ir.ProtoICMPv6:
			return r, t.sport, 129 // echo reply (to an echo request, 128)
		}
		return r, q.Port, t.sport
	}
	r, sport, rport := reply(arrived)
	replyEg, err := run(r, bpf.FromContainer, dst, sport, rport, 0x12)
	if err != nil {
		return kv, err
	}
	r, sport, rport = reply(sent)
	replyIn, err := run(r, bpf.ToContainer, src, sport, rport, 0x12)
	if err != nil {
		return kv, err
	}
	switch {
	case replyEg == "drop" || replyIn == "drop":
		kv.Reply = "drop"
	case replyEg == "-" && replyIn == "-":
		kv.Reply = "-"
	default:
		kv.Reply = "pass"
	}
	return kv, nil
}
