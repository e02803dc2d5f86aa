package bpf

import (
	"encoding/binary"
	"net/netip"

	"github.com/cilium/ebpf/asm"
)

// SourceCheck is source address verification, as Cilium's from-container
// program makes it (DROP_INVALID_SIP): every IPv4 packet a pod sends must
// carry the pod's own address as its source. The policy programs know
// the pod only by the packet's source (the endpoints key), and conntrack
// only by the 5-tuple: a pod sending from another pod's address would get
// that pod's egress policy and ride its connections, one sending from an
// address that is no endpoint would not be enforced at all.
//
// The check runs in the pod's from-container dispatcher (package loader),
// before the tail call into the generation's program, with the address
// as an immediate: the loader builds each endpoint's dispatcher knowing
// the address, so the check costs a bounds check, four loads and three
// compares, and no lookup. check falls through when the packet may go on
// (a genuine source, or not IPv4: ARP, IPv6 and the rest are the
// program's to judge; a frame too short to hold a source address is left
// to the program too, which drops it as malformed), and jumps to drop
// otherwise, which counts it under DropSpoofed and drops. A source of
// 0.0.0.0 (a DHCP discover) is dropped like any other: pods get their
// addresses from IPAM, never from DHCP. A pod without an IPv4 address
// (invalid addr) has every IPv4 packet dropped, as Cilium does.
//
// R6 must hold the __sk_buff; R2-R4 are clobbered, and drop uses the
// stack word at -4. drop references MapDrops.
func SourceCheck(addr netip.Addr) (check, drop asm.Instructions) {
	const lblSpoofed, lblOn = "src_spoofed", "src_ok"
	check = asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethHdrLen+16), // through the source address
		asm.JGT.Reg(asm.R4, asm.R3, lblOn),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R4, ethPIPLE, lblOn),
	}
	if addr.Is4() {
		a := addr.As4()
		check = append(check,
			asm.LoadMem(asm.R4, asm.R2, ethHdrLen+12, asm.Word),
			// A 32-bit compare: the address, read as the load reads it,
			// may have its high bit set.
			asm.JNE.Imm32(asm.R4, int32(binary.NativeEndian.Uint32(a[:])), lblSpoofed),
		)
	} else {
		check = append(check, asm.Ja.Label(lblSpoofed))
	}
	check = append(check, asm.Mov.Imm(asm.R0, 0).WithSymbol(lblOn))
	drop = append(asm.Instructions{
		asm.StoreImm(asm.RFP, -4, DropSpoofed, asm.Word).WithSymbol(lblSpoofed),
	}, countDrop(-4)...)
	return check, drop
}
