package bpf_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/compiler/compilertest"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/emit/emittest"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
)

// requireBPF skips without root, except under CI=true where a missing
// privilege is a failure.
func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("BPF tests need root, and CI=true makes a missing privilege a failure")
	}
	t.Skip("BPF tests need root (CAP_BPF, CAP_NET_ADMIN); run as root")
}

// packet builds Ethernet + IPv4 + L4 bytes.
func packet(src, dst netip.Addr, proto ir.Proto, port uint16) []byte {
	b := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)-14))
	ip[8] = 64
	ip[9] = byte(proto)
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	l4 := ip[20:]
	switch proto {
	case ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP:
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], port)
		if proto == ir.ProtoTCP {
			l4[12] = 5 << 4
			l4[13] = 0x02 // SYN
		}
	case ir.ProtoICMP:
		l4[0] = byte(port)
	}
	return b
}

func compileDir(t *testing.T, paths ...string) (*ir.Cluster, *emit.Output) {
	t.Helper()
	set, cl, diags := compiler.Load(paths, strings.NewReader(""), compiler.Options{})
	if len(diags) > 0 {
		var b strings.Builder
		diags.Format(&b, 10, set.Source)
		t.Fatal(b.String())
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cl, out
}

// The kernel runs the compiled programs on crafted first packets and must
// say what the evaluator says, for every local pod, peer and port probe.
func TestPolicyProgramsAgreeWithEvaluator(t *testing.T) {
	requireBPF(t)
	cl, out := compileDir(t, "../examples/seed")
	checkKernel(t, cl, out)
}

// checkKernel runs every local pod's programs on a probe packet from and
// to every probe peer and port, and compares with the evaluator.
func checkKernel(t *testing.T, cl *ir.Cluster, out *emit.Output) {
	t.Helper()
	ev := ir.NewEvaluator(cl)
	addrs, ports := emittest.Probes(cl)
	for _, a := range out.Artifacts {
		la, err := loader.FromBuild(a)
		if err != nil {
			t.Fatal(err)
		}
		dp, err := loader.LoadArtifact(la)
		if errors.Is(err, loader.ErrPrivilege) {
			requireBPF(t)
		}
		if err != nil {
			t.Fatalf("node %s: load: %v", a.Node, err)
		}
		defer dp.Close()
		checked := 0
		for i := range cl.Endpoints {
			e := &cl.Endpoints[i]
			if e.Node != a.Node {
				continue
			}
			for _, peer := range addrs {
				if peer == e.IPs[0] {
					continue
				}
				pi := ev.Peer(peer, e.Node)
				for _, pp := range ports {
					for _, dir := range []bpf.Direction{bpf.ToContainer, bpf.FromContainer} {
						q := ir.Query{Src: peer, Dst: e.IPs[0], Proto: pp.Proto, Port: pp.Port}
						if dir == bpf.FromContainer {
							q.Src, q.Dst = e.IPs[0], peer
						}
						want := ev.SideVerdict(ir.Direction(dir), e, pi, q)
						ret, err := dp.Programs[dir.String()].Run(&ebpf.RunOptions{Data: packet(q.Src, q.Dst, pp.Proto, pp.Port)})
						if err != nil {
							t.Fatalf("run: %v", err)
						}
						wantRet := uint32(bpf.TCXPass)
						if want.Verdict == ir.Deny {
							wantRet = bpf.TCXDrop
						}
						if ret != wantRet {
							t.Errorf("node %s %s %s peer %s %s: kernel returned %d, evaluator says %s (%s)", a.Node, dir, e.Key(), peer, ir.PortString(pp.Proto, pp.Port), ret, want.Verdict, want.Reason)
						}
						checked++
					}
				}
			}
		}
		if testing.Verbose() {
			t.Logf("node %s: %d packets through the kernel", a.Node, checked)
		}
	}
}

// Every semantics case, through the kernel: the programs must agree with
// the evaluator on every local pod, peer and probe port.
func TestPolicyCasesInTheKernel(t *testing.T) {
	requireBPF(t)
	cases := append(append([]compilertest.Case(nil), compilertest.NetworkPolicyCases...), compilertest.CiliumPolicyCases...)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			manifests := strings.Join(append([]string{compilertest.Fixture()}, tc.Policies...), "\n---\n")
			set, cl, diags := compiler.Load([]string{"-"}, strings.NewReader(manifests), compiler.Options{})
			if len(diags) > 0 {
				var b strings.Builder
				diags.Format(&b, 10, set.Source)
				t.Fatal(b.String())
			}
			out, err := emit.Build(cl, emit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkKernel(t, cl, out)
		})
	}
}
