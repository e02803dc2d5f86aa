package bpf

import (
	"time"

	"github.com/cilium/ebpf/asm"
)

// MapConntrack is the connection-tracking map. It is node state, not part
// of an artifact: it outlives program swaps.
const MapConntrack = "conntrack"

// Conntrack layout (LRU hash):
//
//	key   (16): saddr [4]BE | daddr [4]BE | sport [2]BE | dport [2]BE | proto u8 | dir u8 | pad [2]
//	value (16): expires u64 (bpf_ktime_get_coarse_ns) | flags u32 | pad u32
//
// An entry is created by the program that allowed a connection's first
// packet, keyed in that packet's direction with dir = the program's
// direction (0 ingress of the pod, 1 egress), so that a pod's egress and
// another local pod's ingress never answer for each other. A packet
// passes without a policy lookup when its own key is found (the rest of
// an allowed connection) or its reversed key in the other direction is
// (a reply). An ICMP error (unreachable, time exceeded, parameter problem)
// passes when the tuple it quotes is tracked in the other direction
// (related). An ICMP echo request is keyed (identifier, 0) and a reply
// (0, identifier), so a reply finds its request and a request never
// passes as a reply.
const (
	CTKeySize   = 16
	CTValueSize = 16

	// CTFlagClosing marks a TCP connection that saw FIN or RST: its entry
	// is not extended again.
	CTFlagClosing = 1
)

// Timeouts, as Cilium's defaults.
var (
	CTTimeoutTCP     = 6 * time.Hour
	CTTimeoutTCPSyn  = 60 * time.Second
	CTTimeoutClose   = 10 * time.Second
	CTTimeoutNonTCP  = 60 * time.Second
	CTDefaultEntries = 262144
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// ctKey writes the conntrack key for the packet at stCTKey: forward (the
// packet's own direction, this program's dir) or reversed (the other
// direction's entry that this packet would be a reply to).
func ctKey(dir Direction, reverse bool) asm.Instructions {
	src, dst := int16(stPeer), int16(stLocal) // to-container: peer -> pod
	if dir == FromContainer {
		src, dst = stLocal, stPeer
	}
	sport, dport := int16(stSport), int16(stCTDport)
	d := int64(dir)
	if reverse {
		src, dst, sport, dport, d = dst, src, dport, sport, 1-d
	}
	return ctKeyFrom(src, dst, sport, dport, stProto, d)
}

// ctKeyFrom writes a conntrack key at stCTKey from stack slots.
func ctKeyFrom(src, dst, sport, dport, proto int16, dir int64) asm.Instructions {
	return tupleKey(stCTKey, src, dst, sport, dport, proto, dir)
}

// tupleKey writes, at stack offset at, a 16-byte flow key from stack
// slots: saddr, daddr, sport, dport, proto (the slot's first byte), dir,
// pad. It is conntrack's layout and the load balancer's NAT table's.
func tupleKey(at, src, dst, sport, dport, proto int16, dir int64) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, src, asm.Word),
		asm.StoreMem(asm.RFP, at, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, dst, asm.Word),
		asm.StoreMem(asm.RFP, at+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, sport, asm.Half),
		asm.StoreMem(asm.RFP, at+8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, dport, asm.Half),
		asm.StoreMem(asm.RFP, at+10, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, proto, asm.Byte),
		asm.StoreMem(asm.RFP, at+12, asm.R2, asm.Byte),
		asm.StoreImm(asm.RFP, at+13, dir, asm.Byte),
		asm.StoreImm(asm.RFP, at+14, 0, asm.Half),
	}
}

// ctRelated passes an ICMP error about a tracked connection: the packet
// it quotes went the other way, so its entry is the quoted tuple in the
// other direction. Any other first packet that is a first fragment (more
// fragments set, offset 0; R7 still holds the bounds-checked packet) has
// its ports recorded (fragments.go).
func ctRelated(dir Direction) asm.Instructions {
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, stRelated, asm.Byte),
		asm.JNE.Imm(asm.R2, 0, "ct_related_icmp"),
		asm.LoadMem(asm.R4, asm.R7, ethHdrLen+6, asm.Half),
		asm.And.Imm(asm.R4, fragMaskLE),
		asm.JEq.Imm(asm.R4, 0, "ct_related_done"),
		asm.And.Imm(asm.R4, fragOffsetLE),
		asm.JEq.Imm(asm.R4, 0, lblFragRecord),
		asm.Ja.Label("ct_related_done"),
	}
	key := ctKeyFrom(stRelSrc, stRelDst, stRelSport, stRelDport, stRelProto, int64(1-dir))
	key[0] = key[0].WithSymbol("ct_related_icmp")
	in = append(in, key...)
	in = append(in, mapLookup(MapConntrack, stCTKey)...)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, "ct_related_done"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.FnKtimeGetCoarseNs.Call(),
		asm.LoadMem(asm.R2, asm.R7, 0, asm.DWord),
		asm.JGT.Reg(asm.R0, asm.R2, "ct_related_done"), // expired
		asm.Ja.Label(lblPass),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("ct_related_done"),
	)
}

// ctLookup jumps to lblPass when the packet belongs to a tracked
// connection, refreshing its entry; otherwise it falls through.
func ctLookup(dir Direction) asm.Instructions {
	in := ctRelated(dir)
	for i, reverse := range []bool{false, true} {
		next := "ct_miss_fwd"
		if i == 1 {
			next = "ct_miss_done"
		}
		in = append(in, ctKey(dir, reverse)...)
		in = append(in, mapLookup(MapConntrack, stCTKey)...)
		in = append(in,
			asm.JEq.Imm(asm.R0, 0, next),
			asm.Mov.Reg(asm.R7, asm.R0), // the packet is parsed: R7 is free
			asm.FnKtimeGetCoarseNs.Call(),
			asm.LoadMem(asm.R2, asm.R7, 0, asm.DWord),
			asm.JGT.Reg(asm.R0, asm.R2, next), // expired
			asm.Ja.Label("ct_refresh"),
		)
		if i == 0 {
			in = append(in, asm.Mov.Imm(asm.R0, 0).WithSymbol(next))
		}
	}
	// Refresh: R7 = value, R0 = now.
	in = append(in,
		asm.LoadMem(asm.R3, asm.R7, 8, asm.Word).WithSymbol("ct_refresh"),
		asm.JSet.Imm(asm.R3, CTFlagClosing, lblPass), // closing: let it run out
		asm.LoadMem(asm.R2, asm.RFP, stProto, asm.Byte),
		asm.JNE.Imm(asm.R2, 6, "ct_refresh_other"),
		asm.LoadMem(asm.R2, asm.RFP, stTCPFlags, asm.Byte),
		asm.JSet.Imm(asm.R2, tcpFIN|tcpRST, "ct_refresh_close"),
		asm.LoadImm(asm.R1, int64(CTTimeoutTCP), asm.DWord),
		asm.Ja.Label("ct_refresh_store"),
		asm.StoreImm(asm.R7, 8, CTFlagClosing, asm.Word).WithSymbol("ct_refresh_close"),
		asm.LoadImm(asm.R1, int64(CTTimeoutClose), asm.DWord),
		asm.Ja.Label("ct_refresh_store"),
		asm.LoadImm(asm.R1, int64(CTTimeoutNonTCP), asm.DWord).WithSymbol("ct_refresh_other"),
		asm.Add.Reg(asm.R1, asm.R0).WithSymbol("ct_refresh_store"),
		asm.StoreMem(asm.R7, 0, asm.R1, asm.DWord),
		asm.Ja.Label(lblPass),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("ct_miss_done"),
	)
	return in
}

// ctCreate records an allowed new connection, then passes it.
func ctCreate(dir Direction) asm.Instructions {
	in := asm.Instructions{
		asm.FnKtimeGetCoarseNs.Call().WithSymbol(lblCreate),
		asm.LoadImm(asm.R1, int64(CTTimeoutNonTCP), asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, stProto, asm.Byte),
		asm.JNE.Imm(asm.R2, 6, "ct_create_store"),
		asm.LoadImm(asm.R1, int64(CTTimeoutTCP), asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, stTCPFlags, asm.Byte),
		asm.And.Imm(asm.R2, tcpSYN|tcpACK),
		asm.JNE.Imm(asm.R2, tcpSYN, "ct_create_store"),
		asm.LoadImm(asm.R1, int64(CTTimeoutTCPSyn), asm.DWord),
		asm.Add.Reg(asm.R1, asm.R0).WithSymbol("ct_create_store"),
		asm.StoreMem(asm.RFP, stCTValue, asm.R1, asm.DWord),
		asm.StoreImm(asm.RFP, stCTValue+8, 0, asm.Word),
		asm.StoreImm(asm.RFP, stCTValue+12, 0, asm.Word),
	}
	in = append(in, ctKey(dir, false)...)
	in = append(in,
		asm.LoadMapPtr(asm.R1, 0).WithReference(MapConntrack),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stCTKey),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stCTValue),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY: an expired entry is replaced
		asm.FnMapUpdateElem.Call(),
		asm.Ja.Label(lblPass),
	)
	return in
}
