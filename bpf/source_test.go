package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/bpf"
)

// sourceChecked loads bpf.SourceCheck for addr in front of a program
// that returns 7 (the dispatcher's tail call, here), counting into a
// drops map of its own.
func sourceChecked(t *testing.T, addr netip.Addr) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	drops, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: bpf.DropReasons})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drops.Close() })
	check, drop := bpf.SourceCheck(addr)
	insns := append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, check...)
	insns = append(insns, asm.Mov.Imm(asm.R0, 7), asm.Return())
	insns = append(insns, drop...)
	for i := range insns {
		if insns[i].Reference() == bpf.MapDrops {
			if err := insns[i].AssociateMap(drops); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, drops
}

func spoofedCount(t *testing.T, drops *ebpf.Map) uint64 {
	t.Helper()
	var perCPU []uint64
	if err := drops.Lookup(uint32(bpf.DropSpoofed), &perCPU); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}

// Source address verification: an IPv4 packet from the pod's own address
// goes on (7: the tail call), any other source is dropped and counted as
// DropSpoofed — another pod's address, one that is no endpoint, 0.0.0.0 —
// including addresses whose last byte has the high bit set (the compare
// is 32-bit); frames that are not IPv4 are left to the program. (An IPv4
// frame too short to carry a source is left to it too, which drops it as
// malformed; BPF_PROG_TEST_RUN refuses such frames, so it is not run
// here.) A pod without an IPv4 address has every IPv4 packet dropped.
func TestSourceCheck(t *testing.T) {
	requireBPF(t)
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	for _, own := range []string{"10.77.0.2", "10.77.0.200", "192.168.1.129", "255.255.255.254"} {
		addr := netip.MustParseAddr(own)
		p, drops := sourceChecked(t, addr)
		peer := netip.MustParseAddr("10.77.0.3")
		cases := []struct {
			what  string
			frame []byte
			want  uint32
		}{
			{"own address", bpf.Packet(addr, peer, 6, 40000, 80, 0x02), 7},
			{"own address, UDP", bpf.Packet(addr, peer, 17, 40000, 53, 0), 7},
			{"another pod's address", bpf.Packet(peer, peer, 6, 40000, 80, 0x02), bpf.TCXDrop},
			{"the own address but its last bit", bpf.Packet(netip.AddrFrom4([4]byte(append(addr.AsSlice()[:3:3], addr.AsSlice()[3]^1))), peer, 17, 68, 67, 0), bpf.TCXDrop},
			{"the own address but its high bit", bpf.Packet(netip.AddrFrom4([4]byte(append(addr.AsSlice()[:3:3], addr.AsSlice()[3]^0x80))), peer, 17, 68, 67, 0), bpf.TCXDrop},
			{"0.0.0.0 (DHCP discover)", bpf.Packet(netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 17, 68, 67, 0), bpf.TCXDrop},
			{"IPv6 from any address", bpf.Packet6(netip.MustParseAddr("fd00::9"), netip.MustParseAddr("fd00::1"), 6, 40000, 80, 0x02), 7},
			{"ARP", arp, 7},
		}
		var spoofed uint64
		for _, c := range cases {
			if got := runProg(t, p, c.frame); got != c.want {
				t.Errorf("pod %s, %s: %d, want %d", addr, c.what, got, c.want)
			}
			if c.want == bpf.TCXDrop {
				spoofed++
			}
		}
		if n := spoofedCount(t, drops); n != spoofed {
			t.Errorf("pod %s: %d drops counted as %s, want %d", addr, n, bpf.DropReasonNames[bpf.DropSpoofed], spoofed)
		}
	}
	p, drops := sourceChecked(t, netip.Addr{})
	if got := runProg(t, p, bpf.Packet(podA, podB, 6, 40000, 80, 0x02)); got != bpf.TCXDrop {
		t.Errorf("a pod without an IPv4 address sends IPv4: %d, want dropped", got)
	}
	if got := runProg(t, p, arp); got != 7 {
		t.Errorf("a pod without an IPv4 address sends ARP: %d, want it left to the program", got)
	}
	if n := spoofedCount(t, drops); n != 1 {
		t.Errorf("%d counted, want 1", n)
	}
}
