package ir

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// Frontend kinds, as the datapath's service table names them.
const (
	FrontendClusterIP    = "ClusterIP"
	FrontendExternalIP   = "ExternalIP"
	FrontendLoadBalancer = "LoadBalancer"
	FrontendNodePort     = "NodePort"
)

// Where the datapath translates a connection to a frontend.
const (
	// PathSocket: a socket on a node (a pod's or the host's) connects or
	// sends to the frontend; the cgroup sock_addr programs rewrite its
	// destination to a backend before any packet exists, so every
	// policy program sees the backend.
	PathSocket = "socket"
	// PathDevice: a packet arrives on a node's external device, whose TC
	// program rewrites the destination to a backend (DNAT) and, for a
	// backend on another node, the source to the node's address (SNAT).
	PathDevice = "device"
)

// Verdicts of a service query besides allow and deny.
const (
	VerdictMixed  = "mixed"  // some backends allow it, others deny it
	VerdictReject = "reject" // no backend: refused at once
	VerdictDrop   = "drop"   // dropped by the load balancer
)

// ActiveBackends returns the backends a frontend of service port sp
// balances over, as the datapath lists them: the ready ones, or when none
// is ready the serving terminating ones (KEP-1669); only those on node
// when node is set (a Local traffic policy). IPv4 only, like the datapath.
func (s *Service) ActiveBackends(sp ServicePort, node string) []*Backend {
	var ready, terminating []*Backend
	for i := range s.Backends {
		b := &s.Backends[i]
		if b.PortName != sp.Name || b.Proto != sp.Proto || !b.IP.Is4() || (node != "" && b.Node != node) {
			continue
		}
		switch {
		case b.Ready:
			ready = append(ready, b)
		case b.Serving && b.Terminating:
			terminating = append(terminating, b)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// Frontend is a service address and port as a client dials it.
type Frontend struct {
	Kind     string     `json:"kind"`
	IP       netip.Addr `json:"ip"`
	Port     uint16     `json:"port"`
	Proto    Proto      `json:"proto"`
	PortName string     `json:"portName,omitempty"`
	// Node is the node whose address IP is: always for a NodePort, and
	// for an ExternalIP or LoadBalancer IP that is a node address.
	Node string `json:"node,omitempty"`

	sp ServicePort
}

// String names the frontend's address: "ClusterIP 10.96.0.10", "NodePort
// of node n1 192.168.1.1".
func (f *Frontend) String() string {
	if f.Node != "" {
		return fmt.Sprintf("%s of node %s %s", f.Kind, f.Node, f.IP)
	}
	return fmt.Sprintf("%s %s", f.Kind, f.IP)
}

// LookupFrontend finds the frontend at ip, proto and port the way the
// datapath's service table does: an address of the service itself
// (ClusterIP, ExternalIP, LoadBalancer IP) first, then a NodePort on a
// node's address. Headless and ExternalName services have none, and only
// IPv4 frontends exist: the datapath load-balances IPv4 only.
func (ev *Evaluator) LookupFrontend(ip netip.Addr, proto Proto, port uint16) (*Service, Frontend, bool) {
	if !ip.Is4() {
		return nil, Frontend{}, false
	}
	node := ev.nodeByIP[ip]
	var nodePort *Service
	var nodePortSP ServicePort
	for i := range ev.c.Services {
		s := &ev.c.Services[i]
		if s.Headless || s.Type == "ExternalName" {
			continue
		}
		for _, sp := range s.Ports {
			if sp.Proto != proto {
				continue
			}
			if sp.Port == port {
				for _, a := range []struct {
					kind string
					ips  []netip.Addr
				}{{FrontendClusterIP, s.ClusterIPs}, {FrontendExternalIP, s.ExternalIPs}, {FrontendLoadBalancer, s.LoadBalancerIPs}} {
					if slices.Contains(a.ips, ip) {
						fe := Frontend{Kind: a.kind, IP: ip, Port: port, Proto: proto, PortName: sp.Name, sp: sp}
						if node != nil {
							fe.Node = node.Name
						}
						return s, fe, true
					}
				}
			}
			if node != nil && nodePort == nil && sp.NodePort != 0 && sp.NodePort == port {
				nodePort, nodePortSP = s, sp
			}
		}
	}
	if nodePort == nil {
		return nil, Frontend{}, false
	}
	return nodePort, Frontend{Kind: FrontendNodePort, IP: ip, Port: port, Proto: proto, PortName: nodePortSP.Name, Node: node.Name, sp: nodePortSP}, true
}

// ServiceAt returns the service that has ip as a ClusterIP, ExternalIP or
// LoadBalancer IP, and which of them, or nil.
func (ev *Evaluator) ServiceAt(ip netip.Addr) (*Service, string) {
	for i := range ev.c.Services {
		s := &ev.c.Services[i]
		switch {
		case slices.Contains(s.ClusterIPs, ip):
			return s, FrontendClusterIP
		case slices.Contains(s.ExternalIPs, ip):
			return s, FrontendExternalIP
		case slices.Contains(s.LoadBalancerIPs, ip):
			return s, FrontendLoadBalancer
		}
	}
	return nil, ""
}

// ServiceOptions are the compile choices and the topology a service query
// depends on.
type ServiceOptions struct {
	// NoBackends is what a frontend without backends does, as compiled
	// (--no-backends): "reject" (the default when empty) or "drop".
	NoBackends string
	// Via is the node whose external device receives a connection from
	// outside the cluster to a frontend that is no node's address: it
	// decides the backends of a Local external traffic policy and which
	// backends see the node (SNAT) rather than the client. It may be
	// empty when the cluster has one node; when set otherwise, it must be
	// the node that receives the connection.
	Via string
}

// ServiceDecision is the verdict for a connection to a service address.
// The datapath sends it to one backend, so there is a decision for each
// backend it may pick; Verdict is "allow" or "deny" when they all agree,
// "mixed" when they do not, "reject" or "drop" when there is no backend.
// When the datapath does not translate the connection (a port that is not
// the service's, say), Direct is the plain decision and Verdict its verdict.
type ServiceDecision struct {
	Query   Query        `json:"query"` // as the client sent it
	Verdict string       `json:"verdict"`
	From    PeerInfo     `json:"from"`
	Service ServiceTrace `json:"service"`
	Direct  *Decision    `json:"-"`
}

// ServiceTrace is how the datapath handles a connection to a service
// address.
type ServiceTrace struct {
	Name string `json:"name"` // namespace/name
	// Frontend is nil when the port is none of the service's.
	Frontend   *Frontend `json:"frontend,omitempty"`
	Translated bool      `json:"translated"`
	Path       string    `json:"path,omitempty"` // socket or device
	// Node is the node that translates the connection; LocalOnly says
	// that only its backends are used (a Local traffic policy).
	Node      string `json:"node,omitempty"`
	LocalOnly bool   `json:"localOnly,omitempty"`
	// Reason says why these backends, or why nothing is translated.
	Reason string `json:"reason"`
	// NoBackends is what happens without a backend: reject or drop.
	NoBackends string            `json:"noBackends,omitempty"`
	Backends   []BackendDecision `json:"backends"`
	Source     Source            `json:"source"`
}

// BackendDecision is the verdict for the connection as it reaches one
// backend.
type BackendDecision struct {
	Backend
	// SeenSource is the source the backend's ingress policy sees: the
	// client, or (SNAT) the address of the node that translated it.
	SeenSource netip.Addr `json:"seenSource"`
	SNAT       bool       `json:"snat,omitempty"`
	// LBDrop says why the load balancer drops the connection instead of
	// forwarding it to this backend; "" when it forwards it.
	LBDrop string `json:"lbDrop,omitempty"`
	// Decision is the policy verdict at the backend: the source's egress
	// and the backend's ingress, each as its program sees the packet.
	Decision Decision `json:"decision"`
	// Sent is the packet the source's egress program sees, when it is not
	// the translated one (a NodePort of another node: the program sees
	// the node address); nil otherwise.
	Sent *Query `json:"sent,omitempty"`
}

// Outcome is "allow", "deny" or "drop" (the load balancer's).
func (b *BackendDecision) Outcome() string {
	if b.LBDrop != "" {
		return VerdictDrop
	}
	return b.Decision.Verdict.String()
}

// EvaluateService answers a query whose destination is a service address:
// a frontend (translated to each backend the datapath may pick), or a
// service address on a port that is none of the service's (not
// translated). It returns false when q.Dst is no service address and no
// NodePort of a node: Evaluate answers those.
func (ev *Evaluator) EvaluateService(q Query, opts ServiceOptions) (ServiceDecision, bool, error) {
	sd := ServiceDecision{Query: q}
	srcEp, srcNode := ev.podByIP[q.Src], ev.nodeByIP[q.Src]
	clientNode := ""
	switch {
	case srcEp != nil:
		clientNode = srcEp.Node
	case srcNode != nil:
		clientNode = srcNode.Name
	}
	sd.From = ev.Peer(q.Src, clientNode) // a node client is the host
	svc, fe, ok := ev.LookupFrontend(q.Dst, q.Proto, q.Port)
	if !ok {
		s, kind := ev.ServiceAt(q.Dst)
		if s == nil {
			return sd, false, nil
		}
		sd.Service = ServiceTrace{Name: s.Key(), Source: s.Source}
		why := fmt.Sprintf("%s is none of its ports (%s)", PortString(q.Proto, q.Port), servicePorts(s))
		switch {
		case !q.Dst.Is4():
			why = "Sluice load-balances IPv4 frontends only"
		case s.Headless:
			why = "the service is headless"
		case s.Type == "ExternalName":
			why = "an ExternalName service has no frontend"
		}
		return ev.untranslated(sd, fmt.Sprintf("%s is the %s of Service %s, but %s: the datapath does not translate the connection, which goes to %s as a plain address, where nothing answers",
			q.Dst, kind, s.Key(), why, q.Dst)), true, nil
	}
	sd.Service = ServiceTrace{Name: svc.Key(), Frontend: &fe, Source: svc.Source}
	local := srcEp != nil || srcNode != nil
	// The node that receives the connection: the client's own for a
	// socket, the address's owner for a node address, else the one
	// opts names.
	via := opts.Via
	switch {
	case local && fe.Kind != FrontendNodePort:
		via = clientNode
	case fe.Node != "":
		via = fe.Node // a node's address arrives at that node
	case via == "" && len(ev.c.Nodes) == 1:
		via = ev.c.Nodes[0].Name
	case via == "":
		return sd, true, fmt.Errorf("%s reaches %s of Service %s from outside the cluster, through the external device of whichever node the network sends it to; that node decides the backends and whether they see the client or the node (SNAT): name the node that receives it (nodes: %s)",
			sd.From.Describe(), fe.String(), svc.Key(), nodeNames(ev.c))
	case ev.nodes[via] == nil:
		return sd, true, fmt.Errorf("no node %q; nodes: %s", via, nodeNames(ev.c))
	}
	if opts.Via != "" && opts.Via != via {
		return sd, true, fmt.Errorf("the connection from %s to %s is received by node %s, not %s", sd.From.Describe(), fe.String(), nodeOrNone(via), opts.Via)
	}
	switch {
	case local && fe.Kind != FrontendNodePort && q.Proto != ProtoTCP && q.Proto != ProtoUDP:
		return ev.untranslated(sd, fmt.Sprintf("the socket load balancer translates TCP and UDP only: the %s connection goes to %s as a plain address, where nothing answers", q.Proto, q.Dst)), true, nil
	case local && fe.Kind != FrontendNodePort:
		return ev.socketPath(sd, svc, fe, clientNode, opts), true, nil
	case local && fe.Node == clientNode:
		return ev.untranslated(sd, fmt.Sprintf("the socket load balancer does not translate NodePorts, and the connection from %s to its own node's address never crosses the external device: it reaches node %s itself, untranslated",
			sd.From.Describe(), fe.Node)), true, nil
	}
	return ev.devicePath(sd, svc, fe, via, opts), true, nil
}

// untranslated answers a connection the datapath sends to the address as
// it is.
func (ev *Evaluator) untranslated(sd ServiceDecision, why string) ServiceDecision {
	d := ev.Evaluate(sd.Query)
	sd.Direct, sd.Verdict = &d, d.Verdict.String()
	sd.Service.Reason = why
	sd.Service.Backends = []BackendDecision{}
	return sd
}

// socketPath: the client's socket is translated on its own node.
func (ev *Evaluator) socketPath(sd ServiceDecision, svc *Service, fe Frontend, node string, opts ServiceOptions) ServiceDecision {
	t := &sd.Service
	t.Translated, t.Path, t.Node = true, PathSocket, node
	// internalTrafficPolicy applies to ClusterIPs only; the socket
	// program reads only that flag.
	t.LocalOnly = fe.Kind == FrontendClusterIP && svc.InternalTrafficLocal
	active := ev.active(svc, fe, node, t.LocalOnly)
	t.Reason = fmt.Sprintf("the socket load balancer on %s translates the %s, once, to %s", nodeOrNone(node), connectHook(fe.Proto), backendChoice(svc, fe, active, t.LocalOnly, node, "internalTrafficPolicy"))
	t.Backends = []BackendDecision{}
	for _, b := range active {
		d := ev.Evaluate(Query{Src: sd.Query.Src, Dst: b.IP, Proto: sd.Query.Proto, Port: b.Port})
		t.Backends = append(t.Backends, BackendDecision{Backend: *b, SeenSource: sd.Query.Src, Decision: d})
	}
	if len(active) == 0 {
		t.NoBackends = noBackends(opts)
		if t.NoBackends == VerdictReject {
			t.Reason += ": the connect fails at once with ECONNREFUSED (--no-backends reject)"
		} else {
			t.Reason += ": the socket goes to the frontend address untranslated, where nothing answers, and the connection times out (--no-backends drop)"
		}
	}
	sd.Verdict = overall(t)
	return sd
}

// devicePath: a packet arrives on the external device of node via.
func (ev *Evaluator) devicePath(sd ServiceDecision, svc *Service, fe Frontend, via string, opts ServiceOptions) ServiceDecision {
	q := sd.Query
	t := &sd.Service
	t.Translated, t.Path, t.Node = true, PathDevice, via
	// externalTrafficPolicy applies to external frontends only; the
	// device program reads only that flag.
	t.LocalOnly = fe.Kind != FrontendClusterIP && svc.ExternalTrafficLocal
	active := ev.active(svc, fe, via, t.LocalOnly)
	t.Reason = fmt.Sprintf("the external device of %s translates each packet to %s", via, backendChoice(svc, fe, active, t.LocalOnly, via, "externalTrafficPolicy"))
	// A pod or a node reaching another node's NodePort: its own egress
	// program sees the node address, not the backend.
	var sent *Decision
	if ev.podByIP[q.Src] != nil {
		d := ev.Evaluate(q)
		sent = &d
		t.Reason += fmt.Sprintf("; the egress policy of %s sees the node address %s", sd.From.Describe(), netip.AddrPortFrom(q.Dst, q.Port))
	}
	snatAddr := nodeIPv4(ev.nodes[via])
	t.Backends = []BackendDecision{}
	for _, b := range active {
		bd := BackendDecision{Backend: *b, SeenSource: q.Src}
		// A backend on another known node gets the flow SNAT-ed to this
		// node's address, so that its replies come back here.
		if b.Node != via && ev.nodes[b.Node] != nil && snatAddr.IsValid() {
			bd.SeenSource, bd.SNAT = snatAddr, true
		}
		if q.Proto == ProtoSCTP && b.Port != fe.Port {
			bd.LBDrop = fmt.Sprintf("an SCTP port rewrite (%d to %d) would need the CRC32c recomputed: the device drops the flow rather than mistranslate it", fe.Port, b.Port)
		}
		bd.Decision = ev.Evaluate(Query{Src: bd.SeenSource, Dst: b.IP, Proto: q.Proto, Port: b.Port})
		if sent != nil {
			// The client's egress as it saw the packet, then the
			// backend's ingress as it sees it.
			s := sent.Query
			bd.Sent, bd.Decision.Egress = &s, sent.Egress
			bd.Decision.Verdict = Allow
			if bd.Decision.Egress.Verdict == Deny || bd.Decision.Ingress.Verdict == Deny {
				bd.Decision.Verdict = Deny
			}
		}
		t.Backends = append(t.Backends, bd)
	}
	if len(active) == 0 {
		t.NoBackends = noBackends(opts)
		switch {
		case t.NoBackends == VerdictReject && q.Proto == ProtoTCP:
			t.Reason += ": the device answers the SYN with a reset (--no-backends reject)"
		case t.NoBackends == VerdictReject && q.Proto == ProtoUDP:
			t.Reason += ": the device answers with an ICMP port unreachable (--no-backends reject)"
		case t.NoBackends == VerdictReject:
			t.NoBackends = VerdictDrop
			t.Reason += fmt.Sprintf(": the device drops it (it answers only TCP and UDP, not %s)", q.Proto)
		default:
			t.Reason += ": the device drops it (--no-backends drop)"
		}
	}
	sd.Verdict = overall(t)
	return sd
}

// active returns the frontend's backends: node's alone when localOnly
// (none when the client's node is unknown).
func (ev *Evaluator) active(svc *Service, fe Frontend, node string, localOnly bool) []*Backend {
	if !localOnly {
		return svc.ActiveBackends(fe.sp, "")
	}
	if node == "" {
		return nil
	}
	return svc.ActiveBackends(fe.sp, node)
}

func overall(t *ServiceTrace) string {
	if len(t.Backends) == 0 {
		return t.NoBackends
	}
	v := t.Backends[0].Outcome()
	for i := range t.Backends {
		if t.Backends[i].Outcome() != v {
			return VerdictMixed
		}
	}
	return v
}

func noBackends(opts ServiceOptions) string {
	if opts.NoBackends == VerdictDrop {
		return VerdictDrop
	}
	return VerdictReject
}

func connectHook(p Proto) string {
	if p == ProtoUDP {
		return "connect or send (connect4, sendmsg4)"
	}
	return "connect (connect4)"
}

// backendChoice says which backends a frontend balances over and why.
func backendChoice(svc *Service, fe Frontend, active []*Backend, localOnly bool, node, policy string) string {
	listed := 0
	for i := range svc.Backends {
		if b := &svc.Backends[i]; b.PortName == fe.sp.Name && b.Proto == fe.sp.Proto && b.IP.Is4() {
			listed++
		}
	}
	where := ""
	if localOnly {
		where = fmt.Sprintf(" on %s (%s: Local)", nodeOrNone(node), policy)
	}
	switch {
	case len(active) == 0 && listed == 0:
		return fmt.Sprintf("a backend, but the service lists none for port %s (backends from %s)", portLabel(fe.sp), svc.BackendsFrom)
	case len(active) == 0:
		return fmt.Sprintf("a ready or serving terminating backend%s, but none of the %s listed is", where, count(listed, "backend"))
	}
	kind, why := "ready backend", ""
	if !active[0].Ready {
		kind, why = "serving terminating backend", " (none is ready: the KEP-1669 fallback)"
	}
	s := fmt.Sprintf("one of %d %ss%s%s", len(active), kind, where, why)
	if len(active) == 1 {
		s = fmt.Sprintf("its only %s%s%s", kind, where, why)
	}
	if skipped := listed - len(active); skipped > 0 {
		s += fmt.Sprintf("; %s not used", count(skipped, "other listed backend"))
	}
	return s
}

func portLabel(sp ServicePort) string {
	s := PortString(sp.Proto, sp.Port)
	if sp.Name != "" {
		s += " " + sp.Name
	}
	return s
}

func servicePorts(s *Service) string {
	var ps []string
	for _, sp := range s.Ports {
		ps = append(ps, portLabel(sp))
	}
	if len(ps) == 0 {
		return "it has none"
	}
	return strings.Join(ps, ", ")
}

func nodeOrNone(n string) string {
	if n == "" {
		return "no node"
	}
	return n
}

func nodeNames(c *Cluster) string {
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

// nodeIPv4 is the address the device SNATs to: the node's first IPv4
// address, as the compiler hands it to the node's programs.
func nodeIPv4(n *Node) netip.Addr {
	if n == nil {
		return netip.Addr{}
	}
	for _, ip := range n.IPs {
		if ip.Is4() {
			return ip
		}
	}
	return netip.Addr{}
}

// WriteServiceDecision prints a service query's verdict, how the datapath
// translates it, and the decision at each backend; note, when set, gives
// more lines for backend i, or (i = -1) for an untranslated connection:
// the kernel's verdict, say.
func WriteServiceDecision(w io.Writer, sd ServiceDecision, note func(i int) []string) {
	t := &sd.Service
	if note == nil {
		note = func(int) []string { return nil }
	}
	if sd.Direct != nil {
		WriteDecision(w, *sd.Direct)
		for _, line := range note(-1) {
			fmt.Fprintln(w, line)
		}
		fmt.Fprintf(w, "service: %s\n", t.Reason)
		return
	}
	q := sd.Query
	fmt.Fprintf(w, "%s  %s (%s) -> Service %s (%s)  %s\n", strings.ToUpper(sd.Verdict), sd.From.Describe(), q.Src, t.Name, t.Frontend, PortString(q.Proto, q.Port))
	fmt.Fprintf(w, "  %s\n", summary(t))
	fmt.Fprintf(w, "  %s\n", t.Reason)
	for i := range t.Backends {
		b := &t.Backends[i]
		pod := b.Pod + " "
		if b.Pod == "" {
			pod = ""
		}
		snat := ""
		if b.SNAT {
			snat = fmt.Sprintf(", SNAT: it sees node %s (%s) as the source", t.Node, b.SeenSource)
		}
		fmt.Fprintf(w, "  backend %s%s/%s on %s%s: %s\n", pod, netip.AddrPortFrom(b.IP, b.Port), b.Proto, nodeOrNone(b.Node), snat, b.Outcome())
		if b.LBDrop != "" {
			fmt.Fprintf(w, "    the load balancer drops it: %s\n", b.LBDrop)
		}
		var block strings.Builder
		WriteDecision(&block, b.Decision)
		for _, line := range strings.SplitAfter(block.String(), "\n") {
			if line != "" {
				io.WriteString(w, "    "+line)
			}
		}
		for _, line := range note(i) {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

// summary says how the backends' verdicts add up.
func summary(t *ServiceTrace) string {
	if len(t.Backends) == 0 {
		return "no backend to send it to"
	}
	by := map[string][]string{}
	for i := range t.Backends {
		b := &t.Backends[i]
		name := b.Pod
		if name == "" {
			name = netip.AddrPortFrom(b.IP, b.Port).String()
		}
		by[b.Outcome()] = append(by[b.Outcome()], name)
	}
	phrase := map[string]string{"allow": "allowed at", "deny": "denied at", VerdictDrop: "dropped by the load balancer at"}
	if len(by) == 1 {
		return map[string]string{"allow": "every backend allows it", "deny": "every backend denies it", VerdictDrop: "the load balancer drops it at every backend"}[t.Backends[0].Outcome()]
	}
	var parts []string
	for _, v := range []string{"allow", "deny", VerdictDrop} {
		if names := by[v]; len(names) > 0 {
			parts = append(parts, phrase[v]+" "+strings.Join(names, ", "))
		}
	}
	return "mixed: " + strings.Join(parts, ", ") + "; which applies depends on the backend the load balancer picks"
}

// count is "1 backend", "2 backends".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
