package emit

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicenet/sluice/ir"
)

// policyGroup is the endpoints of a node that share a policy number: the
// same selecting policies and, where ingress rules name ports, the same
// named ports.
type policyGroup struct {
	id        uint32
	shared    bool // the shared layer: no implicit own-node allow
	named     []ir.NamedPort
	endpoints []*ir.Endpoint
	policies  []*ir.Policy
	enforced  [2]bool // of its endpoints, by direction
}

// class is a set of class keys that this node's rules cannot tell apart.
type class struct {
	id       uint32
	keys     []int32
	sig      []int32 // matched alternatives, ascending; ownNodeAlt last if present
	named    []ir.NamedPort
	namedStr string
	own      bool // the node's own addresses
}

// nodePlan is the per-node lowering.
type nodePlan struct {
	p         *plan
	node      string
	idx       uint16
	groups    []*policyGroup
	classes   []*class // index = class id - 1
	keyClass  []uint32 // key index → class id (0: none)
	altClass  map[int32][]uint32
	policy    []policyEntry
	relevant  map[uint32]bool // rule ids used on this node
	classless int             // class keys of class 0
	classKeys int             // class keys of every other class
	// epLayers is each local endpoint's own and shared policy number
	// (0: none); epEnforced its enforcement by direction; epDenies
	// whether a deny rule applies to it.
	epLayers   map[*ir.Endpoint][2]uint32
	epEnforced map[*ir.Endpoint][2]bool
	epDenies   map[*ir.Endpoint]bool
	// runtime are the workloads whose new pods the agent may add, each
	// with the endpoint that stands for them in epLayers and epEnforced
	// (no address: nothing in the endpoints map).
	runtime []runtimeEndpoint
	touched []bool // scratch for lowerGroup, by class id
}

type runtimeEndpoint struct {
	workload *ir.Workload
	ep       *ir.Endpoint
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

// broadShare is the share of a node's endpoints a policy must select to
// go in the shared layer.
const broadShare = 0.5

// flags are an endpoint's endpoints map flags.
func (np *nodePlan) flags(e *ir.Endpoint) uint32 {
	var f uint32
	enf := np.epEnforced[e]
	if enf[0] {
		f |= EndpointIngressEnforced
	}
	if enf[1] {
		f |= EndpointEgressEnforced
	}
	if np.epDenies[e] {
		f |= EndpointDenyRules
	}
	return f
}

func (p *plan) lowerNode(node string) *nodePlan {
	np := &nodePlan{p: p, node: node, idx: p.nodeIdx[node], altClass: map[int32][]uint32{}, relevant: map[uint32]bool{},
		epLayers: map[*ir.Endpoint][2]uint32{}, epEnforced: map[*ir.Endpoint][2]bool{}, epDenies: map[*ir.Endpoint]bool{}}
	var local []*ir.Endpoint
	selects := map[*ir.Policy]int{}
	for i := range p.c.Endpoints {
		e := &p.c.Endpoints[i]
		if e.Node != node || !hasIPv4(e.IPs) {
			continue
		}
		local = append(local, e)
		for _, pol := range p.ev.Selecting(e.Identity) {
			selects[pol]++
		}
	}
	// Two layers: policies that select most of this node's endpoints (the
	// cluster-wide defaults) are lowered once, in the shared layer, not
	// once per policy number; the rest in each endpoint's own layer. A
	// packet is denied if either layer denies it, allowed if either
	// allows it — exactly deny-beats-allow and the union of allows.
	// fromRequires reach across policies, so an endpoint with any stays
	// in one layer.
	broad := func(pol *ir.Policy) bool {
		return len(local) >= 4 && float64(selects[pol]) >= broadShare*float64(len(local))
	}
	byKey := map[string]*policyGroup{}
	group := func(shared bool, pols []*ir.Policy, enforced [2]bool, e *ir.Endpoint, runtime bool) (*policyGroup, bool) {
		var kb strings.Builder
		if shared {
			kb.WriteString("S|")
		}
		fmt.Fprintf(&kb, "%v%v|", enforced[0], enforced[1])
		named := false
		for _, pol := range pols {
			kb.WriteString(strconv.Itoa(p.policyIdx[pol]))
			kb.WriteByte(',')
			named = named || p.ingressNamed[pol]
		}
		if named {
			kb.WriteString("|" + namedKey(e.NamedPorts))
		}
		k := kb.String()
		g := byKey[k]
		created := g == nil
		if created {
			g = &policyGroup{shared: shared, named: e.NamedPorts, policies: pols, enforced: enforced}
			byKey[k] = g
		}
		if !runtime {
			g.endpoints = append(g.endpoints, e)
		}
		return g, created
	}
	var own, shared []*policyGroup
	epGroups := map[*ir.Endpoint][2]*policyGroup{}
	// The workloads whose new pods the agent enforces at run time get
	// policy numbers too: most share one with a pod here already.
	all := local
	for _, w := range p.runtime[node] {
		e := &ir.Endpoint{Namespace: w.Namespace, Name: w.Kind + "/" + w.Name, Node: node, Identity: w.Identity, NamedPorts: w.NamedPorts}
		np.runtime = append(np.runtime, runtimeEndpoint{w, e})
		all = append(all, e)
	}
	for i, e := range all {
		runtime := i >= len(local)
		pols := p.ev.Selecting(e.Identity)
		var enforced [2]bool
		requires, denies := false, false
		for _, pol := range pols {
			enforced[0] = enforced[0] || pol.IsolateIngress
			enforced[1] = enforced[1] || pol.IsolateEgress
			requires = requires || p.hasRequires[pol]
			denies = denies || ir.HasDenyRule(pol)
		}
		var mine, common []*ir.Policy
		for _, pol := range pols {
			if !requires && broad(pol) {
				common = append(common, pol)
			} else {
				mine = append(mine, pol)
			}
		}
		var gs [2]*policyGroup
		var created bool
		if gs[0], created = group(false, mine, enforced, e, runtime); created {
			own = append(own, gs[0])
		}
		if len(common) > 0 {
			if gs[1], created = group(true, common, enforced, e, runtime); created {
				shared = append(shared, gs[1])
			}
		}
		epGroups[e] = gs
		np.epEnforced[e] = enforced
		np.epDenies[e] = denies
	}
	np.groups = append(own, shared...)
	for i, g := range np.groups {
		g.id = uint32(i + 1)
	}
	for e, gs := range epGroups {
		var ids [2]uint32
		for l, g := range gs {
			if g != nil {
				ids[l] = g.id
			}
		}
		np.epLayers[e] = ids
	}
	// Endpoints are sorted, so numbering groups by their first endpoint is
	// deterministic.
	relevantAlts := map[int32]bool{}
	egressNames := map[string]bool{}
	for _, g := range np.groups {
		for _, pol := range g.policies {
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
	var sb []byte
	for k := range p.keys {
		own := p.keys[k].key.PeerNode == np.idx
		if own {
			sigs[k] = append(sigs[k], ownNodeAlt)
		}
		// Egress named ports resolve on the destination, so peers that
		// name a port used by an egress rule here differently are apart.
		var named []ir.NamedPort
		id, isPod := p.keys[k].key.Identity, p.keys[k].runtime
		if !isPod {
			if e := p.ev.Endpoint(p.keys[k].rep); e != nil {
				id, isPod = e.Identity, true
			}
		}
		if isPod && len(egressNames) > 0 {
			for _, n := range p.named[id] {
				if egressNames[n.Name] {
					named = append(named, n)
				}
			}
		}
		if len(sigs[k]) == 0 && len(named) == 0 {
			np.classless++
			continue
		}
		sb = sb[:0]
		for _, a := range sigs[k] {
			sb = strconv.AppendInt(sb, int64(a), 10)
			sb = append(sb, ',')
		}
		sb = append(sb, '|')
		if len(named) > 0 {
			sb = append(sb, namedKey(named)...)
		}
		c := bySig[string(sb)]
		if c == nil {
			c = &class{sig: sigs[k], named: named, namedStr: namedKey(named), own: own}
			bySig[string(sb)] = c
			np.classes = append(np.classes, c)
		}
		c.keys = append(c.keys, int32(k))
	}
	// Keys are sorted, so numbering classes by their first key is stable
	// under unrelated changes.
	sort.Slice(np.classes, func(i, j int) bool { return np.classes[i].keys[0] < np.classes[j].keys[0] })
	for i, c := range np.classes {
		c.id = uint32(i + 1)
		np.classKeys += len(c.keys)
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
//
// Every class gets a verdict function over (protocol, port). The most
// common function is emitted once under ClassAny; a class whose function
// differs gets entries where it differs (an entry with ActionNone where
// the class has no verdict but ClassAny has). So a rule whose peer is
// "the cluster" costs entries for the few classes outside it, not for the
// many inside.
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
	implicit := enforced && dir == ir.Ingress && !g.shared
	if len(rules) == 0 && !implicit {
		return
	}
	var wildcard []*ir.Rule
	if len(np.touched) != len(np.classes)+1 {
		np.touched = make([]bool, len(np.classes)+1)
	}
	touched := np.touched
	clear(touched)
	for _, r := range rules {
		if len(r.Peers) == 0 {
			wildcard = append(wildcard, r)
			// Named ports of egress rules resolve per destination: the
			// classes that name ports need functions of their own.
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
	if implicit {
		for _, c := range np.classes {
			if c.own {
				touched[c.id] = true
			}
		}
	}
	protos := append([]ir.Proto(nil), protoDims...)
	for _, r := range rules {
		for _, pt := range r.Ports {
			if pt.Proto != ir.ProtoAny && !slices.Contains(protos, pt.Proto) {
				protos = append(protos, pt.Proto)
			}
		}
	}
	var ingressNamed []ir.NamedPort
	if dir == ir.Ingress {
		ingressNamed = g.named
	}
	// Functions, memoised by the rules that match and the named ports
	// they resolve: most classes share a handful.
	memo := map[string]*verdictFn{}
	ingressNamedStr := namedKey(ingressNamed)
	var kb []byte
	fnOf := func(matching []*ir.Rule, own bool, named []ir.NamedPort, namedStr string) *verdictFn {
		kb = kb[:0]
		for _, r := range matching {
			kb = strconv.AppendUint(kb, uint64(p.ruleID[r]), 10)
			kb = append(kb, ',')
		}
		if own {
			kb = append(kb, "own"...)
		}
		kb = append(kb, '|')
		kb = append(kb, namedStr...)
		if f, ok := memo[string(kb)]; ok {
			return f
		}
		k := string(kb)
		f := computeFn(p, matching, own, named, protos)
		f.key = k
		memo[k] = f
		return f
	}
	untouched := fnOf(wildcard, false, ingressNamed, ingressNamedStr)
	// Weigh each function by the class keys it covers: class 0 stands for
	// every key of no class.
	// Only touched classes can differ from the untouched function; their
	// keys are taken from its weight.
	var touchedIDs []uint32
	for id, t := range touched {
		if t {
			touchedIDs = append(touchedIDs, uint32(id))
		}
	}
	fns := make(map[uint32]*verdictFn, len(touchedIDs))
	untouched.weight += 1 + np.classless + np.classKeys
	for _, id := range touchedIDs {
		c := np.classes[id-1]
		var matching []*ir.Rule
		for _, r := range rules {
			if np.ruleMatchesClass(r, c, reqAllow, reqDeny) {
				matching = append(matching, r)
			}
		}
		named, namedStr := ingressNamed, ingressNamedStr
		if dir == ir.Egress {
			named, namedStr = c.named, c.namedStr
		}
		f := fnOf(matching, implicit && c.own, named, namedStr)
		fns[id] = f
		f.weight += len(c.keys)
		untouched.weight -= len(c.keys)
	}
	// The background is the most common function; ties go to the one
	// whose key sorts first, for determinism.
	var bg *verdictFn
	for _, f := range memo {
		if bg == nil || f.weight > bg.weight || (f.weight == bg.weight && f.key < bg.key) {
			bg = f
		}
	}
	base := PolicyKey{Policy: g.id, Dir: uint8(dir)}
	k := base
	k.Class = ClassAny
	np.emitFn(k, bg, nil)
	emitClass := func(id uint32, f *verdictFn) {
		if f != bg {
			k := base
			k.Class = id
			np.emitFn(k, f, bg)
		}
	}
	if bg == untouched {
		for _, id := range touchedIDs {
			emitClass(id, fns[id])
		}
		return
	}
	emitClass(0, untouched)
	for _, c := range np.classes {
		f, ok := fns[c.id]
		if !ok {
			f = untouched
		}
		emitClass(c.id, f)
	}
}

// verdictFn is a verdict for every (protocol, port): other is the verdict
// of protocols outside dims (and without ports); dims holds, per protocol,
// segments covering 0..65535.
type verdictFn struct {
	key    string
	weight int // class keys that have this function
	other  PolicyValue
	dims   []protoSegs
}

type protoSegs struct {
	proto ir.Proto
	segs  []segment
}

type segment struct {
	lo, hi uint32
	v      PolicyValue
}

// computeFn resolves deny precedence: the first deny rule that holds, else
// the first allow rule (or the implicit own-node allow), else no verdict.
func computeFn(p *plan, rules []*ir.Rule, implicitAllow bool, named []ir.NamedPort, protos []ir.Proto) *verdictFn {
	verdict := func(holds func(i int) bool) PolicyValue {
		for i, r := range rules {
			if r.Action == ir.Deny && holds(i) {
				return PolicyValue{Action: ActionDeny, Rule: p.ruleID[r]}
			}
		}
		for i, r := range rules {
			if r.Action == ir.Allow && holds(i) {
				return PolicyValue{Action: ActionAllow, Rule: p.ruleID[r]}
			}
		}
		if implicitAllow {
			return PolicyValue{Action: ActionAllow}
		}
		return PolicyValue{}
	}
	f := &verdictFn{}
	f.other = verdict(func(i int) bool { return holdsForOtherProtos(rules[i]) })
	per := make([][]portRange, len(rules))
	allOf := make([]bool, len(rules))
	for _, proto := range protos {
		cuts := []uint32{0, 65536}
		for i, r := range rules {
			per[i], allOf[i] = rangesFor(r, proto, named)
			for _, rg := range per[i] {
				cuts = append(cuts, rg.lo, rg.hi+1)
			}
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		var segs []segment
		for ci := 0; ci+1 < len(cuts); ci++ {
			lo, hi := cuts[ci], cuts[ci+1]-1
			v := verdict(func(i int) bool {
				if allOf[i] {
					return true
				}
				for _, rg := range per[i] {
					if lo >= rg.lo && lo <= rg.hi {
						return true
					}
				}
				return false
			})
			if n := len(segs); n > 0 && segs[n-1].v == v {
				segs[n-1].hi = hi
				continue
			}
			segs = append(segs, segment{lo, hi, v})
		}
		f.dims = append(f.dims, protoSegs{proto, segs})
	}
	return f
}

// valueAt returns a function's verdict for a protocol dimension at port.
func (ps *protoSegs) valueAt(port uint32) PolicyValue {
	i, _ := slices.BinarySearchFunc(ps.segs, port, func(s segment, p uint32) int {
		switch {
		case s.hi < p:
			return -1
		case s.lo > p:
			return 1
		}
		return 0
	})
	return ps.segs[i].v
}

// emitFn emits a function under key k (its Class set). With bg nil the
// function is emitted whole: its verdict for other protocols as a
// protocol-wildcard entry, and the ports where it differs from that. With
// bg set, a lookup that misses k falls back to bg: when both agree on other
// protocols, only the ports where they differ are emitted; otherwise the
// function is emitted whole, with an explicit entry even for "no verdict".
func (np *nodePlan) emitFn(k PolicyKey, f, bg *verdictFn) {
	whole := bg == nil || f.other != bg.other
	if whole && (f.other != PolicyValue{} || bg != nil) {
		e := k
		e.Bits = policyFixedBits
		np.policy = append(np.policy, policyEntry{e, f.other})
	}
	for di, d := range f.dims {
		var ref *protoSegs
		if !whole {
			ref = &bg.dims[di]
		}
		// Cut at both functions' boundaries; emit where f differs from
		// what the lookup would otherwise find.
		cuts := make([]uint32, 0, 2*len(d.segs)+2)
		for _, sg := range d.segs {
			cuts = append(cuts, sg.lo)
		}
		if ref != nil {
			for _, sg := range ref.segs {
				cuts = append(cuts, sg.lo)
			}
			slices.Sort(cuts)
			cuts = slices.Compact(cuts)
		}
		cuts = append(cuts, 65536)
		runLo, runOn := uint32(0), false
		var runV PolicyValue
		flush := func(hi uint32) {
			if !runOn {
				return
			}
			for _, pf := range portPrefixes(runLo, hi) {
				e := k
				e.Proto = uint8(d.proto)
				e.Bits = policyFixedBits + 8 + pf.bits
				e.Port = uint16(pf.start)
				np.policy = append(np.policy, policyEntry{e, runV})
			}
		}
		for ci := 0; ci+1 < len(cuts); ci++ {
			lo := cuts[ci]
			v := d.valueAt(lo)
			other := f.other
			if ref != nil {
				other = ref.valueAt(lo)
			}
			on := v != other
			if on && runOn && v == runV {
				continue
			}
			flush(lo - 1)
			runLo, runOn, runV = lo, on, v
		}
		flush(65535)
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
