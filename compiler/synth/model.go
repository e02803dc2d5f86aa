package synth

import (
	"fmt"
	"net/netip"
	"strconv"
)

// The in-memory cluster. build draws every random choice, in a fixed order;
// encoding (emit.go) only reads the model, so files can be written in
// parallel without touching determinism.

type cluster struct {
	nodes      []*node
	workers    []*node
	namespaces []*namespace // kube-system, default, then application namespaces
	ccnps      []obj
	teams      []string

	// Platform namespaces that policies refer to; nil in clusters too small
	// to have them.
	monitoring, ingress *namespace

	podPrefixLen int
}

type node struct {
	name, uid    string
	zone         string
	controlPlane bool
	ip           netip.Addr
	cidr         netip.Prefix
	pods         int // pods given an address so far; the next gets host offset pods+2
}

type namespace struct {
	name, uid       string
	team, env, tier string // empty for kube-system and default
	apps            []*app
	workloads       []*workload
	pods            []*pod
	services        []*service
	netpols         []obj
	cnps            []obj

	names map[string]bool // taken object names, by kind prefix; lookups only
}

func (ns *namespace) take(kind, name string) bool {
	k := kind + "/" + name
	if ns.names[k] {
		return false
	}
	ns.names[k] = true
	return true
}

// unique returns name, or name-2, name-3, … whichever is free for kind.
func (ns *namespace) unique(kind, name string) string {
	if ns.take(kind, name) {
		return name
	}
	for i := 2; ; i++ {
		n := name + "-" + strconv.Itoa(i)
		if ns.take(kind, n) {
			return n
		}
	}
}

type cport struct {
	name  string
	port  int
	proto string
}

// archetype is a kind of application: what it runs, how it is labelled and
// which ports it serves.
type archetype struct {
	key        string
	kind       string // Deployment, StatefulSet, DaemonSet
	tier, role string
	ports      []cport
	weight     int    // how common among regular applications
	replicas   [2]int // fixed replica range; zero: sized by the pod budget
	svcPorts   []string
	frontend   bool
}

var (
	portHTTP    = cport{"http", 8080, "TCP"}
	portGRPC    = cport{"grpc", 9000, "TCP"}
	portMetrics = cport{"metrics", 9090, "TCP"}
)

// Regular application archetypes.
var archetypes = []*archetype{
	{key: "web", kind: "Deployment", tier: "frontend", role: "web", weight: 16, frontend: true,
		ports: []cport{portHTTP, portMetrics}, svcPorts: []string{"http"}},
	{key: "api", kind: "Deployment", tier: "backend", role: "api", weight: 34,
		ports: []cport{portHTTP, portGRPC, portMetrics}, svcPorts: []string{"http", "grpc"}},
	{key: "worker", kind: "Deployment", tier: "backend", role: "worker", weight: 20,
		ports: []cport{portMetrics}, svcPorts: []string{"metrics"}},
	{key: "postgres", kind: "StatefulSet", tier: "db", role: "primary", weight: 8, replicas: [2]int{1, 3},
		ports: []cport{{"db", 5432, "TCP"}, {"metrics", 9187, "TCP"}}, svcPorts: []string{"db"}},
	{key: "mysql", kind: "StatefulSet", tier: "db", role: "primary", weight: 3, replicas: [2]int{1, 3},
		ports: []cport{{"mysql", 3306, "TCP"}, {"metrics", 9104, "TCP"}}, svcPorts: []string{"mysql"}},
	{key: "redis", kind: "StatefulSet", tier: "cache", role: "cache", weight: 8, replicas: [2]int{1, 3},
		ports: []cport{{"redis", 6379, "TCP"}, {"metrics", 9121, "TCP"}}, svcPorts: []string{"redis"}},
	{key: "memcached", kind: "Deployment", tier: "cache", role: "cache", weight: 3,
		ports: []cport{{"memcache", 11211, "TCP"}}, svcPorts: []string{"memcache"}},
	{key: "kafka", kind: "StatefulSet", tier: "backend", role: "broker", weight: 3, replicas: [2]int{3, 3},
		ports: []cport{{"kafka", 9092, "TCP"}, {"metrics", 9308, "TCP"}}, svcPorts: []string{"kafka"}},
	{key: "media", kind: "Deployment", tier: "backend", role: "media", weight: 2,
		ports: []cport{portHTTP, {"rtp", 10000, "UDP"}, portMetrics}, svcPorts: []string{"http", "rtp"}},
}

// Platform archetypes, one application each in the platform namespaces.
var (
	archPrometheus = &archetype{key: "prometheus", kind: "Deployment", tier: "backend", role: "monitoring",
		replicas: [2]int{2, 2}, ports: []cport{{"http", 9090, "TCP"}}, svcPorts: []string{"http"}}
	archNodeExporter = &archetype{key: "node-exporter", kind: "DaemonSet", tier: "backend", role: "monitoring",
		ports: []cport{{"metrics", 9100, "TCP"}}, svcPorts: []string{"metrics"}}
	archIngress = &archetype{key: "ingress-nginx", kind: "Deployment", tier: "frontend", role: "ingress", frontend: true,
		replicas: [2]int{3, 3}, ports: []cport{{"http", 80, "TCP"}, {"https", 443, "TCP"}, {"metrics", 10254, "TCP"}},
		svcPorts: []string{"http", "https"}}
	archFluentBit = &archetype{key: "fluent-bit", kind: "DaemonSet", tier: "backend", role: "logging",
		ports: []cport{{"http", 2020, "TCP"}}, svcPorts: []string{"http"}}
	archCoreDNS = &archetype{key: "coredns", kind: "Deployment", role: "dns",
		ports: []cport{{"dns", 53, "UDP"}, {"dns-tcp", 53, "TCP"}, {"metrics", 9153, "TCP"}}}
)

func (a *archetype) port(name string) (cport, bool) {
	for _, p := range a.ports {
		if p.name == name {
			return p, true
		}
	}
	return cport{}, false
}

// servicePort is the port a Service exposes for a container port.
func servicePort(p cport) int {
	if p.name == "http" && p.port == 8080 {
		return 80
	}
	return p.port
}

var appStems = map[string][]string{
	"web":       {"web", "portal", "storefront", "dashboard", "admin-ui", "docs", "landing", "console", "checkout-ui", "account-ui"},
	"api":       {"orders", "payments", "users", "catalog", "search", "inventory", "billing", "auth", "notifications", "checkout", "cart", "reviews", "shipping", "pricing", "ledger", "profile", "media-api", "accounts", "invoices", "reports", "sessions", "recommendations", "gateway", "events", "audit", "tax", "quotes", "refunds", "wallet", "geo"},
	"worker":    {"indexer", "mailer", "scheduler", "exporter", "orders-worker", "billing-worker", "thumbnailer", "reconciler", "sync", "etl"},
	"postgres":  {"postgres", "orders-db", "users-db", "ledger-db", "catalog-db"},
	"mysql":     {"mysql", "legacy-db"},
	"redis":     {"redis", "session-cache", "rate-limit"},
	"memcached": {"memcached"},
	"kafka":     {"kafka"},
	"media":     {"media-relay", "streamer"},
}

type app struct {
	name      string
	arch      *archetype
	ns        *namespace
	workloads []*workload // the primary workload first, then a canary
}

func (a *app) hasCanary() bool { return len(a.workloads) > 1 }

type workload struct {
	kind      string
	name, uid string
	app       *app
	track     string // Deployments: stable or canary
	version   string
	image     string
	hash      string // pod-template-hash (Deployment) or controller-revision-hash
	rsUID     string // the ReplicaSet owning a Deployment's pods
	replicas  int
	fixed     bool // replica count is not moved to balance endpoints
	selected  int  // how many Services select this workload's pods
	pods      []*pod

	// Built once and shared by every pod: read-only after build.
	podLabels, templateLabels, selector obj
	containers                          list
}

type podState uint8

const (
	podReady podState = iota
	podNotReady
	podTerminating
)

type pod struct {
	name, uid string
	w         *workload
	node      *node
	ip        netip.Addr
	state     podState
	index     int // StatefulSet ordinal
}

type service struct {
	name, uid string
	labels    obj
	selector  obj // nil: no selector
	nodePort  bool
	clusterIP string // "None" when headless
	ports     []svcPort
	targets   []*workload
	slices    []*slice
}

type svcPort struct {
	name     string
	port     int
	proto    string
	target   string // container port name; empty: targetNum
	targetN  int
	nodePort int
	backend  int // the container port number the name or number resolves to
}

type slice struct {
	name      string
	endpoints []*pod
}

func (s *service) endpoints() int {
	n := 0
	for _, w := range s.targets {
		n += w.replicas
	}
	return n
}

// Address plan.
var (
	nodeNet      = netip.MustParsePrefix("10.255.0.0/16")
	podNet       = netip.MustParsePrefix("10.0.0.0/9")
	serviceNet   = netip.MustParsePrefix("10.96.0.0/12")
	kubernetesIP = "10.96.0.1"
	kubeDNSIP    = "10.96.0.10"
)

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func nodeName(i int) string { return fmt.Sprintf("node-%03d", i+1) }
