package emit

import (
	"bytes"
	"fmt"
	"net/netip"
)

// Sim answers policy questions from an artifact's map images alone, with
// the lookups the datapath makes, in the order it makes them:
//
//  1. endpoints[local address] → its own and shared policy numbers and
//     enforcement flags;
//  2. ipcache LPM lookup of the peer address → identity, region, node, flags;
//  3. classes[identity, region, node if a node address] → class (miss: 0);
//  4. for each of the two policy numbers: policy LPM lookup (policy,
//     class, dir, proto, port), on a miss the same with ClassAny; a hit
//     with ActionNone means no verdict from that layer;
//  5. deny if a layer denies, else allow if a layer allows, else the
//     endpoint's default for dir: deny when enforced, else allow.
//
// IPv6 takes none of these but the first (IPv6Verdict).
//
// It is the executable specification of the layouts: tests compare it with
// the ir evaluator, and the eBPF programs must agree with both.
type Sim struct {
	ipcache   []lpm
	exact     map[netip.Addr][]byte
	classes   map[string][]byte
	policy    map[string][]lpm // by policy|class|dir
	endpoints map[netip.Addr][]byte
}

type lpm struct {
	bits uint32
	data []byte // after the prefix length
	val  []byte
}

func (e *lpm) matches(key []byte) bool {
	full := e.bits / 8
	if !bytes.Equal(e.data[:full], key[:full]) {
		return false
	}
	if rem := e.bits % 8; rem != 0 {
		mask := byte(0xff << (8 - rem))
		return e.data[full]&mask == key[full]&mask
	}
	return true
}

// NewSim decodes the map images of an artifact (file name → bytes).
func NewSim(files map[string][]byte) (*Sim, error) {
	s := &Sim{classes: map[string][]byte{}, policy: map[string][]lpm{}, endpoints: map[netip.Addr][]byte{}, exact: map[netip.Addr][]byte{}}
	recs := func(name string, ks, vs int, fn func(k, v []byte)) error {
		data, ok := files["maps/"+name+".bin"]
		if !ok {
			return fmt.Errorf("artifact has no maps/%s.bin", name)
		}
		if len(data)%(ks+vs) != 0 {
			return fmt.Errorf("maps/%s.bin: %d bytes is not a whole number of %d-byte records", name, len(data), ks+vs)
		}
		for off := 0; off < len(data); off += ks + vs {
			fn(data[off:off+ks], data[off+ks:off+ks+vs])
		}
		return nil
	}
	if err := recs("ipcache", IPCacheKeySize, IPCacheValueSize, func(k, v []byte) {
		s.ipcache = append(s.ipcache, lpm{bits: le.Uint32(k), data: k[4:], val: v})
	}); err != nil {
		return nil, err
	}
	if _, ok := files["maps/ipcache_exact.bin"]; ok { // only for a large ipcache
		if err := recs("ipcache_exact", IPCacheExactKeySize, IPCacheValueSize, func(k, v []byte) {
			s.exact[netip.AddrFrom4([4]byte(k))] = v
		}); err != nil {
			return nil, err
		}
	}
	if err := recs("classes", ClassKeySize, ClassValueSize, func(k, v []byte) { s.classes[string(k)] = v }); err != nil {
		return nil, err
	}
	if err := recs("policy", PolicyKeySize, PolicyValueSize, func(k, v []byte) {
		g := string(k[4:13])
		s.policy[g] = append(s.policy[g], lpm{bits: le.Uint32(k), data: k[4:], val: v})
	}); err != nil {
		return nil, err
	}
	if err := recs("endpoints", EndpointKeySize, EndpointValueSize, func(k, v []byte) {
		s.endpoints[netip.AddrFrom4([4]byte(k))] = v
	}); err != nil {
		return nil, err
	}
	return s, nil
}

func longest(es []lpm, key []byte) *lpm {
	var best *lpm
	for i := range es {
		if es[i].matches(key) && (best == nil || es[i].bits > best.bits) {
			best = &es[i]
		}
	}
	return best
}

// IPv6Verdict is what an IPv6 frame on the veth of the local endpoint
// (its IPv4 address, which endpoint_links gives the veth) gets, whatever
// its addresses, ports or direction: IPv6 is not enforced, so it is
// denied when a policy isolates the endpoint in either direction or a
// deny rule applies to it, else allowed.
func (s *Sim) IPv6Verdict(local netip.Addr) (SimVerdict, error) {
	ep, ok := s.endpoints[local]
	if !ok {
		return SimVerdict{}, fmt.Errorf("%s is not a local endpoint", local)
	}
	v := SimVerdict{Action: ActionAllow, Default: true, Identity: le.Uint32(ep[0:])}
	if le.Uint32(ep[12:])&EndpointIPv6Dropped != 0 {
		v.Action = ActionDeny
	}
	return v, nil
}

// SimVerdict is what the lookups found.
type SimVerdict struct {
	Action uint8
	Rule   uint32
	// Default is true when no policy entry matched and the endpoint's
	// default for the direction applied.
	Default  bool
	Identity uint32
	Class    uint32
}

// Verdict evaluates the policy of the local endpoint for a packet from (dir
// ingress) or to (dir egress) peer.
func (s *Sim) Verdict(local netip.Addr, dir uint8, peer netip.Addr, proto uint8, port uint16) (SimVerdict, error) {
	ep, ok := s.endpoints[local]
	if !ok {
		return SimVerdict{}, fmt.Errorf("%s is not a local endpoint", local)
	}
	layers, flags := [2]uint32{le.Uint32(ep[4:]), le.Uint32(ep[8:])}, le.Uint32(ep[12:])
	var ik [4]byte
	if peer.Is4() {
		ik = peer.As4()
	}
	// The exact /32 map first, the longest-prefix match on a miss.
	var val []byte
	if x, ok := s.exact[peer]; ok {
		val = x
	} else if ic := longest(s.ipcache, ik[:]); ic != nil {
		val = ic.val
	} else {
		return SimVerdict{}, fmt.Errorf("ipcache has no entry for %s (0.0.0.0/0 is missing)", peer)
	}
	ic := &lpm{val: val}
	v := SimVerdict{Identity: le.Uint32(ic.val[0:])}
	ck := make([]byte, ClassKeySize)
	copy(ck[0:6], ic.val[0:6])
	le.PutUint16(ck[6:], NodeNone)
	if ic.val[12]&FlagNode != 0 {
		copy(ck[6:8], ic.val[6:8])
	}
	if c, ok := s.classes[string(ck)]; ok {
		v.Class = le.Uint32(c)
	}
	// Each layer answers deny, allow or nothing: deny wins, then allow.
	var found [2]*lpm
	for l, policy := range layers {
		if policy == 0 {
			continue
		}
		for _, cls := range []uint32{v.Class, ClassAny} {
			k := make([]byte, PolicyKeySize)
			PolicyKey{Policy: policy, Class: cls, Dir: dir, Proto: proto, Port: port}.put(k)
			if e := longest(s.policy[string(k[4:13])], k[4:]); e != nil {
				if e.val[0] != ActionNone {
					found[l] = e
				}
				break // a hit, even "no verdict", ends this layer
			}
		}
	}
	for _, want := range []uint8{ActionDeny, ActionAllow} {
		for _, e := range found {
			if e != nil && e.val[0] == want {
				v.Action, v.Rule = want, le.Uint32(e.val[4:])
				return v, nil
			}
		}
	}
	v.Default = true
	v.Action = ActionAllow
	if (dir == DirIngress && flags&EndpointIngressEnforced != 0) || (dir == DirEgress && flags&EndpointEgressEnforced != 0) {
		v.Action = ActionDeny
	}
	return v, nil
}
