package synth

import (
	"strconv"
)

// NetworkPolicies and Cilium policies: recipes modelled on what platform
// teams write (default deny, DNS, same namespace, cross-namespace by team or
// env, ingress controller, Prometheus, CIDRs, port ranges), applied at random
// to real applications, so selectors match real pods and named ports name
// real container ports. L3/L4 only.

const (
	labelNSName    = "kubernetes.io/metadata.name"
	ciliumNSLabel  = "k8s:io.kubernetes.pod.namespace"
	privateA       = "10.0.0.0/8"
	privateB       = "172.16.0.0/12"
	privateC       = "192.168.0.0/16"
	cloudMetadata  = "169.254.169.254/32"
	partnerNet     = "198.51.100.0/24"
	partnerExclude = "198.51.100.128/25"
	officeNet      = "203.0.113.0/24"
)

func matchLabels(kvs ...string) obj { return obj{{"matchLabels", pairs(kvs...)}} }

func nsSelector(name string) obj { return matchLabels(labelNSName, name) }

func expr(key, op string, values ...string) obj {
	o := obj{{"key", key}, {"operator", op}}
	if len(values) > 0 {
		o = append(o, kv{"values", strs(values...)})
	}
	return o
}

func matchExpressions(exprs ...obj) obj {
	l := make(list, len(exprs))
	for i, e := range exprs {
		l[i] = e
	}
	return obj{{"matchExpressions", l}}
}

// polCtx is the namespace a recipe writes into.
type polCtx struct {
	c  *cluster
	g  *gen
	ns *namespace
	// Namespaces with applications, for cross-namespace peers.
	withApps []*namespace
}

func (x *polCtx) app() *app { return pick(x.g, x.ns.apps) }

// otherApp returns an application of another namespace, or nil.
func (x *polCtx) otherApp() *app {
	if len(x.withApps) < 2 {
		return nil
	}
	for {
		ns := pick(x.g, x.withApps)
		if ns != x.ns {
			return pick(x.g, ns.apps)
		}
	}
}

// peerApp returns another application of the namespace, or nil.
func (x *polCtx) peerApp(not *app) *app {
	if len(x.ns.apps) < 2 {
		return nil
	}
	for {
		if a := x.app(); a != not {
			return a
		}
	}
}

// ---- NetworkPolicy ----

func (x *polCtx) netpol(name string, spec obj) {
	name = x.ns.unique("networkpolicy", name)
	x.ns.netpols = append(x.ns.netpols, obj{
		{"apiVersion", "networking.k8s.io/v1"},
		{"kind", "NetworkPolicy"},
		{"metadata", obj{{"name", name}, {"namespace", x.ns.name}}},
		{"spec", spec},
	})
}

// npPort is the NetworkPolicy port of p: by number or by name; the protocol
// left to its TCP default now and then.
func (x *polCtx) npPort(p cport) obj {
	var port any = p.port
	if x.g.pct(40) {
		port = p.name
	}
	if p.proto == "TCP" && x.g.pct(30) {
		return obj{{"port", port}}
	}
	return obj{{"port", port}, {"protocol", p.proto}}
}

// servedPorts are the NetworkPolicy ports of a's serving ports (not metrics).
func (x *polCtx) servedPorts(a *app) list {
	var l list
	for _, p := range a.arch.ports {
		if p.name != "metrics" {
			l = append(l, x.npPort(p))
		}
	}
	if len(l) == 0 {
		l = list{x.npPort(a.arch.ports[0])}
	}
	return l
}

func podSel(a *app) obj { return matchLabels("app", a.name) }

var (
	ingressOnly = strs("Ingress")
	egressOnly  = strs("Egress")
	dnsPeer     = obj{{"namespaceSelector", nsSelector("kube-system")}, {"podSelector", matchLabels("k8s-app", "kube-dns")}}
	dnsPorts    = list{obj{{"port", 53}, {"protocol", "UDP"}}, obj{{"port", 53}, {"protocol", "TCP"}}}
	outside     = obj{{"ipBlock", obj{{"cidr", "0.0.0.0/0"}, {"except", strs(privateA, privateB, privateC)}}}}
)

// ingressPolicy builds an ingress policy; policyTypes is sometimes left to
// its default.
func (x *polCtx) ingressPolicy(sel obj, rules ...obj) obj {
	l := make(list, len(rules))
	for i, r := range rules {
		l[i] = r
	}
	spec := obj{{"ingress", l}, {"podSelector", sel}}
	if x.g.pct(60) {
		spec = append(spec, kv{"policyTypes", ingressOnly})
	}
	return spec
}

func egressPolicy(sel obj, rules ...obj) obj {
	l := make(list, len(rules))
	for i, r := range rules {
		l[i] = r
	}
	return obj{{"egress", l}, {"podSelector", sel}, {"policyTypes", egressOnly}}
}

func from(ports list, peers ...obj) obj {
	l := make(list, len(peers))
	for i, p := range peers {
		l[i] = p
	}
	if ports == nil {
		return obj{{"from", l}}
	}
	return obj{{"from", l}, {"ports", ports}}
}

func to(ports list, peers ...obj) obj {
	l := make(list, len(peers))
	for i, p := range peers {
		l[i] = p
	}
	if ports == nil {
		return obj{{"to", l}}
	}
	return obj{{"ports", ports}, {"to", l}}
}

type recipe struct {
	weight int
	fn     func(x *polCtx) bool // false: not applicable here
}

var npRecipes = []recipe{
	{20, (*polCtx).npFromApp},
	{10, (*polCtx).npFromTeam},
	{7, (*polCtx).npFromEnv},
	{12, (*polCtx).npFromNamespacePod},
	{6, (*polCtx).npFromIngress},
	{7, (*polCtx).npFromIPBlock},
	{6, (*polCtx).npEgressInternet},
	{8, (*polCtx).npEgressData},
	{6, (*polCtx).npEgressOtherTeam},
	{5, (*polCtx).npPortRange},
	{4, (*polCtx).npMatchExpressions},
	{5, (*polCtx).npDefaultedTypes},
	{1, (*polCtx).npAllowAll},
	{5, (*polCtx).npMultiPeer},
	{3, (*polCtx).npNamespaceFromTeam},
	{2, (*polCtx).npDenyEgress},
}

// networkPolicies writes total NetworkPolicies over the application
// namespaces, more where there are more applications.
func (c *cluster) networkPolicies(g *gen, total int) {
	nss := c.namespaces[2:]
	weights := make([]int, len(nss))
	for i, ns := range nss {
		weights[i] = 1 + len(ns.apps)
	}
	withApps := c.withApps()
	rw := make([]int, len(npRecipes))
	for i, r := range npRecipes {
		rw[i] = r.weight
	}
	cover := new(int)
	for i, q := range apportion(total, weights) {
		x := &polCtx{c: c, g: g, ns: nss[i], withApps: withApps}
		end := len(x.ns.netpols) + q
		room := func() bool { return len(x.ns.netpols) < end }
		needDNS := false
		if room() && g.pct(80) {
			if x.ns.env == "prod" && g.pct(35) {
				x.netpol("default-deny-all", obj{{"podSelector", obj{}}, {"policyTypes", strs("Ingress", "Egress")}})
				needDNS = true
			} else {
				x.netpol("default-deny-ingress", obj{{"podSelector", obj{}}, {"policyTypes", ingressOnly}})
			}
		}
		if room() && (needDNS || g.pct(30)) {
			x.netpol("allow-dns", egressPolicy(obj{}, to(dnsPorts, dnsPeer)))
		}
		if room() && g.pct(30) {
			x.netpol("allow-same-namespace", x.ingressPolicy(obj{}, from(nil, obj{{"podSelector", obj{}}})))
		}
		if room() && c.monitoring != nil && x.ns != c.monitoring && g.pct(50) {
			peer := obj{{"namespaceSelector", nsSelector(c.monitoring.name)}, {"podSelector", matchLabels("app", "prometheus")}}
			x.netpol("allow-prometheus-scrape", x.ingressPolicy(obj{},
				from(list{obj{{"port", "metrics"}, {"protocol", "TCP"}}}, peer)))
		}
		for room() {
			// Each recipe once first, so that small clusters have them all.
			r := npRecipes[g.weighted(rw)]
			if *cover < len(npRecipes) {
				r = npRecipes[*cover]
				*cover++
			}
			if !r.fn(x) && len(x.ns.apps) == 0 {
				// Namespace-wide recipes always apply.
				if g.pct(50) {
					x.npNamespaceFromTeam()
				} else {
					x.npDenyEgress()
				}
			}
		}
	}
}

func (c *cluster) withApps() []*namespace {
	var out []*namespace
	for _, ns := range c.namespaces[2:] {
		if len(ns.apps) > 0 {
			out = append(out, ns)
		}
	}
	return out
}

func (x *polCtx) npFromApp() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	src := x.peerApp(dst)
	var peer obj
	name := "allow-" + dst.name + "-from-"
	if src != nil {
		peer = obj{{"podSelector", podSel(src)}}
		name += src.name
	} else {
		peer = obj{{"podSelector", matchLabels("tier", "frontend")}}
		name += "frontend"
	}
	x.netpol(name, x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), peer)))
	return true
}

func (x *polCtx) npFromTeam() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	team := x.ns.team
	if team == "" || x.g.pct(30) {
		team = pick(x.g, x.c.teams)
	}
	peer := obj{{"namespaceSelector", matchLabels("team", team)}}
	x.netpol("allow-"+dst.name+"-from-team-"+team, x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), peer)))
	return true
}

func (x *polCtx) npFromEnv() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	var sel obj
	var name string
	switch x.g.intn(3) {
	case 0:
		sel, name = matchExpressions(expr("env", "In", "prod", "staging")), "prod-staging"
	case 1:
		sel, name = matchExpressions(expr("env", "NotIn", "dev")), "non-dev"
	default:
		sel, name = matchLabels("env", x.ns.env), "same-env"
		if x.ns.env == "" {
			sel = matchLabels("env", "prod")
		}
	}
	x.netpol("allow-"+dst.name+"-from-"+name, x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), obj{{"namespaceSelector", sel}})))
	return true
}

func (x *polCtx) npFromNamespacePod() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.otherApp()
	if src == nil {
		return false
	}
	dst := x.app()
	peer := obj{{"namespaceSelector", nsSelector(src.ns.name)}, {"podSelector", podSel(src)}}
	x.netpol("allow-"+dst.name+"-from-"+src.ns.name, x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), peer)))
	return true
}

func (x *polCtx) npFromIngress() bool {
	ing := x.c.ingress
	if ing == nil || x.ns == ing || len(x.ns.apps) == 0 {
		return false
	}
	peer := obj{{"namespaceSelector", nsSelector(ing.name)}, {"podSelector", matchLabels("app", "ingress-nginx")}}
	for _, a := range x.ns.apps {
		if a.arch.frontend {
			x.netpol("allow-ingress-to-"+a.name, x.ingressPolicy(podSel(a), from(x.servedPorts(a), peer)))
			return true
		}
	}
	x.netpol("allow-ingress-to-frontends", x.ingressPolicy(matchLabels("tier", "frontend"),
		from(list{x.npPort(portHTTP)}, peer)))
	return true
}

func (x *polCtx) npFromIPBlock() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	switch x.g.intn(3) {
	case 0:
		x.netpol("allow-"+dst.name+"-from-internet", x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), outside)))
	case 1:
		peer := obj{{"ipBlock", obj{{"cidr", nodeNet.String()}}}}
		x.netpol("allow-"+dst.name+"-from-nodes", x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), peer)))
	default:
		p1 := obj{{"ipBlock", obj{{"cidr", partnerNet}, {"except", strs(partnerExclude)}}}}
		p2 := obj{{"ipBlock", obj{{"cidr", officeNet}}}}
		x.netpol("allow-"+dst.name+"-from-partners", x.ingressPolicy(podSel(dst), from(x.servedPorts(dst), p1, p2)))
	}
	return true
}

func (x *polCtx) npEgressInternet() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.app()
	peer := obj{{"ipBlock", obj{{"cidr", "0.0.0.0/0"}, {"except", strs(privateA, privateB, privateC, cloudMetadata)}}}}
	x.netpol("allow-"+src.name+"-egress-https", egressPolicy(podSel(src),
		to(list{obj{{"port", 443}, {"protocol", "TCP"}}}, peer)))
	return true
}

func (x *polCtx) npEgressData() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.app()
	x.netpol("allow-"+src.name+"-to-data", egressPolicy(podSel(src),
		to(list{obj{{"port", 5432}}, obj{{"port", 3306}, {"protocol", "TCP"}}}, obj{{"podSelector", matchLabels("tier", "db")}}),
		to(list{obj{{"port", 6379}, {"protocol", "TCP"}}, obj{{"port", "memcache"}}}, obj{{"podSelector", matchLabels("tier", "cache")}}),
		to(dnsPorts, dnsPeer)))
	return true
}

func (x *polCtx) npEgressOtherTeam() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.app()
	team := pick(x.g, x.c.teams)
	peer := obj{{"namespaceSelector", matchLabels("team", team)}, {"podSelector", matchLabels("role", "api")}}
	x.netpol("allow-"+src.name+"-to-"+team+"-apis", egressPolicy(podSel(src),
		to(list{obj{{"port", "http"}, {"protocol", "TCP"}}, obj{{"port", 9000}, {"protocol", "TCP"}}}, peer),
		to(dnsPorts, dnsPeer)))
	return true
}

func (x *polCtx) npPortRange() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	ports := list{obj{{"endPort", 8999}, {"port", 8000}, {"protocol", "TCP"}}}
	if _, ok := dst.arch.port("rtp"); ok {
		ports = list{obj{{"endPort", 10999}, {"port", 10000}, {"protocol", "UDP"}}, obj{{"endPort", 8090}, {"port", 8080}}}
	}
	x.netpol("allow-"+dst.name+"-port-range", x.ingressPolicy(podSel(dst),
		from(ports, obj{{"namespaceSelector", matchLabels("team", teamOr(x.ns.team))}})))
	return true
}

func (x *polCtx) npMatchExpressions() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	sel := matchExpressions(expr("tier", "In", "backend", "db", "cache"))
	peer := obj{{"podSelector", matchExpressions(expr("role", "NotIn", "worker", "batch"), expr("app", "Exists"))}}
	x.netpol("allow-backends-from-services", x.ingressPolicy(sel, from(nil, peer)))
	return true
}

// npDefaultedTypes leaves policyTypes out of a policy with both directions.
func (x *polCtx) npDefaultedTypes() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	a := x.app()
	in := from(x.servedPorts(a), obj{{"podSelector", matchLabels("tier", "frontend")}})
	out1 := to(nil, obj{{"podSelector", matchLabels("tier", "db")}})
	out2 := to(list{obj{{"port", 53}, {"protocol", "UDP"}}}, obj{{"namespaceSelector", nsSelector("kube-system")}})
	x.netpol(a.name+"-traffic", obj{{"egress", list{out1, out2}}, {"ingress", list{in}}, {"podSelector", podSel(a)}})
	return true
}

func (x *polCtx) npAllowAll() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	a := x.app()
	x.netpol("allow-all-to-"+a.name, obj{{"ingress", list{obj{}}}, {"podSelector", podSel(a)}, {"policyTypes", ingressOnly}})
	return true
}

func (x *polCtx) npMultiPeer() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	peers := []obj{
		{{"podSelector", matchLabels("tier", "frontend")}},
		{{"namespaceSelector", matchLabels("env", "prod")}, {"podSelector", matchLabels("role", "api")}},
	}
	if src := x.peerApp(dst); src != nil {
		peers = append(peers, obj{{"podSelector", podSel(src)}})
	}
	ports := append(x.servedPorts(dst), obj{{"port", 9090}, {"protocol", "TCP"}})
	x.netpol("allow-"+dst.name+"-clients", x.ingressPolicy(podSel(dst), from(ports, peers...)))
	return true
}

func (x *polCtx) npNamespaceFromTeam() bool {
	team := x.ns.team
	if team == "" {
		team = pick(x.g, x.c.teams)
	}
	x.netpol("allow-from-team-"+team, x.ingressPolicy(obj{}, from(nil, obj{{"namespaceSelector", matchLabels("team", team)}})))
	return true
}

func (x *polCtx) npDenyEgress() bool {
	x.netpol("default-deny-egress", obj{{"podSelector", obj{}}, {"policyTypes", egressOnly}})
	return true
}

// ---- Cilium ----

// cnpPorts is a toPorts list with one PortRule.
func cnpPorts(ports ...obj) list {
	l := make(list, len(ports))
	for i, p := range ports {
		l[i] = p
	}
	return list{obj{{"ports", l}}}
}

func cport1(port int, proto string) obj {
	return obj{{"port", strconv.Itoa(port)}, {"protocol", proto}}
}

func cportRange(port, end int, proto string) obj {
	return obj{{"endPort", end}, {"port", strconv.Itoa(port)}, {"protocol", proto}}
}

// appPorts are the toPorts of a's serving ports.
func (x *polCtx) appPorts(a *app) list {
	var ps []obj
	for _, p := range a.arch.ports {
		if p.name != "metrics" {
			proto := p.proto
			if x.g.pct(10) {
				proto = "ANY"
			}
			ps = append(ps, cport1(p.port, proto))
		}
	}
	if len(ps) == 0 {
		ps = append(ps, cport1(a.arch.ports[0].port, a.arch.ports[0].proto))
	}
	return cnpPorts(ps...)
}

func (x *polCtx) cnp(name string, spec obj) {
	name = x.ns.unique("ciliumnetworkpolicy", name)
	if x.g.pct(40) {
		spec = append(spec, kv{"description", "Generated policy " + name + " for namespace " + x.ns.name})
	}
	x.ns.cnps = append(x.ns.cnps, obj{
		{"apiVersion", "cilium.io/v2"},
		{"kind", "CiliumNetworkPolicy"},
		{"metadata", obj{{"name", name}, {"namespace", x.ns.name}}},
		{"spec", spec},
	})
}

func ccnp(name string, spec obj) obj {
	return obj{
		{"apiVersion", "cilium.io/v2"},
		{"kind", "CiliumClusterwideNetworkPolicy"},
		{"metadata", obj{{"name", name}}},
		{"spec", spec},
	}
}

func rules(rs ...obj) list {
	l := make(list, len(rs))
	for i, r := range rs {
		l[i] = r
	}
	return l
}

func sels(ss ...obj) list { return rules(ss...) }

var (
	kubeDNSEndpoint = matchLabels(ciliumNSLabel, "kube-system", "k8s:k8s-app", "kube-dns")
	outsideCIDRSet  = list{obj{{"cidr", "0.0.0.0/0"}, {"except", strs(privateA, privateB, privateC)}}}
	metadataCIDRSet = list{obj{{"cidr", cloudMetadata}}}
)

var cnpRecipes = []recipe{
	{20, (*polCtx).cnpFromApp},
	{12, (*polCtx).cnpFromNamespace},
	{6, (*polCtx).cnpFromWorld},
	{6, (*polCtx).cnpFromCluster},
	{5, (*polCtx).cnpFromNodes},
	{8, (*polCtx).cnpEgressOutside},
	{8, (*polCtx).cnpEgressDNS},
	{5, (*polCtx).cnpPortRange},
	{5, (*polCtx).cnpDenyWorld},
	{5, (*polCtx).cnpDenyMetadata},
	{3, (*polCtx).cnpDenyFrontendToDB},
	{6, (*polCtx).cnpSameNamespace},
	{4, (*polCtx).cnpMatchExpressions},
	{6, (*polCtx).cnpEgressData},
	{4, (*polCtx).cnpFromIngressNamespace},
	{4, (*polCtx).cnpFromCIDRSet},
}

// ciliumPolicies writes total Cilium policies: a few clusterwide ones, the
// rest namespaced, in about a third of the namespaces (the teams that use
// them).
func (c *cluster) ciliumPolicies(g *gen, total int) {
	nClusterwide := 0
	if total > 0 {
		nClusterwide = min(total, max(1, total/50), 20)
	}
	c.clusterwidePolicies(g, nClusterwide)

	nss := c.namespaces[2:]
	weights := make([]int, len(nss))
	adopters := false
	for i, ns := range nss {
		if g.pct(35) {
			weights[i] = 1 + len(ns.apps)
			adopters = true
		}
	}
	if !adopters {
		weights[0] = 1
	}
	withApps := c.withApps()
	rw := make([]int, len(cnpRecipes))
	for i, r := range cnpRecipes {
		rw[i] = r.weight
	}
	cover := 0
	for i, q := range apportion(total-nClusterwide, weights) {
		x := &polCtx{c: c, g: g, ns: nss[i], withApps: withApps}
		for range q {
			if cover < len(cnpRecipes) && len(x.ns.apps) > 0 {
				// Each recipe once first, so that small clusters have them all.
				cover++
				if cnpRecipes[cover-1].fn(x) {
					continue
				}
			}
			for !cnpRecipes[g.weighted(rw)].fn(x) {
				if len(x.ns.apps) == 0 {
					x.cnpSameNamespace()
					break
				}
			}
		}
	}
}

func (x *polCtx) cnpFromApp() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	src := x.peerApp(dst)
	sel, name := matchLabels("tier", "frontend"), "frontend"
	if src != nil {
		sel, name = podSel(src), src.name
	}
	x.cnp(dst.name+"-from-"+name, obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromEndpoints", sels(sel)}, {"toPorts", x.appPorts(dst)}})},
	})
	return true
}

func (x *polCtx) cnpFromNamespace() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.otherApp()
	if src == nil {
		return false
	}
	dst := x.app()
	sel := matchLabels(ciliumNSLabel, src.ns.name, "k8s:app", src.name)
	if x.g.pct(30) {
		sel = matchLabels(ciliumNSLabel, src.ns.name, "app", src.name)
	}
	x.cnp(dst.name+"-from-"+src.ns.name, obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromEndpoints", sels(sel)}, {"toPorts", x.appPorts(dst)}})},
	})
	return true
}

func (x *polCtx) cnpFromEntities(name string, entities ...string) bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	x.cnp(dst.name+"-from-"+name, obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromEntities", strs(entities...)}, {"toPorts", x.appPorts(dst)}})},
	})
	return true
}

func (x *polCtx) cnpFromWorld() bool   { return x.cnpFromEntities("world", "world") }
func (x *polCtx) cnpFromCluster() bool { return x.cnpFromEntities("cluster", "cluster") }

func (x *polCtx) cnpFromNodes() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	x.cnp(dst.name+"-health-checks", obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromEntities", strs("host", "remote-node")}})},
	})
	return true
}

func (x *polCtx) cnpEgressOutside() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.app()
	x.cnp(src.name+"-egress-internet", obj{
		{"egress", rules(obj{{"toCIDRSet", outsideCIDRSet}, {"toPorts", cnpPorts(cport1(443, "TCP"), cport1(80, "TCP"))}})},
		{"endpointSelector", podSel(src)},
	})
	return true
}

func (x *polCtx) cnpEgressDNS() bool {
	dns := obj{{"toEndpoints", sels(kubeDNSEndpoint)}, {"toPorts", cnpPorts(cport1(53, "ANY"))}}
	x.cnp("allow-dns-and-namespace-egress", obj{
		{"egress", rules(dns, obj{{"toEndpoints", sels(obj{})}})},
		{"endpointSelector", obj{}},
	})
	return true
}

func (x *polCtx) cnpPortRange() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	x.cnp(dst.name+"-port-ranges", obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{
			{"fromEndpoints", sels(obj{})},
			{"toPorts", cnpPorts(cportRange(8000, 8999, "TCP"), cportRange(10000, 10999, "UDP"))},
		})},
	})
	return true
}

func (x *polCtx) cnpDenyWorld() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	x.cnp(dst.name+"-deny-world", obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromEntities", strs("cluster")}})},
		{"ingressDeny", rules(obj{{"fromEntities", strs("world")}})},
	})
	return true
}

func (x *polCtx) cnpDenyMetadata() bool {
	x.cnp("deny-cloud-metadata", obj{
		{"egress", rules(obj{{"toEntities", strs("world")}})},
		{"egressDeny", rules(obj{{"toCIDRSet", metadataCIDRSet}})},
		{"endpointSelector", obj{}},
	})
	return true
}

func (x *polCtx) cnpDenyFrontendToDB() bool {
	x.cnp("deny-frontend-to-db", obj{
		{"endpointSelector", matchLabels("tier", "db")},
		{"ingressDeny", rules(obj{
			{"fromEndpoints", sels(matchLabels("tier", "frontend"))},
			{"toPorts", cnpPorts(cport1(5432, "TCP"), cport1(3306, "TCP"))},
		})},
	})
	return true
}

func (x *polCtx) cnpSameNamespace() bool {
	x.cnp("allow-same-namespace", obj{
		{"endpointSelector", obj{}},
		{"ingress", rules(obj{{"fromEndpoints", sels(obj{})}})},
	})
	return true
}

func (x *polCtx) cnpMatchExpressions() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	x.cnp("backends-from-non-workers", obj{
		{"endpointSelector", matchExpressions(expr("tier", "In", "backend", "db"))},
		{"ingress", rules(obj{
			{"fromEndpoints", sels(matchExpressions(expr("role", "NotIn", "worker"), expr("app", "Exists")))},
			{"toPorts", cnpPorts(cport1(8080, "TCP"), cport1(9000, "TCP"), cport1(5432, "TCP"))},
		})},
	})
	return true
}

func (x *polCtx) cnpEgressData() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	src := x.app()
	x.cnp(src.name+"-to-data", obj{
		{"egress", rules(
			obj{{"toEndpoints", sels(matchLabels("tier", "db"))}, {"toPorts", cnpPorts(cport1(5432, "TCP"))}},
			obj{{"toEndpoints", sels(matchLabels("tier", "cache"))}, {"toPorts", cnpPorts(cport1(6379, "TCP"), cport1(11211, "TCP"))}},
		)},
		{"endpointSelector", podSel(src)},
	})
	return true
}

func (x *polCtx) cnpFromIngressNamespace() bool {
	ing := x.c.ingress
	if ing == nil || ing == x.ns || len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	x.cnp(dst.name+"-from-ingress", obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromEndpoints", sels(matchLabels(ciliumNSLabel, ing.name))}, {"toPorts", x.appPorts(dst)}})},
	})
	return true
}

func (x *polCtx) cnpFromCIDRSet() bool {
	if len(x.ns.apps) == 0 {
		return false
	}
	dst := x.app()
	set := list{obj{{"cidr", partnerNet}, {"except", strs(partnerExclude)}}, obj{{"cidr", officeNet}}}
	x.cnp(dst.name+"-from-partners", obj{
		{"endpointSelector", podSel(dst)},
		{"ingress", rules(obj{{"fromCIDRSet", set}, {"toPorts", cnpPorts(cport1(443, "TCP"), cport1(8080, "TCP"))}})},
	})
	return true
}

// clusterwidePolicies writes n CiliumClusterwideNetworkPolicies: the usual
// baseline first, then namespace lockdowns.
func (c *cluster) clusterwidePolicies(g *gen, n int) {
	base := []obj{
		ccnp("deny-cloud-metadata", obj{
			{"egressDeny", rules(obj{{"toCIDRSet", metadataCIDRSet}})},
			{"endpointSelector", obj{}},
		}),
		ccnp("allow-health-checks", obj{
			{"endpointSelector", obj{}},
			{"ingress", rules(obj{{"fromEntities", strs("host", "remote-node")}})},
		}),
		ccnp("allow-kube-dns", obj{
			{"egress", rules(obj{{"toEndpoints", sels(kubeDNSEndpoint)}, {"toPorts", cnpPorts(cport1(53, "UDP"), cport1(53, "TCP"))}})},
			{"endpointSelector", obj{}},
		}),
		ccnp("protect-databases", obj{
			{"endpointSelector", matchLabels("tier", "db")},
			{"ingressDeny", rules(obj{{"fromEntities", strs("world")}})},
		}),
		ccnp("allow-prometheus-scrape", obj{
			{"endpointSelector", obj{}},
			{"ingress", rules(obj{
				{"fromEndpoints", sels(matchLabels(ciliumNSLabel, "monitoring", "k8s:app", "prometheus"))},
				{"toPorts", cnpPorts(cport1(9090, "TCP"), cport1(9100, "TCP"), cportRange(9100, 9400, "TCP"))},
			})},
		}),
		ccnp("deny-smtp-egress", obj{
			{"egressDeny", rules(obj{{"toEntities", strs("world")}, {"toPorts", cnpPorts(cport1(25, "TCP"), cport1(465, "TCP"))}})},
			{"endpointSelector", obj{}},
		}),
		ccnp("allow-ingress-controller", obj{
			{"endpointSelector", matchLabels("tier", "frontend")},
			{"ingress", rules(obj{{"fromEndpoints", sels(matchLabels(ciliumNSLabel, "ingress-nginx"))}})},
		}),
	}
	for i := range n {
		if i < len(base) {
			c.ccnps = append(c.ccnps, base[i])
			continue
		}
		ns := pick(g, c.namespaces[2:])
		c.ccnps = append(c.ccnps, ccnp("lockdown-"+ns.name+"-"+strconv.Itoa(i), obj{
			{"endpointSelector", matchLabels(ciliumNSLabel, ns.name)},
			{"ingress", rules(
				obj{{"fromEndpoints", sels(matchLabels(ciliumNSLabel, ns.name))}},
				obj{{"fromEntities", strs("host", "remote-node")}},
			)},
		}))
	}
}
