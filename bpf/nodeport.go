package bpf

import (
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/emit"
)

// Packet-level load balancing on the node's external device: traffic
// from outside to a NodePort, an ExternalIP, a LoadBalancer IP (or a
// ClusterIP routed here) is translated in TC, since no local socket
// connects it. NetdevIngress picks a backend — by Maglev for external
// frontends, so that every node picks the same one for a flow — and
// rewrites the destination (DNAT). A backend on another node also gets the
// source rewritten to the node address the client used (SNAT), so that
// its replies come back here. MapLBNAT remembers both directions of each
// flow: NetdevIngress reverses the SNAT-ed replies coming back from other
// nodes, NetdevEgress the replies of local backends leaving the node.

// MapLBNAT is the load balancer's NAT table: node state (an LRU hash), so
// that flows outlive swaps.
const (
	MapLBNAT    = "lb_nat"
	MapMaglev   = "maglev"
	LBNATKey    = 16 // addr A [4] | addr B [4] | port A [2] | port B [2] | proto u8 | dir u8 | pad [2]
	LBNATValue  = 24 // backend addr [4] | frontend addr [4] | backend port [2] | frontend port [2] | client addr [4] | client port [2] | revnat u16 | snat u8 | pad [3]
	LBNATDirOut = 0  // keyed as the client sent it
	LBNATDirRev = 1  // keyed as the backend replies
	LBNATSize   = 262144
)

// LB features the programs are generated with.
type LBConfig struct {
	NodeIndex uint16 // this node, in the backends' node field
	MaglevM   uint32 // entries of a Maglev table; 0: no maglev map
	// NodeIP is the address flows to other nodes' backends are SNAT-ed
	// to, as it sits in a packet; 0: no SNAT (such flows are routed as
	// they are).
	NodeIP uint32
}

// Stack of the netdev programs.
const (
	npSaddr   = -4
	npDaddr   = -8
	npSport   = -10
	npDport   = -12
	npProto   = -16 // u32
	npCsumOff = -20 // the L4 checksum's offset, 0: none (SCTP)
	npCsumFl  = -24 // extra l4_csum_replace flags (BPF_F_MARK_MANGLED_0 for UDP)
	npSvcKey  = -40 // 12 bytes (16 reserved)
	npBackend = -44 // backend id
	npRevNat  = -48 // u16, then the master's flags (u8) at -46 and flags2 at -45
	npNATKey  = -64
	npNATVal  = -88 // 24 bytes
	npHash    = -92
	npNew     = -96 // a new field value, for skb_store_bytes
	npIPCKey  = -104
	npCount   = -108
	npFib     = -176 // struct bpf_fib_lookup, 64 bytes
	npFibSrc  = -180
	npFibDst  = -184
)

// fibRedirect sends a packet whose source is now this node's address (a
// SNAT-ed flow, or a reply turned back to the client) straight out of the
// device the FIB names, resolving the neighbour, rather than up the stack,
// which drops packets from a local source arriving on a device as
// martians. On a FIB miss the packet goes up the stack as it is.
func fibRedirect(label string) asm.Instructions {
	in := asm.Instructions{}
	for off := int16(0); off < 64; off += 8 {
		in = append(in, asm.StoreImm(asm.RFP, npFib+off, 0, asm.Word), asm.StoreImm(asm.RFP, npFib+off+4, 0, asm.Word))
	}
	return append(in,
		asm.StoreImm(asm.RFP, npFib, 2, asm.Byte), // AF_INET
		asm.LoadMem(asm.R2, asm.RFP, npProto, asm.Word),
		asm.StoreMem(asm.RFP, npFib+1, asm.R2, asm.Byte),
		asm.LoadMem(asm.R2, asm.R6, 40, asm.Word), // skb->ifindex
		asm.StoreMem(asm.RFP, npFib+8, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npFibSrc, asm.Word),
		asm.StoreMem(asm.RFP, npFib+16, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npFibDst, asm.Word),
		asm.StoreMem(asm.RFP, npFib+32, asm.R2, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, npFib),
		asm.Mov.Imm(asm.R3, 64),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnFibLookup.Call(),
		asm.JEq.Imm(asm.R0, 0, label+"_redirect"),
		asm.JNE.Imm(asm.R0, 7, "np_pass"), // BPF_FIB_LKUP_RET_NO_NEIGH: redirect_neigh resolves it
		asm.LoadMem(asm.R1, asm.RFP, npFib+8, asm.Word).WithSymbol(label+"_redirect"),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
	)
}

const (
	ethIPCsum   = ethHdrLen + 10
	ethIPSaddr  = ethHdrLen + 12
	ethIPDaddr  = ethHdrLen + 16
	fPseudoHdr  = 0x10
	fMangled0   = 0x20
	tcActOK     = 0
	tcActShotLB = 2
)

// netdevParse loads the 5-tuple, the L4 checksum's offset and flags; a
// packet that is not TCP, UDP or SCTP over unfragmented IPv4 passes.
func netdevParse() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, skbData, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, ethHdrLen+ipv4MinHdrLen),
		asm.JGT.Reg(asm.R2, asm.R8, "np_pass"),
		asm.LoadMem(asm.R2, asm.R7, 12, asm.Half),
		asm.JNE.Imm(asm.R2, 0x0008, "np_pass"),
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen+6, asm.Half), // fragments pass
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.And.Imm(asm.R2, 0x3fff),
		asm.JNE.Imm(asm.R2, 0, "np_pass"),
		asm.LoadMem(asm.R3, asm.R7, ethHdrLen+9, asm.Byte),
		asm.StoreMem(asm.RFP, npProto, asm.R3, asm.Word),
		asm.LoadMem(asm.R2, asm.R7, ethIPSaddr, asm.Word),
		asm.StoreMem(asm.RFP, npSaddr, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R7, ethIPDaddr, asm.Word),
		asm.StoreMem(asm.RFP, npDaddr, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen, asm.Byte),
		asm.And.Imm(asm.R2, 0x0f),
		asm.LSh.Imm(asm.R2, 2),
		asm.JLT.Imm(asm.R2, ipv4MinHdrLen, "np_pass"),
		asm.JGT.Imm(asm.R2, 60, "np_pass"),
		asm.Add.Imm(asm.R2, ethHdrLen), // the L4 offset
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Reg(asm.R4, asm.R2),
		asm.Mov.Reg(asm.R5, asm.R4),
		asm.Add.Imm(asm.R5, 8),
		asm.JGT.Reg(asm.R5, asm.R8, "np_pass"),
		asm.LoadMem(asm.R5, asm.R4, 0, asm.Half),
		asm.StoreMem(asm.RFP, npSport, asm.R5, asm.Half),
		asm.LoadMem(asm.R5, asm.R4, 2, asm.Half),
		asm.StoreMem(asm.RFP, npDport, asm.R5, asm.Half),
		asm.StoreImm(asm.RFP, npCsumFl, 0, asm.Word),
		asm.Mov.Reg(asm.R5, asm.R2),
		asm.JEq.Imm(asm.R3, 6, "np_tcp"),
		asm.JEq.Imm(asm.R3, 17, "np_udp"),
		asm.JNE.Imm(asm.R3, 132, "np_pass"),
		// SCTP: its CRC32c covers no pseudo-header, so an address rewrite
		// leaves it valid; ports are not rewritten (see below).
		asm.StoreImm(asm.RFP, npCsumOff, 0, asm.Word),
		asm.Ja.Label("np_parsed"),
		asm.Add.Imm(asm.R5, 16).WithSymbol("np_tcp"),
		asm.StoreMem(asm.RFP, npCsumOff, asm.R5, asm.Word),
		asm.Ja.Label("np_parsed"),
		asm.Add.Imm(asm.R5, 6).WithSymbol("np_udp"),
		asm.StoreMem(asm.RFP, npCsumOff, asm.R5, asm.Word),
		asm.StoreImm(asm.RFP, npCsumFl, fMangled0, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("np_parsed"),
	}
}

// rewrite writes the value in stack slot newSlot over the packet field at
// fieldOff (absolute, or relative to the L4 header when l4 is set: then
// fieldOff is 0 for the source port, 2 for the destination), fixing the
// IPv4 (addresses) and L4 checksums. oldSlot holds the field's value.
func rewrite(field int32, size int, newSlot, oldSlot int16, label string) asm.Instructions {
	var in asm.Instructions
	isAddr := size == 4
	sz := asm.Word
	if !isAddr {
		sz = asm.Half
	}
	if isAddr {
		in = append(in,
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, ethIPCsum),
			asm.LoadMem(asm.R3, asm.RFP, oldSlot, sz),
			asm.LoadMem(asm.R4, asm.RFP, newSlot, sz),
			asm.Mov.Imm(asm.R5, 4),
			asm.FnL3CsumReplace.Call(),
		)
	}
	flags := int32(size)
	if isAddr {
		flags |= fPseudoHdr
	}
	in = append(in,
		asm.LoadMem(asm.R2, asm.RFP, npCsumOff, asm.Word),
		asm.JEq.Imm(asm.R2, 0, label+"_store"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMem(asm.R3, asm.RFP, oldSlot, sz),
		asm.LoadMem(asm.R4, asm.RFP, newSlot, sz),
		asm.LoadMem(asm.R5, asm.RFP, npCsumFl, asm.Word),
		asm.Or.Imm(asm.R5, flags),
		asm.FnL4CsumReplace.Call(),
	)
	store := asm.Instructions{asm.Mov.Reg(asm.R1, asm.R6).WithSymbol(label + "_store")}
	if isAddr {
		store = append(store, asm.Mov.Imm(asm.R2, field))
	} else {
		// The L4 header starts where the checksum's offset says, less the
		// checksum's place in it (TCP 16, UDP 6); SCTP ports stay.
		store = append(store,
			asm.LoadMem(asm.R2, asm.RFP, npCsumOff, asm.Word),
			asm.JNE.Imm(asm.R2, 0, label+"_csum"),
			// SCTP: a new port would need the CRC32c of the whole packet
			// recomputed; such a flow is dropped, not mistranslated.
			asm.LoadMem(asm.R3, asm.RFP, oldSlot, asm.Half),
			asm.LoadMem(asm.R4, asm.RFP, newSlot, asm.Half),
			asm.JEq.Reg(asm.R3, asm.R4, label+"_done"),
			asm.Ja.Label("np_drop"),
			asm.LoadMem(asm.R3, asm.RFP, npProto, asm.Word).WithSymbol(label+"_csum"),
			asm.Sub.Imm(asm.R2, 6),
			asm.JNE.Imm(asm.R3, 6, label+"_l4"),
			asm.Sub.Imm(asm.R2, 10),
			asm.Add.Imm(asm.R2, field).WithSymbol(label+"_l4"),
		)
	}
	store = append(store,
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(newSlot)),
		asm.Mov.Imm(asm.R4, int32(size)),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnSkbStoreBytes.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(label+"_done"),
	)
	return append(in, store...)
}

// NetdevIngress is the program on the external device's ingress.
func NetdevIngress(cfg LBConfig) asm.Instructions {
	in := netdevParse()
	// A reply of a flow SNAT-ed to a backend on another node: back to the
	// client, from the frontend.
	in = append(in, natKey(npSaddr, npDaddr, npSport, npDport, LBNATDirRev)...)
	in = append(in, mapLookup(MapLBNAT, npNATKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_out_lookup"),
		asm.LoadMem(asm.R2, asm.R0, 20, asm.Byte), // snat
		asm.JEq.Imm(asm.R2, 0, "np_out_lookup"),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Word), // frontend addr → source
		asm.StoreMem(asm.RFP, npNew, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 10, asm.Half), // frontend port
		asm.StoreMem(asm.RFP, npNATVal, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R0, 12, asm.Word), // client addr → destination
		asm.StoreMem(asm.RFP, npNATVal+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 16, asm.Half), // client port
		asm.StoreMem(asm.RFP, npNATVal+8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Word),
		asm.StoreMem(asm.RFP, npFibSrc, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 12, asm.Word),
		asm.StoreMem(asm.RFP, npFibDst, asm.R2, asm.Word),
	)
	in = append(in, rewrite(ethIPSaddr, 4, npNew, npSaddr, "rv_sa")...)
	in = append(in, rewrite(0, 2, npNATVal, npSport, "rv_sp")...)
	in = append(in, asm.LoadMem(asm.R2, asm.RFP, npNATVal+4, asm.Word), asm.StoreMem(asm.RFP, npNew, asm.R2, asm.Word))
	in = append(in, rewrite(ethIPDaddr, 4, npNew, npDaddr, "rv_da")...)
	in = append(in, rewrite(2, 2, npNATVal+8, npDport, "rv_dp")...)
	in = append(in, fibRedirect("rv")...)

	// A flow already translated: the same backend.
	in = append(in, natKeyAt("np_out_lookup", npSaddr, npDaddr, npSport, npDport, LBNATDirOut)...)
	in = append(in, mapLookup(MapLBNAT, npNATKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_service"),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.Ja.Label("np_translate"),
	)
	in = append(in, npService(cfg)...)
	in = append(in, npTranslate(cfg)...)
	in = append(in, npReject()...)
	return append(in,
		asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("np_pass"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcActShotLB).WithSymbol("np_drop"),
		asm.Return(),
	)
}

// natKey writes a lb_nat key: addresses and ports from stack slots.
func natKey(a, b, pa, pb int16, dir uint8) asm.Instructions {
	return natKeyAt("", a, b, pa, pb, dir)
}

func natKeyAt(label string, a, b, pa, pb int16, dir uint8) asm.Instructions {
	in := tupleKey(npNATKey, a, b, pa, pb, npProto, int64(dir))
	if label != "" {
		in[0] = in[0].WithSymbol(label)
	}
	return in
}

// npService finds the frontend and picks a backend, then records the
// flow; it ends at np_translate with R9 the new lb_nat value.
func npService(cfg LBConfig) asm.Instructions {
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, npDaddr, asm.Word).WithSymbol("np_service"),
		asm.StoreMem(asm.RFP, npSvcKey, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npDport, asm.Half),
		asm.StoreMem(asm.RFP, npSvcKey+4, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, npSvcKey+6, 0, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npProto, asm.Word),
		asm.StoreMem(asm.RFP, npSvcKey+8, asm.R2, asm.Byte),
		asm.StoreImm(asm.RFP, npSvcKey+9, int64(emit.ScopeAll), asm.Byte),
		asm.StoreImm(asm.RFP, npSvcKey+10, 0, asm.Half),
		asm.StoreImm(asm.RFP, npSvcKey+12, 0, asm.Word),
	}
	in = append(in, mapLookup(MapServices, npSvcKey)...)
	in = append(in, asm.JNE.Imm(asm.R0, 0, "np_master"))
	// A NodePort: keyed on 0.0.0.0, for any of this node's addresses.
	in = append(in,
		asm.StoreImm(asm.RFP, npIPCKey, 32, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npDaddr, asm.Word),
		asm.StoreMem(asm.RFP, npIPCKey+4, asm.R2, asm.Word),
	)
	in = append(in, mapLookup(MapIPCache, npIPCKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_pass"),
		asm.LoadMem(asm.R2, asm.R0, 12, asm.Byte),
		asm.And.Imm(asm.R2, int32(emit.FlagNode)),
		asm.JEq.Imm(asm.R2, 0, "np_pass"),
		asm.StoreImm(asm.RFP, npSvcKey, 0, asm.Word),
	)
	in = append(in, mapLookup(MapServices, npSvcKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_pass"),
		asm.LoadMem(asm.R2, asm.R0, 8, asm.Half).WithSymbol("np_master"), // flags, flags2
		asm.StoreMem(asm.RFP, npRevNat+2, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R0, 6, asm.Half),
		asm.StoreMem(asm.RFP, npRevNat, asm.R2, asm.Half),
		asm.LoadMem(asm.R8, asm.R0, 4, asm.Half), // count
		// externalTrafficPolicy: Local balances over this node's backends.
		asm.LoadMem(asm.R2, asm.RFP, npRevNat+2, asm.Byte),
		asm.And.Imm(asm.R2, int32(emit.SvcFlagLocalExternal)),
		asm.JEq.Imm(asm.R2, 0, "np_have_master"),
		asm.StoreImm(asm.RFP, npSvcKey+9, int64(emit.ScopeLocal), asm.Byte),
	)
	in = append(in, mapLookup(MapServicesLocal, npSvcKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_drop"),
		asm.LoadMem(asm.R8, asm.R0, 4, asm.Half),
		asm.JEq.Imm(asm.R8, 0, "np_no_backends").WithSymbol("np_have_master"),
		asm.StoreMem(asm.RFP, npCount, asm.R8, asm.Word),
	)
	in = append(in, flowHash()...)
	// ClientIP affinity: the client's address alone picks the backend (for
	// as long as the backends stay; the timeout is the socket path's).
	in = append(in,
		asm.LoadMem(asm.R2, asm.RFP, npRevNat+2, asm.Byte),
		asm.And.Imm(asm.R2, int32(emit.SvcFlagAffinity)),
		asm.JEq.Imm(asm.R2, 0, "np_hashed"),
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.Mul.Imm32(asm.R2, -1640531535),
		asm.Mov.Reg32(asm.R3, asm.R2),
		asm.RSh.Imm32(asm.R3, 16),
		asm.Xor.Reg32(asm.R2, asm.R3),
		asm.StoreMem(asm.RFP, npHash, asm.R2, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("np_hashed"),
	)
	if cfg.MaglevM > 0 {
		in = append(in,
			asm.LoadMem(asm.R2, asm.RFP, npSvcKey+9, asm.Byte),
			asm.JNE.Imm(asm.R2, int32(emit.ScopeAll), "np_slot"),
			asm.LoadMem(asm.R2, asm.RFP, npRevNat, asm.Half),
			asm.StoreMem(asm.RFP, npBackend, asm.R2, asm.Word),
		)
		in = append(in, mapLookup(MapMaglev, npBackend)...)
		in = append(in,
			asm.JEq.Imm(asm.R0, 0, "np_slot"),
			asm.LoadMem(asm.R2, asm.RFP, npHash, asm.Word),
			asm.Mod.Imm32(asm.R2, int32(cfg.MaglevM)),
			asm.JGE.Imm(asm.R2, int32(cfg.MaglevM), "np_pass"), // for the verifier
			asm.LSh.Imm(asm.R2, 2),
			asm.Add.Reg(asm.R0, asm.R2),
			asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
			asm.StoreMem(asm.RFP, npBackend, asm.R2, asm.Word),
			asm.Ja.Label("np_backend"),
		)
	}
	in = append(in,
		asm.LoadMem(asm.R0, asm.RFP, npHash, asm.Word).WithSymbol("np_slot"),
		asm.LoadMem(asm.R8, asm.RFP, npCount, asm.Word),
	)
	in = append(in, slotBackend("np_", npSvcKey, npBackend, "np_drop")...)
	bl := mapLookup(MapBackends, npBackend)
	bl[0] = bl[0].WithSymbol("np_backend")
	in = append(in, bl...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_drop"),
		// The flow's value: backend, frontend, client, whether to SNAT.
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, npNATVal, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Half),
		asm.StoreMem(asm.RFP, npNATVal+8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npDaddr, asm.Word),
		asm.StoreMem(asm.RFP, npNATVal+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npDport, asm.Half),
		asm.StoreMem(asm.RFP, npNATVal+10, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.StoreMem(asm.RFP, npNATVal+12, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npSport, asm.Half),
		asm.StoreMem(asm.RFP, npNATVal+16, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npRevNat, asm.Half),
		asm.StoreMem(asm.RFP, npNATVal+18, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, npNATVal+20, 0, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 8, asm.Half), // the backend's node
		asm.JEq.Imm(asm.R2, int32(cfg.NodeIndex), "np_record"),
		asm.JEq.Imm(asm.R2, int32(emit.NodeNone), "np_record"), // not a pod of a known node: route it
	)
	if cfg.NodeIP != 0 {
		in = append(in, asm.StoreImm(asm.RFP, npNATVal+20, 1, asm.Byte))
	}
	// The forward entry, keyed as the client sent it.
	in = append(in, natKeyAt("np_record", npSaddr, npDaddr, npSport, npDport, LBNATDirOut)...)
	in = append(in, mapUpdate(MapLBNAT, npNATKey, npNATVal)...)
	// The reverse entry, keyed as the backend replies: to the client, or
	// (SNAT) to this node's address with the client's port.
	in = append(in,
		asm.LoadMem(asm.R2, asm.RFP, npNATVal, asm.Word),
		asm.StoreMem(asm.RFP, npNATKey, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, npNATVal+20, asm.Byte),
		asm.JEq.Imm(asm.R3, 0, "np_rev_client"),
		asm.Mov.Imm32(asm.R2, int32(cfg.NodeIP)),
		asm.StoreMem(asm.RFP, npNATKey+4, asm.R2, asm.Word).WithSymbol("np_rev_client"),
		asm.LoadMem(asm.R2, asm.RFP, npNATVal+8, asm.Half),
		asm.StoreMem(asm.RFP, npNATKey+8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npSport, asm.Half),
		asm.StoreMem(asm.RFP, npNATKey+10, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, npNATKey+13, LBNATDirRev, asm.Byte),
	)
	in = append(in, mapUpdate(MapLBNAT, npNATKey, npNATVal)...)
	in = append(in,
		asm.Mov.Reg(asm.R9, asm.RFP),
		asm.Add.Imm(asm.R9, npNATVal),
	)
	return in
}

// flowHash hashes the 5-tuple into npHash: the same function on every
// node, so that Maglev picks the same backend for a flow anywhere.
func flowHash() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, npDaddr, asm.Word),
		asm.Mul.Imm32(asm.R3, -1640531535), // 0x9e3779b1
		asm.Xor.Reg32(asm.R2, asm.R3),
		asm.LoadMem(asm.R3, asm.RFP, npDport, asm.Half),
		asm.LoadMem(asm.R4, asm.RFP, npSport, asm.Half),
		asm.LSh.Imm32(asm.R4, 16),
		asm.Or.Reg32(asm.R3, asm.R4),
		asm.Mul.Imm32(asm.R3, -2048144789), // 0x85ebca6b
		asm.Xor.Reg32(asm.R2, asm.R3),
		asm.LoadMem(asm.R3, asm.RFP, npProto, asm.Word),
		asm.Xor.Reg32(asm.R2, asm.R3),
		// murmur3's finalizer.
		asm.Mov.Reg32(asm.R3, asm.R2),
		asm.RSh.Imm32(asm.R3, 16),
		asm.Xor.Reg32(asm.R2, asm.R3),
		asm.Mul.Imm32(asm.R2, -2048144789),
		asm.Mov.Reg32(asm.R3, asm.R2),
		asm.RSh.Imm32(asm.R3, 13),
		asm.Xor.Reg32(asm.R2, asm.R3),
		asm.Mul.Imm32(asm.R2, -1028477387), // 0xc2b2ae35
		asm.Mov.Reg32(asm.R3, asm.R2),
		asm.RSh.Imm32(asm.R3, 16),
		asm.Xor.Reg32(asm.R2, asm.R3),
		asm.StoreMem(asm.RFP, npHash, asm.R2, asm.Word),
	}
}

// npTranslate rewrites the destination to the backend, and with SNAT the
// source to the frontend address; R9 points to the flow's value.
func npTranslate(cfg LBConfig) asm.Instructions {
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R9, 0, asm.Word).WithSymbol("np_translate"),
		asm.StoreMem(asm.RFP, npNew, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R9, 8, asm.Half),
		asm.StoreMem(asm.RFP, npNATVal+8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R9, 20, asm.Byte),
		asm.StoreMem(asm.RFP, npNATVal+20, asm.R2, asm.Byte),
		asm.LoadMem(asm.R2, asm.R9, 4, asm.Word),
		asm.StoreMem(asm.RFP, npNATVal+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R9, 0, asm.Word),
		asm.StoreMem(asm.RFP, npNATVal+12, asm.R2, asm.Word), // the FIB's destination, with SNAT
	}
	in = append(in, rewrite(ethIPDaddr, 4, npNew, npDaddr, "tr_da")...)
	in = append(in, rewrite(2, 2, npNATVal+8, npDport, "tr_dp")...)
	in = append(in,
		asm.LoadMem(asm.R2, asm.RFP, npNATVal+20, asm.Byte),
		asm.JEq.Imm(asm.R2, 0, "np_pass"),
		asm.Mov.Imm32(asm.R2, int32(cfg.NodeIP)), // SNAT to this node
		asm.StoreMem(asm.RFP, npNew, asm.R2, asm.Word),
		asm.StoreMem(asm.RFP, npFibSrc, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npNATVal+12, asm.Word),
		asm.StoreMem(asm.RFP, npFibDst, asm.R2, asm.Word),
	)
	in = append(in, rewrite(ethIPSaddr, 4, npNew, npSaddr, "tr_sa")...)
	return append(in, fibRedirect("tr")...)
}

// Stack of the reject path: the reset built in place, and the TCP
// pseudo-header for its checksum.
const (
	rjPkt    = -258 // 54 bytes: Ethernet, IPv4, TCP (the IPv4 header 4-aligned)
	rjPseudo = -272 // 12 bytes
	rjSeq    = -276
)

// npReject answers a TCP SYN to a frontend without backends with a reset
// from the frontend, out of the device it came in by, as kube-proxy's
// REJECT does: the client's connect fails at once. Other packets (and
// every packet with --no-backends drop) are dropped.
func npReject() asm.Instructions {
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, npRevNat+3, asm.Byte).WithSymbol("np_no_backends"), // flags2
		asm.And.Imm(asm.R2, int32(emit.SvcFlag2Reject)),
		asm.JEq.Imm(asm.R2, 0, "np_drop"),
		asm.LoadMem(asm.R2, asm.RFP, npProto, asm.Word),
		asm.JEq.Imm(asm.R2, 17, "np_reject_udp"),
		asm.JNE.Imm(asm.R2, 6, "np_drop"),
	}
	// The L4 header is at the checksum's offset less 16; its flags must
	// say SYN without ACK.
	in = append(in,
		asm.LoadMem(asm.R7, asm.RFP, npCsumOff, asm.Word),
		asm.Sub.Imm(asm.R7, 16),
	)
	in = append(in, loadBytes(asm.R7, 4, rjSeq, 4)...)
	in = append(in, loadBytes(asm.R7, 13, rjPseudo, 1)...) // scratch, rewritten below
	in = append(in,
		asm.LoadMem(asm.R2, asm.RFP, rjPseudo, asm.Byte),
		asm.And.Imm(asm.R2, 0x12),
		asm.JNE.Imm(asm.R2, 0x02, "np_drop"),
	)
	// Ethernet: the addresses swapped.
	in = append(in, loadBytes(asm.R0, 6, rjPkt, 6)...)
	in = append(in, loadBytes(asm.R0, 0, rjPkt+6, 6)...)
	st := func(off int16, v int64, size asm.Size) asm.Instruction {
		return asm.StoreImm(asm.RFP, rjPkt+off, v, size)
	}
	in = append(in,
		st(12, 0x0008, asm.Half), // ETH_P_IP, in network order
		// IPv4: 20 bytes, total length 40, DF, TTL 64, TCP.
		st(14, 0x45, asm.Byte), st(15, 0, asm.Byte), st(16, 0x2800, asm.Half), st(18, 0, asm.Half),
		st(20, 0x0040, asm.Half), st(22, 64, asm.Byte), st(23, 6, asm.Byte), st(24, 0, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npDaddr, asm.Word),
		asm.StoreMem(asm.RFP, rjPkt+26, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.StoreMem(asm.RFP, rjPkt+30, asm.R2, asm.Word),
		// TCP: the ports swapped, seq 0, ack the SYN's seq + 1, RST|ACK.
		asm.LoadMem(asm.R2, asm.RFP, npDport, asm.Half),
		asm.StoreMem(asm.RFP, rjPkt+34, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npSport, asm.Half),
		asm.StoreMem(asm.RFP, rjPkt+36, asm.R2, asm.Half),
		st(38, 0, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, rjSeq, asm.Word),
		asm.HostTo(asm.BE, asm.R2, asm.Word),
		asm.Add.Imm32(asm.R2, 1),
		asm.HostTo(asm.BE, asm.R2, asm.Word),
		asm.StoreMem(asm.RFP, rjPkt+42, asm.R2, asm.Word),
		st(46, 0x50, asm.Byte), st(47, 0x14, asm.Byte), st(48, 0, asm.Half), st(50, 0, asm.Half), st(52, 0, asm.Half),
		// The pseudo-header: addresses, zero, protocol, TCP length 20.
		asm.LoadMem(asm.R2, asm.RFP, npDaddr, asm.Word),
		asm.StoreMem(asm.RFP, rjPseudo, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.StoreMem(asm.RFP, rjPseudo+4, asm.R2, asm.Word),
		asm.StoreImm(asm.RFP, rjPseudo+8, 0x14000600, asm.Word), // 0, 6, then 20 in network order
	)
	in = append(in, csum(rjPkt+14, 20, false)...)
	in = append(in, fold(rjPkt+24)...)
	in = append(in, csum(rjPseudo, 12, false)...)
	in = append(in, asm.Mov.Reg(asm.R7, asm.R0))
	in = append(in, csum(rjPkt+34, 20, true)...)
	in = append(in, fold(rjPkt+50)...)
	in = append(in, bounce(rjPkt, 54)...)
	in = append(in, npRejectUDP()...)
	return in
}

// rjICMP is where npRejectUDP builds its answer: Ethernet, IPv4, ICMP,
// then the datagram's IPv4 header and first 8 bytes (70 bytes; the IPv4
// header 4-aligned).
const rjICMP = -338

// npRejectUDP answers a datagram to a frontend without backends with an
// ICMP port unreachable from the frontend, as kube-proxy's REJECT does:
// the client's next receive fails with connection refused.
func npRejectUDP() asm.Instructions {
	in := asm.Instructions{
		// Only a 20-byte IPv4 header fits the answer as built here.
		asm.LoadMem(asm.R2, asm.RFP, npCsumOff, asm.Word).WithSymbol("np_reject_udp"),
		asm.JNE.Imm(asm.R2, ethHdrLen+ipv4MinHdrLen+6, "np_drop"),
	}
	in = append(in, loadBytes(asm.R0, 6, rjICMP, 6)...)
	in = append(in, loadBytes(asm.R0, 0, rjICMP+6, 6)...)
	// The datagram's IPv4 header and 8 bytes, quoted.
	in = append(in, loadBytes(asm.R0, ethHdrLen, rjICMP+42, 28)...)
	st := func(off int16, v int64, size asm.Size) asm.Instruction {
		return asm.StoreImm(asm.RFP, rjICMP+off, v, size)
	}
	in = append(in,
		st(12, 0x0008, asm.Half),
		st(14, 0x45, asm.Byte), st(15, 0, asm.Byte), st(16, 0x3800, asm.Half), st(18, 0, asm.Half), // total length 56
		st(20, 0, asm.Half), st(22, 64, asm.Byte), st(23, 1, asm.Byte), st(24, 0, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, npDaddr, asm.Word),
		asm.StoreMem(asm.RFP, rjICMP+26, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, npSaddr, asm.Word),
		asm.StoreMem(asm.RFP, rjICMP+30, asm.R2, asm.Word),
		st(34, 3, asm.Byte), st(35, 3, asm.Byte), st(36, 0, asm.Half), st(38, 0, asm.Word), // port unreachable
	)
	in = append(in, csum(rjICMP+14, 20, false)...)
	in = append(in, fold(rjICMP+24)...)
	in = append(in, csum(rjICMP+34, 36, false)...)
	in = append(in, fold(rjICMP+36)...)
	return append(in, bounce(rjICMP, 70)...)
}

// loadBytes copies n bytes of the packet, at base+off (base R0: at off),
// to the stack; a short packet is dropped.
func loadBytes(base asm.Register, off int32, to int16, n int32) asm.Instructions {
	in := asm.Instructions{asm.Mov.Reg(asm.R1, asm.R6), asm.Mov.Imm(asm.R2, off)}
	if base != asm.R0 {
		in[1] = asm.Mov.Reg(asm.R2, base)
		in = append(in, asm.Add.Imm(asm.R2, off))
	}
	return append(in,
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(to)),
		asm.Mov.Imm(asm.R4, n),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "np_drop"),
	)
}

// bounce makes the packet the n bytes built in the stack at from, and
// sends it back out of the device it came in by.
func bounce(from int16, n int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, n),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnSkbChangeTail.Call(),
		asm.JNE.Imm(asm.R0, 0, "np_drop"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(from)),
		asm.Mov.Imm(asm.R4, n),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnSkbStoreBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "np_drop"),
		asm.LoadMem(asm.R1, asm.R6, 40, asm.Word), // skb->ifindex
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	}
}

// csum is bpf_csum_diff over n bytes of the stack at from, seeded with R7
// when seed is set; the unfolded sum is in R0.
func csum(from int16, n int32, seed bool) asm.Instructions {
	c := asm.Instructions{
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(from)),
		asm.Mov.Imm(asm.R4, n),
		asm.Mov.Imm(asm.R5, 0),
	}
	if seed {
		c = append(c, asm.Mov.Reg(asm.R5, asm.R7))
	}
	return append(c, asm.FnCsumDiff.Call())
}

// fold folds the sum in R0 to 16 bits, complements it and stores it as a
// checksum field in the stack.
func fold(slot int16) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R2, asm.R0),
		asm.RSh.Imm(asm.R2, 16),
		asm.And.Imm(asm.R0, 0xffff),
		asm.Add.Reg(asm.R0, asm.R2),
		asm.Mov.Reg(asm.R2, asm.R0),
		asm.RSh.Imm(asm.R2, 16),
		asm.And.Imm(asm.R0, 0xffff),
		asm.Add.Reg(asm.R0, asm.R2),
		asm.Xor.Imm(asm.R0, 0xffff),
		asm.StoreMem(asm.RFP, slot, asm.R0, asm.Half),
	}
}

// NetdevEgress is the program on the external device's egress: a reply of
// a local backend to a client gets the frontend back as its source.
func NetdevEgress() asm.Instructions {
	in := netdevParse()
	in = append(in, natKey(npSaddr, npDaddr, npSport, npDport, LBNATDirRev)...)
	in = append(in, mapLookup(MapLBNAT, npNATKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "np_pass"),
		asm.LoadMem(asm.R2, asm.R0, 20, asm.Byte), // SNAT-ed flows are reversed on ingress
		asm.JNE.Imm(asm.R2, 0, "np_pass"),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Word),
		asm.StoreMem(asm.RFP, npNew, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 10, asm.Half),
		asm.StoreMem(asm.RFP, npNATVal, asm.R2, asm.Half),
	)
	in = append(in, rewrite(ethIPSaddr, 4, npNew, npSaddr, "eg_sa")...)
	in = append(in, rewrite(0, 2, npNATVal, npSport, "eg_sp")...)
	return append(in,
		asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("np_pass"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcActShotLB).WithSymbol("np_drop"),
		asm.Return(),
	)
}
