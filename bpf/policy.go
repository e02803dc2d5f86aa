package bpf

import (
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/emit"
)

// TCX return codes.
const (
	TCXPass = 0
	TCXDrop = 2
)

// Map names the programs reference; the loader binds them.
const (
	MapIPCache = "ipcache"
	// MapIPCacheExact holds the /32 entries of the ipcache in a hash.
	MapIPCacheExact = "ipcache_exact"
	MapClasses      = "classes"
	MapPolicy       = "policy"
	MapEndpoints    = "endpoints"
	// MapEndpointLinks maps a pod's host-side veth (ifindex u32) to the
	// pod's IPv4 address ([4]BE), the endpoints key: an IPv6 frame's
	// addresses say nothing trustworthy about whose it is, the interface
	// it crosses does. Node state, written by the loader before it
	// attaches a pod's programs.
	MapEndpointLinks = "endpoint_links"
	// MapFrags remembers the ports of fragmented IPv4 datagrams (see
	// fragments.go). Node state.
	MapFrags = "ipv4_frags"
)

// Direction of a policy program.
type Direction uint8

const (
	// ToContainer enforces the pod's ingress policy (TCX egress of the
	// host-side veth).
	ToContainer Direction = Direction(emit.DirIngress)
	// FromContainer enforces the pod's egress policy (TCX ingress of the
	// host-side veth).
	FromContainer Direction = Direction(emit.DirEgress)
)

func (d Direction) String() string {
	if d == FromContainer {
		return "from-container"
	}
	return "to-container"
}

// Stack offsets (see the package documentation).
const (
	stIPCacheKey  = -8
	stClassKey    = -16
	stPolicyKey   = -32
	stLocal       = -40
	stPeer        = -44
	stPort        = -46
	stProto       = -47
	stTCPFlags    = -48
	stEnforced    = -52
	stPolicyID    = -56
	stSport       = -58
	stCTDport     = -60
	stShared      = -64
	stCTKey       = -80
	stCTValue     = -96
	stClass       = -100
	stAllowed     = -104
	stDropKey     = -108
	stRelSrc      = -112
	stRelDst      = -116
	stRelSport    = -118
	stRelDport    = -120
	stRelProto    = -121
	stRelated     = -122
	stRuleKey     = -128
	stRuleOne     = -136
	stFragKey     = -148
	stFragValue   = -156
	skbData       = 76
	skbDataEnd    = 80
	skbIfindex    = 40
	ethHdrLen     = 14
	ipv4MinHdrLen = 20
)

// Labels.
const (
	lblPass          = "pass"
	lblDrop          = "drop"
	lblDropMalformed = "drop_malformed"
	lblDropDenied    = "drop_denied"
	lblDropDefault   = "drop_default"
	lblNoPorts       = "no_ports"
	lblLookup        = "lookup"
	lblClass         = "have_class"
	lblDefault       = "default"
	lblCreate        = "ct_create"
	lblL4            = "l4"
	lblNotIPv4       = "not_ipv4"
	lblFragment      = "ip_fragment"
	lblFragRecord    = "frag_record"
)

// Features are choices the compiler makes per artifact.
type Features struct {
	// ExactIPCache looks peers up in the ipcache_exact hash before the
	// LPM trie (emit makes that map when the ipcache is large enough for
	// it to pay).
	ExactIPCache bool
	// Services: the artifact has the service maps (services, backends,
	// services_local), so its generation has socket load balancing and
	// the external device's programs; LB configures the latter.
	Services bool
	LB       LBConfig
}

// PolicyProgram returns a policy program for one direction.
func PolicyProgram(dir Direction, f Features) asm.Instructions {
	var insns asm.Instructions
	insns = append(insns, parseIPv4(dir)...)
	// Conntrack first: the established path then costs one hash lookup.
	insns = append(insns, ctLookup(dir)...)
	insns = append(insns, lookupEndpoint(dir)...)
	insns = append(insns, lookupPolicy(dir, f)...)
	insns = append(insns, verdicts(dir)...)
	insns = append(insns, ctCreate(dir)...)
	insns = append(insns, drops()...)
	return append(insns, offPath()...)
}

// offPath is the code no plain IPv4 packet runs, placed after the rest so
// that the hot path stays straight: IPv6 and the other ethertypes, and
// IPv4 fragments. (A plain packet still pays three instructions in
// ctRelated, which tells a first fragment by its header: cheaper for the
// verifier than a flag on the stack.)
func offPath() asm.Instructions {
	return append(nonIPv4(), fragments()...)
}

// parseIPv4 loads Ethernet, IPv4 and the L4 port (or ICMP type) into the
// stack slots; anything that is not IPv4 goes to nonIPv4, a fragment to
// fragments.
func parseIPv4(dir Direction) asm.Instructions {
	localOff, peerOff := int16(26), int16(30) // saddr, daddr: egress of the pod
	if dir == ToContainer {
		localOff, peerOff = 30, 26
	}
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, skbData, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, skbDataEnd, asm.Word),
		// Ethernet.
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, ethHdrLen),
		asm.JGT.Reg(asm.R2, asm.R8, lblPass),
		asm.LoadMem(asm.R2, asm.R7, 12, asm.Half),
		asm.JNE.Imm(asm.R2, ethPIPLE, lblNotIPv4),
		// IPv4 fixed header.
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, ethHdrLen+ipv4MinHdrLen),
		asm.JGT.Reg(asm.R2, asm.R8, lblDropMalformed),
		asm.LoadMem(asm.R3, asm.R7, ethHdrLen+9, asm.Byte),
		asm.StoreMem(asm.RFP, stProto, asm.R3, asm.Byte),
		asm.LoadMem(asm.R4, asm.R7, localOff, asm.Word),
		asm.StoreMem(asm.RFP, stLocal, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R7, peerOff, asm.Word),
		asm.StoreMem(asm.RFP, stPeer, asm.R4, asm.Word),
		asm.StoreImm(asm.RFP, stPort, 0, asm.Half),
		asm.StoreImm(asm.RFP, stSport, 0, asm.Half),
		asm.StoreImm(asm.RFP, stCTDport, 0, asm.Half),
		asm.StoreImm(asm.RFP, stTCPFlags, 0, asm.Byte),
		asm.StoreImm(asm.RFP, stRelated, 0, asm.Byte),
		// A fragment: more fragments set, or an offset (frag_off &
		// 0x3fff, loaded in network order).
		asm.LoadMem(asm.R4, asm.R7, ethHdrLen+6, asm.Half),
		asm.And.Imm(asm.R4, fragMaskLE),
		asm.JNE.Imm(asm.R4, 0, lblFragment),
		// L4 header at data + 14 + ihl*4.
		asm.LoadMem(asm.R2, asm.R7, ethHdrLen, asm.Byte).WithSymbol(lblL4),
		asm.And.Imm(asm.R2, 0x0f),
		asm.LSh.Imm(asm.R2, 2),
		asm.JLT.Imm(asm.R2, ipv4MinHdrLen, lblDropMalformed),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, ethHdrLen),
		asm.Add.Reg(asm.R4, asm.R2),
		asm.Mov.Reg(asm.R5, asm.R4),
		asm.Add.Imm(asm.R5, 8),
		asm.JGT.Reg(asm.R5, asm.R8, lblNoPorts),
		asm.JEq.Imm(asm.R3, 6, "l4_tcp"),
		asm.JEq.Imm(asm.R3, 17, "l4_ports"),  // UDP
		asm.JEq.Imm(asm.R3, 132, "l4_ports"), // SCTP
		asm.JEq.Imm(asm.R3, 1, "l4_icmp"),
		asm.Ja.Label(lblNoPorts),
		// TCP flags, when the header is all there.
		asm.Mov.Reg(asm.R5, asm.R4).WithSymbol("l4_tcp"),
		asm.Add.Imm(asm.R5, 14),
		asm.JGT.Reg(asm.R5, asm.R8, "l4_ports"),
		asm.LoadMem(asm.R5, asm.R4, 13, asm.Byte),
		asm.StoreMem(asm.RFP, stTCPFlags, asm.R5, asm.Byte),
		asm.LoadMem(asm.R5, asm.R4, 0, asm.Half).WithSymbol("l4_ports"),
		asm.StoreMem(asm.RFP, stSport, asm.R5, asm.Half),
		asm.LoadMem(asm.R5, asm.R4, 2, asm.Half),
		asm.StoreMem(asm.RFP, stPort, asm.R5, asm.Half),
		asm.StoreMem(asm.RFP, stCTDport, asm.R5, asm.Half),
		asm.Ja.Label(lblNoPorts),
		// The ICMP type goes in the high-order byte of the port field.
		asm.LoadMem(asm.R5, asm.R4, 0, asm.Byte).WithSymbol("l4_icmp"),
		asm.Mov.Reg(asm.R2, asm.R5),
		asm.LSh.Imm(asm.R5, 8),
		asm.StoreMem(asm.RFP, stPort, asm.R5, asm.Half),
		// Echo request: (identifier, 0); echo reply: (0, identifier),
		// so that a reply's reversed key is its request's, and a request
		// never passes as a reply to another request.
		asm.LoadMem(asm.R5, asm.R4, 4, asm.Half),
		asm.JEq.Imm(asm.R2, 8, "l4_echo_request"),
		asm.JEq.Imm(asm.R2, 3, "l4_icmp_error"),  // destination unreachable
		asm.JEq.Imm(asm.R2, 11, "l4_icmp_error"), // time exceeded
		asm.JEq.Imm(asm.R2, 12, "l4_icmp_error"), // parameter problem
		asm.JNE.Imm(asm.R2, 0, lblNoPorts),
		asm.StoreMem(asm.RFP, stCTDport, asm.R5, asm.Half),
		asm.Ja.Label(lblNoPorts),
		asm.StoreMem(asm.RFP, stSport, asm.R5, asm.Half).WithSymbol("l4_echo_request"),
		asm.Ja.Label(lblNoPorts),
		// An ICMP error quotes the packet it is about: its IPv4 header
		// (without options) and the first 8 bytes of its L4 header. Keep
		// that tuple; a tracked connection makes the error related.
		asm.Mov.Reg(asm.R5, asm.R4).WithSymbol("l4_icmp_error"),
		asm.Add.Imm(asm.R5, 8+20+4),
		asm.JGT.Reg(asm.R5, asm.R8, lblNoPorts),
		asm.LoadMem(asm.R5, asm.R4, 8, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, lblNoPorts),
		asm.LoadMem(asm.R5, asm.R4, 8+9, asm.Byte),
		asm.StoreMem(asm.RFP, stRelProto, asm.R5, asm.Byte),
		asm.LoadMem(asm.R5, asm.R4, 8+12, asm.Word),
		asm.StoreMem(asm.RFP, stRelSrc, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R4, 8+16, asm.Word),
		asm.StoreMem(asm.RFP, stRelDst, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R4, 8+20, asm.Half),
		asm.StoreMem(asm.RFP, stRelSport, asm.R5, asm.Half),
		asm.LoadMem(asm.R5, asm.R4, 8+22, asm.Half),
		asm.StoreMem(asm.RFP, stRelDport, asm.R5, asm.Half),
		asm.StoreImm(asm.RFP, stRelated, 1, asm.Byte),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(lblNoPorts),
	}
}

// mapLookup calls bpf_map_lookup_elem(map, R10+keyOff).
func mapLookup(name string, keyOff int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(name),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
	}
}

// lookupEndpoint finds the local pod: a packet of an address that is not
// one of this node's endpoints is not this program's business.
func lookupEndpoint(dir Direction) asm.Instructions {
	enforcedBit := int32(emit.EndpointIngressEnforced)
	if dir == FromContainer {
		enforcedBit = int32(emit.EndpointEgressEnforced)
	}
	in := mapLookup(MapEndpoints, stLocal)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, lblPass),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Word),
		asm.StoreMem(asm.RFP, stPolicyID, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 8, asm.Word),
		asm.StoreMem(asm.RFP, stShared, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 12, asm.Word),
		asm.And.Imm(asm.R2, enforcedBit),
		asm.StoreMem(asm.RFP, stEnforced, asm.R2, asm.Word),
	)
}

// lookupPolicy resolves the peer's class and the verdict, as emit.Sim
// does.
func lookupPolicy(dir Direction, f Features) asm.Instructions {
	in := lookupClass(dir, f)
	in = append(in, policyLayer("own", stPolicyID)...)
	in = append(in, policyLayer("shared", stShared)...)
	return append(in,
		asm.LoadMem(asm.R2, asm.RFP, stAllowed, asm.Word),
		asm.JNE.Imm(asm.R2, 0, lblCreate),
	)
}

// lookupClass finds the peer's class (ipcache, then classes) and writes
// the parts of the policy key that do not depend on the layer.
func lookupClass(dir Direction, f Features) asm.Instructions {
	var in asm.Instructions
	// The peer: with ExactIPCache an exact /32 hash lookup first (pods and
	// nodes, most peers), the longest-prefix match only on a miss.
	if f.ExactIPCache {
		in = append(in, mapLookup(MapIPCacheExact, stPeer)...)
		in = append(in, asm.JNE.Imm(asm.R0, 0, "ipcache_hit"))
	}
	in = append(in,
		asm.StoreImm(asm.RFP, stIPCacheKey, 32, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stPeer, asm.Word),
		asm.StoreMem(asm.RFP, stIPCacheKey+4, asm.R2, asm.Word),
	)
	in = append(in, mapLookup(MapIPCache, stIPCacheKey)...)
	in = append(in,
		asm.Mov.Imm(asm.R3, 0).WithSymbol("ipcache_hit"),
		asm.JEq.Imm(asm.R0, 0, lblClass),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, stClassKey, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Half),
		asm.StoreMem(asm.RFP, stClassKey+4, asm.R2, asm.Half),
		asm.Mov.Imm(asm.R2, int32(emit.NodeNone)),
		asm.LoadMem(asm.R3, asm.R0, 12, asm.Byte),
		asm.And.Imm(asm.R3, int32(emit.FlagNode)),
		asm.JEq.Imm(asm.R3, 0, "peer_node_done"),
		asm.LoadMem(asm.R2, asm.R0, 6, asm.Half),
		asm.StoreMem(asm.RFP, stClassKey+6, asm.R2, asm.Half).WithSymbol("peer_node_done"),
	)
	in = append(in, mapLookup(MapClasses, stClassKey)...)
	in = append(in,
		asm.Mov.Imm(asm.R3, 0),
		asm.JEq.Imm(asm.R0, 0, lblClass),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
		// The policy key, but for the policy number and class.
		asm.StoreMem(asm.RFP, stClass, asm.R3, asm.Word).WithSymbol(lblClass),
		asm.StoreImm(asm.RFP, stAllowed, 0, asm.Word),
		asm.StoreImm(asm.RFP, stPolicyKey, 96, asm.Word),
		asm.StoreImm(asm.RFP, stPolicyKey+12, int64(dir), asm.Byte),
		asm.LoadMem(asm.R2, asm.RFP, stProto, asm.Byte),
		asm.StoreMem(asm.RFP, stPolicyKey+13, asm.R2, asm.Byte),
		asm.LoadMem(asm.R2, asm.RFP, stPort, asm.Half),
		asm.StoreMem(asm.RFP, stPolicyKey+14, asm.R2, asm.Half),
	)
	return in
}

// policyLayer looks the packet up in one layer of policy (the endpoint's
// own, or the shared one): a deny drops at once, an allow is remembered,
// no verdict moves on.
func policyLayer(name string, idSlot int16) asm.Instructions {
	done, hit := "layer_done_"+name, "layer_hit_"+name
	in := asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, idSlot, asm.Word),
		asm.JEq.Imm(asm.R2, 0, done),
		asm.StoreMem(asm.RFP, stPolicyKey+4, asm.R2, asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, stClass, asm.Word),
		asm.StoreMem(asm.RFP, stPolicyKey+8, asm.R3, asm.Word),
	}
	in = append(in, mapLookup(MapPolicy, stPolicyKey)...)
	in = append(in,
		asm.JNE.Imm(asm.R0, 0, hit),
		// Missed for the class: the function most classes share.
		asm.StoreImm(asm.RFP, stPolicyKey+8, -1, asm.Word),
	)
	in = append(in, mapLookup(MapPolicy, stPolicyKey)...)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, done),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Byte).WithSymbol(hit),
		asm.JNE.Imm(asm.R2, int32(emit.ActionDeny), "layer_allow_"+name),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Word), // the rule
		asm.StoreMem(asm.RFP, stRuleKey, asm.R2, asm.Word),
		asm.Ja.Label(lblDropDenied),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("layer_allow_"+name),
		asm.JNE.Imm(asm.R2, int32(emit.ActionAllow), done),
		asm.StoreImm(asm.RFP, stAllowed, 1, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(done),
	)
}

func verdicts(dir Direction) asm.Instructions {
	return asm.Instructions{
		// No layer had a verdict: the endpoint's default.
		asm.LoadMem(asm.R2, asm.RFP, stEnforced, asm.Word).WithSymbol(lblDefault),
		asm.JEq.Imm(asm.R2, 0, lblCreate),
		asm.LoadMem(asm.R2, asm.RFP, stPolicyID, asm.Word),
		asm.Or.Imm32(asm.R2, DefaultDenyKey(dir, 0)),
		asm.StoreMem(asm.RFP, stRuleKey, asm.R2, asm.Word),
		asm.Ja.Label(lblDropDefault),
		asm.Mov.Imm(asm.R0, TCXPass).WithSymbol(lblPass),
		asm.Return(),
	}
}

// Drop reasons, the index of the drops map.
const (
	DropMalformed = 0 // an IPv4 header that does not parse
	DropDenied    = 1 // a deny rule matched
	DropDefault   = 2 // isolated, and no rule allowed it
	// DropIPv6: an IPv6 frame of an endpoint that a policy isolates in
	// either direction, or on an interface no endpoint is linked to
	// (IPv6 is not enforced; see nonIPv4).
	DropIPv6 = 3
	// DropFragNotFound: a later IPv4 fragment whose first fragment was
	// not seen, so its ports are unknown (see fragments.go).
	DropFragNotFound = 4
	// DropSpoofed: an IPv4 packet a pod sent from an address not its own
	// (see SourceCheck).
	DropSpoofed = 5
	DropReasons = 6
)

// DropReasonNames names the drop reasons, for metrics and tools.
var DropReasonNames = [DropReasons]string{
	DropMalformed:    "malformed",
	DropDenied:       "denied",
	DropDefault:      "default_deny",
	DropIPv6:         "ipv6_not_enforced",
	DropFragNotFound: "frag_not_found",
	DropSpoofed:      "invalid_source",
}

// MapDrops counts drops by reason: a per-CPU array of u64. Node state,
// like conntrack.
const MapDrops = "drops"

// MapRuleDrops counts the policy drops by what decided them: a per-CPU
// hash of u64 keyed by the number of the deny rule (rules.json), or by
// DefaultDenyKey for a default deny. It belongs to a generation, whose
// rule numbers its keys are.
const MapRuleDrops = "rule_drops"

// RuleDropsEntries bounds the rule_drops map.
const RuleDropsEntries = 16384

// DefaultDenyKey is the rule_drops key of the default denies of the
// endpoints of one own-layer policy number in one direction.
func DefaultDenyKey(dir Direction, policy uint32) int32 {
	return int32(uint32(1)<<31 | uint32(dir)<<30 | policy)
}

// drops counts a drop by reason and returns TCXDrop.
func drops() asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Imm(asm.R2, DropMalformed).WithSymbol(lblDropMalformed),
		asm.Ja.Label(lblDrop),
		asm.Mov.Imm(asm.R2, DropDenied).WithSymbol(lblDropDenied),
		asm.Ja.Label("drop_rule"),
		asm.Mov.Imm(asm.R2, DropDefault).WithSymbol(lblDropDefault),
		// A policy drop: count it by its rule (stRuleKey) too.
		asm.StoreMem(asm.RFP, stDropKey, asm.R2, asm.Word).WithSymbol("drop_rule"),
	}
	in = append(in, mapLookup(MapRuleDrops, stRuleKey)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "drop_rule_new"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R2, 1),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord), // per-CPU: no other writer
		asm.Ja.Label("drop_rule_done"),
		asm.Mov.Imm(asm.R2, 1).WithSymbol("drop_rule_new"),
		asm.StoreMem(asm.RFP, stRuleOne, asm.R2, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(MapRuleDrops),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stRuleKey),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stRuleOne),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.LoadMem(asm.R2, asm.RFP, stDropKey, asm.Word).WithSymbol("drop_rule_done"),
		asm.StoreMem(asm.RFP, stDropKey, asm.R2, asm.Word).WithSymbol(lblDrop),
	)
	return append(in, countDrop(stDropKey)...)
}

// countDrop adds one to the drops counter whose reason is the stack word
// at keyOff, and returns TCXDrop.
func countDrop(keyOff int32) asm.Instructions {
	return append(mapLookup(MapDrops, keyOff),
		asm.JEq.Imm(asm.R0, 0, "drop_out"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R2, 1),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord), // per-CPU: no other writer
		asm.Mov.Imm(asm.R0, TCXDrop).WithSymbol("drop_out"),
		asm.Return(),
	)
}
