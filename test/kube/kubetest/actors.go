package kubetest

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// The test server runs no kubelet, scheduler or controllers: these
// functions do their part through the API, as they would.

// AddNode registers a node as its kubelet does (the object, then its
// addresses through the status subresource), with a pod CIDR as the node
// IPAM controller would give it.
func AddNode(ctx context.Context, cs kubernetes.Interface, name, internalIP, podCIDR string, labels map[string]string) (*corev1.Node, error) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}}}
	n, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", name, err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP}, {Type: corev1.NodeHostName, Address: name}}
	if n, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("node %s status: %w", name, err)
	}
	return n, nil
}

// RunPod creates a pod bound to its spec.nodeName and, as that node's
// kubelet does once the CNI gave it an address, writes its status: phase
// Running, the IPs, and Ready.
func RunPod(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, ips ...string) (*corev1.Pod, error) {
	if len(pod.Spec.Containers) == 0 {
		pod.Spec.Containers = []corev1.Container{{Name: "main", Image: "registry.invalid/none"}}
	}
	p, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if len(ips) == 0 {
		return p, nil
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ips[0]
	p.Status.PodIPs = nil
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if p, err = cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("pod %s/%s status: %w", pod.Namespace, pod.Name, err)
	}
	return p, nil
}

// SyncEndpointSlices writes the EndpointSlices of a Service as the
// EndpointSlice controller would from the pods given (those of its
// namespace): an endpoint per pod its selector matches that has an IP and
// is not terminal; ready when the pod is Ready and not terminating,
// serving when Ready, terminating when being deleted; ports resolved per
// pod (a named targetPort through the pod's container ports), one slice
// per distinct set of ports. It returns the slices written.
func SyncEndpointSlices(ctx context.Context, cs kubernetes.Interface, svc *corev1.Service, pods []corev1.Pod) ([]*discoveryv1.EndpointSlice, error) {
	type group struct {
		ports     []discoveryv1.EndpointPort
		endpoints []discoveryv1.Endpoint
	}
	var groups []*group
	for i := range pods {
		p := &pods[i]
		if p.Namespace != svc.Namespace || p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || !matches(svc.Spec.Selector, p.Labels) {
			continue
		}
		ports := resolvePorts(svc, p)
		key := portsKey(ports)
		idx := slices.IndexFunc(groups, func(g *group) bool { return portsKey(g.ports) == key })
		if idx < 0 {
			groups = append(groups, &group{ports: ports})
			idx = len(groups) - 1
		}
		podReady := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
		terminating := p.DeletionTimestamp != nil
		ready := podReady && !terminating
		node := p.Spec.NodeName
		var addrs []string
		for _, ip := range p.Status.PodIPs {
			if !strings.Contains(ip.IP, ":") { // an IPv4 slice
				addrs = append(addrs, ip.IP)
			}
		}
		groups[idx].endpoints = append(groups[idx].endpoints, discoveryv1.Endpoint{
			Addresses:  addrs,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &podReady, Terminating: &terminating},
			NodeName:   &node,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		})
	}
	var out []*discoveryv1.EndpointSlice
	for i, g := range groups {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s-%d", svc.Name, i), Namespace: svc.Namespace,
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   g.endpoints,
			Ports:       g.ports,
		}
		created, err := cs.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, es, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("create EndpointSlice %s/%s: %w", es.Namespace, es.Name, err)
		}
		out = append(out, created)
	}
	return out, nil
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false // a Service without a selector gets no managed slices
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolvePorts maps the service's ports to the pod's, as the controller
// does; a named target the pod lacks leaves that port out.
func resolvePorts(svc *corev1.Service, p *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port := sp.Port
		switch t := sp.TargetPort; {
		case t.Type == intstr.String && t.StrVal != "":
			port = 0
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == t.StrVal && cmpProto(cp.Protocol) == cmpProto(sp.Protocol) {
						port = cp.ContainerPort
					}
				}
			}
			if port == 0 {
				continue
			}
		case t.IntVal != 0:
			port = t.IntVal
		}
		name, proto := sp.Name, cmpProto(sp.Protocol)
		out = append(out, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
	}
	return out
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}

func cmpProto(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}
