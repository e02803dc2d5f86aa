// Package watch tests the agent's cluster cache (kube/watch) against a
// real kube-apiserver: the sync gate, events, a partition, a relist after
// compaction, and the memory a pod takes.
package watch

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/sluicenet/sluice/kube"
	"github.com/sluicenet/sluice/kube/watch"
	"github.com/sluicenet/sluice/test/kube/kubetest"
)

var srv *kubetest.Server

func TestMain(m *testing.M) {
	// Watches served from etcd rather than the watch cache, so that a
	// compaction makes a resumed watch fail with 410 Gone.
	kubetest.Main(m, kubetest.Options{Users: []string{"agent"}, Flags: []string{"--watch-cache=false"}}, &srv)
}

// recorder keeps the events a cache delivered.
type recorder struct {
	mu     sync.Mutex
	events []watch.Event
}

func (r *recorder) handle(ev watch.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) all() []watch.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor waits until some delivered event satisfies ok.
func (r *recorder) waitFor(t *testing.T, what string, ok func(watch.Event) bool) watch.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range r.all() {
			if ok(ev) {
				return ev
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no event %s within 20s; got %d events", what, len(r.all()))
	return watch.Event{}
}

func startCache(t *testing.T, cfg *rest.Config) (*watch.Cache, *recorder) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	c, err := watch.New(cs, watch.Options{Handler: rec.handle})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.Start(ctx)
	t.Cleanup(func() {
		cancel()
		c.Shutdown()
	})
	return c, rec
}

func runPod(t *testing.T, ns, name, ip string, labels map[string]string) {
	t.Helper()
	node := "node-" + ns
	if _, err := kubetest.RunPod(context.Background(), srv.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: corev1.PodSpec{NodeName: node}}, ip); err != nil {
		t.Fatal(err)
	}
}

func grant(t *testing.T, name, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	cs := srv.Client
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		cs.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

var watchVerbs = []string{"list", "watch"}

// TestSyncGate: an agent that may watch everything but EndpointSlices is
// not ready, says why, and delivers nothing — though pods change
// meanwhile; once allowed, it syncs, delivers the whole state as one
// Synced event, then each change.
func TestSyncGate(t *testing.T) {
	ns := srv.Namespace(t, nil)
	grant(t, "agent-core", "agent", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces", "nodes", "pods", "services"}, Verbs: watchVerbs}})
	c, rec := startCache(t, srv.As("agent"))
	runPod(t, ns, "before", "10.50.0.1", map[string]string{"app": "a"})

	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		err = c.Ready()
		if err != nil && strings.Contains(err.Error(), "forbidden") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err == nil || !strings.Contains(err.Error(), "not synced with the API server: endpointslices (last error") || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("Ready while EndpointSlices are forbidden: %v", err)
	}
	for _, kind := range []string{"namespaces", "pods"} {
		if strings.Contains(err.Error(), kind) {
			t.Errorf("Ready names %s, which synced: %v", kind, err)
		}
	}
	if _, err := c.Snapshot(); err == nil {
		t.Error("a snapshot before the sync")
	}
	if _, errs := c.Counts(); errs[watch.EndpointSlices] == 0 {
		t.Errorf("no watch errors counted for endpointslices: %v", errs)
	}
	runPod(t, ns, "during", "10.50.0.2", nil)
	time.Sleep(300 * time.Millisecond) // what would be delivered, is
	if evs := rec.all(); len(evs) > 0 {
		t.Fatalf("%d events delivered before the sync, first %v %s", len(evs), evs[0].Op, evs[0].Key)
	}

	grant(t, "agent-slices", "agent", []rbacv1.PolicyRule{{APIGroups: []string{discoveryv1.GroupName}, Resources: []string{"endpointslices"}, Verbs: watchVerbs}})
	synced := rec.waitFor(t, "synced", func(ev watch.Event) bool { return ev.Op == watch.Synced })
	if first := rec.all()[0]; first.Op != watch.Synced {
		t.Errorf("first event %v %s, want synced", first.Op, first.Key)
	}
	var names []string
	for _, p := range synced.Snapshot.Pods {
		if p.Namespace == ns {
			names = append(names, p.Name)
			if p.ManagedFields != nil || p.Spec.Containers[0].Image != "" {
				t.Errorf("pod %s not stripped: %+v", p.Name, p)
			}
		}
	}
	if !slices.Equal(names, []string{"before", "during"}) {
		t.Errorf("snapshot pods %v, want before and during", names)
	}
	if err := c.Ready(); err != nil {
		t.Errorf("Ready after the sync: %v", err)
	}

	// Changes after the sync, in order.
	pods := srv.Client.CoreV1().Pods(ns)
	p, err := pods.Get(context.Background(), "before", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["app"] = "b"
	if _, err := pods.Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := rec.waitFor(t, "relabel", func(ev watch.Event) bool {
		return ev.Op == watch.Updated && ev.Key == ns+"/before" && ev.Obj.GetLabels()["app"] == "b"
	})
	if ev.Old.GetLabels()["app"] != "a" || ev.Kind != watch.Pods {
		t.Errorf("update event %+v", ev)
	}
	zero := int64(0)
	if err := pods.Delete(context.Background(), "during", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	ev = rec.waitFor(t, "delete", func(ev watch.Event) bool { return ev.Op == watch.Deleted && ev.Key == ns+"/during" })
	if ev.Tombstone || ev.Obj == nil {
		t.Errorf("a watched delete as %+v", ev)
	}
}

// TestPartitionAndRelist: the agent's connection to the API server is cut;
// meanwhile a pod is deleted and one created, and etcd is compacted. The
// cache keeps serving its state (ready, the deleted pod still there — no
// flush because a watch broke); restored, it cannot resume its watch
// (410 Gone), relists, and gets the delete as a tombstone and the new pod
// as an add.
func TestPartitionAndRelist(t *testing.T) {
	ns := srv.Namespace(t, nil)
	proxy, err := srv.NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	runPod(t, ns, "stays", "10.51.0.1", nil)
	runPod(t, ns, "goes", "10.51.0.2", nil)
	c, rec := startCache(t, proxy.Config(srv.Admin))
	synced := rec.waitFor(t, "synced", func(ev watch.Event) bool { return ev.Op == watch.Synced })
	if !slices.ContainsFunc(synced.Snapshot.Pods, func(p corev1.Pod) bool { return p.Namespace == ns && p.Name == "goes" && p.Status.PodIP != "" }) {
		t.Fatal("the pod is not in the synced state")
	}

	proxy.Cut()
	ctx := context.Background()
	zero := int64(0)
	if err := srv.Client.CoreV1().Pods(ns).Delete(ctx, "goes", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	runPod(t, ns, "new", "10.51.0.3", nil)
	if err := srv.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// The watches break; client-go retries the relist quietly (a GET is
	// retried on a lost connection) and backs off.
	time.Sleep(2 * time.Second)
	if err := c.Ready(); err != nil {
		t.Errorf("not ready during a partition: %v", err)
	}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(snap.Pods, func(p corev1.Pod) bool { return p.Namespace == ns && p.Name == "goes" }) {
		t.Error("the cache dropped a pod because its watch broke")
	}
	if slices.ContainsFunc(rec.all(), func(ev watch.Event) bool { return ev.Op == watch.Deleted && ev.Key == ns+"/goes" }) {
		t.Fatal("a delete delivered through a cut connection")
	}

	proxy.Restore()
	ev := rec.waitFor(t, "the tombstone", func(ev watch.Event) bool { return ev.Op == watch.Deleted && ev.Key == ns+"/goes" })
	if !ev.Tombstone || ev.Obj == nil || ev.Obj.(*kube.Pod).PodIP != "10.51.0.2" {
		t.Errorf("delete after the relist: %+v; want a tombstone with the last state", ev)
	}
	rec.waitFor(t, "the new pod", func(ev watch.Event) bool { return ev.Op == watch.Added && ev.Key == ns+"/new" })
	if objs, _ := c.Counts(); objs[watch.Pods] < 2 {
		t.Errorf("objects held %v", objs)
	}
	// "stays" never left: no delete, and no second add.
	for _, ev := range rec.all() {
		if ev.Key == ns+"/stays" && (ev.Op == watch.Deleted || ev.Op == watch.Added) {
			t.Errorf("stays: %v after the sync", ev.Op)
		}
	}
}

// TestBytesPerPod measures the heap the informer's store takes per pod,
// with the transform and without, for pods like a Deployment's: two
// containers with env, resources, probes and mounts, volumes, and the
// managedFields the API server adds.
func TestBytesPerPod(t *testing.T) {
	const n = 400
	ns := srv.Namespace(t, nil)
	ctx := context.Background()
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intOrString(8080)}}, PeriodSeconds: 10}
	container := func(name string) corev1.Container {
		return corev1.Container{
			Name: name, Image: "registry.example.com/team/" + name + ":v1.2.3",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Env:   []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			ReadinessProbe: probe, LivenessProbe: probe,
			VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
		}
	}
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-7d9f8b6c5-%05d", i),
				Labels:      map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5", "version": "v1"},
				Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}},
			Spec: corev1.PodSpec{NodeName: "node-1", ServiceAccountName: "web",
				Containers: []corev1.Container{container("web"), container("sidecar")},
				Volumes:    []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}}},
		}
		if _, err := kubetest.RunPod(ctx, srv.Client, pod, fmt.Sprintf("10.52.%d.%d", i/250, i%250+1)); err != nil {
			t.Fatal(err)
		}
	}
	// Two collections empty the sync.Pools too, which keep the buffers of
	// the list response (the API server is in this process).
	gc := func() { runtime.GC(); runtime.GC() }
	perPod := func(transform cache.TransformFunc) float64 {
		gc()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		opts := []informers.SharedInformerOption{informers.WithNamespace(ns)}
		if transform != nil {
			opts = append(opts, informers.WithTransform(transform))
		}
		f := informers.NewSharedInformerFactoryWithOptions(srv.Client, 0, opts...)
		inf := f.Core().V1().Pods().Informer()
		stop := make(chan struct{})
		f.Start(stop)
		if !cache.WaitForCacheSync(stop, inf.HasSynced) {
			t.Fatal("no sync")
		}
		if got := len(inf.GetStore().ListKeys()); got != n {
			t.Fatalf("%d pods in the store, want %d", got, n)
		}
		gc()
		runtime.ReadMemStats(&after)
		bytes := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		runtime.KeepAlive(inf)
		close(stop)
		f.Shutdown()
		return bytes
	}
	raw := perPod(nil)
	stripped := perPod(watch.Strip)
	t.Logf("heap per pod in the informer's store: %.0f bytes stripped, %.0f as listed (%d pods)", stripped, raw, n)
	if stripped > 2048 {
		t.Errorf("%.0f bytes per stripped pod; the target is at most 2 KiB", stripped)
	}
	if stripped > raw/3 {
		t.Errorf("stripping keeps %.0f of %.0f bytes per pod", stripped, raw)
	}
}

func intOrString(port int32) intstr.IntOrString { return intstr.FromInt32(port) }
