package compilertest

import "fmt"

// pod is a Pod manifest on node n1 (10.1.0.0/24) or n2 (10.2.0.0/24) of
// the fixture; labels and extra status are YAML flow text.
func pod(ns, name, node, ip, labels, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec: {nodeName: %s, containers: [{name: c, image: agnhost}]%s}
status: {podIP: %s}
`, name, ns, labels, node, extra, ip)
}

// FailOpenCases are regressions of the fail-open review (issue 17): each
// is a way a manifest's deny once became an allow, with our own
// manifests. They run through the evaluator, the compiled maps and the
// kernel like the semantics cases.
var FailOpenCases = []Case{
	{"a pod cannot choose its namespace", []string{
		pod("z", "forger", "n1", "10.1.0.100", "io.kubernetes.pod.namespace: x, pod: a", ""),
		NP("x", "same-namespace", "podSelector: {}\ningress: [{from: [{podSelector: {}}]}]"),
		CNP("x", "cnp-same-namespace", "endpointSelector: {matchLabels: {pod: b}}\ningress: [{fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: x}}]}]"),
	}, []Query{
		{"z/forger", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", A},
		{"z/forger", "x/b", "8080/TCP", D}, {"x/a", "x/b", "8080/TCP", A},
	}},
	{"a pod cannot choose its namespace's labels", []string{
		pod("z", "forger", "n1", "10.1.0.100", "io.cilium.k8s.namespace.labels.env: prod, io.cilium.k8s.namespace.labels.team: trusted", ""),
		NP("x", "from-prod", "podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{namespaceSelector: {matchLabels: {env: prod}}}]}]"),
		NP("x", "from-trusted", "podSelector: {matchLabels: {pod: b}}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: trusted}}}]}]"),
		CNP("x", "cnp-from-trusted", "endpointSelector: {matchLabels: {pod: c}}\ningress: [{fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: trusted}}]}]"),
	}, []Query{
		{"z/forger", "x/a", "80/TCP", D}, {"y/a", "x/a", "80/TCP", A}, {"z/a", "x/a", "80/TCP", D},
		{"z/forger", "x/b", "8080/TCP", D}, {"z/forger", "x/c", "80/TCP", D},
	}},
	{"a pod cannot choose its service account or cluster", []string{
		pod("z", "forger", "n1", "10.1.0.100", "io.cilium.k8s.policy.serviceaccount: frontend, io.cilium.k8s.policy.cluster: other", ""),
		pod("z", "frontend", "n2", "10.2.0.100", "app: web", ", serviceAccountName: frontend"),
		CNP("x", "from-frontend-sa", "endpointSelector: {matchLabels: {pod: a}}\ningress: [{fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: frontend, io.kubernetes.pod.namespace: z}}]}]"),
		CNP("x", "from-other-cluster", "endpointSelector: {matchLabels: {pod: b}}\ningress: [{fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.cluster: other, io.kubernetes.pod.namespace: z}}]}]"),
	}, []Query{
		{"z/forger", "x/a", "80/TCP", D}, {"z/frontend", "x/a", "80/TCP", A},
		{"z/forger", "x/b", "8080/TCP", D},
	}},
	{"policies on per-pod labels select their pods", []string{
		pod("x", "db-0", "n1", "10.1.0.100", "app: db, statefulset.kubernetes.io/pod-name: db-0, controller-revision-hash: db-7c9", ""),
		pod("x", "db-1", "n2", "10.2.0.100", "app: db, statefulset.kubernetes.io/pod-name: db-1, controller-revision-hash: db-7c9", ""),
		pod("x", "web-1", "n1", "10.1.0.101", "app: web, pod-template-hash: 5d8f", ""),
		pod("x", "web-2", "n2", "10.2.0.101", "app: web, pod-template-hash: 77aa", ""),
		NP("x", "isolate-db-0", "podSelector: {matchLabels: {statefulset.kubernetes.io/pod-name: db-0}}\npolicyTypes: [Ingress]"),
		CNP("x", "old-web-only-from-a", "endpointSelector: {matchExpressions: [{key: pod-template-hash, operator: In, values: [5d8f]}]}\ningress: [{fromEndpoints: [{matchLabels: {pod: a}}]}]"),
	}, []Query{
		{"x/a", "x/db-0", "5432/TCP", D}, {"x/a", "x/db-1", "5432/TCP", A},
		{"x/b", "x/web-1", "80/TCP", D}, {"x/a", "x/web-1", "80/TCP", A}, {"x/b", "x/web-2", "80/TCP", A},
	}},
	{"terminal pods keep no identity", []string{
		pod("x", "admin", "n1", "10.1.0.51", "role: admin", "") + "---\n" + `apiVersion: v1
kind: Pod
metadata: {name: failed, namespace: x, labels: {role: admin}}
spec: {nodeName: n2, containers: [{name: c, image: agnhost}]}
status: {podIP: 10.2.0.50, phase: Failed}
`,
		NP("x", "from-admin", "podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{podSelector: {matchLabels: {role: admin}}}]}]"),
	}, []Query{
		{"10.2.0.50", "x/a", "80/TCP", D}, {"x/admin", "x/a", "80/TCP", A},
	}},
	{"fromRequires is limited to the policy's namespace", []string{
		CNP("x", "req", "endpointSelector: {matchLabels: {pod: a}}\ningress:\n- fromRequires: [{matchLabels: {tier: t1}}]\n  fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: y}}]\n- fromEndpoints: [{matchLabels: {pod: b}}]"),
	}, []Query{
		{"y/b", "x/a", "80/TCP", D}, {"x/b", "x/a", "80/TCP", A}, {"y/a", "x/a", "80/TCP", D},
	}},
	{"an endpointSelector naming another namespace applies in the policy's", []string{
		CNP("x", "other-ns", "endpointSelector: {matchLabels: {pod: a, io.kubernetes.pod.namespace: y}}\ningress: [{fromEndpoints: [{matchLabels: {pod: c}}]}]"),
	}, []Query{
		{"x/b", "x/a", "80/TCP", D}, {"x/c", "x/a", "80/TCP", A}, {"x/b", "y/a", "80/TCP", A},
	}},
	{"world-ipv6 selects no IPv4 address, world-ipv4 does", []string{
		CNP("x", "v6-world", "endpointSelector: {matchLabels: {pod: a}}\ningress: [{fromEntities: [world-ipv6]}]"),
		CNP("x", "v4-world", "endpointSelector: {matchLabels: {pod: b}}\ningress: [{fromEntities: [world-ipv4]}]"),
	}, []Query{
		{"203.0.113.7", "x/a", "80/TCP", D}, {"203.0.113.7", "x/b", "8080/TCP", A}, {"y/a", "x/b", "8080/TCP", D},
	}},
	{"a port rule without ports allows and denies nothing", []string{
		CNP("x", "empty-port-rule", "endpointSelector: {matchLabels: {pod: a}}\negress: [{toPorts: [{}]}]"),
		CNP("x", "empty-deny-port-rule", "endpointSelector: {matchLabels: {pod: b}}\negress: [{toEntities: [world]}]\negressDeny: [{toPorts: [{}]}]"),
	}, []Query{
		{"x/a", "1.1.1.1", "80/TCP", D}, {"x/a", "y/a", "80/TCP", D},
		{"x/b", "1.1.1.1", "80/TCP", A},
	}},
	{"enableDefaultDeny isolates only directions with rules", []string{
		CNP("x", "egress-only", "endpointSelector: {matchLabels: {pod: a}}\nenableDefaultDeny: {ingress: true, egress: true}\negress: [{toEntities: [world]}]"),
		CNP("x", "no-default-deny", "endpointSelector: {matchLabels: {pod: b}}\nenableDefaultDeny: {ingress: false}\ningress: [{fromEndpoints: [{matchLabels: {pod: c}}]}]"),
	}, []Query{
		{"y/a", "x/a", "80/TCP", A}, {"x/a", "y/a", "80/TCP", D}, {"x/a", "1.1.1.1", "443/TCP", A},
		{"y/a", "x/b", "8080/TCP", A},
	}},
}
