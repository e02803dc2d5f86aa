package ir

import (
	"net/netip"
	"slices"
)

// Reasons an Evaluate side gives for its verdict.
const (
	ReasonNotPod      = "not a pod: no policy applies"
	ReasonSelf        = "a pod talking to itself is always allowed"
	ReasonOwnNode     = "traffic from the pod's own node is always allowed"
	ReasonNotIsolated = "no policy isolates this direction"
	ReasonAllowed     = "allowed by rule"
	ReasonDenied      = "denied by rule"
	ReasonNoMatch     = "isolated and no rule allows it"
	// ReasonIPv6: the datapath does not enforce IPv6 yet, so it drops IPv6
	// to and from a pod that any policy isolates, in either direction, or
	// applies a deny rule to (see DropsIPv6).
	ReasonIPv6 = "IPv6 is not enforced yet: IPv6 to and from a pod that a policy isolates or applies a deny rule to is dropped"
	// ReasonIPv6Only: the datapath knows a pod's interface by its IPv4
	// address, so it drops all IPv6 of a pod that has none.
	ReasonIPv6Only = "IPv6 is not enforced yet: a pod without an IPv4 address has all its IPv6 dropped"
)

// Query is the first packet of a connection.
type Query struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	Proto Proto      `json:"proto"`
	// Port is the destination port, or the ICMP type for ICMP.
	Port uint16 `json:"port"`
}

// RuleRef names the rule behind a verdict.
type RuleRef struct {
	Policy string `json:"policy"` // "Kind namespace/name"
	Field  string `json:"field"`  // e.g. spec.ingress[0]
	Action Action `json:"action"`
	Source Source `json:"source"`
}

// Side is the verdict of one direction: the egress policy of the source or
// the ingress policy of the destination.
type Side struct {
	Direction Direction `json:"direction"`
	// Endpoint is the pod whose policy was evaluated, "" when the address
	// is not a pod of the cluster.
	Endpoint  string    `json:"endpoint,omitempty"`
	Isolating []string  `json:"isolating,omitempty"` // policies isolating this direction
	Verdict   Action    `json:"verdict"`
	Reason    string    `json:"reason"`
	Rule      *RuleRef  `json:"rule,omitempty"`    // the deciding rule
	Matched   []RuleRef `json:"matched,omitempty"` // every allow rule that matched
}

// Decision is the verdict for a connection: allowed when both the source's
// egress and the destination's ingress allow it. Replies of an allowed
// connection are allowed.
type Decision struct {
	Query   Query    `json:"query"`
	Verdict Action   `json:"verdict"`
	From    PeerInfo `json:"from"`
	To      PeerInfo `json:"to"`
	Egress  Side     `json:"egress"`
	Ingress Side     `json:"ingress"`
}

// PeerInfo is what an address is, as seen from one node.
type PeerInfo struct {
	IP netip.Addr `json:"ip"`
	// Endpoint is "namespace/name" for a pod.
	Endpoint string `json:"endpoint,omitempty"`
	// Node names the node whose address IP is.
	Node     string            `json:"node,omitempty"`
	Identity uint32            `json:"identity"`
	Labels   map[string]string `json:"labels,omitempty"`

	ep   *Endpoint
	node *Node
}

// Evaluator answers queries against a Cluster. Build one with
// NewEvaluator; it is safe for concurrent use after that.
type Evaluator struct {
	c         *Cluster
	podByIP   map[netip.Addr]*Endpoint
	nodeByIP  map[netip.Addr]*Node
	nodes     map[string]*Node
	idLabels  map[uint32]map[string]string
	apiserver map[netip.Addr]bool
	selecting map[uint32][]*Policy
}

// NewEvaluator indexes c.
func NewEvaluator(c *Cluster) *Evaluator {
	ev := &Evaluator{
		c:         c,
		podByIP:   map[netip.Addr]*Endpoint{},
		nodeByIP:  map[netip.Addr]*Node{},
		nodes:     map[string]*Node{},
		idLabels:  map[uint32]map[string]string{},
		apiserver: map[netip.Addr]bool{},
		selecting: map[uint32][]*Policy{},
	}
	for i := range c.Identities {
		ev.idLabels[c.Identities[i].ID] = c.Identities[i].Labels
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		ev.nodes[n.Name] = n
		for _, ip := range n.IPs {
			ev.nodeByIP[ip] = n
		}
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		for _, ip := range e.IPs {
			ev.podByIP[ip] = e
		}
	}
	for _, ip := range APIServerIPs(c) {
		ev.apiserver[ip] = true
	}
	// Policies pinned to namespaces only look at those namespaces'
	// identities; the rest at all of them.
	byNS := map[string][]*Identity{}
	var workloads []*Identity
	for i := range c.Identities {
		id := &c.Identities[i]
		if id.Reserved {
			continue
		}
		workloads = append(workloads, id)
		byNS[id.Labels[LabelNamespace]] = append(byNS[id.Labels[LabelNamespace]], id)
	}
	for i := range c.Policies {
		p := &c.Policies[i]
		cands := workloads
		if nss := pinned(&p.Subject); nss != nil {
			cands = nil
			for _, ns := range nss {
				cands = append(cands, byNS[ns]...)
			}
		}
		for _, id := range cands {
			if p.Subject.Matches(id.Labels) {
				ev.selecting[id.ID] = append(ev.selecting[id.ID], p)
			}
		}
	}
	return ev
}

// pinned returns the namespaces a selector is restricted to, or nil.
func pinned(sel *Selector) []string {
	for _, r := range sel.Requirements {
		if r.Key == LabelNamespace && r.Op == OpIn {
			return r.Values
		}
	}
	return nil
}

// Cluster returns the cluster the evaluator answers for.
func (ev *Evaluator) Cluster() *Cluster { return ev.c }

// APIServerIPs returns the addresses that the kube-apiserver entity
// selects: the cluster's APIServerIPs and the backend addresses of
// default/kubernetes.
func APIServerIPs(c *Cluster) []netip.Addr {
	ips := slices.Clone(c.APIServerIPs)
	for i := range c.Services {
		s := &c.Services[i]
		if s.Namespace == "default" && s.Name == "kubernetes" {
			for _, b := range s.Backends {
				ips = append(ips, b.IP)
			}
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips)
}

// Endpoint returns the pod with the given address, or nil.
func (ev *Evaluator) Endpoint(ip netip.Addr) *Endpoint { return ev.podByIP[ip] }

// Node returns the node with the given name, or nil.
func (ev *Evaluator) Node(name string) *Node { return ev.nodes[name] }

// Peer describes ip as seen from the node named view: the node's own
// addresses are the host, other nodes' are remote-node, pods carry their
// workload identity, and anything else is world.
func (ev *Evaluator) Peer(ip netip.Addr, view string) PeerInfo {
	p := PeerInfo{IP: ip}
	if e := ev.podByIP[ip]; e != nil {
		p.ep, p.Endpoint, p.Identity, p.Labels = e, e.Key(), e.Identity, ev.idLabels[e.Identity]
		return p
	}
	labels := map[string]string{}
	if n := ev.nodeByIP[ip]; n != nil {
		p.node, p.Node = n, n.Name
		if n.Name == view {
			p.Identity, labels[LabelHost] = IdentityHost, ""
		} else {
			p.Identity, labels[LabelRemoteNode] = IdentityRemoteNode, ""
		}
	} else {
		p.Identity, labels[LabelWorld] = IdentityWorld, ""
	}
	if ev.apiserver[ip] {
		labels[LabelKubeAPIServer] = ""
		if p.Identity != IdentityHost {
			p.Identity = IdentityKubeAPIServer
		}
	}
	p.Labels = labels
	return p
}

// PeerOfIdentity describes a pod of the identity at ip that the cluster
// does not list: a pod created after the compile, as its node's agent
// enforces it.
func (ev *Evaluator) PeerOfIdentity(ip netip.Addr, identity uint32) PeerInfo {
	labels := ev.idLabels[identity]
	return PeerInfo{IP: ip, Identity: identity, Labels: labels,
		ep: &Endpoint{Namespace: labels[LabelNamespace], IPs: []netip.Addr{ip}, Identity: identity}}
}

// Selecting returns the policies whose subject selects the identity, in
// cluster order.
func (ev *Evaluator) Selecting(identity uint32) []*Policy { return ev.selecting[identity] }

// Evaluate returns the verdict for the first packet of a connection.
func (ev *Evaluator) Evaluate(q Query) Decision {
	d := Decision{Query: q}
	srcEp, dstEp := ev.podByIP[q.Src], ev.podByIP[q.Dst]
	srcView, dstView := "", ""
	if srcEp != nil {
		srcView = srcEp.Node
	}
	if dstEp != nil {
		dstView = dstEp.Node
	}
	// Each side sees the other from its own node.
	d.From = ev.Peer(q.Src, dstView)
	d.To = ev.Peer(q.Dst, srcView)
	if srcEp != nil && srcEp == dstEp {
		d.Egress = Side{Direction: Egress, Endpoint: srcEp.Key(), Verdict: Allow, Reason: ReasonSelf}
		d.Ingress = Side{Direction: Ingress, Endpoint: dstEp.Key(), Verdict: Allow, Reason: ReasonSelf}
		d.Verdict = Allow
		return d
	}
	d.Egress = ev.side(Egress, srcEp, d.To, q)
	d.Ingress = ev.side(Ingress, dstEp, d.From, q)
	d.Verdict = Allow
	if d.Egress.Verdict == Deny || d.Ingress.Verdict == Deny {
		d.Verdict = Deny
	}
	return d
}

// SideVerdict evaluates one direction of one pod's policy against a peer;
// the datapath's per-endpoint programs are tested against it.
func (ev *Evaluator) SideVerdict(dir Direction, subject *Endpoint, peer PeerInfo, q Query) Side {
	return ev.side(dir, subject, peer, q)
}

func (ev *Evaluator) side(dir Direction, subject *Endpoint, peer PeerInfo, q Query) Side {
	s := Side{Direction: dir, Verdict: Allow}
	if subject == nil {
		s.Reason = ReasonNotPod
		return s
	}
	s.Endpoint = subject.Key()
	// Named ports resolve on the destination pod.
	var named []NamedPort
	if dir == Ingress {
		named = subject.NamedPorts
	} else if peer.ep != nil {
		named = peer.ep.NamedPorts
	}
	policies := ev.selecting[subject.Identity]
	requires, denyRequires := Requires(policies, dir)
	dropsIPv6 := false
	for _, p := range policies {
		if (dir == Ingress && p.IsolateIngress) || (dir == Egress && p.IsolateEgress) {
			s.Isolating = append(s.Isolating, p.Ref())
		}
		dropsIPv6 = dropsIPv6 || DropsIPv6(p)
	}
	if (q.Src.Is6() || q.Dst.Is6()) && !hasIPv4(subject) {
		// The datapath finds a pod's IPv6 frames through its interface,
		// linked to its IPv4 address: a pod without one is linked to none.
		s.Verdict, s.Reason = Deny, ReasonIPv6Only
		return s
	}
	if dropsIPv6 && (q.Src.Is6() || q.Dst.Is6()) {
		if len(s.Isolating) == 0 {
			for _, p := range policies {
				if DropsIPv6(p) {
					s.Isolating = append(s.Isolating, p.Ref())
				}
			}
		}
		s.Verdict, s.Reason = Deny, ReasonIPv6
		return s
	}
	// Deny beats allow, across every policy kind.
	for _, p := range policies {
		for i := range p.Rules {
			r := &p.Rules[i]
			if r.Direction == dir && r.Action == Deny && ev.ruleMatches(r, peer, q, named, denyRequires) {
				s.Verdict, s.Reason, s.Rule = Deny, ReasonDenied, ref(p, r)
				return s
			}
		}
	}
	if dir == Ingress && peer.node != nil && peer.node.Name == subject.Node {
		s.Reason = ReasonOwnNode
		return s
	}
	for _, p := range policies {
		for i := range p.Rules {
			r := &p.Rules[i]
			if r.Direction == dir && r.Action == Allow && ev.ruleMatches(r, peer, q, named, requires) {
				s.Matched = append(s.Matched, *ref(p, r))
			}
		}
	}
	switch {
	case len(s.Isolating) == 0:
		s.Reason = ReasonNotIsolated
	case len(s.Matched) > 0:
		s.Reason, s.Rule = ReasonAllowed, &s.Matched[0]
	default:
		s.Verdict, s.Reason = Deny, ReasonNoMatch
	}
	return s
}

func hasIPv4(e *Endpoint) bool {
	for _, ip := range e.IPs {
		if ip.Is4() {
			return true
		}
	}
	return false
}

// DropsIPv6 says whether the datapath drops the IPv6 of the pods a policy
// selects: it isolates them in a direction, or has a deny rule. IPv6 is
// not enforced — rules are not matched against IPv6 peers, and without
// IPv6 connection tracking a reply cannot be told from a new connection
// — so either drops IPv6 both ways.
func DropsIPv6(p *Policy) bool {
	return p.IsolateIngress || p.IsolateEgress || HasDenyRule(p)
}

// HasDenyRule says whether a rule of the policy denies.
func HasDenyRule(p *Policy) bool {
	for i := range p.Rules {
		if p.Rules[i].Action == Deny {
			return true
		}
	}
	return false
}

// Requires collects the fromRequires/toRequires selectors that policies
// impose in a direction, for allow rules and for deny rules.
func Requires(policies []*Policy, dir Direction) (allow, deny []Selector) {
	for _, p := range policies {
		if dir == Ingress {
			allow = append(allow, p.IngressRequires...)
			deny = append(deny, p.IngressDenyRequires...)
		} else {
			allow = append(allow, p.EgressRequires...)
			deny = append(deny, p.EgressDenyRequires...)
		}
	}
	return allow, deny
}

func ref(p *Policy, r *Rule) *RuleRef {
	return &RuleRef{Policy: p.Ref(), Field: r.Field, Action: r.Action, Source: r.Source}
}

// RuleMatches reports whether a rule matches a packet from or to peer;
// named are the destination pod's named ports and requires the
// fromRequires/toRequires selectors in force for the subject.
func (ev *Evaluator) RuleMatches(r *Rule, peer PeerInfo, q Query, named []NamedPort, requires []Selector) bool {
	return ev.ruleMatches(r, peer, q, named, requires)
}

func (ev *Evaluator) ruleMatches(r *Rule, peer PeerInfo, q Query, named []NamedPort, requires []Selector) bool {
	if len(r.Ports) > 0 {
		ok := false
		for i := range r.Ports {
			if PortMatches(&r.Ports[i], q.Proto, q.Port, named) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.Peers) == 0 {
		return true
	}
	for i := range r.Peers {
		if ev.PeerMatches(&r.Peers[i], peer, requires) {
			return true
		}
	}
	return false
}

// PortMatches reports whether a port rule matches a protocol and port (or
// ICMP type), resolving a named port on the destination's named ports.
func PortMatches(p *Port, proto Proto, port uint16, named []NamedPort) bool {
	if p.Proto != ProtoAny && p.Proto != proto {
		return false
	}
	if p.Name != "" {
		for _, np := range named {
			if np.Name == p.Name && np.Proto == proto && np.Port == port {
				return true
			}
		}
		return false
	}
	full := p.Port == 0 && p.EndPort == 65535
	if full {
		return true
	}
	// "ANY" with a port means the port-carrying transports, not ICMP types.
	if p.Proto == ProtoAny && !(proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP) {
		return false
	}
	return port >= p.Port && port <= p.EndPort
}

// PeerMatches reports whether a peer alternative selects the peer.
func (ev *Evaluator) PeerMatches(pe *Peer, peer PeerInfo, requires []Selector) bool {
	switch pe.Kind {
	case PeerEndpoints:
		if pe.Selector == nil || !pe.Selector.Matches(peer.Labels) {
			return false
		}
		for i := range requires {
			if !requires[i].Matches(peer.Labels) {
				return false
			}
		}
		return true
	case PeerNodes:
		return peer.node != nil && pe.Selector != nil && pe.Selector.Matches(peer.node.Labels)
	case PeerCIDR:
		if !pe.InCluster && (peer.ep != nil || peer.node != nil) {
			return false
		}
		return CIDRMatches(pe, peer.IP)
	case PeerEntity:
		switch pe.Entity {
		case EntityWorldIPv4:
			return peer.IP.Is4() && EntityMatches(pe.Entity, peer.Labels, peer.ep != nil)
		case EntityWorldIPv6:
			return peer.IP.Is6() && EntityMatches(pe.Entity, peer.Labels, peer.ep != nil)
		}
		return EntityMatches(pe.Entity, peer.Labels, peer.ep != nil)
	}
	return false
}

// CIDRMatches reports whether ip is in the peer's CIDR and in none of its
// exceptions.
func CIDRMatches(pe *Peer, ip netip.Addr) bool {
	if !pe.CIDR.Contains(ip) {
		return false
	}
	for _, ex := range pe.Except {
		if ex.Contains(ip) {
			return false
		}
	}
	return true
}

// EntityMatches reports whether an entity selects a peer with the given
// identity labels; pod says whether the peer is a workload pod.
func EntityMatches(entity string, labels map[string]string, pod bool) bool {
	has := func(k string) bool { _, ok := labels[k]; return ok }
	switch entity {
	case "all":
		return true
	case "world", EntityWorldIPv4, EntityWorldIPv6:
		// The address family of world-ipv4 and world-ipv6 is checked by
		// PeerMatches, which has the address.
		return has(LabelWorld)
	case "cluster":
		// Cilium: host, remote-node, init, health, unmanaged and
		// kube-apiserver, plus every pod of the cluster.
		return pod || has(LabelHost) || has(LabelRemoteNode) || has(LabelInit) || has(LabelHealth) || has(LabelUnmanaged) ||
			has(LabelKubeAPIServer)
	case "host":
		return has(LabelHost)
	case "remote-node":
		return has(LabelRemoteNode)
	case "kube-apiserver":
		return has(LabelKubeAPIServer)
	case "init":
		return has(LabelInit)
	case "health":
		return has(LabelHealth)
	case "unmanaged":
		return has(LabelUnmanaged)
	}
	return false
}
