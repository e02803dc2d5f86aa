package loader

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit/emittest"
)

// linkProgram is the program a TCX link runs now (by the kernel's ID, so
// an adopted or replaced one too).
func linkProgram(t *testing.T, l link.Link) *ebpf.Program {
	t.Helper()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// arpFrame is an Ethernet frame of ethertype ARP.
func arpFrame() []byte {
	b := make([]byte, 42)
	b[12], b[13] = 0x08, 0x06
	return b
}

// Source address verification on the Switch's attachments, run through
// BPF_PROG_TEST_RUN on what each veth's from-container link runs (the
// dispatcher, then the generation's program): a pod's packets from its own
// address get its policy; from another pod's address (whose egress allows
// them, or whose connection they copy) or an address that is no
// endpoint, or 0.0.0.0, they are dropped and counted as invalid_source,
// although the program alone would pass them; ARP passes. Attaching a pod
// again with another address, or none, rebuilds its dispatcher in its
// link. An agent adopting the pins keeps dispatchers that are its own and
// replaces one an earlier agent built without the check.
func TestSourceVerification(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pins := mountBPFFS(t)
	_, out := compileYAML(t, emittest.OffPathCluster)
	art, err := FromBuild(out.Artifacts[0])
	if err != nil {
		t.Fatal(err)
	}
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3", "c": "10.77.0.4", "e": "10.77.0.6"})
	sw, err := NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sw.Uninstall() }()
	if err := sw.Swap(art); err != nil {
		t.Fatal(err)
	}
	attach := func(name string, addr netip.Addr) {
		t.Helper()
		idx := pn.ifindex(name)
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, addr) }); err != nil {
			t.Fatal(err)
		}
	}
	for name := range pn.pods {
		attach(name, pn.addr(name))
	}
	a, b, c, e := pn.addr("a"), pn.addr("b"), pn.addr("c"), pn.addr("e")
	nowhere := netip.MustParseAddr("10.77.0.99")
	const syn, ack = 0x02, 0x10
	// send runs a frame through pod's from-container link and checks the
	// verdict and that the drop, if any, was counted under reason alone.
	send := func(what, pod string, frame []byte, want uint32, reason int) {
		t.Helper()
		before, err := sw.Drops()
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := linkProgram(t, sw.endpoints["default/"+pod].links[0]).Test(frame)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %s, want %s", what, retName(got), retName(want))
		}
		after, err := sw.Drops()
		if err != nil {
			t.Fatal(err)
		}
		for r := range after {
			wantN := uint64(0)
			if r == reason {
				wantN = 1
			}
			if after[r]-before[r] != wantN {
				t.Errorf("%s: %s drops +%d, want +%d", what, bpf.DropReasonNames[r], after[r]-before[r], wantN)
			}
		}
	}
	const none = -1
	// c's egress is isolated with no rule; a's and e's are not isolated.
	send("c from its own address", "c", bpf.Packet(c, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropDefault)
	send("a from its own address", "a", bpf.Packet(a, e, 6, 40000, 8080, syn), bpf.TCXPass, none)
	send("c from a's address", "c", bpf.Packet(a, e, 6, 40001, 8080, syn), bpf.TCXDrop, bpf.DropSpoofed)
	send("c from an address that is no endpoint", "c", bpf.Packet(nowhere, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropSpoofed)
	send("c's DHCP discover", "c", bpf.Packet(netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 17, 68, 67, 0), bpf.TCXDrop, bpf.DropSpoofed)
	send("c's ARP", "c", arpFrame(), bpf.TCXPass, none)

	// a's connection to b: c cannot ride it, in either direction, although
	// c's program alone would pass both on conntrack.
	send("a's SYN to b", "a", bpf.Packet(a, b, 6, 41000, 8080, syn), bpf.TCXPass, none)
	cProg := sw.gen.ProgramFor("default/c", bpf.FromContainer)
	for _, f := range [][]byte{bpf.Packet(a, b, 6, 41000, 8080, ack), bpf.Packet(b, a, 6, 8080, 41000, syn|ack)} {
		if got, _, err := cProg.Test(f); err != nil || got != bpf.TCXPass {
			t.Fatalf("c's program alone, a packet of a's connection: %s %v; the test no longer shows the hole the check closes", retName(got), err)
		}
	}
	send("c copying a's connection to b", "c", bpf.Packet(a, b, 6, 41000, 8080, ack), bpf.TCXDrop, bpf.DropSpoofed)
	send("c copying b's reply to a", "c", bpf.Packet(b, a, 6, 8080, 41000, syn|ack), bpf.TCXDrop, bpf.DropSpoofed)

	// c attached again: with a new address, with none, with its own.
	moved := netip.MustParseAddr("10.77.0.9")
	attach("c", moved)
	send("c moved, from its old address", "c", bpf.Packet(c, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropSpoofed)
	send("c moved, from its new address (no endpoint of the generation: not enforced)", "c", bpf.Packet(moved, e, 6, 40000, 8080, syn), bpf.TCXPass, none)
	attach("c", netip.Addr{})
	send("c without an IPv4 address, IPv4", "c", bpf.Packet(c, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropSpoofed)
	send("c without an IPv4 address, ARP", "c", arpFrame(), bpf.TCXPass, none)
	attach("c", c)
	send("c back at its address", "c", bpf.Packet(c, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropDefault)

	// An earlier agent's dispatcher without the check, on c.
	insns, err := dispatcher(sw.active.FD(), sw.progs.FD(), progKey(sw.endpoints["default/c"].slot, 0, 0), tcActShot, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "sl_dispatch", Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.endpoints["default/c"].links[0].Update(old); err != nil {
		t.Fatal(err)
	}
	old.Close()
	send("c under a dispatcher without the check", "c", bpf.Packet(nowhere, e, 6, 40000, 8080, syn), bpf.TCXPass, none)
	sw.Close()
	if sw, err = NewSwitch(pins); err != nil {
		t.Fatal(err)
	}
	for _, name := range sw.endpointNames() {
		at := sw.endpoints[name]
		replaced := at.dispatchers[0] != nil || at.dispatchers[1] != nil
		if !at.current || replaced != (name == "default/c") {
			t.Errorf("adopted %s: current %v, dispatchers replaced %v; want current, replaced only for c", name, at.current, replaced)
		}
	}
	send("adopted: c from an address that is no endpoint", "c", bpf.Packet(nowhere, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropSpoofed)
	send("adopted: a from c's address", "a", bpf.Packet(c, e, 6, 40000, 8080, syn), bpf.TCXDrop, bpf.DropSpoofed)
	send("adopted: a from its own address", "a", bpf.Packet(a, e, 6, 40002, 8080, syn), bpf.TCXPass, none)
	// Attached again as they are (after the agent's first swap), they
	// change nothing.
	if err := sw.Swap(art); err != nil {
		t.Fatal(err)
	}
	attach("a", a)
	if at := sw.endpoints["default/a"]; at.dispatchers[0] != nil {
		t.Error("a attached again as adopted: its dispatcher was replaced")
	}
}
