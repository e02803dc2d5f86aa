package bpf

import (
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/emit"
)

// EndpointLinksEntries bounds the endpoint_links map: one entry per
// attached pod.
const EndpointLinksEntries = 4096

// The ethertypes as a half-word load of the packet reads them.
const (
	ethPIPLE   = 0x0008 // ETH_P_IP (0x0800)
	ethPIPv6LE = 0xdd86 // ETH_P_IPV6 (0x86dd)
)

// nonIPv4 handles every frame that is not IPv4. ARP and the other
// ethertypes pass. IPv6 is not enforced — without IPv6 conntrack a reply
// cannot be told from a new connection, and rules cannot be matched
// against IPv6 peers — so it is dropped (DropIPv6) wherever a policy
// isolates the pod in either direction or a deny rule applies to it
// (emit.EndpointIPv6Dropped), the same on both of its programs, and
// passes where neither holds.
//
// Whose frame it is comes from the interface, not the addresses (a pod
// can send from any IPv6 source): endpoint_links[skb->ifindex] names the
// pod's IPv4 address, then its endpoints entry its flags. An interface
// with no link entry is dropped: the loader links every pod before it
// attaches its programs, so a miss means a pod it could not link (one
// without an IPv4 address) and nothing says it is not isolated. A link
// to an address the generation does not list passes, as IPv4 traffic of
// such a pod does (see lookupEndpoint): nothing enforces it yet.
func nonIPv4() asm.Instructions {
	in := asm.Instructions{
		asm.JNE.Imm(asm.R2, ethPIPv6LE, lblPass).WithSymbol(lblNotIPv4),
		asm.LoadMem(asm.R2, asm.R6, skbIfindex, asm.Word),
		asm.StoreMem(asm.RFP, stLocal, asm.R2, asm.Word),
	}
	in = append(in, mapLookup(MapEndpointLinks, stLocal)...)
	in = append(in,
		asm.JEq.Imm(asm.R0, 0, "drop_ipv6"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, stLocal, asm.R2, asm.Word),
	)
	in = append(in, mapLookup(MapEndpoints, stLocal)...)
	return append(in,
		asm.JEq.Imm(asm.R0, 0, lblPass),
		asm.LoadMem(asm.R2, asm.R0, 12, asm.Word),
		asm.And.Imm(asm.R2, int32(emit.EndpointIPv6Dropped)),
		asm.JEq.Imm(asm.R2, 0, lblPass),
		asm.Mov.Imm(asm.R2, DropIPv6).WithSymbol("drop_ipv6"),
		asm.Ja.Label(lblDrop),
	)
}
