package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSlimPod: a Pod holds what StripPod keeps, all of it.
func TestSlimPod(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	grace := int64(30)
	now := metav1.Now()
	ctrl := true
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "n"}},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n", UID: "u", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
				Annotations: map[string]string{"x": "y"}, DeletionTimestamp: &now, DeletionGracePeriodSeconds: &grace,
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Controller: &ctrl}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "m"}}},
			Spec: corev1.PodSpec{NodeName: "n1", HostNetwork: true, ServiceAccountName: "sa", DeprecatedServiceAccount: "old",
				InitContainers: []corev1.Container{{Name: "side", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "m", ContainerPort: 9090}}}, {Name: "init"}},
				Containers:     []corev1.Container{{Name: "c", Image: "i", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}, {Name: "d"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}},
				HostIP: "192.168.0.1", HostIPs: []corev1.HostIP{{IP: "192.168.0.1"}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}}},
		},
	} {
		want := StripPod(p)
		if got := SlimPod(p).Pod(); !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%s: SlimPod(p).Pod() is\n%+v\nStripPod(p) is\n%+v", p.Name, got, want)
		}
	}
}
