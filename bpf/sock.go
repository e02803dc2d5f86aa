package bpf

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/emit"
)

// Socket-level load balancing: cgroup sock_addr programs translate a
// service frontend to a backend once, when a socket connects (TCP, and UDP
// connect) or sends (unconnected UDP), so that no packet of the
// connection needs NAT. The reverse translation, for getpeername and for
// the source of received UDP datagrams, comes from MapSockRevNat, keyed by
// the socket's cookie and the backend.

// Map names of the socket load balancer. Services, backends and
// services_local belong to the generation; sock_revnat and sock_affinity
// are node state, like conntrack.
const (
	MapServices      = "services"
	MapBackends      = "backends"
	MapServicesLocal = "services_local"
	MapSockRevNat    = "sock_revnat"
	MapSockAffinity  = "sock_affinity"
)

// Layouts of the node-state maps of the socket load balancer.
const (
	// SockRevNatKeySize: cookie u64 | backend addr [4]BE | backend port
	// [2]BE | pad [2].
	SockRevNatKeySize = 16
	// SockRevNatValueSize: frontend addr [4]BE | frontend port [2]BE |
	// revnat u16.
	SockRevNatValueSize = 8
	// SockAffinityKeySize: client netns cookie u64 | revnat u16 | pad [6].
	SockAffinityKeySize = 16
	// SockAffinityValueSize: backend id u32 | backend addr [4]BE | backend
	// port [2]BE | pad [2] | last use (ns) u64.
	SockAffinityValueSize = 24
	SockDefaultEntries    = 65536
)

// SockHook is one of the cgroup sock_addr hooks the load balancer uses.
type SockHook uint8

const (
	SockConnect4 SockHook = iota
	SockSendmsg4
	SockRecvmsg4
	SockGetpeername4
	SockHooks
)

// AttachType is the hook's cgroup attach type.
func (h SockHook) AttachType() ebpf.AttachType {
	return [...]ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupUDP4Sendmsg,
		ebpf.AttachCGroupUDP4Recvmsg, ebpf.AttachCgroupInet4GetPeername}[h]
}

func (h SockHook) String() string {
	return [...]string{"connect4", "sendmsg4", "recvmsg4", "getpeername4"}[h]
}

// struct bpf_sock_addr offsets.
const (
	saUserIP4  = 4
	saUserPort = 24
	saProtocol = 36
)

// Stack of the socket programs.
const (
	skSvcKey     = -16 // services key: addr, port, slot, proto, scope, pad
	skRevNat     = -20 // the frontend's revnat index (u16)
	skBackendID  = -24
	skRevKey     = -40 // sock_revnat key: cookie, backend addr, port, pad
	skRevVal     = -48 // sock_revnat value: frontend addr, port, revnat
	skAffKey     = -64 // sock_affinity key: netns cookie, revnat, pad
	skAffVal     = -88 // sock_affinity value
	skFlags      = -92 // the master's flags (u8) and flags2 (u8)
	skTimeout    = -96 // the affinity timeout in seconds
	skNoBackends = "no_backends"
)

// errConnRefused is -ECONNREFUSED, what a connect to a service without
// backends fails with (as kube-proxy's REJECT makes it).
const errConnRefused = -111

// SockProgram returns the program of one hook.
func SockProgram(h SockHook) asm.Instructions {
	switch h {
	case SockConnect4, SockSendmsg4:
		return sockTranslate()
	default:
		return sockReverse()
	}
}

// sockTranslate picks a backend for a frontend and rewrites the socket's
// destination to it.
func sockTranslate() asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		// Only TCP and UDP have frontends.
		asm.LoadMem(asm.R2, asm.R6, saProtocol, asm.Word),
		asm.JEq.Imm(asm.R2, 6, "proto_ok"),
		asm.JNE.Imm(asm.R2, 17, "done"),
		asm.StoreMem(asm.RFP, skSvcKey+8, asm.R2, asm.Byte).WithSymbol("proto_ok"),
		asm.LoadMem(asm.R2, asm.R6, saUserIP4, asm.Word),
		asm.StoreMem(asm.RFP, skSvcKey, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R6, saUserPort, asm.Half),
		asm.StoreMem(asm.RFP, skSvcKey+4, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, skSvcKey+6, 0, asm.Half), // slot 0: the master
		asm.StoreImm(asm.RFP, skSvcKey+9, int64(emit.ScopeAll), asm.Byte),
		asm.StoreImm(asm.RFP, skSvcKey+10, 0, asm.Half),
		asm.StoreImm(asm.RFP, skSvcKey+12, 0, asm.Word),
	}
	in = append(in, mapLookup(MapServices, skSvcKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "done"), // not a frontend
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R2, asm.R7, 8, asm.Half), // flags, flags2
		asm.StoreMem(asm.RFP, skFlags, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R7, 0, asm.Word), // the affinity timeout, when set
		asm.StoreMem(asm.RFP, skTimeout, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R7, 6, asm.Half),
		asm.StoreMem(asm.RFP, skRevNat, asm.R2, asm.Half),
		// internalTrafficPolicy: Local balances over this node's backends.
		asm.LoadMem(asm.R2, asm.RFP, skFlags, asm.Byte),
		asm.And.Imm(asm.R2, int32(emit.SvcFlagLocalInternal)),
		asm.JEq.Imm(asm.R2, 0, "have_master"),
		asm.StoreImm(asm.RFP, skSvcKey+9, int64(emit.ScopeLocal), asm.Byte),
	)
	in = append(in, mapLookup(MapServicesLocal, skSvcKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, skNoBackends),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R8, asm.R7, 4, asm.Half).WithSymbol("have_master"), // count
		asm.JEq.Imm(asm.R8, 0, skNoBackends),
	)
	in = append(in, sockAffinityLookup()...)
	in = append(in,
		// A random slot in 1..count.
		asm.FnGetPrandomU32.Call().WithSymbol("pick"),
	)
	in = append(in, slotBackend("", skSvcKey, skBackendID, "done")...)
	in = append(in, mapLookup(MapBackends, skBackendID)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "done"),
		asm.Mov.Reg(asm.R8, asm.R0).WithSymbol("have_backend"),
	)
	in = append(in, sockAffinityStore()...)
	in = append(in, sockRevNatStore()...)
	in = append(in,
		// Connect to the backend instead.
		asm.LoadMem(asm.R2, asm.R8, 0, asm.Word),
		asm.StoreMem(asm.R6, saUserIP4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R8, 4, asm.Half),
		asm.StoreMem(asm.R6, saUserPort, asm.R2, asm.Word),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("done"),
		asm.Return(),
		// No backend: refuse at once (reject), or let the socket go to
		// the frontend address untranslated, where nothing answers (drop).
		asm.LoadMem(asm.R2, asm.RFP, skFlags+1, asm.Byte).WithSymbol(skNoBackends),
		asm.And.Imm(asm.R2, int32(emit.SvcFlag2Reject)),
		asm.JEq.Imm(asm.R2, 0, "done"),
		asm.Mov.Imm(asm.R1, errConnRefused),
		asm.FnSetRetval.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	return in
}

// sockAffinityLookup reuses the backend a client (a network namespace:
// a pod, or the host) was given for this frontend within the affinity
// timeout, when that backend id still names the same address. It jumps to
// have_backend with R8 the backend, or falls through to pick one.
func sockAffinityLookup() asm.Instructions {
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, skFlags, asm.Byte),
		asm.And.Imm(asm.R2, int32(emit.SvcFlagAffinity)),
		asm.JEq.Imm(asm.R2, 0, "pick"),
	}
	in = append(in, affinityKey()...)
	in = append(in, mapLookup(MapSockAffinity, skAffKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "pick"),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.FnKtimeGetNs.Call(),
		asm.LoadMem(asm.R2, asm.R9, 16, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, skTimeout, asm.Word),
		asm.Mul.Imm(asm.R2, 1000000000),
		asm.JGE.Reg(asm.R0, asm.R2, "pick"), // expired
		asm.LoadMem(asm.R2, asm.R9, 0, asm.Word),
		asm.StoreMem(asm.RFP, skBackendID, asm.R2, asm.Word),
	)
	in = append(in, mapLookup(MapBackends, skBackendID)...)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, "pick"),
		// The id may name another backend after a compile renumbered them.
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R9, 4, asm.Word),
		asm.JNE.Reg(asm.R2, asm.R3, "pick"),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Half),
		asm.LoadMem(asm.R3, asm.R9, 8, asm.Half),
		asm.JNE.Reg(asm.R2, asm.R3, "pick"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.Ja.Label("have_backend"),
	)
}

// sockAffinityStore records (or refreshes) the client's backend, when the
// frontend has affinity. R8 is the backend.
func sockAffinityStore() asm.Instructions {
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, skFlags, asm.Byte),
		asm.And.Imm(asm.R2, int32(emit.SvcFlagAffinity)),
		asm.JEq.Imm(asm.R2, 0, "affinity_done"),
		asm.LoadMem(asm.R2, asm.RFP, skBackendID, asm.Word),
		asm.StoreMem(asm.RFP, skAffVal, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R8, 0, asm.Word),
		asm.StoreMem(asm.RFP, skAffVal+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R8, 4, asm.Half),
		asm.StoreMem(asm.RFP, skAffVal+8, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, skAffVal+10, 0, asm.Half),
		asm.StoreImm(asm.RFP, skAffVal+12, 0, asm.Word),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, skAffVal+16, asm.R0, asm.DWord),
	}
	// The key: the lookup path may not have written it.
	in = append(in, affinityKey()...)
	in = append(in, mapUpdate(MapSockAffinity, skAffKey, skAffVal)...)
	return append(in, asm.Mov.Imm(asm.R0, 0).WithSymbol("affinity_done"))
}

// slotBackend picks slot R0 % R8 + 1 of the frontend whose master key is
// at svcKey (scope all: services; local: services_local) and writes its
// backend id at backendSlot; a missing slot goes to miss.
func slotBackend(prefix string, svcKey, backendSlot int16, miss string) asm.Instructions {
	in := asm.Instructions{
		asm.Mod.Reg32(asm.R0, asm.R8),
		asm.Add.Imm(asm.R0, 1),
		asm.StoreMem(asm.RFP, svcKey+6, asm.R0, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, svcKey+9, asm.Byte),
		asm.JNE.Imm(asm.R2, int32(emit.ScopeAll), prefix+"slot_local"),
	}
	in = append(in, mapLookup(MapServices, int32(svcKey))...)
	in = append(in, asm.Ja.Label(prefix+"have_slot"))
	local := mapLookup(MapServicesLocal, int32(svcKey))
	local[0] = local[0].WithSymbol(prefix + "slot_local")
	in = append(in, local...)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, miss).WithSymbol(prefix+"have_slot"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, backendSlot, asm.R2, asm.Word),
	)
}

// affinityKey writes the sock_affinity key: the client's network
// namespace and the frontend.
func affinityKey() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetNetnsCookie.Call(),
		asm.StoreMem(asm.RFP, skAffKey, asm.R0, asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, skRevNat, asm.Half),
		asm.StoreMem(asm.RFP, skAffKey+8, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, skAffKey+10, 0, asm.Half),
		asm.StoreImm(asm.RFP, skAffKey+12, 0, asm.Word),
	}
}

// sockRevNatStore records, for this socket and backend, the frontend that
// getpeername and received datagrams should show. R8 is the backend.
func sockRevNatStore() asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, skRevKey, asm.R0, asm.DWord),
		asm.LoadMem(asm.R2, asm.R8, 0, asm.Word),
		asm.StoreMem(asm.RFP, skRevKey+8, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R8, 4, asm.Half),
		asm.StoreMem(asm.RFP, skRevKey+12, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, skRevKey+14, 0, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, skSvcKey, asm.Word),
		asm.StoreMem(asm.RFP, skRevVal, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, skSvcKey+4, asm.Half),
		asm.StoreMem(asm.RFP, skRevVal+4, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, skRevNat, asm.Half),
		asm.StoreMem(asm.RFP, skRevVal+6, asm.R2, asm.Half),
	}
	return append(in, mapUpdate(MapSockRevNat, skRevKey, skRevVal)...)
}

// sockReverse shows the frontend in place of the backend a socket was
// translated to: the peer of getpeername, the source of a datagram.
func sockReverse() asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, skRevKey, asm.R0, asm.DWord),
		asm.LoadMem(asm.R2, asm.R6, saUserIP4, asm.Word),
		asm.StoreMem(asm.RFP, skRevKey+8, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R6, saUserPort, asm.Half),
		asm.StoreMem(asm.RFP, skRevKey+12, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, skRevKey+14, 0, asm.Half),
	}
	in = append(in, mapLookup(MapSockRevNat, skRevKey)...)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, "done"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.R6, saUserIP4, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Half),
		asm.StoreMem(asm.R6, saUserPort, asm.R2, asm.Word),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("done"),
		asm.Return(),
	)
}

// mapUpdate calls bpf_map_update_elem(map, R10+keyOff, R10+valOff, BPF_ANY).
func mapUpdate(name string, keyOff, valOff int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(name),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, valOff),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
	}
}
