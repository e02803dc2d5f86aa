// Package bpf is Sluice's datapath, written as Go functions that return
// cilium/ebpf asm.Instructions with symbolic jump labels and map
// references (no C, no clang): the compiler generates every program.
//
// # Programs
//
// Policy programs run on each pod's host-side veth, attached with TCX:
// from-container (the pod's egress policy: local address = source) and
// to-container (its ingress policy: local address = destination). A
// packet of a tracked connection — the rest of an allowed one, or a
// reply — passes on a conntrack hit (see conntrack.go).
// Otherwise the program makes the lookups that emit.Sim specifies, in the
// same order, against the maps of an artifact (layouts in package emit):
// endpoints, ipcache, classes, then policy in two layers (the endpoint's
// own, and the shared layer of policies that select most of the node's
// pods): a deny in either drops, an allow in either passes, otherwise the
// endpoint's default applies. An allowed first packet creates the
// conntrack entry. A policy drop is counted by reason (drops, node state)
// and by the rule or default deny behind it (rule_drops, the
// generation's).
//
// The programs know the local pod by the packet's address (its source on
// from-container) and a connection by its 5-tuple, so a pod sending from
// an address not its own would get another pod's egress policy, ride
// another pod's connections, or, from an address that is no endpoint, go
// unenforced. Every IPv4 packet a pod sends is therefore verified before
// the program runs (source.go, SourceCheck, as Cilium's from-container
// program does): the pod's from-container dispatcher, which the loader
// builds per endpoint, compares the source with the pod's address, an
// immediate, and drops any other (DropSpoofed, "invalid_source"), 0.0.0.0
// included (pods get their addresses from IPAM, never DHCP). That costs a
// bounds check, four loads and three compares (about 2 ns, within the noise
// of the established path, against about 35 ns for a lookup of
// endpoint_links by ifindex in the program). The programs themselves do
// not check: run directly (BPF_PROG_TEST_RUN, the tracer), they answer for
// a genuine source. Traffic to a pod, and the external device's programs,
// are not checked.
//
// What is not plain IPv4 leaves the hot path at the ethertype test and
// is handled after the rest of the program (ipv6.go, fragments.go):
//   - IPv6 is not enforced: without IPv6 conntrack a reply cannot be told
//     from a new connection, and rules are not matched against IPv6 peers.
//     So a pod that a policy isolates in either direction, or applies a
//     deny rule to, gets every IPv6 frame dropped, on both of its programs
//     (drop reason DropIPv6), and any other pod passes IPv6, as
//     ir.DropsIPv6 says. The pod is known by the veth the frame crosses,
//     never by its addresses: endpoint_links (node state, written by the
//     loader before it attaches a pod) maps skb->ifindex to the pod's
//     IPv4 address, the endpoints key. A veth with no link is dropped; a
//     link to an address the generation does not list passes, as that
//     pod's IPv4 does.
//   - ARP and every other ethertype pass.
//   - IPv4 fragments are tracked as Cilium tracks them: the first
//     fragment's ports go into ipv4_frags (node state) under (source,
//     destination, IP id, protocol); later fragments take them from
//     there and follow the path of any packet (conntrack, policy); one
//     whose first fragment was not seen is dropped (DropFragNotFound).
//
// The generic programs and the inline ones (inline.go) share all of this
// code, so they agree on it.
//
// Service load balancing (sock.go, nodeport.go): cgroup sock_addr
// programs translate a service frontend to a backend once per socket
// (connect4, sendmsg4) and back (recvmsg4, getpeername4), with per-socket
// reverse entries and affinities as node state (sock_revnat,
// sock_affinity); on the node's external device, TC programs DNAT (and,
// for backends on other nodes, SNAT) packets of external frontends, with a
// Maglev pick and a NAT table as node state (lb_nat), and answer frontends
// without backends with a reset or an ICMP port unreachable. They pass
// IPv6 and IPv4 fragments untranslated: no endpoint's policy is theirs
// to enforce, and the pods' own programs see those packets next. Their
// stack layouts are listed where they are built.
//
// # Register conventions
//
//	R1-R5  arguments and scratch; clobbered by every helper call
//	R6     the __sk_buff context for the whole program
//	R7     packet data (skb->data) while parsing; then a conntrack value
//	R8     packet end (skb->data_end) while parsing
//	R0     helper results; the program's verdict at exit
//
// # Stack layout (offsets from R10, the frame pointer)
//
//	-8  .. -1    ipcache key: prefixlen u32, address [4]
//	-16 .. -9    classes key: identity u32, region u16, peer node u16
//	-32 .. -17   policy key: prefixlen u32, policy u32, class u32, dir u8, proto u8, port [2]BE
//	-40 .. -37   the local (pod) address, endpoints key; for IPv6 first
//	             the endpoint_links key (skb->ifindex)
//	-44 .. -41   the peer address
//	-46 .. -45   destination port (network order) or ICMP type in the high byte
//	-47          IP protocol
//	-48          TCP flags
//	-52 .. -49   the endpoint's enforcement flag for this direction
//	-56 .. -53   the endpoint's policy number
//	-58 .. -57   source port (network order), or the ICMP echo identifier
//	-60 .. -59   destination port for conntrack, or the ICMP echo identifier
//	-64 .. -61   the endpoint's shared-layer policy number (0: none)
//	-80 .. -65   conntrack key
//	-96 .. -81   conntrack value being created
//	-100 .. -97  the peer's class
//	-104 .. -101 set when a policy layer allowed the packet
//	-108 .. -105 drops map key (the drop reason)
//	-122 .. -109 the tuple an ICMP error quotes: source, destination,
//	             ports, protocol, and at -122 whether there is one (1)
//	-128 .. -125 rule_drops key: the deny rule, or DefaultDenyKey
//	-136 .. -129 rule_drops value for a first drop (1)
//	-148 .. -137 ipv4_frags key: saddr, daddr, IP id, proto, pad
//	-156 .. -149 ipv4_frags value: sport, conntrack dport, policy port, pad
//
// Every map key is written in full before a lookup, as the verifier
// requires. Packet pointers are bounds-checked against R8 before each
// load.
package bpf
