package compiler

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/compiler/compilertest"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// Input that Kubernetes or Cilium refuse is refused, at its position, and
// all of it at once.
func TestFailOpenRefusals(t *testing.T) {
	data, err := os.ReadFile("testdata/refused.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, diags := schema.Load([]string{"-"}, strings.NewReader(string(data)))
	if len(diags) > 0 {
		t.Fatalf("decode: %v", diags.Err())
	}
	_, diags = Compile(set, Options{})
	want := []string{
		`<stdin>:9:21: metadata.labels["zone/"]: invalid label key "zone/"`,
		`<stdin>:15:18: metadata.labels.team: invalid label value "bad value!"`,
		`<stdin>:23:22: metadata.labels["reserved:host"]: invalid label key "reserved:host"`,
		`<stdin>:28:20: spec.containers[0].ports[0].name: invalid port name "HTTP_port"`,
		`<stdin>:35:3: spec.nodeName: the pod has an IP (10.1.0.6) but no spec.nodeName`,
		`<stdin>:45:34: spec.template.metadata.labels["-bad"]: invalid label key "-bad"`,
		`<stdin>:52:21: spec.endpointSelector: a host policy (the node's own traffic, selected by nodeSelector or reserved:host) cannot be enforced`,
		`<stdin>:62:15: spec.ingress[0].fromCIDR: fromEndpoints and fromCIDR cannot be combined in one rule (Cilium rejects it)`,
		`<stdin>:65:14: spec.egress[0].toPorts: toServices and toPorts cannot be combined in one rule`,
		`<stdin>:71:3: spec: a rule needs at least one of ingress, ingressDeny, egress or egressDeny`,
	}
	if len(diags) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(diags), len(want), diags.Err())
	}
	for i, d := range diags {
		if !strings.HasPrefix(d.String(), want[i]) {
			t.Errorf("error %d:\n got: %s\nwant: %s", i, d, want[i])
		}
	}
}

func compileWith(t *testing.T, opts Options, docs ...string) *ir.Cluster {
	t.Helper()
	set, diags := schema.Load([]string{"-"}, strings.NewReader(strings.Join(docs, "\n---\n")))
	if len(diags) > 0 {
		t.Fatalf("load: %v", diags.Err())
	}
	cl, diags := Compile(set, opts)
	if len(diags) > 0 {
		t.Fatalf("compile: %v", diags.Err())
	}
	return cl
}

func warningsOf(cl *ir.Cluster) string {
	var b strings.Builder
	for _, w := range cl.Warnings {
		b.WriteString(w.String() + "\n")
	}
	return b.String()
}

// What the compiler accepts but changes, or cannot enforce, is a
// positioned warning.
func TestFailOpenWarnings(t *testing.T) {
	cl := compileWith(t, Options{}, compilertest.Fixture(), `apiVersion: v1
kind: Namespace
metadata: {name: w, labels: {kubernetes.io/metadata.name: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: forger, namespace: w, labels: {io.kubernetes.pod.namespace: x, app: a}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIPs: [{ip: 10.1.0.100}, {ip: "fd00::100"}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: y}}
  egress: [{toEntities: [kube-apiserver]}]
`)
	got := warningsOf(cl)
	for _, want := range []string{
		`<stdin>:127:59: metadata.labels["kubernetes.io/metadata.name"]: label kubernetes.io/metadata.name=prod is not the namespace's name`,
		`<stdin>:131:78: metadata.labels["io.kubernetes.pod.namespace"]: label io.kubernetes.pod.namespace is reserved`,
		`<stdin>:133:18: status.podIPs: 1 pod IPv6 address(es) (the first here): IPv6 is not enforced yet`,
		`<stdin>:139:69: spec.endpointSelector.matchLabels["k8s:io.kubernetes.pod.namespace"]: an endpointSelector of a CiliumNetworkPolicy always applies in the policy's own namespace "x"`,
		`<stdin>:140:26: spec.egress[0]: the kube-apiserver entity selects no address`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no warning %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != 5 {
		t.Errorf("want 5 warnings, got:\n%s", got)
	}
	// The namespace's name label is the name whatever the manifest says.
	for _, ns := range cl.Namespaces {
		if ns.Name == "w" && ns.Labels["kubernetes.io/metadata.name"] != "w" {
			t.Errorf("namespace w has kubernetes.io/metadata.name=%s", ns.Labels["kubernetes.io/metadata.name"])
		}
	}
}

// --apiserver-ip gives the kube-apiserver entity its addresses when the
// input has no default/kubernetes endpoints.
func TestAPIServerAddressesFromOptions(t *testing.T) {
	policy := compilertest.CNP("x", "to-api", "endpointSelector: {matchLabels: {pod: a}}\negress: [{toEntities: [kube-apiserver]}]")
	api := netip.MustParseAddr("192.168.50.9")
	for _, tc := range []struct {
		opts Options
		want ir.Action
	}{{Options{}, ir.Deny}, {Options{APIServerIPs: []netip.Addr{api}}, ir.Allow}} {
		cl := compileWith(t, tc.opts, compilertest.Fixture(), policy)
		ev := ir.NewEvaluator(cl)
		src := ev.Cluster().Endpoints[0] // x/a
		if src.Key() != "x/a" {
			t.Fatalf("first endpoint %s", src.Key())
		}
		d := ev.Evaluate(ir.Query{Src: src.IPs[0], Dst: api, Proto: ir.ProtoTCP, Port: 443})
		if d.Verdict != tc.want {
			t.Errorf("APIServerIPs %v: x/a -> %s: %s, want %s", tc.opts.APIServerIPs, api, d.Verdict, tc.want)
		}
		if d := ev.Evaluate(ir.Query{Src: src.IPs[0], Dst: netip.MustParseAddr("1.1.1.1"), Proto: ir.ProtoTCP, Port: 443}); d.Verdict != ir.Deny {
			t.Errorf("x/a -> 1.1.1.1 allowed")
		}
		checkCluster(t, cl, nil)
	}
}

// IPv6 to and from a pod that a policy isolates is denied, with its own
// reason; a pod no policy isolates keeps IPv6.
func TestIPv6FailsClosed(t *testing.T) {
	cl := compileWith(t, Options{}, compilertest.Fixture(), `apiVersion: v1
kind: Pod
metadata: {name: dual, namespace: x, labels: {app: dual}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIPs: [{ip: 10.1.0.100}, {ip: "fd00::100"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: open, namespace: y, labels: {app: open}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIPs: [{ip: 10.2.0.100}, {ip: "fd00::200"}]}
`, compilertest.NP("x", "dual-egress", "podSelector: {matchLabels: {app: dual}}\npolicyTypes: [Egress]\negress: [{}]"))
	ev := ir.NewEvaluator(cl)
	world6 := netip.MustParseAddr("2001:db8::1")
	dual, open := netip.MustParseAddr("fd00::100"), netip.MustParseAddr("fd00::200")
	for _, tc := range []struct {
		src, dst netip.Addr
		want     ir.Action
	}{
		{world6, dual, ir.Deny}, // ingress not isolated, but the pod is (egress)
		{dual, world6, ir.Deny},
		{open, dual, ir.Deny},
		{dual, open, ir.Deny},
		{world6, open, ir.Allow},
		{open, world6, ir.Allow},
	} {
		d := ev.Evaluate(ir.Query{Src: tc.src, Dst: tc.dst, Proto: ir.ProtoTCP, Port: 80})
		if d.Verdict != tc.want {
			t.Errorf("%s -> %s: %s, want %s", tc.src, tc.dst, d.Verdict, tc.want)
		}
		if tc.want == ir.Deny && d.Egress.Reason != ir.ReasonIPv6 && d.Ingress.Reason != ir.ReasonIPv6 {
			t.Errorf("%s -> %s: reasons %q, %q; want %q", tc.src, tc.dst, d.Egress.Reason, d.Ingress.Reason, ir.ReasonIPv6)
		}
	}
	// IPv4 of the same pod follows its policy.
	if d := ev.Evaluate(ir.Query{Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("10.1.0.100"), Proto: ir.ProtoTCP, Port: 80}); d.Verdict != ir.Allow {
		t.Errorf("IPv4 world -> x/dual: %s", d.Verdict)
	}
	checkCluster(t, cl, nil)
}

// A pod with only IPv6 addresses has no interface link in the datapath:
// all its IPv6 is dropped, policy or not.
func TestIPv6OnlyPodIsDropped(t *testing.T) {
	cl := compileWith(t, Options{}, compilertest.Fixture(), `apiVersion: v1
kind: Pod
metadata: {name: v6only, namespace: y, labels: {app: v6}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIPs: [{ip: "fd00::300"}]}
`)
	ev := ir.NewEvaluator(cl)
	d := ev.Evaluate(ir.Query{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("fd00::300"), Proto: ir.ProtoTCP, Port: 80})
	if d.Verdict != ir.Deny || d.Ingress.Reason != ir.ReasonIPv6Only {
		t.Errorf("world -> y/v6only: %s (%s), want deny (%s)", d.Verdict, d.Ingress.Reason, ir.ReasonIPv6Only)
	}
}

// A Service that another proxy serves gets no frontend.
func TestServiceOfAnotherProxyIsLeftAlone(t *testing.T) {
	cl := compileWith(t, Options{}, compilertest.Fixture(), `apiVersion: v1
kind: Service
metadata: {name: other, namespace: x, labels: {service.kubernetes.io/service-proxy-name: someone-else}}
spec: {selector: {pod: a}, clusterIP: 10.96.0.70, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: ours, namespace: x}
spec: {selector: {pod: a}, clusterIP: 10.96.0.71, ports: [{port: 80}]}
`)
	var names []string
	for _, s := range cl.Services {
		names = append(names, s.Key())
	}
	if strings.Join(names, ",") != "x/ours" {
		t.Errorf("services %v, want only x/ours", names)
	}
}
