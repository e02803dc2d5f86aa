package synth

import (
	"fmt"
	"net/netip"
	"strconv"
)

var teamNames = []string{
	"payments", "checkout", "search", "catalog", "identity", "billing", "shipping", "fulfillment",
	"inventory", "pricing", "marketing", "analytics", "growth", "mobile", "storefront", "data",
	"ml", "risk", "fraud", "ledger", "accounts", "notifications", "messaging", "media",
	"content", "reviews", "recommendations", "ads", "partners", "support", "compliance", "security",
	"observability", "infra", "storage", "streaming", "gaming", "maps", "travel", "loyalty",
	"rewards", "subscriptions", "onboarding", "admin", "reporting", "insights", "experiments", "tax",
	"procurement", "logistics",
}

var (
	envs       = []string{"prod", "staging", "dev"}
	envWeights = []int{40, 30, 30}
	zones      = []string{"eu-central-1a", "eu-central-1b", "eu-central-1c"}
)

const (
	region       = "eu-central-1"
	platformTeam = "platform"
	registry     = "registry.example.com"
	// deletionTimestamp of terminating pods: a constant, never the clock.
	deletionTime = "2025-06-01T12:00:00Z"
)

// build draws the whole cluster from p.
func build(p Params) (*cluster, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	g := newGen(p.Seed)
	c := &cluster{}

	// Nodes: control plane first.
	cp := 1
	if p.Nodes >= 10 {
		cp = 3
	}
	for i := range p.Nodes {
		n := &node{
			name:         nodeName(i),
			uid:          g.uid(),
			zone:         zones[i%len(zones)],
			controlPlane: i < cp,
			ip:           u32Addr(addrU32(nodeNet.Addr()) + uint32(i) + 1),
		}
		c.nodes = append(c.nodes, n)
		if !n.controlPlane {
			c.workers = append(c.workers, n)
		}
	}

	// Budgets for what the system objects leave.
	coreDNS := 2
	if p.Pods < 12 {
		coreDNS = 1
	}
	podsApp := p.Pods - coreDNS
	svcApp := p.Services - 2
	epApp := max(p.Endpoints-cp-coreDNS, 0)
	nsApp := p.Namespaces - 2

	kubeSystem := c.newNamespace(g, "kube-system", "", "")
	dflt := c.newNamespace(g, "default", "", "")

	// Platform namespaces, in clusters big enough to have them.
	platform := nsApp >= 4 && podsApp >= 20
	daemonSets := platform && podsApp >= 20*p.Nodes
	platformPods := 0
	if platform {
		c.monitoring = c.newNamespace(g, "monitoring", platformTeam, "prod")
		c.ingress = c.newNamespace(g, "ingress-nginx", platformTeam, "prod")
		logging := c.newNamespace(g, "logging", platformTeam, "prod")
		c.addApp(g, c.monitoring, archPrometheus, "prometheus", false)
		c.addApp(g, c.ingress, archIngress, "ingress-nginx", false)
		platformPods += archPrometheus.replicas[0] + archIngress.replicas[0]
		if daemonSets {
			c.addApp(g, c.monitoring, archNodeExporter, "node-exporter", false)
			c.addApp(g, logging, archFluentBit, "fluent-bit", false)
			platformPods += 2 * p.Nodes
		}
		nsApp -= 3
	}
	for _, ns := range c.namespaces[2:] {
		for _, w := range ns.workloads {
			if w.kind == "DaemonSet" {
				w.replicas = p.Nodes
			} else {
				w.replicas = w.app.arch.replicas[0]
			}
		}
	}

	// Teams and regular namespaces.
	teams := teamNames[:min(len(teamNames), nsApp)]
	seq := map[string]int{} // next number per team and env; lookups only
	used := map[string]bool{}
	regular := make([]*namespace, 0, nsApp)
	for range nsApp {
		team := pick(g, teams)
		if !used[team] {
			used[team] = true
			c.teams = append(c.teams, team) // in order of first use
		}
		env := envs[g.weighted(envWeights)]
		key := team + "-" + env
		seq[key]++
		ns := c.newNamespace(g, key+"-"+strconv.Itoa(seq[key]), team, env)
		regular = append(regular, ns)
	}

	// Regular workloads: as many as make the endpoint count come out right
	// when every Service selects one workload of average size.
	podsReg := podsApp - platformPods
	platformWorkloads := 0
	for _, ns := range c.namespaces[2:] {
		platformWorkloads += len(ns.workloads)
	}
	nw := podsReg
	if epApp > 0 {
		nw = (svcApp*podsApp+epApp/2)/epApp - platformWorkloads
	}
	nw = min(max(nw, 1), podsReg)
	nsWeights := make([]int, len(regular))
	for i := range nsWeights {
		nsWeights[i] = 2 + g.skewed()
	}
	for i, q := range apportion(nw, nsWeights) {
		c.fillNamespace(g, regular[i], q)
	}
	c.sizeWorkloads(g, regular, podsReg)

	// CoreDNS.
	dns := &app{name: "coredns", arch: archCoreDNS, ns: kubeSystem}
	kubeSystem.apps = append(kubeSystem.apps, dns)
	dw := c.addWorkload(g, dns, "coredns", "stable", "v1")
	dw.replicas = coreDNS
	dw.fixed = true

	// Services, then the replica moves that bring endpoints to the target.
	c.systemServices(g, kubeSystem, dflt, dns)
	c.appServices(g, svcApp)
	c.balanceEndpoints(g, epApp)

	// Pods, nodes' pod CIDRs, pod IPs, EndpointSlices.
	c.placePods(g)
	if err := c.allocatePodCIDRs(); err != nil {
		return nil, err
	}
	for _, ns := range c.namespaces {
		for _, pd := range ns.pods {
			pd.ip = u32Addr(addrU32(pd.node.cidr.Addr()) + uint32(pd.node.pods) + 2)
			pd.node.pods++
		}
	}
	c.slices(g)

	// Policies.
	c.networkPolicies(g, p.NetworkPolicies)
	c.ciliumPolicies(g, p.CiliumPolicies)
	return c, nil
}

func (c *cluster) newNamespace(g *gen, name, team, env string) *namespace {
	ns := &namespace{name: name, uid: g.uid(), team: team, env: env, names: map[string]bool{}}
	switch {
	case team == "":
	case team == platformTeam:
		ns.tier = "critical"
	case env == "prod" && g.pct(50):
		ns.tier = "critical"
	case env == "dev":
		ns.tier = "sandbox"
	default:
		ns.tier = "standard"
	}
	c.namespaces = append(c.namespaces, ns)
	return ns
}

// addApp adds an application and its primary workload.
func (c *cluster) addApp(g *gen, ns *namespace, a *archetype, name string, canary bool) *app {
	ap := &app{name: ns.unique("app", name), arch: a, ns: ns}
	ns.apps = append(ns.apps, ap)
	version := "v" + strconv.Itoa(g.between(1, 4))
	track := ""
	if a.kind == "Deployment" {
		track = "stable"
	}
	w := c.addWorkload(g, ap, ap.name, track, version)
	w.fixed = a.replicas[0] > 0 || a.kind == "DaemonSet"
	if canary {
		cw := c.addWorkload(g, ap, ap.name+"-canary", "canary", "v"+strconv.Itoa(g.between(5, 6)))
		cw.fixed = true
	}
	return ap
}

func (c *cluster) addWorkload(g *gen, ap *app, name, track, version string) *workload {
	a := ap.arch
	w := &workload{
		kind:     a.kind,
		name:     ap.ns.unique("workload", name),
		uid:      g.uid(),
		app:      ap,
		track:    track,
		version:  version,
		image:    fmt.Sprintf("%s/%s/%s:1.%d.%d", registry, teamOr(ap.ns.team), a.key, g.between(0, 30), g.between(0, 9)),
		replicas: 1,
	}
	switch a.kind {
	case "Deployment":
		w.hash = g.suffix(10)
		w.rsUID = g.uid()
	case "StatefulSet":
		w.hash = w.name + "-" + g.suffix(10)
	case "DaemonSet":
		w.hash = g.suffix(10)
	}

	if a == archCoreDNS {
		w.templateLabels = pairs("k8s-app", "kube-dns")
		w.selector = pairs("k8s-app", "kube-dns")
		w.podLabels = pairs("k8s-app", "kube-dns", "pod-template-hash", w.hash)
	} else {
		tl := []string{"app", ap.name, "tier", a.tier, "role", a.role, "version", version}
		if track != "" {
			tl = append(tl, "track", track)
			w.selector = pairs("app", ap.name, "track", track)
		} else {
			w.selector = pairs("app", ap.name)
		}
		w.templateLabels = pairs(tl...)
		switch a.kind {
		case "Deployment":
			w.podLabels = pairs(append(tl, "pod-template-hash", w.hash)...)
		case "DaemonSet":
			w.podLabels = pairs(append(tl, "controller-revision-hash", w.hash, "pod-template-generation", "1")...)
		case "StatefulSet":
			// Per pod: pod-name and pod-index differ.
		}
	}
	ports := make(list, len(a.ports))
	for i, p := range a.ports {
		ports[i] = obj{{"containerPort", p.port}, {"name", p.name}, {"protocol", p.proto}}
	}
	w.containers = list{obj{{"image", w.image}, {"name", a.key}, {"ports", ports}}}

	ap.workloads = append(ap.workloads, w)
	ap.ns.workloads = append(ap.ns.workloads, w)
	return w
}

func teamOr(team string) string {
	if team == "" {
		return "system"
	}
	return team
}

// fillNamespace adds applications to ns until it has q workloads.
func (c *cluster) fillNamespace(g *gen, ns *namespace, q int) {
	weights := make([]int, len(archetypes))
	for i, a := range archetypes {
		weights[i] = a.weight
	}
	for len(ns.workloads) < q {
		a := archetypes[g.weighted(weights)]
		canary := a.kind == "Deployment" && a.replicas[0] == 0 && q-len(ns.workloads) >= 2 && g.pct(6)
		c.addApp(g, ns, a, pick(g, appStems[a.key]), canary)
	}
}

// sizeWorkloads sets replica counts of the regular workloads so they add up
// to total: fixed-size workloads (databases, canaries) get a small count from
// their range, the rest share what is left, long-tailed.
func (c *cluster) sizeWorkloads(g *gen, regular []*namespace, total int) {
	var fixed, flex []*workload
	for _, ns := range regular {
		for _, w := range ns.workloads {
			if w.fixed {
				fixed = append(fixed, w)
			} else {
				flex = append(flex, w)
			}
		}
	}
	left := total - len(fixed) - len(flex)
	for _, w := range fixed {
		want := 1
		if r := w.app.arch.replicas; r[1] > 0 {
			want = g.between(r[0], r[1])
		} else if w.track == "canary" {
			want = g.between(1, 2)
		}
		extra := min(want-1, left)
		w.replicas += extra
		left -= extra
	}
	if len(flex) == 0 {
		flex = fixed
	}
	weights := make([]int, len(flex))
	for i := range weights {
		weights[i] = g.skewed()
	}
	for i, n := range apportion(left, weights) {
		flex[i].replicas += n
	}
}

// systemServices adds kubernetes in default and kube-dns in kube-system.
func (c *cluster) systemServices(g *gen, kubeSystem, dflt *namespace, dns *app) {
	k := &service{
		name:      "kubernetes",
		uid:       g.uid(),
		labels:    pairs("component", "apiserver", "provider", "kubernetes"),
		clusterIP: kubernetesIP,
		ports:     []svcPort{{name: "https", port: 443, proto: "TCP", targetN: 6443, backend: 6443}},
	}
	dflt.take("service", k.name)
	dflt.services = append(dflt.services, k)

	d := &service{
		name:      "kube-dns",
		uid:       g.uid(),
		labels:    pairs("k8s-app", "kube-dns", "kubernetes.io/cluster-service", "true", "kubernetes.io/name", "CoreDNS"),
		selector:  pairs("k8s-app", "kube-dns"),
		clusterIP: kubeDNSIP,
		ports: []svcPort{
			{name: "dns", port: 53, proto: "UDP", targetN: 53, backend: 53},
			{name: "dns-tcp", port: 53, proto: "TCP", targetN: 53, backend: 53},
			{name: "metrics", port: 9153, proto: "TCP", targetN: 9153, backend: 9153},
		},
		targets: dns.workloads,
	}
	kubeSystem.take("service", d.name)
	kubeSystem.services = append(kubeSystem.services, d)
}

// ipam hands out unique ClusterIPs and NodePorts at random, as the API
// server does.
type ipam struct {
	clusterIPs map[uint32]bool
	nodePorts  map[int]bool
}

func (m *ipam) clusterIP(g *gen) string {
	base := addrU32(serviceNet.Addr())
	size := 1 << (32 - serviceNet.Bits())
	for {
		v := base + uint32(16+g.intn(size-32))
		if !m.clusterIPs[v] {
			m.clusterIPs[v] = true
			return u32Addr(v).String()
		}
	}
}

func (m *ipam) nodePort(g *gen) int {
	for {
		v := g.between(nodePortBase, nodePortMax)
		if !m.nodePorts[v] {
			m.nodePorts[v] = true
			return v
		}
	}
}

// nodePortBudget is how many NodePorts the generator hands out at most,
// leaving the range far from full.
const nodePortBudget = (nodePortMax - nodePortBase + 1) * 3 / 4

// appServices adds n Services: first one per application (at random which
// ones when there are fewer Services than applications), then extra ones —
// headless, metrics, canary, NodePort, gRPC — on random applications.
func (c *cluster) appServices(g *gen, n int) {
	m := &ipam{clusterIPs: map[uint32]bool{
		addrU32(netip.MustParseAddr(kubernetesIP)): true,
		addrU32(netip.MustParseAddr(kubeDNSIP)):    true,
	}, nodePorts: map[int]bool{}}
	var apps []*app
	for _, ns := range c.namespaces[2:] {
		apps = append(apps, ns.apps...)
	}
	if len(apps) == 0 || n == 0 {
		return
	}
	primary := apps
	if n < len(apps) {
		primary = make([]*app, 0, n)
		for _, i := range g.r.Perm(len(apps))[:n] {
			primary = append(primary, apps[i])
		}
	}
	for _, ap := range primary {
		c.addService(g, m, ap, "primary")
	}
	for range n - len(primary) {
		ap := pick(g, apps)
		kinds := []string{"headless", "metrics", "canary", "external", "grpc", "internal"}
		done := false
		for _, i := range g.r.Perm(len(kinds)) {
			if c.addService(g, m, ap, kinds[i]) {
				done = true
				break
			}
		}
		if !done {
			c.addService(g, m, ap, "extra")
		}
	}
}

// addService adds a Service of the given kind for ap, and reports false when
// ap does not call for one of that kind (or already has it).
func (c *cluster) addService(g *gen, m *ipam, ap *app, kind string) bool {
	a := ap.arch
	ns := ap.ns
	name := ap.name
	portNames := a.svcPorts
	targets := ap.workloads
	selector := pairs("app", ap.name)
	headless, nodePort := false, false
	switch kind {
	case "primary":
		nodePort = ap.arch == archIngress
		if ap.arch == archIngress {
			name = "ingress-nginx-controller"
		}
	case "headless":
		name += "-headless"
		headless = true
	case "metrics":
		if _, ok := a.port("metrics"); !ok || a.key == "worker" {
			return false
		}
		name += "-metrics"
		portNames = []string{"metrics"}
	case "canary":
		if !ap.hasCanary() {
			return false
		}
		name += "-canary"
		selector = pairs("app", ap.name, "track", "canary")
		targets = ap.workloads[1:]
	case "external":
		if !a.frontend || len(m.nodePorts)+len(portNames) > nodePortBudget {
			return false
		}
		name += "-external"
		nodePort = true
	case "grpc":
		if _, ok := a.port("grpc"); !ok {
			return false
		}
		name += "-grpc"
		portNames = []string{"grpc"}
	case "internal":
		name += "-internal"
	case "extra":
		name += "-svc"
	}
	if kind != "extra" && kind != "primary" && ns.names["service/"+name] {
		return false
	}
	name = ns.unique("service", name)
	s := &service{
		name:     name,
		uid:      g.uid(),
		labels:   pairs("app", ap.name),
		selector: selector,
		nodePort: nodePort && len(m.nodePorts)+len(portNames) <= nodePortBudget,
		targets:  targets,
	}
	if headless {
		s.clusterIP = "None"
	} else {
		s.clusterIP = m.clusterIP(g)
	}
	for _, pn := range portNames {
		cp, _ := a.port(pn)
		sp := svcPort{name: cp.name, port: servicePort(cp), proto: cp.proto, backend: cp.port}
		if pn == "metrics" || g.pct(50) {
			sp.target = cp.name
		} else {
			sp.targetN = cp.port
		}
		if s.nodePort {
			sp.nodePort = m.nodePort(g)
		}
		s.ports = append(s.ports, sp)
	}
	ns.services = append(ns.services, s)
	return true
}

// balanceEndpoints moves replicas between freely sized workloads selected by
// different numbers of Services until the Services' endpoints add up to
// target (or no move can get closer).
func (c *cluster) balanceEndpoints(g *gen, target int) {
	var flex []*workload
	cur := 0
	for _, ns := range c.namespaces[2:] {
		for _, s := range ns.services {
			for _, w := range s.targets {
				w.selected++
				cur += w.replicas
			}
		}
		for _, w := range ns.workloads {
			if !w.fixed {
				flex = append(flex, w)
			}
		}
	}
	diff := target - cur
	if len(flex) < 2 {
		return
	}
	for tries := 0; diff != 0 && tries < 200*(len(flex)+abs(diff)); tries++ {
		a, b := pick(g, flex), pick(g, flex)
		d := b.selected - a.selected
		if d == 0 || a.replicas <= 1 || (d > 0) != (diff > 0) || abs(d) > abs(diff) {
			continue
		}
		a.replicas--
		b.replicas++
		diff -= d
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// placePods creates every pod and places it: DaemonSet pods one per node,
// the rest on the less loaded of two random workers.
func (c *cluster) placePods(g *gen) {
	load := make(map[*node]int, len(c.nodes)) // lookups only
	place := func() *node {
		a, b := pick(g, c.workers), pick(g, c.workers)
		if load[b] < load[a] {
			a = b
		}
		load[a]++
		return a
	}
	for _, ns := range c.namespaces {
		for _, w := range ns.workloads {
			for i := range w.replicas {
				pd := &pod{uid: g.uid(), w: w, index: i}
				switch w.kind {
				case "StatefulSet":
					pd.name = w.name + "-" + strconv.Itoa(i)
					ns.take("pod", pd.name)
				case "DaemonSet":
					pd.name = w.name + "-" + g.suffix(5)
					for !ns.take("pod", pd.name) {
						pd.name = w.name + "-" + g.suffix(5)
					}
				default:
					pd.name = w.name + "-" + w.hash + "-" + g.suffix(5)
					for !ns.take("pod", pd.name) {
						pd.name = w.name + "-" + w.hash + "-" + g.suffix(5)
					}
				}
				if w.kind == "DaemonSet" {
					pd.node = c.nodes[i%len(c.nodes)]
					load[pd.node]++
				} else {
					pd.node = place()
				}
				switch n := g.intn(1000); {
				case n < 15:
					pd.state = podNotReady
				case n < 20:
					pd.state = podTerminating
				}
				w.pods = append(w.pods, pd)
				ns.pods = append(ns.pods, pd)
			}
		}
	}
	maxLoad := 0
	for _, n := range c.nodes {
		maxLoad = max(maxLoad, load[n])
	}
	// A /22 at least, doubled until the busiest node's pods fit beside the
	// network and router addresses with a quarter to spare.
	bits := 22
	for bits > 8 && (1<<(32-bits))*3/4 < maxLoad+2 {
		bits--
	}
	c.podPrefixLen = bits
}

// allocatePodCIDRs carves one pod CIDR per node out of 10.0.0.0/9, skipping
// the service range.
func (c *cluster) allocatePodCIDRs() error {
	size := uint32(1) << (32 - c.podPrefixLen)
	next := addrU32(podNet.Addr())
	end := next + 1<<(32-podNet.Bits())
	svc0 := addrU32(serviceNet.Addr())
	svc1 := svc0 + 1<<(32-serviceNet.Bits())
	for _, n := range c.nodes {
		if next < svc1 && next+size > svc0 {
			next = (svc1 + size - 1) / size * size
		}
		if next+size > end || next+size < next {
			return fmt.Errorf("synth: pod CIDRs: %d nodes with a /%d each do not fit in %s beside %s; use fewer pods per node",
				len(c.nodes), c.podPrefixLen, podNet, serviceNet)
		}
		n.cidr = netip.PrefixFrom(u32Addr(next), c.podPrefixLen)
		next += size
	}
	return nil
}

// slices splits each Service's endpoints into EndpointSlices of at most 100.
func (c *cluster) slices(g *gen) {
	for _, ns := range c.namespaces {
		for _, s := range ns.services {
			if s.name == "kubernetes" && ns.name == "default" {
				s.slices = []*slice{{name: "kubernetes"}}
				continue
			}
			var eps []*pod
			for _, w := range s.targets {
				eps = append(eps, w.pods...)
			}
			for {
				n := min(len(eps), maxSliceEndpoints)
				name := s.name + "-" + g.suffix(5)
				for !ns.take("endpointslice", name) {
					name = s.name + "-" + g.suffix(5)
				}
				s.slices = append(s.slices, &slice{name: name, endpoints: eps[:n:n]})
				eps = eps[n:]
				if len(eps) == 0 {
					break
				}
			}
		}
	}
}

const maxSliceEndpoints = 100
