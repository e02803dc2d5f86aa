package kube

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

const intent = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    team: a
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: planned
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: stale
  namespace: shop
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: only-team-a
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: a
`

func writeIntent(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "intent.yaml")
	if err := os.WriteFile(path, []byte(intent), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func meta(ns, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, UID: types.UID("uid-" + name), ResourceVersion: "42"}
}

func pod(ns, name, node, ip string, labels map[string]string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: meta(ns, name, labels),
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// snapshot is a cluster where the repository's shop namespace is labelled
// team=b, web got a ClusterIP and another selector, and a Service of
// another proxy exists.
func snapshot() *Snapshot {
	ready := true
	port, name := int32(80), ""
	return &Snapshot{
		Server: "https://cluster.test:6443",
		Namespaces: []corev1.Namespace{
			{ObjectMeta: meta("", "shop", map[string]string{"team": "b", corev1.LabelMetadataName: "shop"})},
			{ObjectMeta: meta("", "other", map[string]string{"team": "a", corev1.LabelMetadataName: "other"})},
		},
		Nodes: []corev1.Node{{
			ObjectMeta: meta("", "n1", nil),
			Spec:       corev1.NodeSpec{PodCIDR: "10.1.0.0/24"},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}}},
		}},
		// Listed out of order: the sources are sorted.
		Pods: []corev1.Pod{
			pod("shop", "web-2", "n1", "10.1.0.3", map[string]string{"app": "web"}),
			pod("shop", "web-1", "n1", "10.1.0.2", map[string]string{"app": "web"}),
			pod("other", "client", "n1", "10.1.0.4", map[string]string{"app": "client"}),
		},
		Services: []corev1.Service{
			{ObjectMeta: meta("shop", "web", nil), Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				Selector: map[string]string{"app": "web", "tier": "front"},
				Ports:    []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}},
			}},
			{ObjectMeta: meta("shop", "elsewhere", map[string]string{ServiceProxyNameLabel: "other-proxy"}), Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.11", Ports: []corev1.ServicePort{{Port: 80}},
			}},
		},
		EndpointSlices: []discoveryv1.EndpointSlice{{
			ObjectMeta:  meta("shop", "web-abc", map[string]string{discoveryv1.LabelServiceName: "web"}),
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.1.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			},
			Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		}},
	}
}

func TestCombine(t *testing.T) {
	path := writeIntent(t)
	in, diags := schema.Load([]string{path}, nil)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	set, warnings, diags := Combine(in, snapshot())
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	var got []string
	for _, o := range set.Objects {
		file := o.Pos.File
		if file == path {
			file = "intent"
		}
		got = append(got, o.Ref()+" @"+file)
	}
	want := []string{
		"Service shop/planned @intent",
		"NetworkPolicy shop/only-team-a @intent",
		"Namespace other @kube:namespace/other",
		"Namespace shop @kube:namespace/shop",
		"Node n1 @kube:node/n1",
		"Pod other/client @kube:pod/other/client",
		"Pod shop/web-1 @kube:pod/shop/web-1",
		"Pod shop/web-2 @kube:pod/shop/web-2",
		"Service shop/elsewhere @kube:service/shop/elsewhere", // kept: the compiler gives it no frontend
		"Service shop/web @kube:service/shop/web",
		"EndpointSlice shop/web-abc @kube:endpointslice/shop/web-abc",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if set.Files != 1 || set.Sources != 9 {
		t.Errorf("files %d, sources %d; want 1 and 9", set.Files, set.Sources)
	}
	var ws []string
	for _, w := range warnings {
		ws = append(ws, strings.TrimPrefix(w.String(), path))
	}
	wantW := []string{
		`:6:11: metadata.labels.team: the cluster's Namespace has team="b", the repository "a"; the cluster's labels are compiled, as policies select on them`,
		`:15:5: spec.selector: the cluster's selector is {app=web, tier=front}, the repository's {app=web}; the cluster's Service is compiled, as it is what kube-proxy and Sluice serve`,
		`:19:1: Service shop/planned is not in the cluster at https://cluster.test:6443: compiled from the repository, without the allocations (clusterIP, nodePorts) the API server would make`,
		`:30:1: 1 Pod object(s) of the repository left out: with a live cluster, Pods come from the API server (https://cluster.test:6443)`,
	}
	if !slices.Equal(ws, wantW) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(ws, "\n"), strings.Join(wantW, "\n"))
	}

	cl, diags := compiler.Compile(set, compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	var web *ir.Service
	for i := range cl.Services {
		if cl.Services[i].Key() == "shop/web" {
			web = &cl.Services[i]
		}
		if cl.Services[i].Key() == "shop/elsewhere" {
			t.Error("a Service of another proxy (service-proxy-name) was compiled")
		}
	}
	if web == nil || !slices.Equal(web.ClusterIPs, []netip.Addr{netip.MustParseAddr("10.96.0.10")}) || len(web.Backends) != 1 || web.BackendsFrom != "EndpointSlice" {
		t.Fatalf("shop/web compiled as %+v; want the cluster's ClusterIP and its EndpointSlice's one backend", web)
	}
	// Policy comes from the intent, labels from the cluster: shop is team=b
	// there, so only other/client (team=a) reaches web.
	ev := ir.NewEvaluator(cl)
	for _, c := range []struct {
		from string
		want ir.Action
	}{{"10.1.0.4", ir.Allow}, {"10.1.0.3", ir.Deny}} {
		d := ev.Evaluate(ir.Query{Src: netip.MustParseAddr(c.from), Dst: netip.MustParseAddr("10.1.0.2"), Proto: ir.ProtoTCP, Port: 80})
		if d.Verdict != c.want {
			t.Errorf("%s -> shop/web-1: %s, want %s", c.from, d.Verdict, c.want)
		}
	}
}

// TestCombineSnapshotPositions: a problem in a cluster object is reported
// in its kube: source, at the field, with the line for the excerpt; uid
// and resourceVersion are not in the source.
func TestCombineSnapshotPositions(t *testing.T) {
	in, _ := schema.Load([]string{writeIntent(t)}, nil)
	snap := snapshot()
	snap.Pods[1].Status.PodIP = "10.1.0.999"
	snap.Pods[1].Status.PodIPs = nil
	set, _, diags := Combine(in, snap)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	_, diags = compiler.Compile(set, compiler.Options{})
	if len(diags) != 1 {
		t.Fatalf("diagnostics %v; want one", diags)
	}
	d := diags[0]
	if d.Pos.File != "kube:pod/shop/web-1" || d.Field != "status.podIP" || d.Pos.Line == 0 {
		t.Fatalf("diagnostic %s; want it at kube:pod/shop/web-1, status.podIP, with a line", d)
	}
	src := string(set.Source(d.Pos.File))
	if line := strings.Split(src, "\n")[d.Pos.Line-1]; !strings.Contains(line, `"podIP": "10.1.0.999"`) {
		t.Errorf("line %d of the source is %q, not the podIP", d.Pos.Line, line)
	}
	if strings.Contains(src, "uid-web-1") || strings.Contains(src, `"resourceVersion"`) {
		t.Errorf("uid or resourceVersion in the source:\n%s", src)
	}
}

// TestCombineDeterministic: the same state listed in another order gives
// the same sources, and so the same input digest.
func TestCombineDeterministic(t *testing.T) {
	in, _ := schema.Load([]string{writeIntent(t)}, nil)
	a, b := snapshot(), snapshot()
	slices.Reverse(b.Pods)
	slices.Reverse(b.Namespaces)
	sa, _, _ := Combine(in, a)
	sb, _, _ := Combine(in, b)
	if da, db := compiler.Digest(sa), compiler.Digest(sb); da != db {
		t.Errorf("digests differ: %s, %s", da, db)
	}
	b.Pods[0].ResourceVersion = "43"
	if sc, _, _ := Combine(in, b); compiler.Digest(sc) != compiler.Digest(sa) {
		t.Error("a resourceVersion changed the digest")
	}
	b.Pods[0].Labels = map[string]string{"app": "other"}
	if sd, _, _ := Combine(in, b); compiler.Digest(sd) == compiler.Digest(sa) {
		t.Error("a label change left the digest as it was")
	}
}
