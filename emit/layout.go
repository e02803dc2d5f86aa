package emit

import (
	"encoding/binary"
	"net/netip"
)

// Constants of the map layouts (see the package documentation).
const (
	// NodeNone is the node index of addresses that no node owns.
	NodeNone uint16 = 0xffff
	// ClassAny is the class of policy entries that hold for every peer.
	ClassAny uint32 = 0xffffffff

	FlagEndpoint  uint8 = 1 << 0 // a pod address
	FlagNode      uint8 = 1 << 1 // a node address
	FlagPodCIDR   uint8 = 1 << 2 // a node's pod CIDR
	FlagAPIServer uint8 = 1 << 3 // a kube-apiserver address

	// ActionNone: this entry has no verdict: the endpoint's default for
	// the direction applies, and ClassAny is not consulted.
	ActionNone  uint8 = 0
	ActionAllow uint8 = 1
	ActionDeny  uint8 = 2

	DirIngress uint8 = 0
	DirEgress  uint8 = 1

	EndpointIngressEnforced uint32 = 1 << 0
	EndpointEgressEnforced  uint32 = 1 << 1
	// EndpointDenyRules: a deny rule of a policy that selects the
	// endpoint applies to it. Its IPv6 is dropped like an isolated
	// endpoint's: the datapath cannot match IPv6 peers against rules.
	EndpointDenyRules uint32 = 1 << 2
	// EndpointIPv6Dropped are the flags under which the datapath drops
	// an endpoint's IPv6 (see bpf.DropIPv6).
	EndpointIPv6Dropped = EndpointIngressEnforced | EndpointEgressEnforced | EndpointDenyRules

	// Service flags (master entry).
	SvcFlagExternalIP    uint8 = 1 << 0
	SvcFlagNodePort      uint8 = 1 << 1
	SvcFlagLoadBalancer  uint8 = 1 << 2
	SvcFlagClusterIP     uint8 = 1 << 3
	SvcFlagAffinity      uint8 = 1 << 4
	SvcFlagLocalExternal uint8 = 1 << 5 // external traffic: use services_local
	SvcFlagLocalInternal uint8 = 1 << 6 // internal traffic: use services_local

	// Service flags2 (master entry).
	SvcFlag2NoBackends uint8 = 1 << 0 // no active backend
	SvcFlag2Reject     uint8 = 1 << 1 // with no backend, refuse at once (else drop)

	ScopeAll   uint8 = 0
	ScopeLocal uint8 = 1

	BackendActive      uint8 = 0
	BackendTerminating uint8 = 1
	BackendNotServing  uint8 = 2
)

// Sizes of keys and values.
const (
	IPCacheKeySize      = 8
	IPCacheExactKeySize = 4
	IPCacheValueSize    = 16
	ClassKeySize        = 8
	ClassValueSize      = 4
	PolicyKeySize       = 16
	PolicyValueSize     = 8
	EndpointKeySize     = 4
	EndpointValueSize   = 32
	ServiceKeySize      = 12
	ServiceValueSize    = 12
	BackendKeySize      = 4
	BackendValueSize    = 12
	RevNatKeySize       = 2
	RevNatValueSize     = 8

	// policyFixedBits is the part of a policy key that is always exact:
	// policy, class and direction.
	policyFixedBits = 72
)

var le = binary.LittleEndian
var be = binary.BigEndian

func addr4(a netip.Addr) [4]byte {
	if !a.Is4() {
		return [4]byte{}
	}
	return a.As4()
}

// IPCacheKey is an LPM key for an IPv4 prefix.
type IPCacheKey struct {
	Prefix netip.Prefix
}

func (k IPCacheKey) put(b []byte) {
	le.PutUint32(b[0:], uint32(k.Prefix.Bits()))
	a := addr4(k.Prefix.Addr())
	copy(b[4:8], a[:])
}

// IPCacheValue is what the datapath learns about an address.
type IPCacheValue struct {
	Identity uint32
	Region   uint16
	Node     uint16
	Tunnel   netip.Addr
	Flags    uint8
}

func (v IPCacheValue) put(b []byte) {
	le.PutUint32(b[0:], v.Identity)
	le.PutUint16(b[4:], v.Region)
	le.PutUint16(b[6:], v.Node)
	a := addr4(v.Tunnel)
	copy(b[8:12], a[:])
	b[12] = v.Flags
}

// ClassKey identifies the peers a class groups.
type ClassKey struct {
	Identity uint32
	Region   uint16
	PeerNode uint16
}

func (k ClassKey) put(b []byte) {
	le.PutUint32(b[0:], k.Identity)
	le.PutUint16(b[4:], k.Region)
	le.PutUint16(b[6:], k.PeerNode)
}

// PolicyKey is an LPM key into the policy map; Bits counts the significant
// bits after the prefix length field.
type PolicyKey struct {
	Bits   uint32
	Policy uint32
	Class  uint32
	Dir    uint8
	Proto  uint8
	Port   uint16
}

func (k PolicyKey) put(b []byte) {
	le.PutUint32(b[0:], k.Bits)
	le.PutUint32(b[4:], k.Policy)
	le.PutUint32(b[8:], k.Class)
	b[12] = k.Dir
	b[13] = k.Proto
	be.PutUint16(b[14:], k.Port)
}

// PolicyValue is a verdict with the rule behind it.
type PolicyValue struct {
	Action uint8
	Flags  uint8
	Rule   uint32
}

func (v PolicyValue) put(b []byte) {
	b[0] = v.Action
	b[1] = v.Flags
	le.PutUint32(b[4:], v.Rule)
}

// EndpointValue describes a local pod.
type EndpointValue struct {
	Identity uint32
	Policy   uint32 // own layer
	Shared   uint32 // shared layer, 0 for none
	Flags    uint32
}

func (v EndpointValue) put(b []byte) {
	le.PutUint32(b[0:], v.Identity)
	le.PutUint32(b[4:], v.Policy)
	le.PutUint32(b[8:], v.Shared)
	le.PutUint32(b[12:], v.Flags)
}

// ServiceKey is a frontend and a backend slot.
type ServiceKey struct {
	Addr  netip.Addr
	Port  uint16
	Slot  uint16
	Proto uint8
	Scope uint8
}

func (k ServiceKey) put(b []byte) {
	a := addr4(k.Addr)
	copy(b[0:4], a[:])
	be.PutUint16(b[4:], k.Port)
	le.PutUint16(b[6:], k.Slot)
	b[8] = k.Proto
	b[9] = k.Scope
}

// ServiceValue is a master entry (slot 0) or a backend slot.
type ServiceValue struct {
	Backend uint32
	Count   uint16
	RevNat  uint16
	Flags   uint8
	Flags2  uint8
}

func (v ServiceValue) put(b []byte) {
	le.PutUint32(b[0:], v.Backend)
	le.PutUint16(b[4:], v.Count)
	le.PutUint16(b[6:], v.RevNat)
	b[8] = v.Flags
	b[9] = v.Flags2
}

// BackendValue is one backend address.
type BackendValue struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
	State uint8
	Node  uint16
	Zone  uint8
}

func (v BackendValue) put(b []byte) {
	a := addr4(v.Addr)
	copy(b[0:4], a[:])
	be.PutUint16(b[4:], v.Port)
	b[6] = v.Proto
	b[7] = v.State
	le.PutUint16(b[8:], v.Node)
	b[10] = v.Zone
}

// RevNatValue is the frontend that replies are rewritten to.
type RevNatValue struct {
	Addr netip.Addr
	Port uint16
}

func (v RevNatValue) put(b []byte) {
	a := addr4(v.Addr)
	copy(b[0:4], a[:])
	be.PutUint16(b[4:], v.Port)
}

// MaglevKeySize is the maglev map's key: the frontend's revnat index, u32.
const MaglevKeySize = 4

// Image is a map's contents: fixed-size records, key then value, in a
// deterministic order (sorted by the entries' fields, which for LPM keys,
// led by the prefix length, is not key-byte order). This is the format of
// maps/NAME.bin.
type Image struct {
	Spec MapSpec
	Data []byte
}

// MapSpec describes a map as the loader creates it.
type MapSpec struct {
	Name       string `json:"name"`
	Type       string `json:"type"` // "lpm_trie" or "hash"
	KeySize    int    `json:"keySize"`
	ValueSize  int    `json:"valueSize"`
	MaxEntries int    `json:"maxEntries"`
	Flags      uint32 `json:"flags"`
	Entries    int    `json:"entries"`
	// Shared says the image is the same on every node.
	Shared bool `json:"shared"`
}

// BPF_F_NO_PREALLOC, required for LPM tries.
const flagNoPrealloc = 1

// Entries splits an image into key and value slices.
func (im *Image) Entries() (keys, values [][]byte) {
	rec := im.Spec.KeySize + im.Spec.ValueSize
	for off := 0; off+rec <= len(im.Data); off += rec {
		keys = append(keys, im.Data[off:off+im.Spec.KeySize])
		values = append(values, im.Data[off+im.Spec.KeySize:off+rec])
	}
	return keys, values
}

// Bytes encodes a key or value in its map layout (for tools and tests
// that build maps by hand).
func (k IPCacheKey) Bytes() []byte { b := make([]byte, IPCacheKeySize); k.put(b); return b }

// Bytes encodes the value.
func (v IPCacheValue) Bytes() []byte { b := make([]byte, IPCacheValueSize); v.put(b); return b }

// Bytes encodes the key.
func (k ClassKey) Bytes() []byte { b := make([]byte, ClassKeySize); k.put(b); return b }

// Bytes encodes the key.
func (k PolicyKey) Bytes() []byte { b := make([]byte, PolicyKeySize); k.put(b); return b }

// Bytes encodes the value.
func (v PolicyValue) Bytes() []byte { b := make([]byte, PolicyValueSize); v.put(b); return b }

// Bytes encodes the value.
func (v EndpointValue) Bytes() []byte { b := make([]byte, EndpointValueSize); v.put(b); return b }
