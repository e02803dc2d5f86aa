package kubetest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

var srv *Server

func TestMain(m *testing.M) {
	Main(m, Options{Users: []string{"nobody"}}, &srv)
}

// TestPodStatus plays kubelet: a pod is created, then its IP is written
// through the status subresource, and both are listed back.
func TestPodStatus(t *testing.T) {
	ctx := context.Background()
	ns := srv.Namespace(t, map[string]string{"team": "a"})
	pods := srv.Client.CoreV1().Pods(ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Status.PodIP != "" {
		t.Fatalf("a new pod has an IP before any kubelet gave it one: %q", created.Status.PodIP)
	}
	created.Status.PodIP = "10.1.0.5"
	created.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.5"}}
	created.Status.Phase = corev1.PodRunning
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Status.PodIP != "10.1.0.5" || list.Items[0].Labels["app"] != "web" {
		t.Fatalf("listed %+v", list.Items)
	}
	got, err := srv.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The API server labels every namespace with its name.
	if got.Labels["team"] != "a" || got.Labels[corev1.LabelMetadataName] != ns {
		t.Fatalf("namespace labels %v", got.Labels)
	}
}

// TestUsers: a user from the token file is authenticated but, under RBAC,
// may not list pods; a wrong token is not authenticated.
func TestUsers(t *testing.T) {
	ctx := context.Background()
	ns := srv.Namespace(t, nil)
	for _, c := range []struct {
		name, token string
		want        func(error) bool
	}{
		{"nobody", srv.As("nobody").BearerToken, apierrors.IsForbidden},
		{"bad token", "not-a-token", apierrors.IsUnauthorized},
	} {
		cfg := srv.As("nobody")
		cfg.BearerToken = c.token
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if !c.want(err) {
			t.Errorf("%s: list pods: %v", c.name, err)
		}
	}
}
