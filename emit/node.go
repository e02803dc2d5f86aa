package emit

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/sluicenet/sluice/ir"
)

// policyGroup is the endpoints of a node that share a policy number: the
// same identity and the same named ports.
type policyGroup struct {
	id        uint32
	identity  uint32
	named     []ir.NamedPort
	endpoints []*ir.Endpoint
	policies  []*ir.Policy
	enforced  [2]bool
}

// class is a set of class keys that this node's rules cannot tell apart.
type class struct {
	id    uint32
	keys  []int32
	sig   []int32 // matched alternatives, ascending; ownNodeAlt last if present
	named []ir.NamedPort
	own   bool // the node's own addresses
}

// nodePlan is the per-node lowering.
type nodePlan struct {
	p        *plan
	node     string
	idx      uint16
	groups   []*policyGroup
	classes  []*class // index = class id - 1
	keyClass []uint32 // key index → class id (0: none)
	altClass map[int32][]uint32
	policy   []policyEntry
	relevant map[uint32]bool // rule ids used on this node
}

type policyEntry struct {
	key PolicyKey
	val PolicyValue
}

func namedKey(nps []ir.NamedPort) string {
	var b strings.Builder
	for _, np := range nps {
		fmt.Fprintf(&b, "%s=%d/%s,", np.Name, np.Port, np.Proto)
	}
	return b.String()
}

func (p *plan) lowerNode(node string) *nodePlan {
	np := &nodePlan{p: p, node: node, idx: p.nodeIdx[node], altClass: map[int32][]uint32{}, relevant: map[uint32]bool{}}
	byKey := map[string]*policyGroup{}
	for i := range p.c.Endpoints {
		e := &p.c.Endpoints[i]
		if e.Node != node || !hasIPv4(e.IPs) {
			continue
		}
		k := fmt.Sprintf("%d|%s", e.Identity, namedKey(e.NamedPorts))
		g := byKey[k]
		if g == nil {
			g = &policyGroup{identity: e.Identity, named: e.NamedPorts}
			byKey[k] = g
			np.groups = append(np.groups, g)
		}
		g.endpoints = append(g.endpoints, e)
	}
	sort.Slice(np.groups, func(i, j int) bool {
		a, b := np.groups[i], np.groups[j]
		if a.identity != b.identity {
			return a.identity < b.identity
		}
		return namedKey(a.named) < namedKey(b.named)
	})
	relevantAlts := map[int32]bool{}
	egressNames := map[string]bool{}
	for i, g := range np.groups {
		g.id = uint32(i + 1)
		g.policies = p.ev.Selecting(g.identity)
		for _, pol := range g.policies {
			g.enforced[0] = g.enforced[0] || pol.IsolateIngress
			g.enforced[1] = g.enforced[1] || pol.IsolateEgress
			for j := range pol.Rules {
				r := &pol.Rules[j]
				for _, a := range p.ruleAlts[r] {
					relevantAlts[a] = true
				}
				if r.Direction == ir.Egress {
					for _, pt := range r.Ports {
						if pt.Name != "" {
							egressNames[pt.Name] = true
						}
					}
				}
			}
			for _, req := range p.reqAlt[pol] {
				for _, a := range req {
					relevantAlts[a] = true
				}
			}
		}
	}
	np.buildClasses(relevantAlts, egressNames)
	for _, g := range np.groups {
		for d := range 2 {
			np.lowerGroup(g, ir.Direction(d))
		}
	}
	sort.Slice(np.policy, func(i, j int) bool { return lessPolicyKey(np.policy[i].key, np.policy[j].key) })
	return np
}

func hasIPv4(ips []netip.Addr) bool {
	for _, ip := range ips {
		if ip.Is4() {
			return true
		}
	}
	return false
}

// ownNodeAlt marks, in a signature, the node's own addresses.
const ownNodeAlt = int32(1 << 30)

// buildClasses groups the class keys by the alternatives they match (seen
// from this node) and, for egress named ports, by how they name ports.
func (np *nodePlan) buildClasses(relevant map[int32]bool, egressNames map[string]bool) {
	p := np.p
	sigs := make([][]int32, len(p.keys))
	alts := make([]int32, 0, len(relevant))
	for a := range relevant {
		alts = append(alts, a)
	}
	slices.Sort(alts)
	for _, a := range alts {
		for _, k := range p.altRemote[a] {
			if p.keys[k].key.PeerNode != np.idx {
				sigs[k] = append(sigs[k], a)
			}
		}
		for _, k := range p.altHost[a] {
			if p.keys[k].key.PeerNode == np.idx {
				sigs[k] = append(sigs[k], a)
			}
		}
	}
	np.keyClass = make([]uint32, len(p.keys))
	bySig := map[string]*class{}
	for k := range p.keys {
		own := p.keys[k].key.PeerNode == np.idx
		if own {
			sigs[k] = append(sigs[k], ownNodeAlt)
		}
		// Egress named ports resolve on the destination, so peers that
		// name a port used by an egress rule here differently are apart.
		var named []ir.NamedPort
		if e := p.ev.Endpoint(p.keys[k].rep); e != nil && len(egressNames) > 0 {
			for _, n := range p.named[e.Identity] {
				if egressNames[n.Name] {
					named = append(named, n)
				}
			}
		}
		if len(sigs[k]) == 0 && len(named) == 0 {
			continue
		}
		var b strings.Builder
		for _, a := range sigs[k] {
			fmt.Fprintf(&b, "%d,", a)
		}
		b.WriteString("|" + namedKey(named))
		s := b.String()
		c := bySig[s]
		if c == nil {
			c = &class{sig: sigs[k], named: named, own: own}
			bySig[s] = c
			np.classes = append(np.classes, c)
		}
		c.keys = append(c.keys, int32(k))
	}
	// Keys are sorted, so numbering classes by their first key is stable
	// under unrelated changes.
	sort.Slice(np.classes, func(i, j int) bool { return np.classes[i].keys[0] < np.classes[j].keys[0] })
	for i, c := range np.classes {
		c.id = uint32(i + 1)
		for _, k := range c.keys {
			np.keyClass[k] = c.id
		}
		for _, a := range c.sig {
			np.altClass[a] = append(np.altClass[a], c.id)
		}
	}
}

func (c *class) has(a int32) bool {
	_, ok := slices.BinarySearch(c.sig, a)
	return ok
}

// lowerGroup emits the policy entries of one group in one direction.
func (np *nodePlan) lowerGroup(g *policyGroup, dir ir.Direction) {
	p := np.p
	enforced := g.enforced[dir]
	var rules []*ir.Rule
	var reqAllow, reqDeny []int32
	for _, pol := range g.policies {
		for j := range pol.Rules {
			r := &pol.Rules[j]
			if r.Direction != dir {
				continue
			}
			if r.Action == ir.Allow && !enforced {
				continue // allows change nothing where nothing is denied by default
			}
			rules = append(rules, r)
			np.relevant[p.ruleID[r]] = true
		}
		req := p.reqAlt[pol]
		reqAllow = append(reqAllow, req[dir]...)
		reqDeny = append(reqDeny, req[2+int(dir)]...)
	}
	if len(rules) == 0 && !(enforced && dir == ir.Ingress) {
		return
	}
	touched := map[uint32]bool{}
	var wildcard []*ir.Rule
	for _, r := range rules {
		if len(r.Peers) == 0 {
			wildcard = append(wildcard, r)
			// Named ports of egress rules resolve per destination: the
			// classes that name ports need entries of their own.
			if dir == ir.Egress && hasNamedPort(r) {
				for _, c := range np.classes {
					if len(c.named) > 0 {
						touched[c.id] = true
					}
				}
			}
			continue
		}
		for _, a := range p.ruleAlts[r] {
			for _, cid := range np.altClass[a] {
				touched[cid] = true
			}
		}
	}
	if enforced && dir == ir.Ingress {
		for _, c := range np.classes {
			if c.own {
				touched[c.id] = true
			}
		}
	}
	def := PolicyValue{Action: ActionAllow}
	if enforced {
		def.Action = ActionDeny
	}
	var ingressNamed []ir.NamedPort
	if dir == ir.Ingress {
		ingressNamed = g.named
	}
	if len(wildcard) > 0 {
		named := ingressNamed
		np.emitVerdicts(g.id, ClassAny, dir, wildcard, false, named, def)
	}
	ids := make([]uint32, 0, len(touched))
	for id := range touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c := np.classes[id-1]
		var matching []*ir.Rule
		for _, r := range rules {
			if np.ruleMatchesClass(r, c, reqAllow, reqDeny) {
				matching = append(matching, r)
			}
		}
		named := ingressNamed
		if dir == ir.Egress {
			named = c.named
		}
		np.emitVerdicts(g.id, id, dir, matching, enforced && dir == ir.Ingress && c.own, named, def)
	}
}

func hasNamedPort(r *ir.Rule) bool {
	for _, pt := range r.Ports {
		if pt.Name != "" {
			return true
		}
	}
	return false
}

func (np *nodePlan) ruleMatchesClass(r *ir.Rule, c *class, reqAllow, reqDeny []int32) bool {
	alts := np.p.ruleAlts[r]
	if len(alts) == 0 {
		return true
	}
	req := reqAllow
	if r.Action == ir.Deny {
		req = reqDeny
	}
	for i, a := range alts {
		if !c.has(a) {
			continue
		}
		if r.Peers[i].Kind == ir.PeerEndpoints {
			ok := true
			for _, q := range req {
				if !c.has(q) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
		}
		return true
	}
	return false
}

// protoDims are the protocols whose ports (or ICMP types) the policy map
// tells apart; any other protocol only meets proto-wildcard entries.
var protoDims = []ir.Proto{ir.ProtoICMP, ir.ProtoTCP, ir.ProtoUDP, ir.ProtoICMPv6, ir.ProtoSCTP}

// portRange is an inclusive range of one rule's port alternative for one
// protocol.
type portRange struct{ lo, hi uint32 }

// rangesFor returns the ranges of rule r's ports that hold for proto;
// all is true when the rule holds for every port of it.
func rangesFor(r *ir.Rule, proto ir.Proto, named []ir.NamedPort) (rs []portRange, all bool) {
	if len(r.Ports) == 0 {
		return nil, true
	}
	for i := range r.Ports {
		pt := &r.Ports[i]
		if pt.Proto != ir.ProtoAny && pt.Proto != proto {
			continue
		}
		if pt.Name != "" {
			for _, n := range named {
				if n.Name == pt.Name && n.Proto == proto {
					rs = append(rs, portRange{uint32(n.Port), uint32(n.Port)})
				}
			}
			continue
		}
		if pt.Port == 0 && pt.EndPort == 65535 {
			return nil, true
		}
		if pt.Proto == ir.ProtoAny && proto != ir.ProtoTCP && proto != ir.ProtoUDP && proto != ir.ProtoSCTP {
			continue
		}
		rs = append(rs, portRange{uint32(pt.Port), uint32(pt.EndPort)})
	}
	return rs, false
}

// holdsForOtherProtos says whether a rule matches a protocol without
// ports (or any protocol not in protoDims).
func holdsForOtherProtos(r *ir.Rule) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, pt := range r.Ports {
		if pt.Proto == ir.ProtoAny && pt.Name == "" && pt.Port == 0 && pt.EndPort == 65535 {
			return true
		}
	}
	return false
}

// emitVerdicts resolves deny precedence over the (protocol, port) space
// for one policy, class and direction and emits the entries that differ
// from what a lookup would otherwise find.
func (np *nodePlan) emitVerdicts(policy, cls uint32, dir ir.Direction, rules []*ir.Rule, implicitAllow bool, named []ir.NamedPort, def PolicyValue) {
	p := np.p
	verdict := func(holds func(r *ir.Rule) bool) PolicyValue {
		for _, r := range rules {
			if r.Action == ir.Deny && holds(r) {
				return PolicyValue{Action: ActionDeny, Rule: p.ruleID[r]}
			}
		}
		for _, r := range rules {
			if r.Action == ir.Allow && holds(r) {
				return PolicyValue{Action: ActionAllow, Rule: p.ruleID[r]}
			}
		}
		if implicitAllow {
			return PolicyValue{Action: ActionAllow}
		}
		return def
	}
	base := PolicyKey{Policy: policy, Class: cls, Dir: uint8(dir)}
	background := verdict(holdsForOtherProtos)
	if background != def {
		k := base
		k.Bits = policyFixedBits
		np.policy = append(np.policy, policyEntry{k, background})
	}
	protos := append([]ir.Proto(nil), protoDims...)
	for _, r := range rules {
		for _, pt := range r.Ports {
			if pt.Proto != ir.ProtoAny && !slices.Contains(protos, pt.Proto) {
				protos = append(protos, pt.Proto)
			}
		}
	}
	for _, proto := range protos {
		// Breakpoints of every range that concerns this protocol.
		cuts := []uint32{0, 65536}
		per := make([][]portRange, len(rules))
		allOf := make([]bool, len(rules))
		specific := false
		for i, r := range rules {
			per[i], allOf[i] = rangesFor(r, proto, named)
			for _, rg := range per[i] {
				cuts = append(cuts, rg.lo, rg.hi+1)
				specific = true
			}
		}
		if !specific && !allDiffers(rules, allOf) {
			continue // same verdict as the proto-wildcard entry everywhere
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		var runLo uint32
		var runVal PolicyValue
		flush := func(hi uint32) {
			if runVal != background {
				for _, pf := range portPrefixes(runLo, hi) {
					k := base
					k.Proto = uint8(proto)
					k.Bits = policyFixedBits + 8 + pf.bits
					k.Port = uint16(pf.start)
					np.policy = append(np.policy, policyEntry{k, runVal})
				}
			}
		}
		for ci := 0; ci+1 < len(cuts); ci++ {
			lo := cuts[ci]
			v := verdict(func(r *ir.Rule) bool {
				idx := slices.Index(rules, r)
				if allOf[idx] {
					return true
				}
				for _, rg := range per[idx] {
					if lo >= rg.lo && lo <= rg.hi {
						return true
					}
				}
				return false
			})
			if ci == 0 {
				runLo, runVal = lo, v
				continue
			}
			if v != runVal {
				flush(lo - 1)
				runLo, runVal = lo, v
			}
		}
		flush(65535)
	}
}

// allDiffers reports whether the rules that hold for all ports of a
// protocol differ from those that hold for protocols without ports: then
// the protocol needs entries of its own.
func allDiffers(rules []*ir.Rule, allOf []bool) bool {
	for i, r := range rules {
		if allOf[i] != holdsForOtherProtos(r) {
			return true
		}
	}
	return false
}

type portPrefix struct {
	start uint32
	bits  uint32
}

// portPrefixes splits [lo, hi] into the fewest aligned power-of-two blocks.
func portPrefixes(lo, hi uint32) []portPrefix {
	var out []portPrefix
	for lo <= hi {
		size := uint32(1)
		bits := uint32(16)
		for bits > 0 {
			next := size << 1
			if lo%next != 0 || lo+next-1 > hi {
				break
			}
			size, bits = next, bits-1
		}
		out = append(out, portPrefix{lo, bits})
		lo += size
	}
	return out
}

// lessPolicyKey orders entries by policy, class, direction, protocol,
// port and prefix length: the order of the dump and of the image.
func lessPolicyKey(a, b PolicyKey) bool {
	if a.Policy != b.Policy {
		return a.Policy < b.Policy
	}
	if a.Class != b.Class {
		return a.Class < b.Class
	}
	if a.Dir != b.Dir {
		return a.Dir < b.Dir
	}
	if a.Proto != b.Proto {
		return a.Proto < b.Proto
	}
	if a.Port != b.Port {
		return a.Port < b.Port
	}
	return a.Bits < b.Bits
}
