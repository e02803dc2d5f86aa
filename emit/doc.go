// Package emit lowers an ir.Cluster into per-node artifacts: BPF map
// images in the exact layouts the datapath reads, a sorted text dump of
// each, and a manifest. It makes no syscalls; loader writes and loads what
// it returns.
//
// # Policy state grows with selectors, not subjects × peers
//
// Cilium expands every (endpoint, peer identity, port) into a map entry.
// Sluice instead groups the peers that no rule on a node tells apart into
// classes, and keys policy by (policy, class): an egress rule "to tier=db in
// any namespace" costs one class, not one entry per db identity per
// selected pod. Concretely:
//
//   - ipcache (shared by every node) maps an address to its identity and
//     its CIDR region: the set of policy CIDRs (and excepts) containing it.
//   - classes (per node) maps (identity, region, peer node) to the class of
//     peers that match the same peer selectors of this node's policies.
//     Keys absent from it are class 0: they match no selector here.
//   - policy (per node) maps (policy, class, direction, protocol, port
//     prefix) to a verdict and the rule behind it. Endpoints that share an
//     identity and named ports share a policy number. Port ranges become
//     aligned port prefixes, so one LPM lookup answers exact ports, ranges
//     and wildcards; deny precedence is resolved here, at compile time.
//     The verdict function most classes share is emitted once under
//     ClassAny, consulted when the class-specific lookup misses; a class
//     only has entries where it differs from it.
//
// # Map layouts
//
// Multi-byte fields are little-endian (the host order of the machines we
// target) unless marked BE (network order). Each key and value below is
// exactly the byte layout of the map image; sizes are in bytes.
//
// ipcache — LPM_TRIE, shared, default 512000 entries, BPF_F_NO_PREALLOC.
//
//	key   (8):  prefixlen u32 | addr [4]BE
//	value (16): identity u32 | region u16 | node u16 | tunnel [4]BE | flags u8 | pad [3]
//
// ipcache_exact — HASH, shared, only when the ipcache holds at least
// ExactIPCacheMin entries: the /32 entries of ipcache with the same values,
// keyed by the address alone (4 bytes BE). The datapath then tries it
// first, since most peers are pods and nodes, and a cold hash miss costs a
// third of a cold LPM one.
//
// node is the index of the node that owns the address (pods, node
// addresses, pod CIDRs; NodeNone otherwise) and tunnel that node's
// InternalIP, for forwarding. flags: FlagEndpoint, FlagNode, FlagPodCIDR,
// FlagAPIServer.
//
// classes — HASH, per node, default 65536 entries.
//
//	key   (8): identity u32 | region u16 | peernode u16
//	value (4): class u32
//
// peernode is the ipcache node for node addresses (FlagNode) and NodeNone
// for everything else, so each node's addresses, and this node's own, can
// form classes of their own.
//
// policy — LPM_TRIE, per node, default 65536 entries, BPF_F_NO_PREALLOC.
//
//	key   (16): prefixlen u32 | policy u32 | class u32 | dir u8 | proto u8 | port [2]BE
//	value (8):  action u8 | flags u8 | pad u16 | rule u32
//
// prefixlen counts bits after itself: 72 matches any protocol, 80 any
// port of one protocol, 80+n the first n bits of the port. ICMP types sit in
// the port field. action is ActionAllow, ActionDeny or ActionNone; rule is
// the rule's number in rules.txt (0: the implicit own-node allow). The
// datapath looks up (policy, class, ...) then (policy, ClassAny, ...); a
// miss of both, or ActionNone, means the endpoint's default for that
// direction: deny when enforced, else allow.
//
// endpoints — HASH, per node, default 65535 entries.
//
//	key   (4):  ip [4]BE
//	value (32): identity u32 | policy u32 | shared u32 | flags u32 | reserved [16]
//
// policy is the endpoint's own policy layer, shared the shared layer's (0:
// none); flags: EndpointIngressEnforced, EndpointEgressEnforced,
// EndpointDenyRules (a deny rule applies to it); the reserved bytes are
// zero. Every IPv4 address of a pod is a key; its IPv6
// addresses are none (IPv6 is not enforced). The pod's veth is tied to
// this key at run time, in the node's endpoint_links (package bpf), so
// that its IPv6 frames meet its flags: any of EndpointIPv6Dropped drops
// them.
//
// services — HASH, shared, default 262144 entries (Cilium's lb4_services_v2).
//
//	key   (12): addr [4]BE | dport [2]BE | slot u16 | proto u8 | scope u8 | pad [2]
//	value (12): backend u32 | count u16 | revnat u16 | flags u8 | flags2 u8 | pad [2]
//
// Slot 0 is the frontend's master entry: count active backends, the
// affinity timeout in backend when SvcFlagAffinity is set; slots 1..count
// hold backend ids. NodePorts are keyed on 0.0.0.0 (any local address).
// Services with a Local traffic policy set SvcFlagLocalExternal or
// SvcFlagLocalInternal and list this node's backends, in the same layout
// with scope ScopeLocal, in the per-node map services_local.
//
// backends — HASH, shared, default 262144 entries.
//
//	key   (4):  id u32
//	value (12): addr [4]BE | port [2]BE | proto u8 | state u8 | node u16 | zone u8 | pad u8
//
// revnat — HASH, shared, default 262144 entries.
//
//	key   (2): index u16
//	value (8): addr [4]BE | port [2]BE | pad [2]
//
// maglev — HASH, shared, default 8192 entries, BPF_F_NO_PREALLOC: one
// Maglev lookup table per external frontend (NodePort, ExternalIP,
// LoadBalancer) without a Local traffic policy.
//
//	key   (4):   revnat index u32
//	value (4×M): backend id u32 per entry; M is --maglev-table-size
//
// Besides the maps, each node's artifact holds runtime.json (RuntimeTable:
// how its agent enforces pods created after the compile) and rules.json
// (every rule by number, to name the datapath's drop counts).
//
// The sizes are the defaults of MapSizes; sluice compile takes flags to
// change them, and fails with the numbers when a map would overflow.
// Cilium's lb maps default to 65536; ours default larger because a per-node
// artifact carries the whole cluster's services at once.
package emit
