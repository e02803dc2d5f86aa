package schema

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
)

// decodeCase is one file fed to Decode, with the exact diagnostics it must
// give, the objects it must yield (as Refs), and the skipped counts.
type decodeCase struct {
	name    string
	file    string // defaults to "in.yaml"
	src     string
	diags   []string
	refs    []string
	skipped map[string]int
}

func runDecodeCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = "in.yaml"
			}
			objs, skipped, diags := Decode(file, []byte(tc.src))
			var got []string
			for _, d := range diags {
				got = append(got, d.String())
			}
			if diff := cmp.Diff(tc.diags, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			var refs []string
			for _, o := range objs {
				refs = append(refs, o.Ref())
			}
			if diff := cmp.Diff(tc.refs, refs); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if tc.skipped == nil {
				tc.skipped = map[string]int{}
			}
			if diff := cmp.Diff(tc.skipped, skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

// lines joins its arguments with newlines, so that test sources read like
// the files they stand for.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

const npAccepted = "accepted: egress, ingress, podSelector, policyTypes"

func TestDecodeUnknownFields(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "top level",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"description: allow web",
			"metadata:",
			"  name: np",
			"spec:",
			"  podSelector: {}",
		),
		diags: []string{`in.yaml:3:1: description: unknown field "description"; accepted: apiVersion, kind, metadata, spec`},
	}, {
		name: "spec",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata: {name: np}",
			"spec:",
			"  podSelector: {}",
			"  foo: 1",
		),
		diags: []string{`in.yaml:6:3: spec.foo: unknown field "foo"; ` + npAccepted},
	}, {
		name: "nested in list items",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata: {name: np}",
			"spec:",
			"  podSelector: {}",
			"  ingress:",
			"  - from:",
			"    - podSelector: {}",
			"    - ipBlock:",
			"        cidr: 10.0.0.0/8",
			"        exept: [10.1.0.0/16]",
		),
		diags: []string{`in.yaml:11:9: spec.ingress[0].from[1].ipBlock.exept: unknown field "exept" (did you mean "except"?); accepted: cidr, except`},
	}, {
		name: "case typo suggests the right name",
		src: lines(
			"apiVersion: cilium.io/v2",
			"kind: CiliumNetworkPolicy",
			"metadata: {name: p, namespace: n}",
			"spec:",
			"  endpointSelector:",
			"    matchlabels: {app: web}",
		),
		diags: []string{`in.yaml:6:5: spec.endpointSelector.matchlabels: unknown field "matchlabels" (did you mean "matchLabels"?); accepted: matchExpressions, matchLabels`},
	}, {
		name: "metadata description",
		src: lines(
			"apiVersion: cilium.io/v2",
			"kind: CiliumNetworkPolicy",
			"metadata:",
			"  name: p",
			"  description: not here",
			"spec:",
			"  endpointSelector: {}",
		),
		diags: []string{`in.yaml:5:3: metadata.description: unknown field "description"; accepted: annotations, creationTimestamp, deletionGracePeriodSeconds, deletionTimestamp, finalizers, generateName, generation, labels, managedFields, name, namespace, ownerReferences, resourceVersion, selfLink, uid`},
	}, {
		name: "long accepted list is capped",
		src: lines(
			"apiVersion: v1",
			"kind: Pod",
			"metadata: {name: p}",
			"spec:",
			"  nodename: n1",
		),
		diags: []string{`in.yaml:5:3: spec.nodename: unknown field "nodename" (did you mean "nodeName"?); accepted: activeDeadlineSeconds, affinity, automountServiceAccountToken, containers, dnsConfig, dnsPolicy, enableServiceLinks, ephemeralContainers, evictionResponders, hostAliases, hostIPC, hostNetwork, hostPID, hostUsers, hostname, hostnameOverride, and 27 more`},
	}, {
		name: "third document of a stream",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: a}",
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: b}",
			"---",
			"# the third one is wrong",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata:",
			"  name: c",
			"  lables: {x: y}",
		),
		diags: []string{`in.yaml:14:3: metadata.lables: unknown field "lables" (did you mean "labels"?); accepted: annotations, creationTimestamp, deletionGracePeriodSeconds, deletionTimestamp, finalizers, generateName, generation, labels, managedFields, name, namespace, ownerReferences, resourceVersion, selfLink, uid`},
		refs:  []string{"Namespace a", "Namespace b"},
	}, {
		name: "List item",
		src: lines(
			"apiVersion: v1",
			"kind: List",
			"items:",
			"- apiVersion: v1",
			"  kind: Service",
			"  metadata: {name: ok}",
			"- apiVersion: v1",
			"  kind: Service",
			"  metadata: {name: bad}",
			"  spec:",
			"    selector: {app: web}",
			"    portz: []",
		),
		diags: []string{`in.yaml:12:5: spec.portz: unknown field "portz" (did you mean "ports"?); accepted: allocateLoadBalancerNodePorts, clusterIP, clusterIPs, externalIPs, externalName, externalTrafficPolicy, healthCheckNodePort, internalTrafficPolicy, ipFamilies, ipFamilyPolicy, loadBalancerClass, loadBalancerIP, loadBalancerSourceRanges, ports, publishNotReadyAddresses, selector, and 4 more`},
		refs:  []string{"Service default/ok"},
	}, {
		name: "unknown L7 protocol, while L7 content is unchecked",
		src: lines(
			"apiVersion: cilium.io/v2",
			"kind: CiliumNetworkPolicy",
			"metadata: {name: p}",
			"spec:",
			"  endpointSelector: {}",
			"  ingress:",
			"  - toPorts:",
			"    - ports: [{port: 80}]",
			"      rules:",
			"        http: [{method: 1, anything: {goes: [here]}}]",
			"        grpc: []",
		),
		diags: []string{`in.yaml:11:9: spec.ingress[0].toPorts[0].rules.grpc: unknown field "grpc"; accepted: dns, http, kafka, l7, l7proto`},
	}})
}

func TestDecodeWrongTypes(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "mapping expected",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata: {name: np}",
			"spec:",
			"  podSelector: []",
			"  policyTypes: Ingress",
		),
		diags: []string{
			`in.yaml:5:16: spec.podSelector: expected a mapping, got a list`,
			`in.yaml:6:16: spec.policyTypes: expected a list, got string "Ingress"`,
		},
	}, {
		name: "scalars",
		src: lines(
			"apiVersion: v1",
			"kind: Service",
			"metadata:",
			"  name: s",
			"  labels:",
			"    tier: 1",
			"    on: true",
			"    yes: yes",
			"spec:",
			"  ports:",
			"  - port: abc",
			"  - port: '8080'",
			"  - port: 1.5",
			"    name: 443",
			"  publishNotReadyAddresses: yes",
		),
		diags: []string{
			`in.yaml:6:11: metadata.labels.tier: expected string, got integer 1; quote it`,
			`in.yaml:7:9: metadata.labels.on: expected string, got boolean true; quote it`,
			`in.yaml:11:11: spec.ports[0].port: expected integer, got string "abc"`,
			`in.yaml:12:11: spec.ports[1].port: expected integer, got string "8080"; remove the quotes`,
			`in.yaml:13:11: spec.ports[2].port: expected integer, got float 1.5`,
			`in.yaml:14:11: spec.ports[2].name: expected string, got integer 443; quote it`,
			`in.yaml:15:29: spec.publishNotReadyAddresses: expected boolean, got string "yes"`,
		},
	}, {
		name: "json.Unmarshaler types",
		src: lines(
			"apiVersion: v1",
			"kind: Pod",
			"metadata:",
			"  name: p",
			"  creationTimestamp: yesterday",
			"spec:",
			"  containers:",
			"  - name: c",
			"    ports: [{containerPort: 80}]",
			"    resources:",
			"      limits: {cpu: lots, memory: 1Gi}",
			"    readinessProbe:",
			"      httpGet: {port: {number: 80}}",
		),
		diags: []string{
			`in.yaml:5:22: metadata.creationTimestamp: invalid RFC 3339 timestamp string "yesterday": parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`,
			`in.yaml:11:21: spec.containers[0].resources.limits.cpu: invalid quantity such as 500m or 1Gi string "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
			`in.yaml:13:23: spec.containers[0].readinessProbe.httpGet.port: expected integer or string, got a mapping`,
		},
	}, {
		name: "document that is not a mapping",
		src: lines(
			"- apiVersion: v1",
			"  kind: Namespace",
		),
		diags: []string{`in.yaml:1:1: expected a Kubernetes object (a mapping with apiVersion and kind), got a list`},
	}, {
		name: "apiVersion of the wrong type",
		src: lines(
			"apiVersion: 1",
			"kind: Namespace",
		),
		diags: []string{`in.yaml:1:13: apiVersion: expected string, got integer 1; quote it`},
	}})
}

func TestDecodeIntegerRanges(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "int32 and uint",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata:",
			"  name: np",
			"  generation: 99999999999999999999",
			"spec:",
			"  podSelector: {}",
			"  ingress:",
			"  - ports:",
			"    - port: 99999999999",
			"      endPort: 4294967296",
			"    - port: 80",
			"      endPort: -0x10",
		),
		diags: []string{
			`in.yaml:5:15: metadata.generation: integer 99999999999999999999 out of range for int64; accepted: -9223372036854775808 to 9223372036854775807`,
			`in.yaml:10:13: spec.ingress[0].ports[0].port: integer 99999999999 out of range for int32; accepted: -2147483648 to 2147483647`,
			`in.yaml:11:16: spec.ingress[0].ports[0].endPort: integer 4294967296 out of range for int32; accepted: -2147483648 to 2147483647`,
		},
		// endPort -0x10 is in range: ranges and ports are the compiler's to
		// check.
	}, {
		name: "unsigned",
		src: lines(
			"apiVersion: v1",
			"kind: Pod",
			"metadata: {name: p}",
			"spec:",
			"  containers: [{name: c}]",
			"  terminationGracePeriodSeconds: 30",
			"  securityContext:",
			"    fsGroup: -1",
			"    sysctls: [{name: a, value: b}]",
		),
		refs: []string{"Pod default/p"},
	}, {
		name: "yaml integer forms",
		src: lines(
			"apiVersion: v1",
			"kind: Service",
			"metadata: {name: s}",
			"spec:",
			"  ports:",
			"  - port: 0x50",
			"  - port: 0o17",
			"  - port: 1_000",
			"  - port: +8",
		),
		refs: []string{"Service default/s"},
	}})
}

func TestDecodeDuplicateKeys(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "in metadata",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata:",
			"  name: a",
			"  name: b",
			"spec: {podSelector: {}}",
		),
		diags: []string{`in.yaml:5:3: metadata.name: duplicate key "name" (first at line 4); keys in a mapping must be unique`},
	}, {
		name: "in a label map, flow style",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata: {name: a}",
			"spec:",
			"  podSelector:",
			"    matchLabels: {app: x, \"app.kubernetes.io/name\": y, app: z}",
		),
		diags: []string{`in.yaml:6:56: spec.podSelector.matchLabels.app: duplicate key "app" (first at line 6); keys in a mapping must be unique`},
	}, {
		name: "at top level",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"kind: Namespace",
			"metadata: {name: a}",
		),
		diags: []string{`in.yaml:3:1: kind: duplicate key "kind" (first at line 2); keys in a mapping must be unique`},
	}})
}

func TestDecodeSyntaxErrors(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "bad indentation",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata:",
			"  name: a",
			" labels: {}",
		),
		diags: []string{`in.yaml:5:1: invalid YAML: did not find expected key; check the indentation here and in the lines below`},
	}, {
		name: "later documents still decode",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: a}",
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: b: c}",
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: c}",
		),
		diags: []string{`in.yaml:7:1: invalid YAML: did not find expected ',' or '}'`},
		refs:  []string{"Namespace a", "Namespace c"},
	}, {
		name: "unknown anchor",
		src: lines(
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: *nope}",
		),
		diags: []string{`in.yaml:4:18: invalid YAML: unknown anchor 'nope' referenced; define it with &name before using it`},
	}, {
		name: "tab indentation",
		src:  "apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: a\n",
		diags: []string{
			"in.yaml:4:1: invalid YAML: found character that cannot start any token; YAML indents with spaces, not tabs, and values starting with @ or ` must be quoted",
		},
	}})
}

func TestDecodeMissingTypeInfo(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "no apiVersion",
		src: lines(
			"kind: NetworkPolicy",
			"metadata: {name: a}",
		),
		diags: []string{`in.yaml:1:1: missing apiVersion; every manifest needs both, for example apiVersion: networking.k8s.io/v1 and kind: NetworkPolicy`},
	}, {
		name: "apiversion spelled in lower case",
		src: lines(
			"apiversion: cilium.io/v2",
			"kind: CiliumNetworkPolicy",
			"metadata: {name: a}",
		),
		diags: []string{`in.yaml:1:1: missing apiVersion; found key "apiversion": did you mean apiVersion? (keys are case-sensitive)`},
	}, {
		name: "Kind capitalised",
		src: lines(
			"metadata: {name: a}",
			"apiVersion: v1",
			"Kind: Pod",
		),
		diags: []string{`in.yaml:3:1: missing kind; found key "Kind": did you mean kind? (keys are case-sensitive)`},
	}, {
		name: "neither: a fragment",
		src: lines(
			"  ingress:",
			"  - from:",
			"    - podSelector: {}",
		),
		diags: []string{`in.yaml:1:3: missing apiVersion and kind; every manifest needs both, for example apiVersion: networking.k8s.io/v1 and kind: NetworkPolicy`},
	}, {
		name: "missing name",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata:",
			"  labels: {a: b}",
		),
		diags: []string{`in.yaml:4:3: metadata.name: missing metadata.name; every Namespace needs a name`},
	}, {
		name: "missing metadata",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
		),
		diags: []string{`in.yaml:1:1: metadata.name: missing metadata.name; every Namespace needs a name`},
	}})
}

func TestDecodeKindsAndVersions(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "policy with another apiVersion is an error",
		src: lines(
			"apiVersion: extensions/v1beta1",
			"kind: NetworkPolicy",
			"metadata: {name: a}",
			"---",
			"apiVersion: cilium.io/v2alpha1",
			"kind: CiliumClusterwideNetworkPolicy",
			"metadata: {name: b}",
		),
		diags: []string{
			`in.yaml:1:13: apiVersion: NetworkPolicy must have apiVersion networking.k8s.io/v1, got "extensions/v1beta1"; a policy must not be skipped, so this is an error`,
			`in.yaml:5:13: apiVersion: CiliumClusterwideNetworkPolicy must have apiVersion cilium.io/v2, got "cilium.io/v2alpha1"; a policy must not be skipped, so this is an error`,
		},
	}, {
		name: "policy kind in the wrong case is an error",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: Networkpolicy",
			"metadata: {name: a}",
		),
		diags: []string{`in.yaml:2:7: kind: unknown kind "Networkpolicy"; did you mean NetworkPolicy? (kinds are case-sensitive)`},
	}, {
		name: "other kinds are skipped and counted",
		src: lines(
			"apiVersion: v1",
			"kind: ConfigMap",
			"metadata: {name: a}",
			"data: {anything: [goes]}",
			"---",
			"apiVersion: v1",
			"kind: ConfigMap",
			"metadata: {name: b}",
			"---",
			"apiVersion: apps/v1beta2",
			"kind: Deployment",
			"metadata: {name: old}",
			"---",
			"apiVersion: networking.k8s.io/v1",
			"kind: Ingress",
			"metadata: {name: i}",
			"---",
			"apiVersion: apps/v1",
			"kind: Deployment",
			"metadata: {name: new}",
		),
		refs:    []string{"Deployment default/new"},
		skipped: map[string]int{"v1 ConfigMap": 2, "apps/v1beta2 Deployment": 1, "networking.k8s.io/v1 Ingress": 1},
	}, {
		name: "namespaces",
		src: lines(
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata: {name: defaulted}",
			"---",
			"apiVersion: networking.k8s.io/v1",
			"kind: NetworkPolicy",
			"metadata: {name: given, namespace: prod}",
			"---",
			"apiVersion: cilium.io/v2",
			"kind: CiliumClusterwideNetworkPolicy",
			"metadata: {name: ccnp, namespace: ignored}",
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: prod}",
			"---",
			"apiVersion: v1",
			"kind: Node",
			"metadata: {name: n1}",
			"---",
			"apiVersion: cilium.io/v2",
			"kind: CiliumNetworkPolicy",
			"metadata: {name: cnp}",
		),
		refs: []string{
			"NetworkPolicy default/defaulted",
			"NetworkPolicy prod/given",
			"CiliumClusterwideNetworkPolicy ccnp",
			"Namespace prod",
			"Node n1",
			"CiliumNetworkPolicy default/cnp",
		},
	}, {
		name: "all decoded kinds",
		src: lines(
			"apiVersion: v1",
			"kind: List",
			"items:",
			"- {apiVersion: v1, kind: Service, metadata: {name: a}}",
			"- {apiVersion: v1, kind: Endpoints, metadata: {name: a}}",
			"- {apiVersion: v1, kind: Pod, metadata: {name: a}}",
			"- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: a}, endpoints: []}",
			"- {apiVersion: apps/v1, kind: ReplicaSet, metadata: {name: a}}",
			"- {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: a}}",
			"- {apiVersion: apps/v1, kind: DaemonSet, metadata: {name: a}}",
			"- {apiVersion: batch/v1, kind: Job, metadata: {name: a}}",
		),
		refs: []string{
			"Service default/a", "Endpoints default/a", "Pod default/a", "EndpointSlice default/a",
			"ReplicaSet default/a", "StatefulSet default/a", "DaemonSet default/a", "Job default/a",
		},
	}})
}

func TestDecodeLists(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "typed list kind",
		src: lines(
			"apiVersion: v1",
			"kind: PodList",
			"metadata: {resourceVersion: \"1\"}",
			"items:",
			"- apiVersion: v1",
			"  kind: Pod",
			"  metadata: {name: a, namespace: x}",
			"- apiVersion: v1",
			"  kind: ConfigMap",
			"  metadata: {name: b}",
		),
		refs:    []string{"Pod x/a"},
		skipped: map[string]int{"v1 ConfigMap": 1},
	}, {
		name: "kind ending in List without items is not a List",
		src: lines(
			"apiVersion: example.com/v1",
			"kind: AllowList",
			"spec: {}",
		),
		skipped: map[string]int{"example.com/v1 AllowList": 1},
	}, {
		name: "items of the wrong shape",
		src: lines(
			"apiVersion: v1",
			"kind: List",
			"items: {a: b}",
			"---",
			"apiVersion: v1",
			"kind: List",
			"items:",
			"- just a string",
			"- apiVersion: v1",
			"  kind: List",
			"  items: []",
		),
		diags: []string{
			`in.yaml:3:8: items: expected a list of objects, got a mapping`,
			`in.yaml:8:3: expected a Kubernetes object (a mapping with apiVersion and kind), got string "just a string"`,
			`in.yaml:9:3: a List inside a List is not supported; put its items in the outer List`,
		},
	}, {
		name: "empty list",
		src: lines(
			"apiVersion: v1",
			"kind: List",
			"items: []",
		),
	}})
}

func TestDecodeFormats(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "KYAML with trailing commas",
		src: lines(
			"---",
			"{",
			"  apiVersion: \"networking.k8s.io/v1\",",
			"  kind: \"NetworkPolicy\",",
			"  metadata: {",
			"    name: \"allow-all-ingress\",",
			"  },",
			"  spec: {",
			"    podSelector: {},",
			"    ingress: [{},],",
			"    policyTypes: [\"Ingress\",],",
			"  },",
			"}",
		),
		refs: []string{"NetworkPolicy default/allow-all-ingress"},
	}, {
		name: "KYAML error position",
		src: lines(
			"{",
			"  apiVersion: \"networking.k8s.io/v1\",",
			"  kind: \"NetworkPolicy\",",
			"  metadata: {name: \"x\",},",
			"  spec: {podSelector: {}, policyType: [\"Ingress\",],},",
			"}",
		),
		diags: []string{`in.yaml:5:27: spec.policyType: unknown field "policyType" (did you mean "policyTypes"?); ` + npAccepted},
	}, {
		name: "JSON",
		file: "svc.json",
		src: lines(
			`{`,
			`  "apiVersion": "v1",`,
			`  "kind": "Service",`,
			`  "metadata": {"name": "web", "namespace": "shop",`,
			`               "labels": {"app.kubernetes.io/name": "web"}},`,
			`  "spec": {`,
			`    "selector": {"app": "web"},`,
			`    "ports": [{"port": 80, "targetPort": "http"}, {"port": "443"}]`,
			`  }`,
			`}`,
		),
		diags: []string{`svc.json:8:60: spec.ports[1].port: expected integer, got string "443"; remove the quotes`},
	}, {
		name: "JSON valid",
		file: "ns.json",
		src:  `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","labels":{"x":"1"}}}`,
		refs: []string{"Namespace a"},
	}, {
		name: "empty documents",
		src: lines(
			"# nothing here",
			"---",
			"---",
			"# only a comment",
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: a}",
			"---",
			"...",
			"---",
		),
		refs: []string{"Namespace a"},
	}, {
		name: "empty file",
		src:  "",
	}, {
		name: "document end marker and directives",
		src: lines(
			"%YAML 1.1",
			"---",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: a}",
			"...",
			"apiVersion: v1",
			"kind: Namespace",
			"metadata: {name: b, labels: {x: 1}}",
		),
		diags: []string{`in.yaml:9:33: metadata.labels.x: expected string, got integer 1; quote it`},
		refs:  []string{"Namespace a"},
	}, {
		name: "CRLF line endings",
		src:  "apiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: a\r\n---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  nam: b\r\n",
		diags: []string{
			`in.yaml:9:3: metadata.nam: unknown field "nam" (did you mean "name"?); accepted: annotations, creationTimestamp, deletionGracePeriodSeconds, deletionTimestamp, finalizers, generateName, generation, labels, managedFields, name, namespace, ownerReferences, resourceVersion, selfLink, uid`,
		},
		refs: []string{"Namespace a"},
	}})
}

func TestDecodeAnchors(t *testing.T) {
	runDecodeCases(t, []decodeCase{{
		name: "aliases and merge keys",
		src: lines(
			"apiVersion: cilium.io/v2",
			"kind: CiliumNetworkPolicy",
			"metadata:",
			"  name: p",
			"  labels: &web {app: web, tier: front}",
			"spec:",
			"  endpointSelector:",
			"    matchLabels: *web",
			"  ingress:",
			"  - fromEndpoints:",
			"    - matchLabels:",
			"        <<: *web",
			"        tier: back",
			"    toPorts: &ports",
			"    - ports: [{port: 80, protocol: TCP}]",
			"  egress:",
			"  - toPorts: *ports",
		),
		refs: []string{"CiliumNetworkPolicy default/p"},
	}, {
		name: "errors inside an alias are reported where it is used",
		src: lines(
			"apiVersion: v1",
			"kind: Service",
			"metadata:",
			"  name: s",
			"  annotations: &a {x: 1}",
			"spec:",
			"  selector: *a",
		),
		diags: []string{
			`in.yaml:5:23: metadata.annotations.x: expected string, got integer 1; quote it`,
			`in.yaml:5:23: spec.selector.x: expected string, got integer 1; quote it`,
		},
	}, {
		name: "alias cycle",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata:",
			"  name: a",
			"  finalizers: &f [x, *f]",
		),
		diags: []string{`in.yaml:5:22: metadata.finalizers[1]: alias *f refers to a collection that contains it; aliases must not form a cycle`},
	}, {
		name: "merge of a non-mapping",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata:",
			"  <<: [a, b]",
			"  name: a",
		),
		diags: []string{
			`in.yaml:4:8: metadata: the merge key << takes a mapping or a list of mappings, got a list holding string "a"`,
			`in.yaml:4:11: metadata: the merge key << takes a mapping or a list of mappings, got a list holding string "b"`,
		},
	}, {
		name: "alias bomb",
		src: lines(
			"apiVersion: v1",
			"kind: Namespace",
			"metadata:",
			"  name: a",
			"  finalizers: &a0 [x, x, x, x, x, x, x, x, x, x]",
			"  annotations:",
			"    a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]",
			"    a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]",
			"    a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]",
			"    a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]",
			"    a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]",
			"    a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]",
		),
		diags: []string{
			`in.yaml:7:9: metadata.annotations.a1: expected string, got a list`,
			`in.yaml:8:9: metadata.annotations.a2: expected string, got a list`,
			`in.yaml:9:9: metadata.annotations.a3: expected string, got a list`,
			`in.yaml:10:9: metadata.annotations.a4: expected string, got a list`,
			`in.yaml:11:9: metadata.annotations.a5: expected string, got a list`,
			`in.yaml:12:9: metadata.annotations.a6: expected string, got a list`,
		},
	}})
}

func TestDecodeCilium(t *testing.T) {
	src := lines(
		"apiVersion: cilium.io/v2",
		"kind: CiliumNetworkPolicy",
		"metadata: {name: p, namespace: prod}",
		"specs:",
		"- description: first",
		"  endpointSelector:",
		"    matchLabels: {\"k8s:app\": web}",
		"    matchExpressions: [{key: \"any:tier\", operator: in, values: [a]}]",
		"  enableDefaultDeny: {egress: false}",
		"  labels: [{key: k, value: v, source: s}]",
		"  ingress:",
		"  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}, {cidrGroupRef: g}, {cidrGroupSelector: {any: thing}}]",
		"    toPorts:",
		"    - ports: [{port: 80, protocol: TCP}, {port: \"8080\", endPort: 8090}, {port: http}]",
		"      serverNames: [one.example]",
		"      listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: x}, name: l}",
		"      terminatingTLS: {secret: {name: s}}",
		"    icmps: [{fields: [{type: 8, family: IPv4}, {type: EchoRequest}]}]",
		"    auth: {type: \"null\"}",
		"  ingressDeny:",
		"  - fromEntities: [world]",
		"    toPorts: [{ports: [{port: \"22\"}]}]",
		"  egress:",
		"  - toFQDNs: [{matchName: example.com}, {matchPattern: \"*.example.com\"}]",
		"    toServices: [{k8sService: {serviceName: s, namespace: n}}, {k8sServiceSelector: {selector: {matchLabels: {a: b}}}}]",
		"    toGroups: [{aws: {securityGroupsIds: [sg-1]}}]",
		"    authentication: {mode: required}",
		"  egressDeny:",
		"  - toNodes: [{}]",
		"  log: {value: x}",
		"- nodeSelector: {}",
		"  ingress: [{fromNodes: [{matchLabels: {role: worker}}], fromRequires: [{}], fromGroups: [{}]}]",
	)
	objs, _, diags := Decode("cnp.yaml", []byte(src))
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	cnp := objs[0].Obj.(*CiliumNetworkPolicy)
	if cnp.Spec != nil || len(cnp.Specs) != 2 {
		t.Fatalf("spec %v, %d specs", cnp.Spec, len(cnp.Specs))
	}
	r := cnp.Specs[0]
	in := r.Ingress[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"endpointSelector key", r.EndpointSelector.MatchLabels["k8s:app"], "web"},
		{"operator kept verbatim", string(r.EndpointSelector.MatchExpressions[0].Operator), "in"},
		{"nodeSelector absent", r.NodeSelector == nil, true},
		{"default deny egress", *r.EnableDefaultDeny.Egress, false},
		{"default deny ingress unset", r.EnableDefaultDeny.Ingress == nil, true},
		{"label", r.Labels[0], Label{Key: "k", Value: "v", Source: "s"}},
		{"unquoted port", in.ToPorts[0].Ports[0].Port, "80"},
		{"quoted port", in.ToPorts[0].Ports[1].Port, "8080"},
		{"endPort", in.ToPorts[0].Ports[1].EndPort, int32(8090)},
		{"named port", in.ToPorts[0].Ports[2].Port, "http"},
		{"except", in.FromCIDRSet[0].ExceptCIDRs, []string{"10.1.0.0/16"}},
		{"cidrGroupSelector", string(in.FromCIDRSet[2].CIDRGroupSelector.JSON), `{"any":"thing"}`},
		{"serverNames", string(in.ToPorts[0].ServerNames.JSON), `["one.example"]`},
		{"listener", in.ToPorts[0].Listener != nil, true},
		{"rules absent", in.ToPorts[0].Rules == nil, true},
		{"icmp int", in.ICMPs[0].Fields[0].Type.IntValue(), 8},
		{"icmp name", in.ICMPs[0].Fields[1].Type.String(), "EchoRequest"},
		{"auth", string(in.Auth.JSON), `{"type":"null"}`},
		{"deny entity", r.IngressDeny[0].FromEntities, []string{"world"}},
		{"deny port", r.IngressDeny[0].ToPorts[0].Ports[0].Port, "22"},
		{"fqdn", r.Egress[0].ToFQDNs[1].MatchPattern, "*.example.com"},
		{"service", r.Egress[0].ToServices[0].K8sService.ServiceName, "s"},
		{"service selector", r.Egress[0].ToServices[1].K8sServiceSelector.Selector.MatchLabels["a"], "b"},
		{"toGroups", len(r.Egress[0].ToGroups), 1},
		{"authentication", string(r.Egress[0].Authentication.JSON), `{"mode":"required"}`},
		{"toNodes", len(r.EgressDeny[0].ToNodes), 1},
		{"log", r.Log != nil, true},
		{"host rule", cnp.Specs[1].NodeSelector != nil && cnp.Specs[1].EndpointSelector == nil, true},
		{"fromNodes", cnp.Specs[1].Ingress[0].FromNodes[0].MatchLabels["role"], "worker"},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.what, diff)
		}
	}
}

// TestDecodeEmptyVersusAbsent checks the distinctions the compiler relies
// on: an empty list or map is not the same as an absent one.
func TestDecodeEmptyVersusAbsent(t *testing.T) {
	src := lines(
		"apiVersion: networking.k8s.io/v1",
		"kind: NetworkPolicy",
		"metadata: {name: a}",
		"spec:",
		"  podSelector: {matchLabels: {}}",
		"  ingress: []",
		"---",
		"apiVersion: networking.k8s.io/v1",
		"kind: NetworkPolicy",
		"metadata: {name: b}",
		"spec:",
		"  podSelector: {matchLabels: null}",
		"  egress: [{}]",
	)
	objs, _, diags := Decode("np.yaml", []byte(src))
	if len(diags) > 0 || len(objs) != 2 {
		t.Fatalf("%d objects, diagnostics %v", len(objs), diags)
	}
	a := objs[0].Obj.(*networkingv1.NetworkPolicy)
	b := objs[1].Obj.(*networkingv1.NetworkPolicy)
	if a.Spec.Ingress == nil || len(a.Spec.Ingress) != 0 {
		t.Errorf("ingress: [] decoded as %#v, want empty non-nil", a.Spec.Ingress)
	}
	if a.Spec.Egress != nil {
		t.Errorf("absent egress decoded as %#v, want nil", a.Spec.Egress)
	}
	if a.Spec.PodSelector.MatchLabels == nil {
		t.Errorf("matchLabels: {} decoded as nil")
	}
	if b.Spec.PodSelector.MatchLabels != nil {
		t.Errorf("matchLabels: null decoded as %#v, want nil", b.Spec.PodSelector.MatchLabels)
	}
	if len(b.Spec.Egress) != 1 {
		t.Errorf("egress: [{}] decoded as %#v", b.Spec.Egress)
	}
	if a.Namespace != "default" {
		t.Errorf("typed namespace %q, want default", a.Namespace)
	}
}
