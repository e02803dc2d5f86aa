package adversary

import (
	"fmt"
	"net/netip"
)

var (
	npPodKeys       = sortedKeys(podKeys)
	npNamespaceKeys = append(sortedKeys(namespaceKeys), "kubernetes.io/metadata.name")
	ciliumKeys      = append(sortedKeys(podKeys), "io.kubernetes.pod.namespace", "io.cilium.k8s.namespace.labels.team",
		"io.cilium.k8s.namespace.labels.env", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name",
		"io.cilium.k8s.policy.serviceaccount", "io.cilium.k8s.policy.cluster", ciliumOwnedOddKey)
)

// ciliumOwnedOddKey is under Cilium's owned prefix io.cilium.k8s without
// being one of the labels it derives.
const ciliumOwnedOddKey = "io.cilium.k8s-x/role"

// cidr picks a CIDR: around pods, nodes or the world addresses, IPv4 or
// IPv6, with an except strictly inside it sometimes.
func (g *gen) cidr() (string, []string) {
	base := g.pick([]string{"10.0.0.0/8", "10.0.0.0/16", "10.1.0.0/24", "192.168.0.0/24", "203.0.113.0/24", "198.51.100.0/30",
		"0.0.0.0/0", "8.8.8.8/32", "fd00::/8", "::/0", "2001:db8::/32"})
	p := netip.MustParsePrefix(base)
	var except []string
	if p.Bits() < p.Addr().BitLen()-2 && g.chance(2) {
		bits := p.Bits() + 1 + g.r.Intn(p.Addr().BitLen()-p.Bits()-1)
		// An except around one of the addresses that matter.
		cands := append(append([]netip.Addr(nil), g.worldV4...), g.worldV6...)
		for _, pd := range g.pods {
			cands = append(cands, pd.ips...)
		}
		a := cands[g.r.Intn(len(cands))]
		if p.Contains(a) {
			ex, _ := a.Prefix(bits)
			except = append(except, ex.String())
		}
	}
	return base, except
}

func (g *gen) port() any {
	if len(g.named) > 0 && g.chance(4) {
		return g.pick(sortedKeys(g.named))
	}
	return g.ports[g.r.Intn(len(g.ports))]
}

// npRule builds an ingress (from) or egress (to) rule of a
// NetworkPolicy.
func (g *gen) npRule(peersKey string) mapping {
	rule := mapping{}
	if !g.chance(3) {
		var peers seq
		for range 1 + g.r.Intn(2) {
			switch g.r.Intn(4) {
			case 0:
				peers = append(peers, mapping{{"podSelector", g.selector(npPodKeys, noPrefix)}})
			case 1:
				peers = append(peers, mapping{{"namespaceSelector", g.selector(npNamespaceKeys, noPrefix)}})
			case 2:
				peers = append(peers, mapping{{"namespaceSelector", g.selector(npNamespaceKeys, noPrefix)}, {"podSelector", g.selector(npPodKeys, noPrefix)}})
			default:
				c, ex := g.cidr()
				ib := mapping{{"cidr", c}}
				if len(ex) > 0 {
					ib = append(ib, kv{"except", seq{ex[0]}})
				}
				peers = append(peers, mapping{{"ipBlock", ib}})
			}
		}
		rule = append(rule, kv{peersKey, peers})
	}
	if !g.chance(3) {
		var ports seq
		for range 1 + g.r.Intn(2) {
			pm := mapping{}
			if g.chance(2) {
				pm = append(pm, kv{"protocol", g.pick([]string{"TCP", "UDP", "SCTP"})})
			}
			if !g.chance(5) {
				p := g.port()
				pm = append(pm, kv{"port", p})
				if n, ok := p.(int); ok && g.chance(4) {
					pm = append(pm, kv{"endPort", n + g.r.Intn(20)})
				}
			}
			ports = append(ports, pm)
		}
		rule = append(rule, kv{"ports", ports})
	}
	return rule
}

func (g *gen) genNetworkPolicy() {
	ns := g.pick(g.namespaces)
	spec := mapping{{"podSelector", g.selector(npPodKeys, noPrefix)}}
	ing, eg := true, g.chance(2)
	switch g.r.Intn(4) {
	case 0:
		spec = append(spec, kv{"policyTypes", seq{"Ingress"}})
		eg = false
	case 1:
		spec = append(spec, kv{"policyTypes", seq{"Egress"}})
		ing, eg = false, true
	case 2:
		spec = append(spec, kv{"policyTypes", seq{"Ingress", "Egress"}})
		eg = true
	}
	// Rules only for directions the policy isolates: what rules of other
	// directions do is not settled by the API reference.
	for _, d := range []struct {
		on          bool
		field, peer string
	}{{ing, "ingress", "from"}, {eg, "egress", "to"}} {
		var rules seq
		for range g.r.Intn(3) {
			if d.on {
				rules = append(rules, g.npRule(d.peer))
			}
		}
		if len(rules) > 0 {
			spec = append(spec, kv{d.field, rules})
		}
	}
	g.docs = append(g.docs, object("networking.k8s.io/v1", "NetworkPolicy", meta(fmt.Sprintf("np-%d", len(g.docs)), ns, nil), kv{"spec", spec}))
}

// genCilium builds a CiliumNetworkPolicy, or a clusterwide one, with one
// rule in spec or two in specs.
func (g *gen) genCilium(clusterwide bool) {
	kind, ns := "CiliumClusterwideNetworkPolicy", ""
	if !clusterwide {
		kind, ns = "CiliumNetworkPolicy", g.pick(g.namespaces)
	}
	var body kv
	if g.chance(5) {
		body = kv{"specs", seq{g.ciliumRule(clusterwide), g.ciliumRule(clusterwide)}}
	} else {
		body = kv{"spec", g.ciliumRule(clusterwide)}
	}
	g.docs = append(g.docs, object("cilium.io/v2", kind, meta(fmt.Sprintf("cnp-%d", len(g.docs)), ns, nil), body))
}

// withMatchLabel adds a matchLabels entry to a selector.
func withMatchLabel(sel mapping, k, v string) mapping {
	for i, e := range sel {
		if e.k == "matchLabels" {
			if e.v.(mapping).get(k) != nil {
				return sel
			}
			ml := append(mapping{{k, v}}, e.v.(mapping)...)
			out := append(mapping(nil), sel...)
			out[i] = kv{"matchLabels", ml}
			return out
		}
	}
	return append(mapping{{"matchLabels", mapping{{k, v}}}}, sel...)
}

func (g *gen) ciliumRule(clusterwide bool) mapping {
	es := g.selector(ciliumKeys, g.ciliumPrefix)
	if !clusterwide && g.chance(6) {
		// A namespaced policy's endpointSelector that names a namespace:
		// spelt k8s: in matchLabels, Cilium replaces it with the policy's
		// own namespace; spelt otherwise, it stays.
		key := g.pick([]string{"k8s:", "", "any:"}) + "io.kubernetes.pod.namespace"
		es = withMatchLabel(es, key, g.pick(allNamespaces))
	}
	r := mapping{{"endpointSelector", es}}
	counts := []int{g.r.Intn(3), 0, g.r.Intn(3), 0}
	if g.chance(4) {
		counts[1] = 1
	}
	if g.chance(4) {
		counts[3] = 1
	}
	if counts[0]+counts[1]+counts[2]+counts[3] == 0 {
		counts[g.r.Intn(4)] = 1
	}
	for i, section := range []string{"ingress", "ingressDeny", "egress", "egressDeny"} {
		if counts[i] == 0 {
			continue
		}
		var rules seq
		for range counts[i] {
			rules = append(rules, g.ciliumPeerRule(i < 2))
		}
		r = append(r, kv{section, rules})
	}
	if g.chance(4) {
		dd := mapping{}
		if g.chance(2) {
			dd = append(dd, kv{"ingress", g.chance(2)})
		}
		if len(dd) == 0 || g.chance(2) {
			dd = append(dd, kv{"egress", g.chance(2)})
		}
		r = append(r, kv{"enableDefaultDeny", dd})
	}
	return r
}

// ciliumPeerRule builds an ingress (from*) or egress (to*) rule with one
// kind of L3 peer or none (L4-only), sometimes requirements, and ports.
func (g *gen) ciliumPeerRule(in bool) mapping {
	pfx := "to"
	if in {
		pfx = "from"
	}
	rule := mapping{}
	l3 := true
	switch g.r.Intn(6) {
	case 0:
		l3 = false
	case 1, 2:
		var sels seq
		for range 1 + g.r.Intn(2) {
			sels = append(sels, g.selector(ciliumKeys, g.ciliumPrefix))
		}
		rule = append(rule, kv{pfx + "Endpoints", sels})
	case 3:
		var cidrs seq
		for range 1 + g.r.Intn(2) {
			if g.chance(4) {
				cidrs = append(cidrs, g.worldV4[g.r.Intn(len(g.worldV4))].String()) // a bare address
				continue
			}
			c, _ := g.cidr()
			cidrs = append(cidrs, c)
		}
		rule = append(rule, kv{pfx + "CIDR", cidrs})
	case 4:
		var sets seq
		for range 1 + g.r.Intn(2) {
			c, ex := g.cidr()
			cs := mapping{{"cidr", c}}
			if len(ex) > 0 {
				cs = append(cs, kv{"except", seq{ex[0]}})
			}
			sets = append(sets, cs)
		}
		rule = append(rule, kv{pfx + "CIDRSet", sets})
	default:
		ents := seq{g.pick(entities)}
		if e := g.pick(entities); g.chance(2) && e != ents[0] {
			ents = append(ents, e)
		}
		rule = append(rule, kv{pfx + "Entities", ents})
	}
	if l3 && g.chance(20) {
		// The peer field given as an empty list selects no peer.
		rule[0] = kv{rule[0].k, seq{}}
	}
	if g.chance(6) {
		rule = append(rule, kv{pfx + "Requires", seq{g.selector(ciliumKeys, g.ciliumPrefix)}})
	}
	if !l3 && g.chance(8) {
		return rule // {} (or requirements only): allows nothing, isolates
	}
	if g.chance(20) {
		// A port rule without ports: Cilium merges no port from it, so
		// it allows (or denies) nothing.
		return append(rule, kv{"toPorts", seq{mapping{}}})
	}
	if !l3 || g.chance(2) {
		var ports seq
		for range 1 + g.r.Intn(2) {
			ports = append(ports, g.ciliumPort())
		}
		rule = append(rule, kv{"toPorts", seq{mapping{{"ports", ports}}}})
	}
	return rule
}

// ciliumPort is a toPorts entry: a number (quoted or not), 0 for every
// port, a range, or a port name (in any case), with a protocol or none.
func (g *gen) ciliumPort() mapping {
	var m mapping
	switch p := g.port(); {
	case g.chance(6):
		m = mapping{{"port", "0"}}
	case isString(p):
		name := p.(string)
		if g.chance(6) {
			name = upper(name)
		}
		m = mapping{{"port", name}}
	default:
		n := p.(int)
		if g.chance(2) {
			m = mapping{{"port", fmt.Sprint(n)}}
		} else {
			m = mapping{{"port", n}}
		}
		if g.chance(4) {
			m = append(m, kv{"endPort", n + g.r.Intn(20)})
		}
	}
	if !g.chance(4) {
		m = append(m, kv{"protocol", g.pick([]string{"TCP", "UDP", "SCTP", "ANY"})})
	}
	return m
}

func isString(v any) bool { _, ok := v.(string); return ok }

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// injectRefusal adds one thing the compile must refuse.
func (g *gen) injectRefusal() {
	cnp := func(kind, ns string, spec mapping) {
		g.docs = append(g.docs, object("cilium.io/v2", kind, meta(fmt.Sprintf("bad-%d", len(g.docs)), ns, nil), kv{"spec", spec}))
	}
	pod := func(labels map[string]string, spec mapping) {
		spec = append(spec, kv{"containers", seq{mapping{{"name", "main"}}}})
		g.docs = append(g.docs, object("v1", "Pod", meta(fmt.Sprintf("bad-%d", len(g.docs)), g.pick(g.namespaces), labels),
			kv{"spec", spec}, kv{"status", mapping{{"phase", "Running"}, {"podIP", "10.9.0.1"}}}))
	}
	onNode := mapping{}
	if len(g.nodes) > 0 {
		onNode = mapping{{"nodeName", g.nodes[0].name}}
	}
	switch g.r.Intn(7) {
	case 0:
		if len(g.nodes) > 0 {
			pod(map[string]string{"app": "web"}, mapping{}) // an address but no node
			return
		}
		fallthrough
	case 1:
		pod(map[string]string{"app": "web", "reserved:host": ""}, onNode)
	case 2:
		kinds := []kv{{"Endpoints", seq{mapping{}}}, {"CIDR", seq{"10.0.0.0/8"}}, {"CIDRSet", seq{mapping{{"cidr", "0.0.0.0/0"}}}}, {"Entities", seq{"world"}}}
		i := g.r.Intn(len(kinds))
		j := (i + 1 + g.r.Intn(len(kinds)-1)) % len(kinds)
		pfx, section := "from", "ingress"
		if g.chance(2) {
			pfx, section = "to", "egress"
		}
		cnp("CiliumNetworkPolicy", g.pick(g.namespaces), mapping{{"endpointSelector", mapping{}},
			{section, seq{mapping{{pfx + kinds[i].k, kinds[i].v}, {pfx + kinds[j].k, kinds[j].v}}}}})
	case 3:
		cnp("CiliumNetworkPolicy", g.pick(g.namespaces), mapping{{"endpointSelector", mapping{{"matchLabels", mapping{{"app", "web"}}}}}})
	case 4:
		cnp("CiliumClusterwideNetworkPolicy", "", mapping{{"nodeSelector", mapping{}}, {"ingress", seq{mapping{{"fromEntities", seq{"world"}}}}}})
	case 5:
		cnp("CiliumClusterwideNetworkPolicy", "", mapping{{"endpointSelector", mapping{{"matchLabels", mapping{{"reserved:host", ""}}}}},
			{"ingress", seq{mapping{{"fromEntities", seq{"world"}}}}}})
	default:
		g.docs = append(g.docs, object("v1", "Namespace", meta("bad", "", map[string]string{"team": "not valid!"})))
	}
}
