// Package compilertest holds the policy semantics cases shared by the
// compiler's tests (evaluator and compiled maps) and the datapath's tests
// (the kernel): a fixture cluster and, per case, policies and the verdicts
// that Kubernetes and Cilium documentation say they give.
package compilertest

import (
	"fmt"
	"strings"

	"github.com/sluicenet/sluice/ir"
)

// Query is a connection and the verdict it must get. From and To are
// "ns/pod", "node:NAME" or an IP address; Port is "80/TCP".
type Query struct {
	From, To string
	Port     string
	Want     ir.Action
}

// Case is a set of policies over the fixture and what they must do.
type Case struct {
	Name     string
	Policies []string
	Queries  []Query
}

const (
	A = ir.Allow
	D = ir.Deny
)

// Fixture is the cluster of every case: namespaces x, y, z with pods a, b, c each, on two nodes,
// as in the Kubernetes network policy conformance suite. Pod b names
// port 8080 "http"; the others name port 80 "http".
func Fixture() string {
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

// NP is a NetworkPolicy manifest.
func NP(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, indent(spec))
}

// CNP is a CiliumNetworkPolicy manifest.
func CNP(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, indent(spec))
}

// CCNP is a CiliumClusterwideNetworkPolicy manifest.
func CCNP(name, spec string) string {
	return fmt.Sprintf("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: %s}\nspec:\n%s", name, indent(spec))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// NetworkPolicyCases are written from the Kubernetes API reference and the
// kubernetes.io NetworkPolicy concept page.
var NetworkPolicyCases = []Case{
	{"no policy allows everything", nil, []Query{
		{"x/a", "y/b", "80/TCP", A}, {"203.0.113.7", "x/a", "443/TCP", A}, {"x/a", "1.1.1.1", "53/UDP", A},
	}},
	{"default deny ingress isolates only ingress", []string{NP("x", "deny", "podSelector: {}")}, []Query{
		{"y/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D}, {"x/a", "y/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D},
	}},
	{"traffic from the pod's own node is allowed, from other nodes not", []string{NP("x", "deny", "podSelector: {}")}, []Query{
		{"node:n1", "x/a", "80/TCP", A}, {"node:n2", "x/a", "80/TCP", D}, {"node:n2", "x/c", "80/TCP", A},
	}},
	{"ingress [{}] allows all", []string{NP("x", "all", "podSelector: {}\ningress: [{}]")}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "9999/UDP", A},
	}},
	{"podSelector peer stays in the policy namespace", []string{NP("x", "same-ns", "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - podSelector: {}")}, []Query{
		{"x/b", "x/a", "80/TCP", A}, {"y/b", "x/a", "80/TCP", D}, {"y/b", "x/b", "80/TCP", A},
	}},
	{"namespaceSelector selects other namespaces' pods", []string{NP("x", "from-y", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}")}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D},
	}},
	{"empty namespaceSelector is every pod, not world or nodes", []string{NP("x", "all-pods", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {}")}, []Query{
		{"z/c", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D}, {"node:n2", "x/a", "80/TCP", D},
	}},
	{"namespaceSelector and podSelector in one peer are ANDed", []string{NP("x", "and", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}\n    podSelector: {matchLabels: {pod: b}}")}, []Query{
		{"y/b", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D},
	}},
	{"two peers are ORed", []string{NP("x", "or", "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}\n  - podSelector: {matchLabels: {pod: b}}")}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"x/b", "x/a", "80/TCP", A}, {"z/b", "x/a", "80/TCP", D},
	}},
	{"ipBlock with except matches pod addresses too", []string{NP("x", "cidr", "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.0.16/29]}")}, []Query{
		{"z/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"10.1.200.1", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D}, {"z/c", "x/a", "80/TCP", D},
	}},
	{"ports: TCP 80 only", []string{NP("x", "p80", "podSelector: {}\ningress:\n- ports: [{port: 80}]")}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "81/TCP", D}, {"y/a", "x/a", "80/UDP", D}, {"y/a", "x/a", "0/ICMP", D},
	}},
	{"protocol without port is every port", []string{NP("x", "udp", "podSelector: {}\ningress:\n- ports: [{protocol: UDP}]")}, []Query{
		{"y/a", "x/a", "53/UDP", A}, {"y/a", "x/a", "65535/UDP", A}, {"y/a", "x/a", "53/TCP", D},
	}},
	{"endPort range", []string{NP("x", "range", "podSelector: {}\ningress:\n- ports: [{port: 32000, endPort: 32768}]")}, []Query{
		{"y/a", "x/a", "32000/TCP", A}, {"y/a", "x/a", "32768/TCP", A}, {"y/a", "x/a", "31999/TCP", D}, {"y/a", "x/a", "32769/TCP", D},
	}},
	{"SCTP", []string{NP("x", "sctp", "podSelector: {}\ningress:\n- ports: [{port: 9000, protocol: SCTP}]")}, []Query{
		{"y/a", "x/a", "9000/SCTP", A}, {"y/a", "x/a", "9000/TCP", D},
	}},
	{"named ingress port resolves on the destination pod", []string{NP("x", "named", "podSelector: {}\ningress:\n- ports: [{port: http}]")}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "8080/TCP", D}, {"y/a", "x/b", "8080/TCP", A}, {"y/a", "x/b", "80/TCP", D},
	}},
	{"named egress port resolves on each destination", []string{NP("x", "named-egress", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- ports: [{port: http}]")}, []Query{
		{"x/a", "y/a", "80/TCP", A}, {"x/a", "y/b", "8080/TCP", A}, {"x/a", "y/b", "80/TCP", D}, {"x/a", "203.0.113.7", "80/TCP", D},
	}},
	{"egress rules make policyTypes default to both", []string{NP("x", "eg", "podSelector: {matchLabels: {pod: a}}\negress:\n- to:\n  - namespaceSelector: {matchLabels: {ns: y}}")}, []Query{
		{"x/a", "y/c", "80/TCP", A}, {"x/a", "z/c", "80/TCP", D}, {"z/a", "x/a", "80/TCP", D},
	}},
	{"policyTypes Egress alone leaves ingress open", []string{NP("x", "eg-only", "podSelector: {}\npolicyTypes: [Egress]")}, []Query{
		{"x/a", "y/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", A},
	}},
	{"rules of a direction policyTypes leaves out are ignored", []string{NP("x", "ingress-only", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]\negress:\n- to: [{podSelector: {matchLabels: {pod: none}}}]")}, []Query{
		{"x/a", "z/a", "80/TCP", A},
	}},
	{"matchExpressions operators", []string{NP("x", "exprs", `podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}
    podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, c]}, {key: tier, operator: Exists}, {key: missing, operator: DoesNotExist}]}`)}, []Query{
		{"y/a", "x/b", "80/TCP", A}, {"y/c", "x/b", "80/TCP", A}, {"y/b", "x/b", "80/TCP", D}, {"z/a", "x/b", "80/TCP", D},
	}},
	{"allows of several policies are a union", []string{
		NP("x", "p1", "podSelector: {}\ningress:\n- from: [{namespaceSelector: {matchLabels: {ns: y}}}]"),
		NP("x", "p2", "podSelector: {matchLabels: {pod: a}}\ningress:\n- from: [{namespaceSelector: {matchLabels: {ns: z}}}]\n  ports: [{port: 80}]"),
	}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "81/TCP", D}, {"z/a", "x/b", "8080/TCP", D},
	}},
	{"egress and ingress must both allow", []string{
		NP("x", "eg-deny", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]"),
		NP("y", "in-allow", "podSelector: {}\ningress: [{}]"),
	}, []Query{
		{"x/a", "y/a", "80/TCP", D}, {"x/b", "y/a", "80/TCP", A},
	}},
}

// CiliumPolicyCases are written from Cilium's policy documentation
// (language reference, deny policies, entities).
var CiliumPolicyCases = []Case{
	{"fromEndpoints is scoped to the policy namespace", []string{CNP("x", "l3", "endpointSelector: {matchLabels: {pod: a}}\ningress:\n- fromEndpoints: [{matchLabels: {pod: b}}]")}, []Query{
		{"x/b", "x/a", "80/TCP", A}, {"y/b", "x/a", "80/TCP", D}, {"x/c", "x/a", "80/TCP", D}, {"x/c", "x/b", "80/TCP", A},
	}},
	{"the namespace label selects across namespaces", []string{CNP("x", "cross", "endpointSelector: {}\ningress:\n- fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]")}, []Query{
		{"y/c", "x/a", "80/TCP", A}, {"x/b", "x/a", "80/TCP", D},
	}},
	{"entity world", []string{CNP("x", "world", "endpointSelector: {}\ningress:\n- fromEntities: [world]")}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"node:n2", "x/a", "80/TCP", D},
	}},
	{"entity cluster", []string{CNP("x", "cluster", "endpointSelector: {}\ningress:\n- fromEntities: [cluster]")}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", D}, {"z/c", "x/a", "80/TCP", A}, {"node:n2", "x/a", "80/TCP", A},
	}},
	{"entities host and remote-node", []string{CNP("x", "nodes", "endpointSelector: {}\negress:\n- toEntities: [host]\n- toEntities: [remote-node]\n  toPorts: [{ports: [{port: \"22\"}]}]")}, []Query{
		{"x/a", "node:n1", "80/TCP", A}, {"x/a", "node:n2", "80/TCP", D}, {"x/a", "node:n2", "22/TCP", A}, {"x/a", "y/a", "80/TCP", D},
	}},
	{"entity all", []string{CNP("x", "all", "endpointSelector: {}\negress:\n- toEntities: [all]")}, []Query{
		{"x/a", "1.1.1.1", "53/UDP", A}, {"x/a", "y/a", "80/TCP", A},
	}},
	{"deny beats allow, across policy kinds", []string{
		NP("x", "allow-all", "podSelector: {}\ningress: [{}]"),
		CNP("x", "deny-y", "endpointSelector: {}\ningressDeny:\n- fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]\n  toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]"),
	}, []Query{
		{"y/a", "x/a", "80/TCP", D}, {"y/a", "x/a", "81/TCP", A}, {"z/a", "x/a", "80/TCP", A},
	}},
	{"a deny-only policy isolates its direction", []string{CNP("x", "deny-only", "endpointSelector: {matchLabels: {pod: a}}\ningressDeny:\n- fromEntities: [world]")}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", D},
	}},
	{"enableDefaultDeny false leaves only the denies", []string{CNP("x", "soft", "endpointSelector: {matchLabels: {pod: a}}\nenableDefaultDeny: {ingress: false}\ningressDeny:\n- fromEntities: [world]")}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", A},
	}},
	{"CIDR rules select addresses outside the cluster only", []string{CNP("x", "cidr", "endpointSelector: {}\ningress:\n- fromCIDRSet: [{cidr: 0.0.0.0/0, except: [198.51.100.0/24]}]\n- fromCIDR: [10.1.0.0/16]")}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", A}, {"198.51.100.1", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", D}, {"10.1.0.200", "x/a", "80/TCP", A}, {"node:n2", "x/a", "80/TCP", D},
	}},
	{"ANY means TCP, UDP and SCTP", []string{CNP("x", "any", "endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: \"53\", protocol: ANY}]}]")}, []Query{
		{"y/a", "x/a", "53/TCP", A}, {"y/a", "x/a", "53/UDP", A}, {"y/a", "x/a", "53/SCTP", A}, {"y/a", "x/a", "54/UDP", D}, {"203.0.113.7", "x/a", "53/UDP", A},
	}},
	{"port 0 is every port; endPort a range", []string{CNP("x", "ports", "endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: \"0\", protocol: UDP}, {port: \"8000\", endPort: 8100, protocol: TCP}]}]")}, []Query{
		{"y/a", "x/a", "1/UDP", A}, {"y/a", "x/a", "8050/TCP", A}, {"y/a", "x/a", "8101/TCP", D},
	}},
	{"icmps", []string{CNP("x", "icmp", "endpointSelector: {}\ningress:\n- icmps: [{fields: [{type: 8, family: IPv4}, {type: TimeExceeded}]}]")}, []Query{
		{"y/a", "x/a", "8/ICMP", A}, {"y/a", "x/a", "11/ICMP", A}, {"y/a", "x/a", "0/ICMP", D}, {"y/a", "x/a", "8/TCP", D},
	}},
	{"an empty rule isolates and allows nothing", []string{CNP("x", "empty", "endpointSelector: {}\ningress: [{}]")}, []Query{
		{"y/a", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", D},
	}},
	{"toPorts without peers allows every peer", []string{CNP("x", "l4", "endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: \"80\"}]}]")}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", A}, {"y/a", "x/a", "81/TCP", D},
	}},
	{"an empty fromEndpoints list selects nothing", []string{CNP("x", "none", "endpointSelector: {}\ningress:\n- fromEndpoints: []\n  toPorts: [{ports: [{port: \"80\"}]}]")}, []Query{
		{"y/a", "x/a", "80/TCP", D},
	}},
	{"fromEndpoints {} of a clusterwide policy is every pod, not world", []string{CCNP("ccnp", "endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: x}}\ningress:\n- fromEndpoints: [{}]")}, []Query{
		{"z/c", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D}, {"node:n2", "x/a", "80/TCP", D},
	}},
	{"fromRequires narrows every fromEndpoints", []string{
		CNP("x", "req", "endpointSelector: {matchLabels: {pod: a}}\ningress:\n- fromRequires: [{matchLabels: {k8s:io.cilium.k8s.namespace.labels.env: prod}}]\n  fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: z}}]\n- fromEndpoints: [{matchLabels: {pod: c, k8s:io.kubernetes.pod.namespace: y}}]\n- fromEntities: [world]"),
	}, []Query{
		{"z/a", "x/a", "80/TCP", D}, {"y/c", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", A},
	}},
	{"specs holds several rules", []string{`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: multi, namespace: x}
specs:
- endpointSelector: {matchLabels: {pod: a}}
  ingress: [{fromEntities: [world]}]
- endpointSelector: {matchLabels: {pod: b}}
  egress: [{toEntities: [world]}]`}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D}, {"x/b", "1.1.1.1", "443/TCP", A}, {"x/b", "y/a", "80/TCP", D}, {"y/a", "x/b", "8080/TCP", A},
	}},
	{"egressDeny to world", []string{CNP("x", "nowhere", "endpointSelector: {}\negressDeny: [{toEntities: [world]}]")}, []Query{
		{"x/a", "1.1.1.1", "443/TCP", D}, {"x/a", "y/a", "80/TCP", D},
	}},
	{"fromNodes selects node addresses by node labels", []string{CNP("x", "from-west", "endpointSelector: {}\ningress:\n- fromNodes: [{matchLabels: {zone: west}}]")}, []Query{
		{"node:n2", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D},
	}},
	{"toServices with a selector is its pods", []string{`apiVersion: v1
kind: Service
metadata: {name: web, namespace: y}
spec:
  selector: {pod: a}
  clusterIP: 10.96.0.50
  ports: [{port: 80}]`, CNP("x", "to-web", "endpointSelector: {matchLabels: {pod: a}}\negress:\n- toServices: [{k8sService: {serviceName: web, namespace: y}}]")}, []Query{
		{"x/a", "y/a", "80/TCP", A}, {"x/a", "y/b", "8080/TCP", D},
	}},
	{"a clusterwide baseline (shared layer) and namespaced exceptions combine", []string{
		CCNP("baseline", "endpointSelector: {}\ningress:\n- fromEntities: [cluster]\negress:\n- toEntities: [all]\negressDeny:\n- toEntities: [world]\n  toPorts: [{ports: [{port: \"25\", protocol: TCP}]}]"),
		CNP("x", "no-y", "endpointSelector: {matchLabels: {pod: a}}\ningressDeny:\n- fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]\negress:\n- toCIDR: [1.1.1.1/32]\n  toPorts: [{ports: [{port: \"25\", protocol: TCP}]}]"),
		NP("z", "z-web", "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports: [{port: 8443}]"),
	}, []Query{
		{"y/a", "x/a", "80/TCP", D}, {"z/a", "x/a", "80/TCP", A}, {"203.0.113.7", "x/a", "80/TCP", D},
		{"x/a", "1.1.1.1", "25/TCP", D}, {"x/a", "1.1.1.1", "443/TCP", A}, {"x/b", "y/a", "80/TCP", A},
		{"203.0.113.7", "z/a", "8443/TCP", A}, {"203.0.113.7", "z/a", "80/TCP", D}, {"y/a", "z/a", "80/TCP", A},
	}},
}
