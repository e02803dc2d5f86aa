package bpf

import "github.com/cilium/ebpf/asm"

// IPv4 fragments, as Cilium tracks them (bpf/lib/ipv4.h): only the first
// fragment of a datagram (offset 0, more fragments set) carries the L4
// header. Its ports are recorded in MapFrags under the datagram's
// (source, destination, IP id, protocol); a later fragment (offset != 0)
// takes them from there and then follows the path every packet does —
// conntrack, policy — so the rest of an allowed datagram passes and the
// rest of a denied one is dropped. A later fragment whose first fragment
// was not seen (lost, reordered, or none ever sent) is dropped as
// DropFragNotFound: its ports are unknown, and port 0 would be a guess.
// The entry is written when the first fragment is parsed, before policy,
// so both a pod's egress and its peer's ingress program on the node find
// it, and a denied first fragment's later ones meet the same denial. The
// map is an LRU hash: old datagrams age out as new ones come.
//
// Layout:
//
//	key   (12): saddr [4]BE | daddr [4]BE | id [2]BE | proto u8 | pad u8
//	value (8):  sport [2]BE | conntrack dport [2]BE | policy port [2] | pad [2]
//
// The value holds the stack slots the parse fills (stSport, stCTDport,
// stPort), so ICMP (type and echo identifier) is recovered as exactly as
// TCP, UDP and SCTP ports are. An ICMP error's first fragment records
// nothing (ctRelated takes the ICMP error path for it; errors are never
// larger than 576 bytes, so never fragmented on a pod network).
const (
	FragKeySize    = 12
	FragValueSize  = 8
	FragDefaultMax = 8192 // Cilium's CILIUM_IPV4_FRAG_MAP_MAX_ENTRIES
)

const (
	// fragMaskLE is frag_off's MF bit and offset (0x3fff) as a half-word
	// load of the packet reads it; fragOffsetLE the offset alone (0x1fff).
	fragMaskLE   = 0xff3f
	fragOffsetLE = 0xff1f
)

// fragKey writes the datagram's MapFrags key from the packet (R7, whose
// IPv4 header is bounds-checked).
func fragKey() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen+12, asm.Word),
		asm.StoreMem(asm.RFP, stFragKey, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen+16, asm.Word),
		asm.StoreMem(asm.RFP, stFragKey+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen+4, asm.Half),
		asm.StoreMem(asm.RFP, stFragKey+8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen+9, asm.Byte),
		asm.StoreMem(asm.RFP, stFragKey+10, asm.R2, asm.Byte),
		asm.StoreImm(asm.RFP, stFragKey+11, 0, asm.Byte),
	}
}

// fragments is where parseIPv4 sends a fragment (R4: frag_off masked with
// fragMaskLE). A first fragment is parsed as any packet (ctRelated tells
// it by its header and records it); a later one gets its first
// fragment's ports.
func fragments() asm.Instructions {
	in := asm.Instructions{
		asm.And.Imm(asm.R4, fragOffsetLE).WithSymbol(lblFragment),
		asm.JNE.Imm(asm.R4, 0, "frag_later"),
		// A first fragment: parsed as any packet; ctRelated tells it by
		// its header again rather than by a flag on the stack, whose
		// distinct constant would make the verifier walk the whole parse
		// a second time (it doubled the verified instructions).
		asm.Ja.Label(lblL4),
	}
	later := fragKey()
	later[0] = later[0].WithSymbol("frag_later")
	in = append(in, later...)
	in = append(in, mapLookup(MapFrags, stFragKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "drop_frag"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Half),
		asm.StoreMem(asm.RFP, stSport, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R0, 2, asm.Half),
		asm.StoreMem(asm.RFP, stCTDport, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Half),
		asm.StoreMem(asm.RFP, stPort, asm.R2, asm.Half),
		asm.Ja.Label(lblNoPorts),
		asm.Mov.Imm(asm.R2, DropFragNotFound).WithSymbol("drop_frag"),
		asm.Ja.Label(lblDrop),
	)
	// The first fragment's record (from ctRelated), then back to it.
	rec := fragKey()
	rec[0] = rec[0].WithSymbol(lblFragRecord)
	in = append(in, rec...)
	in = append(in,
		asm.LoadMem(asm.R2, asm.RFP, stSport, asm.Half),
		asm.StoreMem(asm.RFP, stFragValue, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, stCTDport, asm.Half),
		asm.StoreMem(asm.RFP, stFragValue+2, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, stPort, asm.Half),
		asm.StoreMem(asm.RFP, stFragValue+4, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, stFragValue+6, 0, asm.Half),
	)
	// A full map evicts (LRU); a failed update only costs the later
	// fragments, which are then dropped.
	in = append(in, mapUpdate(MapFrags, stFragKey, stFragValue)...)
	return append(in, asm.Ja.Label("ct_related_done"))
}
