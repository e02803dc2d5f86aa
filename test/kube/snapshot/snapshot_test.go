// Package snapshot tests sluice's snapshot of a live cluster (package
// kube, sluice compile/trace --kubeconfig) against a real kube-apiserver.
package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/kube"
	"github.com/sluicenet/sluice/test/kube/kubetest"
)

var srv *kubetest.Server

func TestMain(m *testing.M) {
	kubetest.Main(m, kubetest.Options{Users: []string{"reader"}}, &srv)
}

// cluster is what one test put into the API server.
type cluster struct {
	shop, client string // namespaces
	node1, node2 string
}

// populate plays kubelet and the controllers: nodes, running pods (one
// being deleted, one Succeeded), Services whose ClusterIP and nodePort the
// API server allocates, a Service of another proxy, and EndpointSlices.
func populate(t *testing.T, net string) cluster {
	t.Helper()
	ctx := context.Background()
	cs := srv.Client
	c := cluster{
		shop:   srv.Namespace(t, map[string]string{"tier": "shop", "env": "prod"}),
		client: srv.Namespace(t, map[string]string{"tier": "client"}),
	}
	c.node1, c.node2 = c.shop+"-n1", c.shop+"-n2"
	for i, n := range []string{c.node1, c.node2} {
		if _, err := kubetest.AddNode(ctx, cs, n, fmt.Sprintf("192.168.%s.%d", net, i+1), fmt.Sprintf("10.%s.%d.0/24", net, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	webPorts := []corev1.Container{{Name: "web", Image: "none", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}
	pods := []struct {
		ns, name, node, ip string
		labels             map[string]string
		containers         []corev1.Container
	}{
		{c.shop, "web-1", c.node1, fmt.Sprintf("10.%s.0.10", net), map[string]string{"app": "web"}, webPorts},
		{c.shop, "web-2", c.node2, fmt.Sprintf("10.%s.1.10", net), map[string]string{"app": "web"}, webPorts},
		{c.shop, "web-old", c.node2, fmt.Sprintf("10.%s.1.11", net), map[string]string{"app": "web"}, webPorts},
		{c.shop, "db", c.node1, fmt.Sprintf("10.%s.0.20", net), map[string]string{"app": "db"}, nil},
		{c.shop, "job-done", c.node1, fmt.Sprintf("10.%s.0.30", net), map[string]string{"app": "web"}, webPorts},
		{c.client, "curl", c.node1, fmt.Sprintf("10.%s.0.40", net), map[string]string{"app": "curl"}, nil},
		{c.client, "pending", "", "", map[string]string{"app": "curl"}, nil},
	}
	for _, p := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
			Spec: corev1.PodSpec{NodeName: p.node, Containers: p.containers}}
		var ips []string
		if p.ip != "" {
			ips = []string{p.ip}
		}
		if _, err := kubetest.RunPod(ctx, cs, pod, ips...); err != nil {
			t.Fatal(err)
		}
	}
	// job-done finished: its IP is released (the compiler skips it).
	done, err := cs.CoreV1().Pods(c.shop).Get(ctx, "job-done", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done.Status.Phase = corev1.PodSucceeded
	if _, err := cs.CoreV1().Pods(c.shop).UpdateStatus(ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// web-old is being deleted: with no kubelet to confirm, it stays, with
	// a deletionTimestamp.
	grace := int64(30)
	if err := cs.CoreV1().Pods(c.shop).Delete(ctx, "web-old", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	services := []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: c.shop, Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: c.shop, Name: "web-np"}, Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 8080}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: c.shop, Name: "db", Labels: map[string]string{kube.ServiceProxyNameLabel: "elsewhere"}}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "db"},
			Ports:    []corev1.ServicePort{{Port: 5432}},
		}},
	}
	all, err := cs.CoreV1().Pods(c.shop).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services {
		created, err := cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kubetest.SyncEndpointSlices(ctx, cs, created, all.Items); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Free the IPs and node names for the tests after; the namespaces
		// stay Terminating without their controller.
		zero := int64(0)
		for _, ns := range []string{c.shop, c.client} {
			cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
			cs.DiscoveryV1().EndpointSlices(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			svcs, _ := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			for _, s := range svcs.Items {
				cs.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
			}
		}
		for _, n := range []string{c.node1, c.node2} {
			cs.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
		}
	})
	return c
}

// intentFiles writes the repository: namespaces (shop labelled as in the
// cluster but for one label), the web Service without a clusterIP, a
// Service not yet applied, a Deployment template, and policies.
func intentFiles(t *testing.T, c cluster) string {
	dir := t.TempDir()
	intent := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels: {tier: shop, env: staging}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: planned, namespace: %[1]s}
spec:
  selector: {app: web}
  ports:
  - {port: 9090}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: %[2]s}
spec:
  selector: {matchLabels: {app: batch}}
  template:
    metadata: {labels: {app: batch}}
    spec:
      containers: [{name: b, image: none}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: %[1]s}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {tier: client}}
    ports: [{port: http}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-from-prod, namespace: %[1]s}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: web, k8s:io.kubernetes.pod.namespace: %[1]s}
`, c.shop, c.client)
	if err := os.WriteFile(filepath.Join(dir, "intent.yaml"), []byte(intent), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asFiles writes what the API server holds, as kubectl get -o yaml would
// (whole objects, managedFields and all), leaving out what the combination
// rules leave out: the Service of another proxy. The intent's Namespace
// and web Service are then replaced by the cluster's by hand, the rule
// Combine implements, so that this answer does not come from Combine.
func asFiles(t *testing.T, intentDir string, c cluster) (string, string) {
	ctx := context.Background()
	cs := srv.Client
	var docs []string
	add := func(kind, apiVersion string, obj any) {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, fmt.Sprintf("apiVersion: %s\nkind: %s\n%s", apiVersion, kind, b))
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range nss.Items {
		add("Namespace", "v1", o)
	}
	nodes, _ := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, o := range nodes.Items {
		add("Node", "v1", o)
	}
	pods, _ := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, o := range pods.Items {
		add("Pod", "v1", o)
	}
	svcs, _ := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	for _, o := range svcs.Items {
		add("Service", "v1", o)
	}
	slices, _ := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	for _, o := range slices.Items {
		add("EndpointSlice", "discovery.k8s.io/v1", o)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	// The intent without the objects the cluster has.
	data, err := os.ReadFile(filepath.Join(intentDir, "intent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, doc := range strings.Split(string(data), "---\n") {
		if strings.Contains(doc, "kind: Namespace\n") || strings.Contains(doc, "metadata: {name: web, ") {
			doc = "# in the cluster\n" + strings.Repeat("#\n", strings.Count(doc, "\n")-1) // keep the lines of the rest
		}
		kept = append(kept, doc)
	}
	intent := filepath.Join(t.TempDir(), "intent")
	os.Mkdir(intent, 0o755)
	if err := os.WriteFile(filepath.Join(intent, "intent.yaml"), []byte(strings.Join(kept, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return intent, dir
}

// comparable is a cluster as JSON with the positions of cluster objects
// (kube: sources, or the cluster.yaml file) blanked, and the intent file
// named the same, since the two compiles read them from different places.
func comparable(t *testing.T, cl *ir.Cluster, clusterFile, intentFile string) any {
	t.Helper()
	cl.Warnings = nil
	b, err := json.Marshal(cl)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	json.Unmarshal(b, &v)
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if f, ok := x["file"].(string); ok {
				switch {
				case strings.HasPrefix(f, kube.SourcePrefix) || f == clusterFile:
					x["file"], x["line"], x["col"] = "cluster", 0.0, 0.0
				case f == intentFile:
					x["file"] = "intent"
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return v
}

// TestOneAnswer: compiling the intent with a snapshot of the live cluster
// gives the same cluster — identities, endpoints, services and backends,
// policies — and the same verdicts as compiling the same objects written
// as files; the ClusterIP and nodePort come from the API server.
func TestOneAnswer(t *testing.T) {
	c := populate(t, "21")
	intentDir := intentFiles(t, c)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := kubetest.WriteKubeconfig(srv.Admin, kc); err != nil {
		t.Fatal(err)
	}
	set, warnings, diags, err := kube.Load(context.Background(), kc, []string{intentDir}, nil)
	if err != nil || len(diags) > 0 {
		t.Fatalf("snapshot: %v %v", err, diags)
	}
	live, diags := compiler.Compile(set, compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	var ws []string
	for _, w := range warnings {
		ws = append(ws, w.Message)
	}
	for _, want := range []string{`the cluster's Namespace has env="prod", the repository "staging"`, "Service " + c.shop + "/planned is not in the cluster"} {
		if !slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("no warning %q in %q", want, ws)
		}
	}

	intentOnly, clusterDir := asFiles(t, intentDir, c)
	filesCl := filesCluster(t, intentOnly, clusterDir)
	a := comparable(t, live, "", filepath.Join(intentDir, "intent.yaml"))
	b := comparable(t, filesCl, filepath.Join(clusterDir, "cluster.yaml"), filepath.Join(intentOnly, "intent.yaml"))
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.MarshalIndent(a, "", " ")
		jb, _ := json.MarshalIndent(b, "", " ")
		t.Fatalf("the snapshot compile differs from the files compile:\n%s", firstDiff(string(ja), string(jb)))
	}
	if changes := ir.Diff(filesCl, live); len(changes) > 0 {
		t.Errorf("sluice diff finds %d changes, first %+v", len(changes), changes[0])
	}
	ports := []ir.PortProto{{Port: 8080, Proto: ir.ProtoTCP}, {Port: 5432, Proto: ir.ProtoTCP}}
	if ma, mb := ir.NewEvaluator(live).Matrix(ports), ir.NewEvaluator(filesCl).Matrix(ports); !reflect.DeepEqual(ma, mb) {
		t.Errorf("verdict matrices differ")
	}

	// What the cluster decided, and the repository could not say.
	ctx := context.Background()
	web, err := srv.Client.CoreV1().Services(c.shop).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np, err := srv.Client.CoreV1().Services(c.shop).Get(ctx, "web-np", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := func(name string) *ir.Service {
		for i := range live.Services {
			if live.Services[i].Key() == c.shop+"/"+name {
				return &live.Services[i]
			}
		}
		return nil
	}
	w := svc("web")
	if w == nil || len(w.ClusterIPs) != 1 || w.ClusterIPs[0] != netip.MustParseAddr(web.Spec.ClusterIP) {
		t.Fatalf("web compiled as %+v; want the allocated ClusterIP %s", w, web.Spec.ClusterIP)
	}
	if n := svc("web-np"); n == nil || n.Ports[0].NodePort == 0 || int32(n.Ports[0].NodePort) != np.Spec.Ports[0].NodePort {
		t.Errorf("web-np compiled as %+v; want the allocated nodePort %d", n, np.Spec.Ports[0].NodePort)
	}
	if svc("db") != nil {
		t.Error("the Service of another proxy was compiled")
	}
	if p := svc("planned"); p == nil || len(p.ClusterIPs) != 0 {
		t.Errorf("planned (only in the repository) compiled as %+v; want it without a ClusterIP", p)
	}
	// Backends: web-1 and web-2 ready, web-old terminating, job-done gone;
	// the named port resolved to 8080.
	var backends []string
	for _, b := range w.Backends {
		backends = append(backends, fmt.Sprintf("%s:%d ready=%v terminating=%v", b.Pod, b.Port, b.Ready, b.Terminating))
	}
	want := []string{
		c.shop + "/web-1:8080 ready=true terminating=false",
		c.shop + "/web-2:8080 ready=true terminating=false",
		c.shop + "/web-old:8080 ready=false terminating=true",
	}
	slices.Sort(backends)
	if !slices.Equal(backends, want) {
		t.Errorf("web backends %q, want %q", backends, want)
	}
	for _, e := range live.Endpoints {
		if e.Key() == c.shop+"/job-done" {
			t.Error("the Succeeded pod is an endpoint")
		}
	}
	// Policy from the repository, labels from the cluster: curl (tier=client) reaches web on http;
	// db only from web.
	ev := ir.NewEvaluator(live)
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for _, q := range []struct {
		from, to string
		port     uint16
		want     ir.Action
	}{
		{"10.21.0.40", "10.21.0.10", 8080, ir.Allow},
		{"10.21.0.20", "10.21.0.10", 8080, ir.Deny},
		{"10.21.0.10", "10.21.0.20", 5432, ir.Allow},
		{"10.21.0.40", "10.21.0.20", 5432, ir.Deny},
	} {
		if d := ev.Evaluate(ir.Query{Src: ip(q.from), Dst: ip(q.to), Proto: ir.ProtoTCP, Port: q.port}); d.Verdict != q.want {
			t.Errorf("%s -> %s:%d: %s, want %s", q.from, q.to, q.port, d.Verdict, q.want)
		}
	}
}

func filesCluster(t *testing.T, paths ...string) *ir.Cluster {
	t.Helper()
	_, cl, diags := compiler.Load(paths, nil, compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	return cl
}

// firstDiff shows where two texts first differ, with some context.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			lo := max(0, i-8)
			return fmt.Sprintf("snapshot:\n%s\nfiles:\n%s", strings.Join(la[lo:min(len(la), i+4)], "\n"), strings.Join(lb[lo:min(len(lb), i+4)], "\n"))
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(la), len(lb))
}

// TestListForbidden: under RBAC, a user allowed to list some kinds but
// not pods gets an error naming the list that failed and the permissions
// needed; granted those permissions, the same user lists the cluster.
func TestListForbidden(t *testing.T) {
	ctx := context.Background()
	cs := srv.Client
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces", "nodes"}, Verbs: []string{"list"}}}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "sluice-test-partial"}, Rules: rules}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sluice-test-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "reader"}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{})
		cs.RbacV1().ClusterRoles().Delete(ctx, role.Name, metav1.DeleteOptions{})
	})
	cfg := srv.As("reader")
	// RBAC sees new roles and bindings through its informers: wait until
	// the partial role applies (namespaces listed, pods not).
	err := listUntil(cfg, func(err error) bool { return err != nil && !strings.Contains(err.Error(), "list namespaces") })
	for _, want := range []string{"list pods in all namespaces from the API server at " + cfg.Host, "forbidden", `User "reader" cannot list resource "pods"`, "sluice needs list on"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("list as a reader without pods: %v; want it to say %q", err, want)
		}
	}
	// The permissions the message names are enough.
	role.Rules = append(rules,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: []string{"list"}},
		rbacv1.PolicyRule{APIGroups: []string{discoveryv1.GroupName}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}})
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := listUntil(cfg, func(err error) bool { return err == nil }); err != nil {
		t.Errorf("list with the permissions named: %v", err)
	}
}

// listUntil lists the cluster as cfg until done accepts the error (or
// 10 s have passed), and returns the last error.
func listUntil(cfg *rest.Config, done func(error) bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kube.List(context.Background(), cfg)
		if done(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBadCredentials: a token the server does not know.
func TestBadCredentials(t *testing.T) {
	cfg := srv.As("reader")
	cfg.BearerToken = "not-a-token"
	_, err := kube.List(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "the credentials were rejected (401 Unauthorized)") || !strings.Contains(err.Error(), cfg.Host) {
		t.Errorf("list with a bad token: %v", err)
	}
}

// TestCLI runs the sluice binary against the server: compile writes one
// artifact per node of the cluster, trace answers with the cluster's
// state and the repository's policy.
func TestCLI(t *testing.T) {
	c := populate(t, "22")
	intentDir := intentFiles(t, c)
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	start := time.Now()
	// Built in the product's own module, with its dependency versions.
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built sluice in %.1fs", time.Since(start).Seconds())
	kc := filepath.Join(dir, "kubeconfig")
	if err := kubetest.WriteKubeconfig(srv.Admin, kc); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, error) {
		var stdout, stderr strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	out := filepath.Join(dir, "out")
	_, stderr, err := run("compile", "--kubeconfig", kc, "-f", intentDir, "-o", out)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, stderr)
	}
	t.Logf("sluice compile --kubeconfig:\n%s", stderr)
	for _, want := range []string{"from the API server", "warning: " + filepath.Join(intentDir, "intent.yaml") + ":5:", "node " + c.node1 + ":"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("compile output lacks %q:\n%s", want, stderr)
		}
	}
	for _, n := range []string{c.node1, c.node2} {
		if _, err := os.Stat(filepath.Join(out, n)); err != nil {
			t.Errorf("no artifact for node %s: %v", n, err)
		}
	}
	for _, q := range []struct{ from, to, port, want string }{
		{c.client + "/curl", c.shop + "/web-1", "8080/TCP", "ALLOW"},
		{c.shop + "/db", c.shop + "/web-1", "8080/TCP", "DENY"},
	} {
		stdout, stderr, err := run("trace", "--kubeconfig", kc, "-f", intentDir, "--from", q.from, "--to", q.to, "--port", q.port)
		if err != nil || !strings.HasPrefix(stdout, q.want+" ") {
			t.Errorf("trace %s -> %s: %v, want %s\n%s%s", q.from, q.to, err, q.want, stdout, stderr)
		}
	}
	// Errors name what failed; nothing is written.
	_, stderr, err = run("compile", "--kubeconfig", kc+".missing", "-f", intentDir, "-o", filepath.Join(dir, "out2"))
	if err == nil || !strings.Contains(stderr, "kubeconfig "+kc+".missing: no such file or directory") {
		t.Errorf("compile with a missing kubeconfig: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out2")); !os.IsNotExist(err) {
		t.Errorf("output written after an error")
	}
}
