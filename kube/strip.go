package kube

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lastApplied is kubectl's copy of the whole manifest: as large as the
// object, and never read by enforcement.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// The Strip functions return a copy of an object with only what
// enforcement reads: identity (name, namespace, uid, resourceVersion),
// labels, and the fields the compiler uses. Everything else — managedFields,
// container specs beyond their ports, volumes, node images and conditions,
// kubectl's last-applied annotation — is dropped. They share nothing
// mutable with the input.

func stripMeta(m *metav1.ObjectMeta, annotations bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels:                     copyMap(m.Labels, ""),
		DeletionTimestamp:          m.DeletionTimestamp.DeepCopy(),
		DeletionGracePeriodSeconds: copyPtr(m.DeletionGracePeriodSeconds),
	}
	if annotations {
		out.Annotations = copyMap(m.Annotations, lastApplied)
	}
	return out
}

// StripPod keeps the pod's labels, owner, service account, node, host
// network, container names and ports, phase, IPs and Ready condition.
// Annotations are dropped: nothing in enforcement reads a pod's.
func StripPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: stripMeta(&p.ObjectMeta, false)}
	for _, r := range p.OwnerReferences {
		out.OwnerReferences = append(out.OwnerReferences, *r.DeepCopy())
	}
	s := &p.Spec
	out.Spec = corev1.PodSpec{
		NodeName: s.NodeName, HostNetwork: s.HostNetwork,
		ServiceAccountName: s.ServiceAccountName, DeprecatedServiceAccount: s.DeprecatedServiceAccount,
	}
	for _, c := range s.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Ports: copySlice(c.Ports), RestartPolicy: copyPtr(c.RestartPolicy)})
	}
	for _, c := range s.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: copySlice(c.Ports)})
	}
	st := &p.Status
	out.Status = corev1.PodStatus{Phase: st.Phase, PodIP: st.PodIP, PodIPs: copySlice(st.PodIPs), HostIP: st.HostIP, HostIPs: copySlice(st.HostIPs)}
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			out.Status.Conditions = append(out.Status.Conditions, corev1.PodCondition{Type: c.Type, Status: c.Status})
		}
	}
	return out
}

// StripNode keeps the node's labels, pod CIDRs and addresses; the image
// list, conditions, capacity and system info go.
func StripNode(n *corev1.Node) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: stripMeta(&n.ObjectMeta, false),
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: copySlice(n.Spec.PodCIDRs)},
		Status:     corev1.NodeStatus{Addresses: copySlice(n.Status.Addresses)},
	}
}

// StripNamespace keeps the namespace's labels, annotations and phase.
func StripNamespace(n *corev1.Namespace) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: stripMeta(&n.ObjectMeta, true), Status: corev1.NamespaceStatus{Phase: n.Status.Phase}}
}

// StripService keeps the whole spec and the load balancer status.
func StripService(s *corev1.Service) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: stripMeta(&s.ObjectMeta, true),
		Spec:       *s.Spec.DeepCopy(),
		Status:     corev1.ServiceStatus{LoadBalancer: *s.Status.LoadBalancer.DeepCopy()},
	}
}

// StripEndpointSlice keeps the whole slice but its managedFields.
func StripEndpointSlice(e *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	out := e.DeepCopy()
	out.ObjectMeta = stripMeta(&e.ObjectMeta, true)
	return out
}

func copyMap(m map[string]string, except string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k != except {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func copySlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
