package bpf_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"slices"
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

// packet is a probe's first packet: TCP SYN, UDP or SCTP from port 40000,
// or an ICMP message of type port.
func packet(src, dst netip.Addr, proto ir.Proto, port uint16) []byte {
	return bpf.Packet(src, dst, uint8(proto), 40000, port, 0x02)
}

// ctKeyOf is the conntrack key that a probe packet creates.
func ctKeyOf(q ir.Query, dir bpf.Direction) []byte {
	key := make([]byte, bpf.CTKeySize)
	s, d := q.Src.As4(), q.Dst.As4()
	copy(key[0:], s[:])
	copy(key[4:], d[:])
	switch q.Proto {
	case ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP:
		binary.BigEndian.PutUint16(key[8:], 40000)
		binary.BigEndian.PutUint16(key[10:], q.Port)
	case ir.ProtoICMP:
		switch q.Port {
		case 8:
			binary.BigEndian.PutUint16(key[8:], 40000)
		case 0:
			binary.BigEndian.PutUint16(key[10:], 40000)
		}
	}
	key[12], key[13] = byte(q.Proto), byte(dir)
	return key
}

// resolve compiles manifests (paths, or stdin for "-") into a cluster.
func resolve(t *testing.T, stdin string, paths ...string) *ir.Cluster {
	t.Helper()
	set, cl, diags := compiler.Load(paths, strings.NewReader(stdin), compiler.Options{})
	if len(diags) > 0 {
		var b strings.Builder
		diags.Format(&b, 10, set.Source)
		t.Fatal(b.String())
	}
	return cl
}

// build lowers a cluster into artifacts.
func build(t *testing.T, cl *ir.Cluster, opts emit.Options) *emit.Output {
	t.Helper()
	out, err := emit.Build(cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// load makes a node's artifact live (maps and programs, nothing
// attached).
func load(t *testing.T, a *emit.Artifact) *loader.Datapath {
	t.Helper()
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
	return dp
}

func compileDir(t *testing.T, paths ...string) (*ir.Cluster, *emit.Output) {
	t.Helper()
	cl := resolve(t, "", paths...)
	return cl, build(t, cl, emit.Options{})
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
	checkKernelSample(t, cl, out, 0, 0)
}

// checkKernelSample is checkKernel on at most perNode pods of each node
// and every stride-th probe peer (0: all).
func checkKernelSample(t *testing.T, cl *ir.Cluster, out *emit.Output, perNode, stride int) {
	t.Helper()
	ev := ir.NewEvaluator(cl)
	addrs, ports := emittest.Probes(cl)
	if stride > 1 {
		var some []netip.Addr
		for i := 0; i < len(addrs); i += stride {
			some = append(some, addrs[i])
		}
		addrs = some
	}
	for _, a := range out.Artifacts {
		dp := load(t, a)
		defer dp.Close()
		checked, pods := 0, 0
		for i := range cl.Endpoints {
			e := &cl.Endpoints[i]
			if e.Node != a.Node {
				continue
			}
			local, ok := emittest.LocalIPv4(e)
			if !ok {
				continue // a pod without IPv4 has no endpoints entry
			}
			if pods++; perNode > 0 && pods > perNode {
				break
			}
			checked += checkIPv6(t, ev, dp, e, local)
			for _, peer := range addrs {
				if slices.Contains(e.IPs, peer) {
					continue
				}
				pi := ev.Peer(peer, e.Node)
				for _, pp := range ports {
					for _, dir := range []bpf.Direction{bpf.ToContainer, bpf.FromContainer} {
						q := ir.Query{Src: peer, Dst: local, Proto: pp.Proto, Port: pp.Port}
						if dir == bpf.FromContainer {
							q.Src, q.Dst = local, peer
						}
						want := ev.SideVerdict(ir.Direction(dir), e, pi, q)
						// The endpoint's own program (inline when the cost
						// model chose it) and the node's generic one.
						var ret uint32
						for pi, prog := range []*ebpf.Program{dp.ProgramFor(e.Key(), dir), dp.Programs[dir.String()]} {
							r, err := prog.Run(&ebpf.RunOptions{Data: packet(q.Src, q.Dst, pp.Proto, pp.Port)})
							if err != nil {
								t.Fatalf("run: %v", err)
							}
							if r == bpf.TCXPass {
								dp.Maps[bpf.MapConntrack].Delete(ctKeyOf(q, dir))
							}
							if pi > 0 && r != ret {
								t.Errorf("node %s %s %s peer %s %s: generic program %d, endpoint's program %d", a.Node, dir, e.Key(), peer, ir.PortString(pp.Proto, pp.Port), r, ret)
							}
							ret = r
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

// checkIPv6 runs IPv6 probes through an endpoint's programs, its veth
// linked to its IPv4 address as the loader links it, and compares with
// the evaluator; it returns how many packets it ran.
func checkIPv6(t *testing.T, ev *ir.Evaluator, dp *loader.Datapath, e *ir.Endpoint, local netip.Addr) int {
	t.Helper()
	if err := dp.LinkEndpoint(1, local); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, peer := range emittest.IPv6Peers {
		pi := ev.Peer(peer, e.Node)
		for _, pp := range emittest.IPv6Ports {
			for _, dir := range []bpf.Direction{bpf.ToContainer, bpf.FromContainer} {
				q := emittest.IPv6Query(e, ir.Direction(dir), peer, pp)
				want := ev.SideVerdict(ir.Direction(dir), e, pi, q)
				wantRet := uint32(bpf.TCXPass)
				if want.Verdict == ir.Deny {
					wantRet = bpf.TCXDrop
				}
				for _, prog := range []*ebpf.Program{dp.ProgramFor(e.Key(), dir), dp.Programs[dir.String()]} {
					ret, err := prog.Run(&ebpf.RunOptions{Data: bpf.Packet6(q.Src, q.Dst, uint8(pp.Proto), 40000, pp.Port, 0x02)})
					if err != nil {
						t.Fatalf("run: %v", err)
					}
					if ret != wantRet {
						t.Errorf("%s %s IPv6 peer %s %s: kernel returned %d, evaluator says %s (%s)", dir, e.Key(), peer, ir.PortString(pp.Proto, pp.Port), ret, want.Verdict, want.Reason)
					}
					n++
				}
			}
		}
	}
	return n
}

// With the exact /32 map in front of the LPM trie (forced on a small
// cluster), the kernel still agrees with the evaluator everywhere.
func TestExactIPCacheInTheKernel(t *testing.T) {
	requireBPF(t)
	cl := resolve(t, "", "../examples/seed")
	out := build(t, cl, emit.Options{ExactIPCacheMin: 1})
	for _, a := range out.Artifacts {
		found := false
		for _, f := range a.Files {
			found = found || f.Name == "maps/ipcache_exact.bin"
		}
		if !found {
			t.Fatalf("node %s: no ipcache_exact map", a.Node)
		}
	}
	checkKernel(t, cl, out)
}

// Every semantics case, through the kernel: the programs must agree with
// the evaluator on every local pod, peer and probe port.
func TestPolicyCasesInTheKernel(t *testing.T) {
	requireBPF(t)
	cases := append(append(append([]compilertest.Case(nil), compilertest.NetworkPolicyCases...), compilertest.CiliumPolicyCases...), compilertest.FailOpenCases...)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			manifests := strings.Join(append([]string{compilertest.Fixture()}, tc.Policies...), "\n---\n")
			cl := resolve(t, manifests, "-")
			checkKernel(t, cl, build(t, cl, emit.Options{}))
		})
	}
}

// Replies of an allowed connection pass through conntrack even where
// policy would deny them; new connections still meet policy.
func TestConntrack(t *testing.T) {
	requireBPF(t)
	cl, out := compileDir(t, "../examples/seed")
	ev := ir.NewEvaluator(cl)
	var worker1 *emit.Artifact
	for _, a := range out.Artifacts {
		if a.Node == "worker-1" {
			worker1 = a
		}
	}
	la, err := loader.FromBuild(worker1)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := loader.LoadArtifact(la)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	public, client := netip.MustParseAddr("10.0.1.13"), netip.MustParseAddr("10.0.2.14")
	if ev.Endpoint(public).Key() != "default/public" || ev.Endpoint(client).Key() != "default/client" {
		t.Fatal("the seed example changed: default/public or default/client moved")
	}
	from, to := dp.Programs[bpf.FromContainer.String()], dp.Programs[bpf.ToContainer.String()]
	run := func(p *ebpf.Program, data []byte) uint32 {
		t.Helper()
		ret, err := p.Run(&ebpf.RunOptions{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	const syn, synack, ack, fin = 0x02, 0x12, 0x10, 0x11
	tcp := func(src, dst netip.Addr, sport, dport uint16, flags byte) []byte {
		return bpf.Packet(src, dst, 6, sport, dport, flags)
	}
	steps := []struct {
		what string
		prog *ebpf.Program
		pkt  []byte
		want uint32
	}{
		// public accepts only world: client cannot open a connection to it.
		{"client -> public SYN", to, tcp(client, public, 40000, 80, syn), bpf.TCXDrop},
		{"unsolicited SYN-ACK", to, tcp(client, public, 8080, 41000, synack), bpf.TCXDrop},
		// public opens a connection to client: allowed, tracked.
		{"public -> client SYN", from, tcp(public, client, 41000, 8080, syn), bpf.TCXPass},
		// The reply passes public's ingress although policy denies client.
		{"reply SYN-ACK", to, tcp(client, public, 8080, 41000, synack), bpf.TCXPass},
		{"ACK of the tracked connection", from, tcp(public, client, 41000, 8080, ack), bpf.TCXPass},
		// Only that 5-tuple: another port is still a new connection.
		{"SYN-ACK to another port", to, tcp(client, public, 8080, 41001, synack), bpf.TCXDrop},
		{"new client -> public SYN", to, tcp(client, public, 40001, 80, syn), bpf.TCXDrop},
	}
	dropped := uint64(0)
	for _, st := range steps {
		if got := run(st.prog, st.pkt); got != st.want {
			t.Fatalf("%s: returned %d, want %d", st.what, got, st.want)
		}
		if st.want == bpf.TCXDrop {
			dropped++
		}
	}
	// Every drop was counted, under "isolated and no rule allowed it".
	counts, err := dp.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if counts[bpf.DropDefault] != dropped || counts[bpf.DropDenied] != 0 || counts[bpf.DropMalformed] != 0 {
		t.Errorf("drop counters %v, want %d default drops", counts, dropped)
	}
	// An IPv4 header shorter than 20 bytes is dropped as malformed.
	short := tcp(client, public, 1, 2, syn)
	short[14] = 0x43 // IHL 3
	if got := run(to, short); got != bpf.TCXDrop {
		t.Errorf("IPv4 header length 12: %d, want drop", got)
	}
	if counts, _ = dp.Drops(); counts[bpf.DropMalformed] != 1 {
		t.Errorf("malformed drops: %d, want 1", counts[bpf.DropMalformed])
	}
	// ARP (not IPv4) passes untouched.
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	if got := run(to, arp); got != bpf.TCXPass {
		t.Errorf("ARP: %d, want pass", got)
	}
	// The entry: keyed in the first packet's direction, established.
	ct := dp.Maps[bpf.MapConntrack]
	key := make([]byte, bpf.CTKeySize)
	p4, c4 := public.As4(), client.As4()
	copy(key[0:], p4[:])
	copy(key[4:], c4[:])
	binary.BigEndian.PutUint16(key[8:], 41000)
	binary.BigEndian.PutUint16(key[10:], 8080)
	key[12], key[13] = 6, byte(bpf.FromContainer)
	val := make([]byte, bpf.CTValueSize)
	if err := ct.Lookup(key, val); err != nil {
		t.Fatalf("conntrack entry of public -> client: %v", err)
	}
	expires := binary.LittleEndian.Uint64(val)
	// FIN closes it: the entry is marked and will run out soon.
	if got := run(to, tcp(client, public, 8080, 41000, fin)); got != bpf.TCXPass {
		t.Fatalf("FIN: %d, want pass", got)
	}
	if err := ct.Lookup(key, val); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(val[8:]) != bpf.CTFlagClosing {
		t.Errorf("after FIN the entry is not marked closing: flags %#x", binary.LittleEndian.Uint32(val[8:]))
	}
	if closing := binary.LittleEndian.Uint64(val); closing >= expires {
		t.Errorf("after FIN the entry expires at %d, not sooner than the established %d", closing, expires)
	}
	// Reuse after expiry: once the entry has run out, the same 5-tuple
	// from client is a new connection again, and policy drops it.
	binary.LittleEndian.PutUint64(val, 1)
	if err := ct.Put(key, val); err != nil {
		t.Fatal(err)
	}
	if got := run(to, tcp(client, public, 8080, 41000, ack)); got != bpf.TCXDrop {
		t.Fatalf("packet of an expired connection: %d, want drop", got)
	}
	// And public may open it again: a fresh entry replaces the old one.
	if got := run(from, tcp(public, client, 41000, 8080, syn)); got != bpf.TCXPass {
		t.Fatalf("reopening public -> client: %d, want pass", got)
	}
	if got := run(to, tcp(client, public, 8080, 41000, synack)); got != bpf.TCXPass {
		t.Fatalf("reply on the reopened connection: %d, want pass", got)
	}
	// UDP replies and ICMP echo replies are tracked as well.
	udp := func(src, dst netip.Addr, sport, dport uint16) []byte {
		return bpf.Packet(src, dst, 17, sport, dport, 0)
	}
	if got := run(to, udp(client, public, 53, 5353)); got != bpf.TCXDrop {
		t.Fatalf("unsolicited UDP: %d, want drop", got)
	}
	run(from, udp(public, client, 5353, 53))
	if got := run(to, udp(client, public, 53, 5353)); got != bpf.TCXPass {
		t.Fatalf("UDP reply: %d, want pass", got)
	}
	// An ICMP error about the tracked UDP flow is related and passes
	// public's ingress; one about a flow never seen is dropped.
	icmpErr := func(src, dst, innerSrc, innerDst netip.Addr, sport, dport uint16) []byte {
		b := bpf.Packet(src, dst, 1, 0, 3, 0) // destination unreachable
		b = append(b[:14+20+8], make([]byte, 28)...)
		binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14))
		inner := b[14+20+8:]
		inner[0], inner[9] = 0x45, 17
		is, id := innerSrc.As4(), innerDst.As4()
		copy(inner[12:], is[:])
		copy(inner[16:], id[:])
		binary.BigEndian.PutUint16(inner[20:], sport)
		binary.BigEndian.PutUint16(inner[22:], dport)
		return b
	}
	if got := run(to, icmpErr(client, public, public, client, 5353, 53)); got != bpf.TCXPass {
		t.Fatalf("ICMP unreachable about a tracked flow: %d, want pass", got)
	}
	if got := run(to, icmpErr(client, public, public, client, 5354, 53)); got != bpf.TCXDrop {
		t.Fatalf("ICMP unreachable about an untracked flow: %d, want drop", got)
	}
	echo := func(src, dst netip.Addr, typ byte, id uint16) []byte {
		return bpf.Packet(src, dst, 1, id, uint16(typ), 0)
	}
	if got := run(to, echo(client, public, 0, 7)); got != bpf.TCXDrop {
		t.Fatalf("unsolicited echo reply: %d, want drop", got)
	}
	run(from, echo(public, client, 8, 7))
	if got := run(to, echo(client, public, 0, 7)); got != bpf.TCXPass {
		t.Fatalf("echo reply: %d, want pass", got)
	}
	// A request from client with the same identifier is no reply.
	if got := run(to, echo(client, public, 8, 7)); got != bpf.TCXDrop {
		t.Fatalf("echo request from client with the identifier of public's: %d, want drop", got)
	}
}
