package kube

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod is a pod as a long-lived cache keeps it: exactly what StripPod
// keeps, without corev1.Pod's hundreds of bytes of empty fields (a Pod
// struct alone is 1240 bytes, a Container 408). It is a metav1.Object, so
// client-go's stores key it as they key a Pod. Pod() turns it back into
// the StripPod form.
type Pod struct {
	metav1.ObjectMeta
	NodeName, ServiceAccountName, DeprecatedServiceAccount string
	HostNetwork                                            bool
	Phase                                                  corev1.PodPhase
	PodIPs, HostIPs                                        []string
	PodIP, HostIP                                          string
	// Ready is the status of the Ready condition, "" without one.
	Ready corev1.ConditionStatus
	// Containers are the names and ports of the containers, init
	// containers marked.
	Containers []PodContainer
}

// PodContainer is a container's name and ports.
type PodContainer struct {
	Name          string
	Init          bool
	RestartPolicy *corev1.ContainerRestartPolicy
	Ports         []corev1.ContainerPort
}

// SlimPod returns the pod as a Pod.
func SlimPod(p *corev1.Pod) *Pod {
	s := StripPod(p)
	out := &Pod{
		ObjectMeta: s.ObjectMeta,
		NodeName:   s.Spec.NodeName, ServiceAccountName: s.Spec.ServiceAccountName, DeprecatedServiceAccount: s.Spec.DeprecatedServiceAccount,
		HostNetwork: s.Spec.HostNetwork,
		Phase:       s.Status.Phase, PodIP: s.Status.PodIP, HostIP: s.Status.HostIP,
	}
	for _, ip := range s.Status.PodIPs {
		out.PodIPs = append(out.PodIPs, ip.IP)
	}
	for _, ip := range s.Status.HostIPs {
		out.HostIPs = append(out.HostIPs, ip.IP)
	}
	if len(s.Status.Conditions) > 0 {
		out.Ready = s.Status.Conditions[0].Status
	}
	for _, c := range s.Spec.InitContainers {
		out.Containers = append(out.Containers, PodContainer{Name: c.Name, Init: true, RestartPolicy: c.RestartPolicy, Ports: c.Ports})
	}
	for _, c := range s.Spec.Containers {
		out.Containers = append(out.Containers, PodContainer{Name: c.Name, Ports: c.Ports})
	}
	return out
}

// Pod returns the pod as StripPod would have kept it.
func (p *Pod) Pod() *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: *p.ObjectMeta.DeepCopy()}
	out.Spec = corev1.PodSpec{NodeName: p.NodeName, ServiceAccountName: p.ServiceAccountName, DeprecatedServiceAccount: p.DeprecatedServiceAccount, HostNetwork: p.HostNetwork}
	out.Status = corev1.PodStatus{Phase: p.Phase, PodIP: p.PodIP, HostIP: p.HostIP}
	for _, ip := range p.PodIPs {
		out.Status.PodIPs = append(out.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	for _, ip := range p.HostIPs {
		out.Status.HostIPs = append(out.Status.HostIPs, corev1.HostIP{IP: ip})
	}
	if p.Ready != "" {
		out.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: p.Ready}}
	}
	for _, c := range p.Containers {
		cc := corev1.Container{Name: c.Name, Ports: copySlice(c.Ports)}
		if c.Init {
			cc.RestartPolicy = copyPtr(c.RestartPolicy)
			out.Spec.InitContainers = append(out.Spec.InitContainers, cc)
		} else {
			out.Spec.Containers = append(out.Spec.Containers, cc)
		}
	}
	return out
}
