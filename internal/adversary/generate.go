package adversary

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicenet/sluice/internal/oracle"
)

// Case is one generated cluster: its manifests and the connections asked
// about.
type Case struct {
	Seed    int64
	Docs    []mapping
	Queries []oracle.Query
	// Plain writes the manifests in plain block style (shrunk cases).
	Plain bool
}

// YAML is the case's manifests as one YAML stream.
func (c *Case) YAML() string { return render(c.Docs, c.Seed, c.Plain) }

// gen holds what one generation knows about the cluster it is building.
type gen struct {
	r          *rand.Rand
	docs       []mapping
	namespaces []string
	nodes      []genNode
	pods       []*genPod
	saNames    []string
	// addresses and ports for the queries
	worldV4, worldV6 []netip.Addr
	ports            []int
	named            map[string]bool
}

type genNode struct {
	name string
	ips  []netip.Addr
}

type genPod struct {
	namespace, name string
	labels          map[string]string
	ips             []netip.Addr
	live            bool
}

// Named container ports: a name may mean different ports on different
// pods, so that named ports must resolve on the destination.
var namedPorts = []struct {
	name  string
	port  int
	proto string
}{{"http", 8080, "TCP"}, {"http", 8081, "TCP"}, {"dns", 53, "UDP"}, {"metrics", 9090, "TCP"}, {"pg", 5432, "TCP"}, {"stats", 9000, "SCTP"}}

// Label keys the generator puts on pods, with their values. Selectors use
// every one of them.
var (
	podKeys = map[string][]string{
		"app":                                {"web", "db", "api"},
		"role":                               {"admin", "user"},
		"tier":                               {"front", "back"},
		"statefulset.kubernetes.io/pod-name": nil, // the pod's name
		"pod-template-hash":                  {"7d9f8c6b5", "5b6c4d8f7"},
		"controller-revision-hash":           {"web-6f7c9d", "db-58b4"},
		"apps.kubernetes.io/pod-index":       {"0", "1"},
	}
	namespaceKeys = map[string][]string{"team": {"a", "b"}, "env": {"prod", "dev"}}
	entities      = []string{"world", "cluster", "host", "remote-node", "all", "world-ipv4", "world-ipv6"}
	allNamespaces = []string{"prod", "dev", "ops"}
)

func (g *gen) pick(list []string) string { return list[g.r.Intn(len(list))] }
func (g *gen) chance(n int) bool         { return g.r.Intn(n) == 0 }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Generate builds the case of a seed; the same seed gives the same case.
func Generate(seed int64) *Case {
	g := &gen{r: rand.New(rand.NewSource(seed)), named: map[string]bool{}, saNames: []string{"default", "frontend", "backend"}}
	g.worldV4 = []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("8.8.8.8")}
	g.worldV6 = []netip.Addr{netip.MustParseAddr("2001:db8::1")}
	g.ports = []int{80, 443, 53, 5432, 8080}
	g.genNamespaces()
	g.genNodes()
	g.genPods()
	for n := 1 + g.r.Intn(4); n > 0; n-- {
		switch g.r.Intn(3) {
		case 0:
			g.genNetworkPolicy()
		case 1:
			g.genCilium(false)
		default:
			g.genCilium(true)
		}
	}
	if g.chance(10) {
		g.injectRefusal()
	}
	g.r.Shuffle(len(g.docs), func(i, j int) { g.docs[i], g.docs[j] = g.docs[j], g.docs[i] })
	return &Case{Seed: seed, Docs: g.docs, Queries: g.queries()}
}

func meta(name, namespace string, labels map[string]string) mapping {
	m := mapping{{"name", name}}
	if namespace != "" {
		m = append(m, kv{"namespace", namespace})
	}
	if len(labels) > 0 {
		lm := mapping{}
		for _, k := range sortedKeys(labels) {
			lm = append(lm, kv{k, labels[k]})
		}
		m = append(m, kv{"labels", lm})
	}
	return m
}

func object(apiVersion, kind string, md mapping, rest ...kv) mapping {
	return append(mapping{{"apiVersion", apiVersion}, {"kind", kind}, {"metadata", md}}, rest...)
}

// genNamespaces declares some namespaces (others exist only through their
// objects), with labels, sometimes a wrong kubernetes.io/metadata.name and
// keys that look like Cilium's.
func (g *gen) genNamespaces() {
	g.namespaces = allNamespaces[:2+g.r.Intn(2)]
	for _, ns := range g.namespaces {
		if g.chance(4) {
			continue
		}
		labels := map[string]string{}
		for _, k := range sortedKeys(namespaceKeys) {
			if !g.chance(3) {
				labels[k] = g.pick(namespaceKeys[k])
			}
		}
		if g.chance(4) {
			labels["kubernetes.io/metadata.name"] = g.pick(allNamespaces)
		}
		if g.chance(6) {
			labels["io.kubernetes.pod.namespace"] = g.pick(allNamespaces)
		}
		g.docs = append(g.docs, object("v1", "Namespace", meta(ns, "", labels)))
	}
}

// genNodes: none (one implied node) or up to three, some with an
// external address too.
func (g *gen) genNodes() {
	if g.chance(4) {
		return
	}
	for i := range 1 + g.r.Intn(3) {
		n := genNode{name: fmt.Sprintf("node-%d", i)}
		addrs := seq{mapping{{"type", "InternalIP"}, {"address", fmt.Sprintf("192.168.0.%d", i+1)}}}
		n.ips = append(n.ips, netip.MustParseAddr(fmt.Sprintf("192.168.0.%d", i+1)))
		if g.chance(4) {
			addrs = append(addrs, mapping{{"type", "ExternalIP"}, {"address", fmt.Sprintf("172.16.0.%d", i+1)}})
			n.ips = append(n.ips, netip.MustParseAddr(fmt.Sprintf("172.16.0.%d", i+1)))
		}
		addrs = append(addrs, mapping{{"type", "Hostname"}, {"address", n.name}})
		labels := map[string]string{"kubernetes.io/hostname": n.name}
		if g.chance(2) {
			labels["zone"] = g.pick([]string{"z1", "z2"})
		}
		g.docs = append(g.docs, object("v1", "Node", meta(n.name, "", labels),
			kv{"spec", mapping{{"podCIDR", fmt.Sprintf("10.%d.0.0/24", i)}}},
			kv{"status", mapping{{"addresses", addrs}}}))
		g.nodes = append(g.nodes, n)
	}
}

// genPods: live pods, terminal pods (whose addresses live pods may take
// over), pending pods without an address, hostNetwork pods, dual-stack
// pods; labels from the pools, per-pod labels, and labels under Cilium's
// reserved prefixes that must not count.
func (g *gen) genPods() {
	var terminal []netip.Addr
	host := 1
	for i := range 3 + g.r.Intn(5) {
		ns := g.pick(g.namespaces)
		app := g.pick(podKeys["app"])
		name := fmt.Sprintf("%s-%d", app, i)
		labels := map[string]string{"app": app}
		for _, k := range sortedKeys(podKeys) {
			if k == "app" || g.chance(2) {
				continue
			}
			if k == "statefulset.kubernetes.io/pod-name" {
				labels[k] = name
				continue
			}
			labels[k] = g.pick(podKeys[k])
		}
		g.forge(labels)
		nodeIdx := 0
		spec := mapping{}
		if len(g.nodes) > 0 {
			nodeIdx = g.r.Intn(len(g.nodes))
			spec = append(spec, kv{"nodeName", g.nodes[nodeIdx].name})
		}
		if g.chance(3) {
			sa := g.pick(g.saNames)
			key := "serviceAccountName"
			if g.chance(5) {
				key = "serviceAccount"
			}
			spec = append(spec, kv{key, sa})
		}
		container := mapping{{"name", "main"}, {"image", "example/" + app}}
		if ports := g.containerPorts(); len(ports) > 0 {
			container = append(container, kv{"ports", ports})
		}
		spec = append(spec, kv{"containers", seq{container}})
		status := mapping{}
		p := &genPod{namespace: ns, name: name, labels: labels, live: true}
		phase := "Running"
		switch k := g.r.Intn(20); {
		case k < 2:
			phase, p.live = g.pick([]string{"Succeeded", "Failed"}), false
		case k == 2:
			phase, p.live = "Pending", false
		case k == 3 && len(g.nodes) > 0:
			spec = append(spec, kv{"hostNetwork", true})
			p.live = false
			p.ips = g.nodes[nodeIdx].ips[:1]
		}
		status = append(status, kv{"phase", phase})
		if phase != "Pending" && p.ips == nil {
			switch {
			case p.live && len(terminal) > 0 && g.chance(2):
				// A live pod takes over a terminal pod's address.
				p.ips = []netip.Addr{terminal[0]}
				terminal = terminal[1:]
			default:
				p.ips = []netip.Addr{netip.MustParseAddr(fmt.Sprintf("10.%d.0.%d", nodeIdx, host))}
				host++
				if g.chance(5) {
					p.ips = append(p.ips, netip.MustParseAddr(fmt.Sprintf("fd00::%d:%d", nodeIdx, host)))
				}
			}
			if !p.live {
				terminal = append(terminal, p.ips[0])
			}
		}
		if len(p.ips) > 0 {
			status = append(status, kv{"podIP", p.ips[0].String()})
			if len(p.ips) > 1 || g.chance(2) {
				ips := seq{}
				for _, ip := range p.ips {
					ips = append(ips, mapping{{"ip", ip.String()}})
				}
				status = append(status, kv{"podIPs", ips})
			}
		}
		g.docs = append(g.docs, object("v1", "Pod", meta(name, ns, labels), kv{"spec", spec}, kv{"status", status}))
		g.pods = append(g.pods, p)
	}
}

// forge adds labels under reserved prefixes: a namespace, namespace
// labels, a service account or a cluster that the pod does not have.
func (g *gen) forge(labels map[string]string) {
	if !g.chance(3) {
		return
	}
	switch g.r.Intn(6) {
	case 5:
		// Cilium strips every key that starts io.cilium.k8s, dot or not.
		labels[ciliumOwnedOddKey] = "x"
	case 0:
		labels["io.kubernetes.pod.namespace"] = g.pick(allNamespaces)
	case 1:
		labels["io.cilium.k8s.namespace.labels.team"] = g.pick(namespaceKeys["team"])
	case 2:
		labels["io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"] = g.pick(allNamespaces)
	case 3:
		labels["io.cilium.k8s.policy.serviceaccount"] = g.pick(g.saNames)
	default:
		labels["io.cilium.k8s.policy.cluster"] = "other"
	}
}

func (g *gen) containerPorts() seq {
	var out seq
	used := map[string]bool{}
	for range g.r.Intn(3) {
		np := namedPorts[g.r.Intn(len(namedPorts))]
		if used[np.name] {
			continue
		}
		used[np.name] = true
		g.named[np.name] = true
		g.ports = append(g.ports, np.port)
		m := mapping{{"name", np.name}, {"containerPort", np.port}}
		if np.proto != "TCP" || g.chance(3) {
			m = append(m, kv{"protocol", np.proto})
		}
		out = append(out, m)
	}
	return out
}

// value picks a value for a selector on key: usually one a pod or
// namespace has, sometimes one nothing has.
func (g *gen) value(key string) string {
	switch key {
	case "statefulset.kubernetes.io/pod-name":
		if len(g.pods) > 0 {
			return g.pods[g.r.Intn(len(g.pods))].name
		}
	case "io.kubernetes.pod.namespace", "kubernetes.io/metadata.name", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name":
		return g.pick(allNamespaces)
	case "io.cilium.k8s.policy.serviceaccount":
		return g.pick(g.saNames)
	case "io.cilium.k8s.policy.cluster":
		return g.pick([]string{"default", "other"})
	}
	if vs, ok := podKeys[key]; ok {
		return g.pick(vs)
	}
	if vs, ok := namespaceKeys[key]; ok {
		return g.pick(vs)
	}
	if k, ok := cutPrefix(key, "io.cilium.k8s.namespace.labels."); ok {
		return g.value(k)
	}
	return "x"
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// selector builds a label selector over keys: {} sometimes, matchLabels,
// matchExpressions with every operator, or both.
func (g *gen) selector(keys []string, prefix func(string) string) mapping {
	if g.chance(5) {
		return mapping{}
	}
	sel := mapping{}
	if !g.chance(3) {
		ml := mapping{}
		for range 1 + g.r.Intn(2) {
			k := g.pick(keys)
			if pk := prefix(k); ml.get(pk) == nil {
				ml = append(ml, kv{pk, g.value(k)})
			}
		}
		sel = append(sel, kv{"matchLabels", ml})
	}
	if len(sel) == 0 || g.chance(3) {
		var exprs seq
		for range 1 + g.r.Intn(2) {
			k := g.pick(keys)
			e := mapping{{"key", prefix(k)}}
			switch op := g.pick([]string{"In", "NotIn", "Exists", "DoesNotExist"}); op {
			case "In", "NotIn":
				vals := seq{g.value(k)}
				if g.chance(2) {
					if v := g.value(k); v != vals[0] {
						vals = append(vals, v)
					}
				}
				e = append(e, kv{"operator", op}, kv{"values", vals})
			default:
				e = append(e, kv{"operator", op})
			}
			exprs = append(exprs, e)
		}
		sel = append(sel, kv{"matchExpressions", exprs})
	}
	return sel
}

func noPrefix(k string) string { return k }

// ciliumPrefix sometimes writes a key with Cilium's k8s: or any: source.
func (g *gen) ciliumPrefix(k string) string {
	switch g.r.Intn(8) {
	case 0:
		return "k8s:" + k
	case 1:
		return "any:" + k
	}
	return k
}

// queries asks about connections that involve a pod: from and to pods,
// nodes, terminal pods' addresses, addresses in and out of the policies'
// CIDRs and the world, over TCP, UDP and SCTP, on the ports the policies
// and pods mention and some they do not.
func (g *gen) queries() []oracle.Query {
	var pods4, pods6, all4, all6 []netip.Addr
	for _, p := range g.pods {
		for _, ip := range p.ips {
			if ip.Is4() {
				pods4, all4 = append(pods4, ip), append(all4, ip)
			} else {
				pods6, all6 = append(pods6, ip), append(all6, ip)
			}
		}
	}
	for _, n := range g.nodes {
		all4 = append(all4, n.ips...)
	}
	all4 = append(all4, g.worldV4...)
	for _, s := range []string{"10.0.0.77", "10.1.0.5", "192.168.0.200", "203.0.113.9", "198.51.100.3"} {
		all4 = append(all4, netip.MustParseAddr(s))
	}
	all6 = append(all6, g.worldV6...)
	if len(pods4) == 0 {
		return nil
	}
	seen := map[oracle.Query]bool{}
	var out []oracle.Query
	for range 160 {
		pods, all := pods4, all4
		if len(pods6) > 0 && g.chance(8) {
			pods, all = pods6, all6
		}
		a, b := pods[g.r.Intn(len(pods))], all[g.r.Intn(len(all))]
		if g.chance(2) {
			a, b = b, a
		}
		q := oracle.Query{Src: a, Dst: b, Proto: corev1.ProtocolTCP, Port: uint16(g.ports[g.r.Intn(len(g.ports))])}
		switch k := g.r.Intn(20); {
		case k < 5:
			q.Proto = corev1.ProtocolUDP
		case k < 8:
			q.Proto = corev1.ProtocolSCTP
		}
		if g.chance(10) {
			q.Port = uint16(1 + g.r.Intn(65535))
		} else if g.chance(8) {
			q.Port++
		}
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	return out
}
