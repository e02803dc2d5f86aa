package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"
)

// Snapshot is the runtime state of a cluster as listed from its API
// server, stripped to what enforcement reads (Strip).
type Snapshot struct {
	// Server is the API server's URL, for messages.
	Server         string
	Namespaces     []corev1.Namespace
	Nodes          []corev1.Node
	Pods           []corev1.Pod
	Services       []corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice
}

// pageSize is the items per list request: the API server's pages keep a
// large cluster's list from being one huge response.
const pageSize = 500

// List reads the five kinds from the API server, in all namespaces. The
// lists are separate requests, each consistent in itself; an object that
// changes between them is seen as it was when its kind was listed, as an
// informer would see it before its next event.
func List(ctx context.Context, cfg *rest.Config) (*Snapshot, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	s := &Snapshot{Server: cfg.Host}
	core, disc := cs.CoreV1(), cs.DiscoveryV1()
	steps := []struct {
		resource string
		list     pager.ListPageFunc
		each     func(runtime.Object)
	}{
		{"namespaces", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Namespaces().List(ctx, o)
		},
			func(o runtime.Object) { s.Namespaces = append(s.Namespaces, *StripNamespace(o.(*corev1.Namespace))) }},
		{"nodes", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Nodes().List(ctx, o)
		},
			func(o runtime.Object) { s.Nodes = append(s.Nodes, *StripNode(o.(*corev1.Node))) }},
		{"pods in all namespaces", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Pods("").List(ctx, o)
		},
			func(o runtime.Object) { s.Pods = append(s.Pods, *StripPod(o.(*corev1.Pod))) }},
		{"services in all namespaces", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Services("").List(ctx, o)
		},
			func(o runtime.Object) { s.Services = append(s.Services, *StripService(o.(*corev1.Service))) }},
		{"endpointslices.discovery.k8s.io in all namespaces", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return disc.EndpointSlices("").List(ctx, o)
		}, func(o runtime.Object) {
			s.EndpointSlices = append(s.EndpointSlices, *StripEndpointSlice(o.(*discoveryv1.EndpointSlice)))
		}},
	}
	for _, st := range steps {
		p := pager.New(st.list)
		p.PageSize = pageSize
		err := p.EachListItem(ctx, metav1.ListOptions{}, func(o runtime.Object) error {
			st.each(o)
			return nil
		})
		if err != nil {
			return nil, listError(cfg, st.resource, err)
		}
	}
	return s, nil
}

// listError says which list failed and why, in the terms of what to fix:
// the address, the credentials, or the permissions.
func listError(cfg *rest.Config, resource string, err error) error {
	what := fmt.Sprintf("list %s from the API server at %s", resource, cfg.Host)
	var ue *url.Error
	var ne net.Error
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: the credentials were rejected (401 Unauthorized): %w; check the user's token or client certificate", what, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: forbidden by the API server's authorization (403): %w; sluice needs list on namespaces, nodes, pods, services and endpointslices.discovery.k8s.io in all namespaces", what, err)
	case errors.As(err, &ue) || errors.As(err, &ne):
		return fmt.Errorf("%s: the API server is unreachable: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
