package compiler

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/emit/emittest"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// The fixture: namespaces x, y, z with pods a, b, c each, on two nodes,
// as in the Kubernetes network policy conformance suite. Pod b names
// port 8080 "http"; the others name port 80 "http".
func fixture() string {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: east}}
spec: {podCIDR: 10.1.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {zone: west}}
spec: {podCIDR: 10.2.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.2}]}
`)
	envs := map[string]string{"x": "prod", "y": "prod", "z": "dev"}
	for i, ns := range []string{"x", "y", "z"} {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {ns: %s, env: %s}}\n", ns, ns, envs[ns])
		for j, pod := range []string{"a", "b", "c"} {
			node, subnet := "n1", 1
			if j == 2 || (i == 1 && j == 1) {
				node, subnet = "n2", 2
			}
			port := 80
			if pod == "b" {
				port = 8080
			}
			fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {pod: %s, tier: t%d}}
spec:
  nodeName: %s
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: %d}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIP: 10.%d.0.%d}
`, pod, ns, pod, j, node, port, subnet, (i+1)*10+j+1)
		}
	}
	return b.String()
}

type query struct {
	from, to string
	port     string // "80/TCP"
	want     ir.Action
}

func compileYAML(t *testing.T, docs ...string) *ir.Cluster {
	t.Helper()
	set, diags := schema.Load([]string{"-"}, strings.NewReader(strings.Join(docs, "\n---\n")))
	if len(diags) > 0 {
		t.Fatalf("load: %v", diags.Err())
	}
	cl, diags := Compile(set, Options{})
	if len(diags) > 0 {
		t.Fatalf("compile: %v", diags.Err())
	}
	return cl
}

func addrOf(t *testing.T, ev *ir.Evaluator, s string) netip.Addr {
	t.Helper()
	cl := ev.Cluster()
	if name, ok := strings.CutPrefix(s, "node:"); ok {
		return ev.Node(name).IPs[0]
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip
	}
	ns, name, _ := strings.Cut(s, "/")
	for _, e := range cl.Endpoints {
		if e.Namespace == ns && e.Name == name {
			return e.IPs[0]
		}
	}
	t.Fatalf("no peer %s", s)
	return netip.Addr{}
}

func parsePP(t *testing.T, s string) (ir.Proto, uint16) {
	t.Helper()
	var n int
	var proto string
	if _, err := fmt.Sscanf(strings.Replace(s, "/", " ", 1), "%d %s", &n, &proto); err != nil {
		t.Fatalf("bad port %q", s)
	}
	p, ok := ir.ParseProto(proto)
	if !ok {
		t.Fatalf("bad proto %q", s)
	}
	return p, uint16(n)
}

// checkCluster runs the queries through the evaluator and checks that the
// compiled maps agree with the evaluator everywhere.
func checkCluster(t *testing.T, cl *ir.Cluster, queries []query) {
	t.Helper()
	ev := ir.NewEvaluator(cl)
	for _, q := range queries {
		proto, port := parsePP(t, q.port)
		d := ev.Evaluate(ir.Query{Src: addrOf(t, ev, q.from), Dst: addrOf(t, ev, q.to), Proto: proto, Port: port})
		if d.Verdict != q.want {
			var b strings.Builder
			ir.WriteDecision(&b, d)
			t.Errorf("%s -> %s %s: got %s, want %s\n%s", q.from, q.to, q.port, d.Verdict, q.want, b.String())
		}
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatalf("emit: %v", err)
	}
	bad, n, err := emittest.Check(cl, out, 10)
	if err != nil {
		t.Fatalf("check maps: %v", err)
	}
	if len(bad) > 0 {
		t.Errorf("maps disagree with the evaluator (%d probes):\n%s", n, emittest.Summary(bad))
	}
}

const (
	A = ir.Allow
	D = ir.Deny
)

func np(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, indent(spec))
}

func cnp(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, indent(spec))
}

func ccnp(name, spec string) string {
	return fmt.Sprintf("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: %s}\nspec:\n%s", name, indent(spec))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// Cases written from the Kubernetes API reference and the kubernetes.io
// NetworkPolicy concept page.
func TestNetworkPolicySemantics(t *testing.T) {
	cases := []struct {
		name     string
		policies []string
		queries  []query
	}{
		{"no policy allows everything", nil, []query{
			{"x/a", "y/b", "80/TCP", A}, {"203.0.113.7", "x/a", "443/TCP", A}, {"x/a", "1.1.1.1", "53/UDP", A},
		}},
		{"default deny ingress isolates only ingress", []string{np("x", "deny", "podSelector: {}")}, []query{
			{"y/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D}, {"x/a", "y/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D},
		}},
		{"traffic from the pod's own node is allowed, from other nodes not", []string{np("x", "deny", "podSelector: {}")}, []query{
			{"node:n1", "x/a", "80/TCP", A}, {"node:n2", "x/a", "80/TCP", D}, {"node:n2", "x/c", "80/TCP", A},
		}},
		{"ingress [{}] allows all", []string{np("x", "all", "podSelector: {}\ningress: [{}]")}, []query{
			{"y/a", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "9999/UDP", A},
		}},
		{"podSelector peer stays in the policy namespace", []string{np("x", "same-ns", "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - podSelector: {}")}, []query{
			{"x/b", "x/a", "80/TCP", A}, {"y/b", "x/a", "80/TCP", D}, {"y/b", "x/b", "80/TCP", A},
		}},
		{"namespaceSelector selects other namespaces' pods", []string{np("x", "from-y", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}")}, []query{
			{"y/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D},
		}},
		{"empty namespaceSelector is every pod, not world or nodes", []string{np("x", "all-pods", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {}")}, []query{
			{"z/c", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D}, {"node:n2", "x/a", "80/TCP", D},
		}},
		{"namespaceSelector and podSelector in one peer are ANDed", []string{np("x", "and", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}\n    podSelector: {matchLabels: {pod: b}}")}, []query{
			{"y/b", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D},
		}},
		{"two peers are ORed", []string{np("x", "or", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}\n  - podSelector: {matchLabels: {pod: b}}")}, []query{
			{"y/a", "x/a", "80/TCP", A}, {"x/b", "x/a", "80/TCP", A}, {"z/b", "x/a", "80/TCP", D},
		}},
		{"ipBlock with except matches pod addresses too", []string{np("x", "cidr", "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.0.16/29]}")}, []query{
			{"z/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"10.1.200.1", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D}, {"z/c", "x/a", "80/TCP", D},
		}},
		{"ports: TCP 80 only", []string{np("x", "p80", "podSelector: {}\ningress:\n- ports: [{port: 80}]")}, []query{
			{"y/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "81/TCP", D}, {"y/a", "x/a", "80/UDP", D}, {"y/a", "x/a", "0/ICMP", D},
		}},
		{"protocol without port is every port", []string{np("x", "udp", "podSelector: {}\ningress:\n- ports: [{protocol: UDP}]")}, []query{
			{"y/a", "x/a", "53/UDP", A}, {"y/a", "x/a", "65535/UDP", A}, {"y/a", "x/a", "53/TCP", D},
		}},
		{"endPort range", []string{np("x", "range", "podSelector: {}\ningress:\n- ports: [{port: 32000, endPort: 32768}]")}, []query{
			{"y/a", "x/a", "32000/TCP", A}, {"y/a", "x/a", "32768/TCP", A}, {"y/a", "x/a", "31999/TCP", D}, {"y/a", "x/a", "32769/TCP", D},
		}},
		{"SCTP", []string{np("x", "sctp", "podSelector: {}\ningress:\n- ports: [{port: 9000, protocol: SCTP}]")}, []query{
			{"y/a", "x/a", "9000/SCTP", A}, {"y/a", "x/a", "9000/TCP", D},
		}},
		{"named ingress port resolves on the destination pod", []string{np("x", "named", "podSelector: {}\ningress:\n- ports: [{port: http}]")}, []query{
			{"y/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "8080/TCP", D}, {"y/a", "x/b", "8080/TCP", A}, {"y/a", "x/b", "80/TCP", D},
		}},
		{"named egress port resolves on each destination", []string{np("x", "named-egress", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- ports: [{port: http}]")}, []query{
			{"x/a", "y/a", "80/TCP", A}, {"x/a", "y/b", "8080/TCP", A}, {"x/a", "y/b", "80/TCP", D}, {"x/a", "203.0.113.7", "80/TCP", D},
		}},
		{"egress rules make policyTypes default to both", []string{np("x", "eg", "podSelector: {matchLabels: {pod: a}}\negress:\n- to:\n  - namespaceSelector: {matchLabels: {ns: y}}")}, []query{
			{"x/a", "y/c", "80/TCP", A}, {"x/a", "z/c", "80/TCP", D}, {"z/a", "x/a", "80/TCP", D},
		}},
		{"policyTypes Egress alone leaves ingress open", []string{np("x", "eg-only", "podSelector: {}\npolicyTypes: [Egress]")}, []query{
			{"x/a", "y/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", A},
		}},
		{"rules of a direction policyTypes leaves out are ignored", []string{np("x", "ingress-only", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]\negress:\n- to: [{podSelector: {matchLabels: {pod: none}}}]")}, []query{
			{"x/a", "z/a", "80/TCP", A},
		}},
		{"matchExpressions operators", []string{np("x", "exprs", `podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}
    podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, c]}, {key: tier, operator: Exists}, {key: missing, operator: DoesNotExist}]}`)}, []query{
			{"y/a", "x/b", "80/TCP", A}, {"y/c", "x/b", "80/TCP", A}, {"y/b", "x/b", "80/TCP", D}, {"z/a", "x/b", "80/TCP", D},
		}},
		{"allows of several policies are a union", []string{
			np("x", "p1", "podSelector: {}\ningress:\n- from: [{namespaceSelector: {matchLabels: {ns: y}}}]"),
			np("x", "p2", "podSelector: {matchLabels: {pod: a}}\ningress:\n- from: [{namespaceSelector: {matchLabels: {ns: z}}}]\n  ports: [{port: 80}]"),
		}, []query{
			{"y/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "81/TCP", D}, {"z/a", "x/b", "8080/TCP", D},
		}},
		{"egress and ingress must both allow", []string{
			np("x", "eg-deny", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]"),
			np("y", "in-allow", "podSelector: {}\ningress: [{}]"),
		}, []query{
			{"x/a", "y/a", "80/TCP", D}, {"x/b", "y/a", "80/TCP", A},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := compileYAML(t, append([]string{fixture()}, tc.policies...)...)
			checkCluster(t, cl, tc.queries)
		})
	}
}

// Cases written from Cilium's policy documentation (language reference,
// deny policies, entities).
func TestCiliumPolicySemantics(t *testing.T) {
	cases := []struct {
		name     string
		policies []string
		queries  []query
	}{
		{"fromEndpoints is scoped to the policy namespace", []string{cnp("x", "l3", "endpointSelector: {matchLabels: {pod: a}}\ningress:\n- fromEndpoints: [{matchLabels: {pod: b}}]")}, []query{
			{"x/b", "x/a", "80/TCP", A}, {"y/b", "x/a", "80/TCP", D}, {"x/c", "x/a", "80/TCP", D}, {"x/c", "x/b", "80/TCP", A},
		}},
		{"the namespace label selects across namespaces", []string{cnp("x", "cross", "endpointSelector: {}\ningress:\n- fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]")}, []query{
			{"y/c", "x/a", "80/TCP", A}, {"x/b", "x/a", "80/TCP", D},
		}},
		{"entity world", []string{cnp("x", "world", "endpointSelector: {}\ningress:\n- fromEntities: [world]")}, []query{
			{"203.0.113.7", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"node:n2", "x/a", "80/TCP", D},
		}},
		{"entity cluster", []string{cnp("x", "cluster", "endpointSelector: {}\ningress:\n- fromEntities: [cluster]")}, []query{
			{"203.0.113.7", "x/a", "80/TCP", D}, {"z/c", "x/a", "80/TCP", A}, {"node:n2", "x/a", "80/TCP", A},
		}},
		{"entities host and remote-node", []string{cnp("x", "nodes", "endpointSelector: {}\negress:\n- toEntities: [host]\n- toEntities: [remote-node]\n  toPorts: [{ports: [{port: \"22\"}]}]")}, []query{
			{"x/a", "node:n1", "80/TCP", A}, {"x/a", "node:n2", "80/TCP", D}, {"x/a", "node:n2", "22/TCP", A}, {"x/a", "y/a", "80/TCP", D},
		}},
		{"entity all", []string{cnp("x", "all", "endpointSelector: {}\negress:\n- toEntities: [all]")}, []query{
			{"x/a", "1.1.1.1", "53/UDP", A}, {"x/a", "y/a", "80/TCP", A},
		}},
		{"deny beats allow, across policy kinds", []string{
			np("x", "allow-all", "podSelector: {}\ningress: [{}]"),
			cnp("x", "deny-y", "endpointSelector: {}\ningressDeny:\n- fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]\n  toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]"),
		}, []query{
			{"y/a", "x/a", "80/TCP", D}, {"y/a", "x/a", "81/TCP", A}, {"z/a", "x/a", "80/TCP", A},
		}},
		{"a deny-only policy isolates its direction", []string{cnp("x", "deny-only", "endpointSelector: {matchLabels: {pod: a}}\ningressDeny:\n- fromEntities: [world]")}, []query{
			{"203.0.113.7", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", D},
		}},
		{"enableDefaultDeny false leaves only the denies", []string{cnp("x", "soft", "endpointSelector: {matchLabels: {pod: a}}\nenableDefaultDeny: {ingress: false}\ningressDeny:\n- fromEntities: [world]")}, []query{
			{"203.0.113.7", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", A},
		}},
		{"CIDR rules select addresses outside the cluster only", []string{cnp("x", "cidr", "endpointSelector: {}\ningress:\n- fromCIDRSet: [{cidr: 0.0.0.0/0, except: [198.51.100.0/24]}]\n- fromCIDR: [10.1.0.0/16]")}, []query{
			{"203.0.113.7", "x/a", "80/TCP", A}, {"198.51.100.1", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", D}, {"10.1.0.200", "x/a", "80/TCP", A}, {"node:n2", "x/a", "80/TCP", D},
		}},
		{"ANY means TCP, UDP and SCTP", []string{cnp("x", "any", "endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: \"53\", protocol: ANY}]}]")}, []query{
			{"y/a", "x/a", "53/TCP", A}, {"y/a", "x/a", "53/UDP", A}, {"y/a", "x/a", "53/SCTP", A}, {"y/a", "x/a", "54/UDP", D}, {"203.0.113.7", "x/a", "53/UDP", A},
		}},
		{"port 0 is every port; endPort a range", []string{cnp("x", "ports", "endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: \"0\", protocol: UDP}, {port: \"8000\", endPort: 8100, protocol: TCP}]}]")}, []query{
			{"y/a", "x/a", "1/UDP", A}, {"y/a", "x/a", "8050/TCP", A}, {"y/a", "x/a", "8101/TCP", D},
		}},
		{"icmps", []string{cnp("x", "icmp", "endpointSelector: {}\ningress:\n- icmps: [{fields: [{type: 8, family: IPv4}, {type: TimeExceeded}]}]")}, []query{
			{"y/a", "x/a", "8/ICMP", A}, {"y/a", "x/a", "11/ICMP", A}, {"y/a", "x/a", "0/ICMP", D}, {"y/a", "x/a", "8/TCP", D},
		}},
		{"an empty rule isolates and allows nothing", []string{cnp("x", "empty", "endpointSelector: {}\ningress: [{}]")}, []query{
			{"y/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D},
		}},
		{"toPorts without peers allows every peer", []string{cnp("x", "l4", "endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: \"80\"}]}]")}, []query{
			{"203.0.113.7", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "81/TCP", D},
		}},
		{"an empty fromEndpoints list selects nothing", []string{cnp("x", "none", "endpointSelector: {}\ningress:\n- fromEndpoints: []\n  toPorts: [{ports: [{port: \"80\"}]}]")}, []query{
			{"y/a", "x/a", "80/TCP", D},
		}},
		{"fromEndpoints {} of a clusterwide policy is every pod, not world", []string{ccnp("ccnp", "endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: x}}\ningress:\n- fromEndpoints: [{}]")}, []query{
			{"z/c", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D}, {"node:n2", "x/a", "80/TCP", D},
		}},
		{"fromRequires narrows every fromEndpoints", []string{
			cnp("x", "req", "endpointSelector: {matchLabels: {pod: a}}\ningress:\n- fromRequires: [{matchLabels: {k8s:io.cilium.k8s.namespace.labels.env: prod}}]\n  fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: z}}]\n- fromEndpoints: [{matchLabels: {pod: c, k8s:io.kubernetes.pod.namespace: y}}]\n- fromEntities: [world]"),
		}, []query{
			{"z/a", "x/a", "80/TCP", D}, {"y/c", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", A},
		}},
		{"specs holds several rules", []string{`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: multi, namespace: x}
specs:
- endpointSelector: {matchLabels: {pod: a}}
  ingress: [{fromEntities: [world]}]
- endpointSelector: {matchLabels: {pod: b}}
  egress: [{toEntities: [world]}]`}, []query{
			{"203.0.113.7", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"x/b", "1.1.1.1", "443/TCP", A}, {"x/b", "y/a", "80/TCP", D}, {"y/a", "x/b", "8080/TCP", A},
		}},
		{"egressDeny to world", []string{cnp("x", "nowhere", "endpointSelector: {}\negressDeny: [{toEntities: [world]}]")}, []query{
			{"x/a", "1.1.1.1", "443/TCP", D}, {"x/a", "y/a", "80/TCP", D},
		}},
		{"fromNodes selects node addresses by node labels", []string{cnp("x", "from-west", "endpointSelector: {}\ningress:\n- fromNodes: [{matchLabels: {zone: west}}]")}, []query{
			{"node:n2", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D},
		}},
		{"toServices with a selector is its pods", []string{`apiVersion: v1
kind: Service
metadata: {name: web, namespace: y}
spec:
  selector: {pod: a}
  clusterIP: 10.96.0.50
  ports: [{port: 80}]`, cnp("x", "to-web", "endpointSelector: {matchLabels: {pod: a}}\negress:\n- toServices: [{k8sService: {serviceName: web, namespace: y}}]")}, []query{
			{"x/a", "y/a", "80/TCP", A}, {"x/a", "y/b", "8080/TCP", D},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := compileYAML(t, append([]string{fixture()}, tc.policies...)...)
			checkCluster(t, cl, tc.queries)
		})
	}
}
