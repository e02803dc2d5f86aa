// Package oracle is a deliberately naive evaluator of Kubernetes
// NetworkPolicy and of the CiliumNetworkPolicy subset whose semantics
// Cilium's documentation and code pin down, written straight from the
// specifications over the decoded objects. Tests compare Sluice's
// evaluator and its datapath against it.
//
// It shares no code with package ir or package compiler on purpose: the
// two were checked only against each other, so a mistake they shared went
// unseen. There are no identities, classes or label filters here; every
// question is answered by walking the objects again. Selectors are
// k8s.io/apimachinery label selectors over:
//
//   - for NetworkPolicy podSelector and namespaceSelector: the pod's own
//     labels and the Namespace object's labels (with
//     kubernetes.io/metadata.name forced to the name, as the API server
//     does);
//   - for Cilium selectors: the pod's labels without any key under
//     io.cilium.k8s (Cilium's label sanitising), with
//     io.kubernetes.pod.namespace, io.cilium.k8s.namespace.labels.*,
//     io.cilium.k8s.policy.serviceaccount and io.cilium.k8s.policy.cluster
//     taken from the objects that own them. Peers that are not pods (nodes,
//     addresses outside the cluster) have no labels a generated selector
//     can name.
//
// A verdict is for the first packet of a connection: allowed when the
// source pod's egress and the destination pod's ingress both allow it
// (an address that is not a live pod has no policy). The rules, in order:
//
//   - a pod talking to itself is allowed;
//   - a Cilium deny rule that matches denies (deny beats allow, and beats
//     the next rule);
//   - on ingress, traffic from the pod's own node is allowed;
//   - a direction no policy isolates is allowed;
//   - otherwise some allow rule of a policy selecting the pod must match.
//
// Pods count as peers only when they have an address and are not terminal
// (Succeeded or Failed) and not hostNetwork (whose address is the node's).
// What the compile must refuse is listed by Refusals.
package oracle
