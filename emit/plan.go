package emit

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicenet/sluice/ir"
)

// ipEntry is one ipcache prefix with what the dump says about it.
type ipEntry struct {
	prefix netip.Prefix
	val    IPCacheValue
	rep    netip.Addr // an address whose longest match is this entry
	what   string
}

// keyInfo is a distinct class key with a representative address.
type keyInfo struct {
	key ClassKey
	rep netip.Addr
	// runtime: the key of a pod the agent may add at run time (identity
	// key.Identity at an address like rep), which no listed pod has.
	runtime bool
}

// plan is the cluster-wide part of lowering, computed once and shared by
// every node: ipcache, regions, class keys, peer alternatives and what
// they match, and the rule table.
type plan struct {
	c        *ir.Cluster
	ev       *ir.Evaluator
	nodes    []string
	nodeIdx  map[string]uint16
	tunnel   map[string]netip.Addr
	ipcache  []ipEntry
	regions  []string // region id → description
	keys     []keyInfo
	keyIndex map[ClassKey]int

	alts      []ir.Peer
	altIndex  map[string]int
	altRemote [][]int32 // alt → keys matched, seen from another node
	altHost   [][]int32 // alt → node keys matched when the node is the viewer
	ruleAlts  map[*ir.Rule][]int32
	ruleID    map[*ir.Rule]uint32
	rules     []ruleInfo // rule id-1 → rule
	policyOf  map[*ir.Rule]*ir.Policy
	reqAlt    map[*ir.Policy][4][]int32 // ingress, egress, ingressDeny, egressDeny
	named     map[uint32][]ir.NamedPort

	policyIdx    map[*ir.Policy]int
	ingressNamed map[*ir.Policy]bool // an ingress rule uses a named port
	hasRequires  map[*ir.Policy]bool // fromRequires or toRequires

	sharedMaps map[string]*Image
	exactMin   int  // Options.ExactIPCacheMin
	reject     bool // Options.NoBackends is reject
	// runtime is, per node, the workloads whose new pods its agent
	// enforces at once (computeRuntimeCandidates).
	runtime  map[string][]*ir.Workload
	maglevM  int // Options.MaglevTableSize
	ruleOnce sync.Once
	ruleStr  []string
}

type ruleInfo struct {
	policy *ir.Policy
	rule   *ir.Rule
}

func newPlan(c *ir.Cluster) (*plan, error) {
	p := &plan{c: c, ev: ir.NewEvaluator(c), nodeIdx: map[string]uint16{}, tunnel: map[string]netip.Addr{},
		keyIndex: map[ClassKey]int{}, altIndex: map[string]int{}, ruleAlts: map[*ir.Rule][]int32{},
		ruleID: map[*ir.Rule]uint32{}, policyOf: map[*ir.Rule]*ir.Policy{}, reqAlt: map[*ir.Policy][4][]int32{},
		named: map[uint32][]ir.NamedPort{}}
	if len(c.Nodes) >= int(NodeNone) {
		return nil, fmt.Errorf("%d nodes: at most %d fit the 16-bit node index", len(c.Nodes), NodeNone-1)
	}
	for i, n := range c.Nodes {
		p.nodes = append(p.nodes, n.Name)
		p.nodeIdx[n.Name] = uint16(i)
		for _, ip := range n.IPs {
			if ip.Is4() {
				p.tunnel[n.Name] = ip
				break
			}
		}
	}
	p.collectRules()
	if err := p.buildIPCache(); err != nil {
		return nil, err
	}
	p.buildKeys()
	if err := p.checkNamedPorts(); err != nil {
		return nil, err
	}
	p.matchAlts()
	return p, nil
}

// peerKey identifies a peer alternative by content, so that the same
// selector written in many policies is matched once.
func peerKey(pe *ir.Peer) string {
	var b strings.Builder
	b.WriteString(string(pe.Kind))
	b.WriteByte('|')
	switch pe.Kind {
	case ir.PeerEndpoints, ir.PeerNodes:
		b.WriteString(pe.Selector.String())
	case ir.PeerCIDR:
		b.WriteString(pe.CIDR.String())
		for _, e := range pe.Except {
			b.WriteString(" -" + e.String())
		}
		if pe.InCluster {
			b.WriteString(" +cluster")
		}
	case ir.PeerEntity:
		b.WriteString(pe.Entity)
	}
	return b.String()
}

func (p *plan) alt(pe *ir.Peer) int32 {
	k := peerKey(pe)
	if i, ok := p.altIndex[k]; ok {
		return int32(i)
	}
	p.altIndex[k] = len(p.alts)
	p.alts = append(p.alts, *pe)
	return int32(len(p.alts) - 1)
}

// collectRules numbers every rule of the cluster (1-based, in policy
// order, so that the lowest number is the rule the evaluator names) and
// indexes its peers.
func (p *plan) collectRules() {
	p.policyIdx = make(map[*ir.Policy]int, len(p.c.Policies))
	p.ingressNamed = map[*ir.Policy]bool{}
	p.hasRequires = map[*ir.Policy]bool{}
	for i := range p.c.Policies {
		pol := &p.c.Policies[i]
		p.policyIdx[pol] = i
		for j := range pol.Rules {
			r := &pol.Rules[j]
			if r.Direction == ir.Ingress && hasNamedPort(r) {
				p.ingressNamed[pol] = true
			}
			p.rules = append(p.rules, ruleInfo{pol, r})
			p.ruleID[r] = uint32(len(p.rules))
			p.policyOf[r] = pol
			alts := make([]int32, 0, len(r.Peers))
			for k := range r.Peers {
				alts = append(alts, p.alt(&r.Peers[k]))
			}
			p.ruleAlts[r] = alts
		}
		var req [4][]int32
		for d, sels := range [][]ir.Selector{pol.IngressRequires, pol.EgressRequires, pol.IngressDenyRequires, pol.EgressDenyRequires} {
			for k := range sels {
				sel := sels[k]
				req[d] = append(req[d], p.alt(&ir.Peer{Kind: ir.PeerEndpoints, Selector: &sel}))
			}
		}
		p.reqAlt[pol] = req
		p.hasRequires[pol] = len(req[0])+len(req[1])+len(req[2])+len(req[3]) > 0
	}
}

func u32(a netip.Addr) uint32 { b := a.As4(); return be.Uint32(b[:]) }
func fromU32(v uint32) netip.Addr {
	var b [4]byte
	be.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
func lastU32(pr netip.Prefix) uint32 {
	return u32(pr.Addr()) | (uint32(1)<<(32-pr.Bits()) - 1) | boolMask(pr.Bits() == 0)
}
func boolMask(all bool) uint32 {
	if all {
		return 0xffffffff
	}
	return 0
}

// buildIPCache lays out every prefix the datapath must tell apart: pod and
// node addresses, apiserver addresses, pod CIDRs, every CIDR and except
// of every policy, and 0.0.0.0/0. Each gets the region of the addresses it
// is the longest match for.
func (p *plan) buildIPCache() error {
	byPrefix := map[netip.Prefix]*ipEntry{}
	rank := map[netip.Prefix]int{}
	add := func(pr netip.Prefix, v IPCacheValue, what string, r int) {
		if !pr.Addr().Is4() {
			return // IPv4 datapath; IPv6 peers stay in the IR
		}
		if old, ok := byPrefix[pr]; ok && rank[pr] >= r {
			if rank[pr] == r && r >= 3 {
				old.what += ", " + what
			}
			return
		}
		byPrefix[pr] = &ipEntry{prefix: pr, val: v, what: what}
		rank[pr] = r
	}
	var cidrs []netip.Prefix
	for _, ri := range p.rules {
		for _, pe := range ri.rule.Peers {
			if pe.Kind == ir.PeerCIDR && pe.CIDR.Addr().Is4() {
				cidrs = append(cidrs, pe.CIDR)
				cidrs = append(cidrs, pe.Except...)
			}
		}
	}
	slices.SortFunc(cidrs, comparePrefix)
	cidrs = slices.Compact(cidrs)
	add(netip.MustParsePrefix("0.0.0.0/0"), IPCacheValue{Identity: ir.IdentityWorld, Node: NodeNone}, "world", 0)
	for _, pr := range cidrs {
		add(pr, IPCacheValue{Identity: ir.IdentityWorld, Node: NodeNone}, "policy CIDR", 1)
	}
	for _, n := range p.c.Nodes {
		for _, pr := range n.PodCIDRs {
			add(pr, IPCacheValue{Identity: ir.IdentityWorld, Node: p.nodeIdx[n.Name], Tunnel: p.tunnel[n.Name], Flags: FlagPodCIDR}, "pod CIDR of node "+n.Name, 2)
		}
	}
	apis := ir.APIServerIPs(p.c)
	for _, ip := range apis {
		add(netip.PrefixFrom(ip, ip.BitLen()), IPCacheValue{Identity: ir.IdentityKubeAPIServer, Node: NodeNone, Flags: FlagAPIServer}, "kube-apiserver", 3)
	}
	for _, n := range p.c.Nodes {
		for _, ip := range n.IPs {
			v := IPCacheValue{Identity: ir.IdentityRemoteNode, Node: p.nodeIdx[n.Name], Tunnel: p.tunnel[n.Name], Flags: FlagNode}
			if slices.Contains(apis, ip) {
				v.Identity, v.Flags = ir.IdentityKubeAPIServer, FlagNode|FlagAPIServer
			}
			add(netip.PrefixFrom(ip, ip.BitLen()), v, "node "+n.Name, 4)
		}
	}
	for i := range p.c.Endpoints {
		e := &p.c.Endpoints[i]
		for _, ip := range e.IPs {
			add(netip.PrefixFrom(ip, ip.BitLen()), IPCacheValue{Identity: e.Identity, Node: p.nodeIdx[e.Node], Tunnel: p.tunnel[e.Node], Flags: FlagEndpoint}, "pod "+e.Key(), 5)
		}
	}
	entries := make([]ipEntry, 0, len(byPrefix))
	for _, e := range byPrefix {
		entries = append(entries, *e)
	}
	sort.Slice(entries, func(i, j int) bool { return comparePrefix(entries[i].prefix, entries[j].prefix) < 0 })

	// A representative of each prefix: its first address not covered by a
	// more specific prefix. Prefixes sorted by address then length put a
	// prefix's sub-prefixes right after it.
	for i := range entries {
		e := &entries[i]
		a := uint64(u32(e.prefix.Addr()))
		end := uint64(lastU32(e.prefix))
		for j := i + 1; j < len(entries) && uint64(u32(entries[j].prefix.Addr())) <= end; j++ {
			s := uint64(u32(entries[j].prefix.Addr()))
			if s > a {
				break
			}
			if l := uint64(lastU32(entries[j].prefix)) + 1; l > a {
				a = l
			}
		}
		if a > end {
			a = uint64(u32(e.prefix.Addr())) // shadowed entirely: never the longest match
		}
		e.rep = fromU32(uint32(a))
	}

	// Regions: the set of policy CIDRs containing the representative.
	regionOf := map[string]uint16{"": 0}
	var sets []string
	setOf := make([]string, len(entries))
	for i := range entries {
		var b strings.Builder
		for k, pr := range cidrs {
			if pr.Contains(entries[i].rep) {
				b.WriteString(strconv.Itoa(k))
				b.WriteByte(',')
			}
		}
		setOf[i] = b.String()
		if _, ok := regionOf[setOf[i]]; !ok {
			regionOf[setOf[i]] = 0
			sets = append(sets, setOf[i])
		}
	}
	sort.Strings(sets)
	if len(sets) >= 0xffff {
		return fmt.Errorf("%d CIDR regions: the policies' CIDRs split the address space into more than the 65535 regions a 16-bit region id holds", len(sets)+1)
	}
	p.regions = []string{"(no policy CIDR)"}
	for i, s := range sets {
		regionOf[s] = uint16(i + 1)
		var names []string
		for _, k := range strings.Split(strings.TrimSuffix(s, ","), ",") {
			n, _ := strconv.Atoi(k)
			names = append(names, cidrs[n].String())
		}
		p.regions = append(p.regions, strings.Join(names, " "))
	}
	for i := range entries {
		entries[i].val.Region = regionOf[setOf[i]]
	}
	p.ipcache = entries
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// classKeyOf is the class key of an ipcache entry.
func classKeyOf(v IPCacheValue) ClassKey {
	k := ClassKey{Identity: v.Identity, Region: v.Region, PeerNode: NodeNone}
	if v.Flags&FlagNode != 0 {
		k.PeerNode = v.Node
	}
	return k
}

func (p *plan) buildKeys() {
	for _, e := range p.ipcache {
		k := classKeyOf(e.val)
		if _, ok := p.keyIndex[k]; ok {
			continue
		}
		p.keyIndex[k] = len(p.keys)
		p.keys = append(p.keys, keyInfo{key: k, rep: e.rep})
	}
	p.addRuntimeKeys()
	sort.Slice(p.keys, func(i, j int) bool { return lessKey(p.keys[i].key, p.keys[j].key) })
	for i, k := range p.keys {
		p.keyIndex[k.key] = i
	}
}

// addRuntimeKeys adds the class keys of the pods an agent may add at run
// time: each node's runtime identities (see runtimeCandidates) in each
// region an address of the node's pod CIDRs can fall in (any region, for
// a node whose pod CIDRs are not given). Without them such a pod would be
// class 0 to the rules here, matched by no selector.
func (p *plan) addRuntimeKeys() {
	p.computeRuntimeCandidates()
	var prefixes []*ipEntry // the few entries that are not /32s
	for i := range p.ipcache {
		if p.ipcache[i].prefix.Bits() < 32 {
			prefixes = append(prefixes, &p.ipcache[i])
		}
	}
	for _, n := range p.c.Nodes {
		type region struct {
			id  uint16
			rep netip.Addr
		}
		var regions []region
		seen := map[uint16]bool{}
		add := func(e *ipEntry) {
			if !seen[e.val.Region] {
				seen[e.val.Region] = true
				regions = append(regions, region{e.val.Region, e.rep})
			}
		}
		// The entries that are the longest match of some address of a pod
		// CIDR: those inside it, and the longest that holds it whole.
		for _, pc := range n.PodCIDRs {
			var whole *ipEntry
			for _, e := range prefixes {
				switch {
				case !e.prefix.Overlaps(pc):
				case e.prefix.Bits() > pc.Bits():
					add(e)
				case whole == nil || e.prefix.Bits() > whole.prefix.Bits():
					whole = e
				}
			}
			if whole != nil {
				add(whole)
			}
		}
		if len(n.PodCIDRs) == 0 { // anywhere
			for _, e := range prefixes {
				add(e)
			}
		}
		for _, w := range p.runtime[n.Name] {
			for _, r := range regions {
				k := ClassKey{Identity: w.Identity, Region: r.id, PeerNode: NodeNone}
				if _, ok := p.keyIndex[k]; ok {
					continue
				}
				p.keyIndex[k] = len(p.keys)
				p.keys = append(p.keys, keyInfo{key: k, rep: r.rep, runtime: true})
			}
		}
	}
}

// computeRuntimeCandidates finds, per node, the workloads whose new pods
// the agent of that node enforces at once: those with the identity of a
// pod already on the node (a rollout, a restart, a scale-up), DaemonSets
// (a pod on every node), and Pods without an address yet. A pod of any
// other workload starts with the reserved init identity until the next
// compile places it.
func (p *plan) computeRuntimeCandidates() {
	local := map[string]map[uint32]bool{}
	for i := range p.c.Endpoints {
		e := &p.c.Endpoints[i]
		if local[e.Node] == nil {
			local[e.Node] = map[uint32]bool{}
		}
		local[e.Node][e.Identity] = true
	}
	p.runtime = map[string][]*ir.Workload{}
	for _, n := range p.c.Nodes {
		ids := local[n.Name]
		for i := range p.c.Workloads {
			w := &p.c.Workloads[i]
			if ids[w.Identity] || w.Kind == "DaemonSet" || w.Kind == "Pod" {
				p.runtime[n.Name] = append(p.runtime[n.Name], w)
			}
		}
	}
}

func lessKey(a, b ClassKey) bool {
	if a.Identity != b.Identity {
		return a.Identity < b.Identity
	}
	if a.Region != b.Region {
		return a.Region < b.Region
	}
	return a.PeerNode < b.PeerNode
}

// checkNamedPorts makes sure that pods sharing an identity agree on every
// port name that an egress rule uses: egress named ports resolve on the
// destination, which the datapath knows only by identity.
func (p *plan) checkNamedPorts() error {
	used := map[string]bool{}
	for _, ri := range p.rules {
		if ri.rule.Direction == ir.Egress {
			for _, pt := range ri.rule.Ports {
				if pt.Name != "" {
					used[pt.Name] = true
				}
			}
		}
	}
	first := map[uint32]*ir.Endpoint{}
	var errs []string
	for i := range p.c.Endpoints {
		e := &p.c.Endpoints[i]
		f := first[e.Identity]
		if f == nil {
			first[e.Identity] = e
			p.named[e.Identity] = e.NamedPorts
			continue
		}
		for name := range used {
			if a, b := namedFor(f.NamedPorts, name), namedFor(e.NamedPorts, name); a != b {
				errs = append(errs, fmt.Sprintf("%s: pods %s and %s share identity %d but resolve port name %q differently (%s vs %s); an egress rule uses that name, and the datapath knows a destination only by identity: give the ports one number or the pods different labels",
					e.Source, f.Key(), e.Key(), e.Identity, name, a, b))
			}
		}
	}
	// A workload's pods that the agent adds at run time name ports as its
	// template does.
	for i := range p.c.Workloads {
		if w := &p.c.Workloads[i]; first[w.Identity] == nil {
			if _, ok := p.named[w.Identity]; !ok {
				p.named[w.Identity] = w.NamedPorts
			}
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

func namedFor(nps []ir.NamedPort, name string) string {
	var out []string
	for _, np := range nps {
		if np.Name == name {
			out = append(out, fmt.Sprintf("%d/%s", np.Port, np.Proto))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// peerInfo describes a class key's representative as seen from view.
func (p *plan) peerInfo(k int, view string) ir.PeerInfo {
	if p.keys[k].runtime {
		return p.ev.PeerOfIdentity(p.keys[k].rep, p.keys[k].key.Identity)
	}
	return p.ev.Peer(p.keys[k].rep, view)
}

// matchAlts computes, for every peer alternative, the class keys it
// matches. Endpoint selectors pinned to namespaces only look at the keys
// of those namespaces' identities.
func (p *plan) matchAlts() {
	idNS := map[uint32]string{}
	for _, id := range p.c.Identities {
		if ns, ok := id.Labels[ir.LabelNamespace]; ok {
			idNS[id.ID] = ns
		}
	}
	byNS := map[string][]int32{}
	var nodeKeys []int32
	for i, k := range p.keys {
		if ns, ok := idNS[k.key.Identity]; ok && k.key.PeerNode == NodeNone && (k.runtime || p.ev.Endpoint(k.rep) != nil) {
			byNS[ns] = append(byNS[ns], int32(i))
		}
		if k.key.PeerNode != NodeNone {
			nodeKeys = append(nodeKeys, int32(i))
		}
	}
	remote := make([]ir.PeerInfo, len(p.keys))
	for i := range p.keys {
		remote[i] = p.peerInfo(i, "")
	}
	all := make([]int32, len(p.keys))
	for i := range all {
		all[i] = int32(i)
	}
	p.altRemote = make([][]int32, len(p.alts))
	p.altHost = make([][]int32, len(p.alts))
	for a := range p.alts {
		pe := &p.alts[a]
		cands := all
		if pe.Kind == ir.PeerEndpoints {
			if nss := pinnedNamespaces(pe.Selector); nss != nil {
				cands = nil
				for _, ns := range nss {
					cands = append(cands, byNS[ns]...)
				}
			}
		}
		for _, k := range cands {
			if p.ev.PeerMatches(pe, remote[k], nil) {
				p.altRemote[a] = append(p.altRemote[a], k)
			}
		}
		slices.Sort(p.altRemote[a])
		for _, k := range nodeKeys {
			host := p.peerInfo(int(k), p.nodes[p.keys[k].key.PeerNode])
			if p.ev.PeerMatches(pe, host, nil) {
				p.altHost[a] = append(p.altHost[a], k)
			}
		}
	}
}

// pinnedNamespaces returns the namespaces a selector is restricted to, or
// nil when it is not.
func pinnedNamespaces(sel *ir.Selector) []string {
	if sel == nil {
		return nil
	}
	for _, r := range sel.Requirements {
		if r.Key == ir.LabelNamespace && r.Op == ir.OpIn {
			return r.Values
		}
	}
	return nil
}
