package kube

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv(InClusterEnv, "")
	for _, c := range []struct {
		name, path string
		want       []string
	}{
		{"missing", filepath.Join(dir, "nope"), []string{"kubeconfig " + filepath.Join(dir, "nope"), "no such file"}},
		{"not yaml", write("bad", "clusters: [\n"), []string{"kubeconfig " + filepath.Join(dir, "bad"), "cannot parse", "kind: Config"}},
		{"wrong shape", write("list", "clusters: 7\n"), []string{"cannot parse"}},
		{"empty", write("empty", ""), []string{"no clusters, users or contexts"}},
		{"no server", write("noserver", "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {}\ncurrent-context: x\n"),
			[]string{"kubeconfig " + filepath.Join(dir, "noserver"), "server"}},
		{"neither", "", []string{"no kubeconfig given", InClusterEnv}},
	} {
		_, err := Config(c.path)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	// In a pod without its service account token.
	t.Setenv(InClusterEnv, "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	if _, err := Config(""); err == nil || !strings.Contains(err.Error(), "in-cluster config") {
		t.Errorf("in-cluster without a token: %v", err)
	}
}

// TestListErrors: each way a list fails says which list, which server,
// and what to fix. (test/kube checks the same against a real API server.)
func TestListErrors(t *testing.T) {
	status := func(code int, reason metav1.StatusReason) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Code: int32(code), Reason: reason,
				Message: "nope"})
		}
	}
	// Namespaces list fine; pods are forbidden.
	forbidPods := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/pods") {
			status(403, metav1.StatusReasonForbidden)(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(corev1.NamespaceList{TypeMeta: metav1.TypeMeta{Kind: "NamespaceList", APIVersion: "v1"}})
	})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + closed.Addr().String()
	closed.Close()
	for _, c := range []struct {
		name    string
		handler http.Handler
		host    string
		want    []string
	}{
		{"unauthorized", status(401, metav1.StatusReasonUnauthorized), "", []string{"list namespaces", "credentials were rejected (401"}},
		{"forbidden", forbidPods, "", []string{"list pods in all namespaces", "forbidden", "(403)", "sluice needs list on"}},
		{"unreachable", nil, unreachable, []string{"list namespaces", unreachable, "unreachable", "connection refused"}},
	} {
		host := c.host
		if c.handler != nil {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			host = srv.URL
		}
		_, err := List(context.Background(), &rest.Config{Host: host})
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range append(c.want, host) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
}

func TestStripPod(t *testing.T) {
	in := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n", Labels: map[string]string{"a": "b"},
			Annotations:   map[string]string{"big": strings.Repeat("x", 1000)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa", Containers: []corev1.Container{{
			Name: "c", Image: "img", Env: []corev1.EnvVar{{Name: "X", Value: "y"}},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
		}}, Volumes: []corev1.Volume{{Name: "v"}}},
		Status: corev1.PodStatus{PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Message: "probe failed"},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		}},
	}
	out := StripPod(in)
	if out.ManagedFields != nil || out.Annotations != nil || out.Spec.Volumes != nil || out.Spec.Containers[0].Image != "" || out.Spec.Containers[0].Env != nil {
		t.Errorf("not stripped: %+v", out)
	}
	if out.Labels["a"] != "b" || out.Spec.NodeName != "n1" || out.Spec.ServiceAccountName != "sa" || out.Spec.Containers[0].Ports[0].Name != "http" ||
		out.Status.PodIP != "10.0.0.1" || len(out.Status.Conditions) != 1 || out.Status.Conditions[0].Status != corev1.ConditionFalse || out.Status.Conditions[0].Message != "" {
		t.Errorf("lost what enforcement reads: %+v", out)
	}
	out.Labels["a"] = "changed"
	out.Spec.Containers[0].Ports[0].Name = "changed"
	if in.Labels["a"] != "b" || in.Spec.Containers[0].Ports[0].Name != "http" || len(in.ManagedFields) != 1 {
		t.Error("the stripped copy shares memory with the input")
	}
}
