// Package emittest checks that an artifact's maps say what the ir
// evaluator says, for every local endpoint, a wide set of peers and every
// interesting port. Tests of emit and of the compiler use it.
package emittest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
)

// Probes returns the peer addresses and ports that exercise a cluster's
// rules: every pod and node address, the first, last and neighbouring
// addresses of every policy CIDR and except, and a few addresses outside
// everything; every port mentioned by a rule, the ports around each range,
// resolved named ports, and a few unmentioned ones, for TCP, UDP, SCTP,
// ICMP (types) and a protocol without ports.
func Probes(c *ir.Cluster) ([]netip.Addr, []ir.PortProto) {
	var addrs []netip.Addr
	for _, e := range c.Endpoints {
		addrs = append(addrs, e.IPs...)
	}
	for _, n := range c.Nodes {
		addrs = append(addrs, n.IPs...)
		for _, p := range n.PodCIDRs {
			addrs = append(addrs, p.Addr(), p.Addr().Next())
		}
	}
	addrs = append(addrs, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("1.1.1.1"))
	ports := map[ir.PortProto]bool{}
	addPort := func(proto ir.Proto, p int) {
		if p >= 0 && p <= 65535 {
			ports[ir.PortProto{Port: uint16(p), Proto: proto}] = true
		}
	}
	for _, proto := range []ir.Proto{ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP} {
		for _, p := range []int{0, 1, 22, 80, 443, 8080, 65535} {
			addPort(proto, p)
		}
	}
	for _, t := range []int{0, 3, 8, 11} {
		addPort(ir.ProtoICMP, t)
	}
	addPort(47, 0) // GRE: a protocol without ports
	for _, e := range c.Endpoints {
		for _, np := range e.NamedPorts {
			addPort(np.Proto, int(np.Port))
			addPort(np.Proto, int(np.Port)+1)
		}
	}
	for _, p := range c.Policies {
		for _, r := range p.Rules {
			for _, pe := range r.Peers {
				if pe.Kind != ir.PeerCIDR {
					continue
				}
				for _, pr := range append([]netip.Prefix{pe.CIDR}, pe.Except...) {
					first := pr.Addr()
					addrs = append(addrs, first, first.Next(), first.Prev(), lastAddr(pr), lastAddr(pr).Next())
				}
			}
			for _, pt := range r.Ports {
				protos := []ir.Proto{pt.Proto}
				if pt.Proto == ir.ProtoAny {
					protos = []ir.Proto{ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP, ir.ProtoICMP}
				}
				for _, proto := range protos {
					for _, p := range []int{int(pt.Port) - 1, int(pt.Port), int(pt.Port) + 1, int(pt.EndPort) - 1, int(pt.EndPort), int(pt.EndPort) + 1} {
						addPort(proto, p)
					}
				}
			}
		}
	}
	var out []ir.PortProto
	for p := range ports {
		if (p.Proto == ir.ProtoICMP || p.Proto == ir.ProtoICMPv6) && p.Port > 255 {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ir.PortProto) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Port) - int(b.Port)
	})
	var v4 []netip.Addr
	for _, a := range addrs {
		if a.IsValid() && a.Is4() {
			v4 = append(v4, a)
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	return slices.Compact(v4), out
}

// IPv6Probes are the IPv6 peers and ports each endpoint is probed with:
// IPv6 is not enforced, so what an IPv6 frame gets depends on the
// endpoint alone (see emit.Sim.IPv6Verdict), and a few probes show it.
var (
	IPv6Peers = []netip.Addr{netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("fe80::1")}
	IPv6Ports = []ir.PortProto{{Port: 80, Proto: ir.ProtoTCP}, {Port: 53, Proto: ir.ProtoUDP}, {Port: 128, Proto: ir.ProtoICMPv6}}
)

// LocalIPv4 is an endpoint's first IPv4 address, the datapath's key for
// it; false for a pod with none.
func LocalIPv4(e *ir.Endpoint) (netip.Addr, bool) {
	for _, ip := range e.IPs {
		if ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// LocalIPv6 is an endpoint's first IPv6 address, or a stand-in for a pod
// with none: the datapath never reads an IPv6 frame's addresses.
func LocalIPv6(e *ir.Endpoint) netip.Addr {
	for _, ip := range e.IPs {
		if ip.Is6() {
			return ip
		}
	}
	return netip.MustParseAddr("fd00:5e::1")
}

// IPv6Query is a probe's query: from peer to the endpoint (ingress) or
// back (egress).
func IPv6Query(e *ir.Endpoint, dir ir.Direction, peer netip.Addr, pp ir.PortProto) ir.Query {
	q := ir.Query{Src: peer, Dst: LocalIPv6(e), Proto: pp.Proto, Port: pp.Port}
	if dir == ir.Egress {
		q.Src, q.Dst = q.Dst, q.Src
	}
	return q
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		a[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(a)
}

// Check compares, for every node artifact, the map lookups with the
// evaluator. It returns one line per disagreement (at most max).
func Check(c *ir.Cluster, out *emit.Output, max int) ([]string, int, error) {
	ev := ir.NewEvaluator(c)
	addrs, ports := Probes(c)
	var bad []string
	checked := 0
	for _, a := range out.Artifacts {
		files := map[string][]byte{}
		for _, f := range a.Files {
			files[f.Name] = f.Data
		}
		sim, err := emit.NewSim(files)
		if err != nil {
			return nil, 0, err
		}
		for i := range c.Endpoints {
			e := &c.Endpoints[i]
			local, ok := LocalIPv4(e)
			if e.Node != a.Node || !ok {
				continue // a pod without IPv4 has no endpoints entry
			}
			for _, peer := range IPv6Peers {
				for _, pp := range IPv6Ports {
					for _, dir := range []ir.Direction{ir.Ingress, ir.Egress} {
						want := ev.SideVerdict(dir, e, ev.Peer(peer, e.Node), IPv6Query(e, dir, peer, pp))
						got, err := sim.IPv6Verdict(local)
						if err != nil {
							return nil, 0, err
						}
						checked++
						if (got.Action == emit.ActionAllow) != (want.Verdict == ir.Allow) && len(bad) < max {
							bad = append(bad, fmt.Sprintf("node %s: %s %s IPv6 peer %s %s: maps say %s, evaluator says %s (%s)",
								a.Node, e.Key(), dir, peer, ir.PortString(pp.Proto, pp.Port), verdictName(got.Action), want.Verdict, want.Reason))
						}
					}
				}
			}
			for _, peer := range addrs {
				if slices.Contains(e.IPs, peer) {
					continue // a pod's traffic to itself never crosses its veth
				}
				pi := ev.Peer(peer, e.Node)
				for _, pp := range ports {
					for dir := range 2 {
						q := ir.Query{Src: peer, Dst: local, Proto: pp.Proto, Port: pp.Port}
						if dir == int(emit.DirEgress) {
							q.Src, q.Dst = local, peer
						}
						want := ev.SideVerdict(ir.Direction(dir), e, pi, q)
						got, err := sim.Verdict(local, uint8(dir), peer, uint8(pp.Proto), pp.Port)
						if err != nil {
							return nil, 0, err
						}
						checked++
						gotAllow := got.Action == emit.ActionAllow
						wantAllow := want.Verdict == ir.Allow
						if gotAllow != wantAllow && len(bad) < max {
							why := want.Reason
							if want.Rule != nil {
								why += " " + want.Rule.String()
							}
							bad = append(bad, fmt.Sprintf("node %s: %s %s peer %s (%s) %s: maps say %s (identity %d class %d rule %d default %v), evaluator says %s (%s)",
								a.Node, e.Key(), ir.Direction(dir), peer, pi.Describe(), ir.PortString(pp.Proto, pp.Port),
								verdictName(got.Action), got.Identity, got.Class, got.Rule, got.Default, want.Verdict, why))
						}
					}
				}
			}
		}
	}
	return bad, checked, nil
}

func verdictName(a uint8) string {
	if a == emit.ActionAllow {
		return "allow"
	}
	return "deny"
}

// Summary formats Check's findings.
func Summary(bad []string) string { return strings.Join(bad, "\n") }
