package oracle

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicenet/sluice/schema"
)

// These cases are read off the Kubernetes API reference and Cilium's
// documentation; each checks the oracle alone, so that the comparison
// with Sluice rests on something other than Sluice.

func load(t *testing.T, manifests string) *Oracle {
	t.Helper()
	set, diags := schema.Load([]string{"-"}, strings.NewReader(manifests))
	if len(diags) > 0 {
		t.Fatalf("decode: %v", diags)
	}
	return New(set, "")
}

type want struct {
	src, dst string
	proto    corev1.Protocol
	port     uint16
	allow    bool
}

func check(t *testing.T, o *Oracle, cases []want) {
	t.Helper()
	if r := o.Refusals(); len(r) > 0 {
		t.Fatalf("refused: %v", r)
	}
	for _, c := range cases {
		q := Query{Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), Proto: c.proto, Port: c.port}
		if v := o.Verdict(q); v.Allow != c.allow {
			t.Errorf("%s: allow=%v, want %v (egress: %s; ingress: %s)", q, v.Allow, c.allow, v.Egress.Why(), v.Ingress.Why())
		}
	}
}

const twoNodes = `
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: a, kubernetes.io/metadata.name: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: prod, labels: {app: db, statefulset.kubernetes.io/pod-name: db-0}}
spec:
  nodeName: n2
  containers: [{name: c, ports: [{name: pg, containerPort: 5432}, {name: stats, containerPort: 9000, protocol: SCTP}]}]
status: {podIP: 10.0.2.1, podIPs: [{ip: 10.0.2.1}, {ip: "fd00::2:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: dev, labels: {app: web, io.kubernetes.pod.namespace: prod, io.cilium.k8s.namespace.labels.team: a}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIP: 10.0.2.9}
---
apiVersion: v1
kind: Pod
metadata: {name: old-admin, namespace: prod, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {phase: Succeeded, podIP: 10.0.1.7}
`

func TestNetworkPolicyAPIReference(t *testing.T) {
	o := load(t, twoNodes+`
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {statefulset.kubernetes.io/pod-name: db-0}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: pg}, {port: 9000, protocol: SCTP}, {port: 7000, endPort: 7010}]
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]
    ports: [{port: 22}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: prod}}}]
`)
	check(t, o, []want{
		{"10.0.1.1", "10.0.2.1", "TCP", 5432, true},  // named port on the destination
		{"10.0.1.1", "10.0.2.1", "TCP", 5433, false}, // not that port
		{"10.0.1.1", "10.0.2.1", "SCTP", 9000, true},
		{"10.0.1.1", "10.0.2.1", "UDP", 9000, false},
		{"10.0.1.1", "10.0.2.1", "TCP", 7010, true}, // endPort is inclusive
		{"10.0.1.1", "10.0.2.1", "TCP", 7011, false},
		{"10.0.2.9", "10.0.2.1", "TCP", 5432, false}, // another namespace, whatever its labels say
		{"10.0.2.9", "10.0.2.1", "TCP", 22, true},    // ipBlock matches pod addresses
		{"10.0.1.1", "10.0.2.1", "TCP", 22, false},   // except
		{"10.0.1.7", "10.0.2.1", "TCP", 5432, false}, // a terminal pod's address is no pod's
		{"10.0.1.7", "10.0.2.1", "TCP", 22, false},   // ... and is in the except
		{"192.168.0.2", "10.0.2.1", "TCP", 1, true},  // from the pod's own node
		{"192.168.0.1", "10.0.2.1", "TCP", 1, false}, // another node is not
		{"10.0.2.1", "10.0.2.1", "UDP", 1, true},     // itself
		{"10.0.2.1", "10.0.1.1", "TCP", 80, true},    // egress to its namespace
		{"10.0.2.1", "10.0.2.9", "TCP", 80, false},   // not to dev
		{"10.0.1.1", "10.0.2.9", "TCP", 80, true},    // web is not selected
	})
	if !o.Isolated(netip.MustParseAddr("10.0.2.1")) || o.Isolated(netip.MustParseAddr("10.0.1.1")) {
		t.Error("isolation: db-0 must be isolated, web not")
	}
}

func TestNetworkPolicyTypes(t *testing.T) {
	o := load(t, twoNodes+`
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ingress-only, namespace: prod}
spec: {podSelector: {matchLabels: {app: web}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-only, namespace: prod}
spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Egress]}
`)
	check(t, o, []want{
		{"10.0.2.1", "10.0.1.1", "TCP", 80, false}, // db may not send, web may not receive
		{"10.0.2.9", "10.0.1.1", "TCP", 80, false},
		{"10.0.1.1", "10.0.2.9", "TCP", 80, true},    // web may send
		{"10.0.2.9", "10.0.2.1", "TCP", 80, true},    // db may receive
		{"192.168.0.1", "10.0.1.1", "TCP", 80, true}, // own node
	})
}

func TestCiliumDocumentedSemantics(t *testing.T) {
	o := load(t, twoNodes+`
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: db, k8s:io.kubernetes.pod.namespace: dev}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
  - fromEntities: [world-ipv6]
  - fromCIDRSet: [{cidr: 0.0.0.0/0, except: [203.0.113.0/24]}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - toPorts: [{ports: [{port: "0", protocol: SCTP}]}]
  - fromEndpoints: []
    toPorts: [{ports: [{port: "7", protocol: TCP}]}]
  ingressDeny:
  - fromEntities: [host]
    toPorts: [{ports: [{port: "2000", endPort: 2001}]}]
  egress:
  - toEndpoints: [{matchExpressions: [{key: io.kubernetes.pod.namespace, operator: NotIn, values: [prod]}]}]
  enableDefaultDeny: {egress: false}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEntities: [cluster]
  enableDefaultDeny: {ingress: true}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: open, namespace: dev}
spec:
  endpointSelector: {}
  egress: [{toEntities: [all]}]
  enableDefaultDeny: {ingress: true}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: teams}
spec:
  endpointSelector: {matchLabels: {io.cilium.k8s.namespace.labels.team: a}}
  ingress:
  - fromRequires: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: default}}]
    toPorts: [{ports: [{port: "1", protocol: TCP}]}]
`)
	check(t, o, []want{
		// The endpointSelector applies in prod although it names dev; web
		// passes the clusterwide policy's fromRequires (service account
		// default), which also selects db (prod is team a).
		{"10.0.1.1", "10.0.2.1", "TCP", 80, true},
		// A namespace label on a pod is no namespace: intruder is in dev.
		{"10.0.2.9", "10.0.2.1", "TCP", 80, false},
		// world-ipv6 selects no IPv4 address; the CIDR rule is for port 53.
		{"198.51.100.1", "10.0.2.1", "TCP", 80, false},
		{"198.51.100.1", "10.0.2.1", "UDP", 53, true},
		{"203.0.113.5", "10.0.2.1", "UDP", 53, false}, // except
		{"10.0.2.9", "10.0.2.1", "UDP", 53, false},    // CIDR rules never select pods
		{"192.168.0.1", "10.0.2.1", "UDP", 53, false}, // nor nodes
		{"10.0.2.9", "10.0.2.1", "SCTP", 4, true},     // L4-only rule: any peer
		{"10.0.2.9", "10.0.2.1", "TCP", 7, false},     // fromEndpoints: [] selects no peer
		// Deny beats the own node.
		{"192.168.0.2", "10.0.2.1", "TCP", 2001, false},
		{"192.168.0.2", "10.0.2.1", "TCP", 2002, true},
		// enableDefaultDeny.egress false: db's egress is not isolated.
		{"10.0.2.1", "198.51.100.1", "TCP", 80, true},
		// web's egress: cluster only.
		{"10.0.1.1", "198.51.100.1", "TCP", 80, false},
		{"10.0.1.1", "192.168.0.2", "TCP", 80, true},
		// enableDefaultDeny.ingress on a policy without ingress rules
		// does not isolate: web receives from anyone, except through the
		// clusterwide policy, which selects prod (team a) and whose
		// fromRequires applies to its L4-only rule's peers not at all.
		{"10.0.2.9", "10.0.1.1", "TCP", 1, true},
		{"10.0.2.9", "10.0.1.1", "TCP", 2, false},
		// The same for dev's policy, and intruder is selected by nothing
		// else.
		{"10.0.1.1", "10.0.2.9", "TCP", 80, true},
	})
}

func TestCiliumRequiresAndScoping(t *testing.T) {
	o := load(t, twoNodes+`
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: req, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromRequires: [{matchLabels: {app: web}}]
  - fromEndpoints: [{}]
  - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: dev}}]
    toPorts: [{ports: [{port: "5432"}]}]
`)
	check(t, o, []want{
		{"10.0.1.1", "10.0.2.1", "TCP", 80, true},    // prod/web: in prod, app=web
		{"10.0.2.9", "10.0.2.1", "TCP", 80, false},   // dev/intruder: not in prod
		{"10.0.2.9", "10.0.2.1", "TCP", 5432, false}, // in dev, but the requirement is scoped to prod
	})
}

// A namespace match in matchLabels of a namespaced policy's
// endpointSelector is replaced by the policy's namespace, however it is
// spelt (as Cilium documents); getEndpointSelector leaves a peer
// selector on namespace labels unscoped, so that it may match peers that
// are not pods.
func TestCiliumNamespaceSpellings(t *testing.T) {
	o := load(t, twoNodes+`
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: plain, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web, io.kubernetes.pod.namespace: dev}}
  ingress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: labels, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: io.cilium.k8s.namespace.labels.team, operator: DoesNotExist}]}]
`)
	check(t, o, []want{
		{"10.0.2.1", "10.0.1.1", "TCP", 80, false},    // web: "plain" applies in prod
		{"10.0.2.9", "10.0.2.1", "TCP", 80, true},     // dev has no team label
		{"198.51.100.1", "10.0.2.1", "TCP", 80, true}, // nor has the world
		{"10.0.1.1", "10.0.2.1", "TCP", 80, false},    // prod is team a
	})
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"no node name", twoNodes + "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.9.9.9}\n", "a pod with an address but no node"},
		{"reserved label", "apiVersion: v1\nkind: Pod\nmetadata: {name: x, labels: {\"reserved:host\": \"\"}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.9.9.9}\n", "an invalid label key"},
		{"two L3 kinds", "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], fromCIDR: [10.0.0.0/8]}]\n", "combines fromCIDR and fromEndpoints"},
		{"no rules", "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec: {endpointSelector: {}}\n", "without ingress"},
		{"host policy", "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: x}\nspec: {nodeSelector: {}, ingress: [{fromEntities: [world]}]}\n", "host policy"},
		{"reserved:host subject", "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: x}\nspec: {endpointSelector: {matchLabels: {\"reserved:host\": \"\"}}, ingress: [{fromEntities: [world]}]}\n", "host policy"},
	} {
		var r []string
		for _, x := range load(t, c.yaml).Refusals() {
			r = append(r, x.String())
		}
		if len(r) == 0 || !strings.Contains(strings.Join(r, "\n"), c.want) {
			t.Errorf("%s: refusals %q, want one saying %q", c.name, r, c.want)
		}
	}
	if r := load(t, twoNodes).Refusals(); len(r) > 0 {
		t.Errorf("valid input refused: %v", r)
	}
}
