// Package kube reads a live cluster's runtime state from its API server
// and combines it with the repository's intent, so that sluice compile and
// sluice trace answer for the cluster as it is (--kubeconfig).
//
// # Connecting
//
// Config loads a kubeconfig file (its current context), or, given no
// file inside a pod (KUBERNETES_SERVICE_HOST set), the pod's service
// account. List reads, through client-go's typed clients and in pages,
// five kinds in all namespaces: Namespaces, Nodes, Pods, Services and
// discovery.k8s.io/v1 EndpointSlices. Each failure says what failed — a
// kubeconfig that cannot be read or parsed, an API server that cannot be
// reached, credentials it rejects (401), or a list its authorization
// forbids (403, with the permissions sluice needs) — and names the
// resource and the server.
//
// # What is kept
//
// The Strip functions keep of each object only what enforcement reads
// (names, uid, resourceVersion, labels; pod owner, service account, node,
// host network, container ports, phase, IPs, Ready condition; node
// addresses and pod CIDRs; service spec and load-balancer status; the
// whole EndpointSlice). managedFields, the rest of the pod spec, node
// images and conditions, pod annotations and kubectl's last-applied
// annotation are dropped. A cache that keeps pods for long (the agent's
// informers, package watch) keeps them as Pod: the same fields, in an
// eighth of the memory of the listed object.
//
// # Intent and snapshot
//
// Combine makes one schema.Set of the two, which the compiler then
// compiles as it compiles files — one implementation, so that a compile
// against the cluster and a compile of the same objects written as files
// give the same answer:
//
//   - Policies (NetworkPolicy, CiliumNetworkPolicy,
//     CiliumClusterwideNetworkPolicy) come only from the intent: the
//     repository is what was reviewed. Workload templates (Deployment,
//     ReplicaSet, StatefulSet, DaemonSet, Job) also come from the intent.
//   - Pods, Nodes and EndpointSlices come only from the cluster. The
//     intent's copies, and its legacy Endpoints, are left out, with one
//     warning per kind.
//   - A Service or Namespace in both is the cluster's: it carries the
//     allocations (clusterIP, nodePorts) and the labels actually applied.
//     Where the repository's copy differs in labels, selector, type,
//     clusterIP or ports, a warning at the repository's line says so. One
//     only in the repository is compiled from it (a warning says it lacks
//     the API server's allocations); one only in the cluster is compiled,
//     since the node agent serves every Service of the cluster.
//   - A Service labelled service.kubernetes.io/service-proxy-name in the
//     cluster belongs to another proxy, as for kube-proxy: the compiler
//     gives it no frontend, as it does from files (the repository's copy
//     gives way to it like any other).
//
// Terminal pods (Succeeded, Failed) are the compiler's to skip, and pods
// being deleted are terminating, not ready, as the compiler treats any
// pod with a deletionTimestamp; backends come from the cluster's
// EndpointSlices, with their ready, serving and terminating conditions.
//
// Each cluster object is decoded from a source of its own, named
// kube:KIND/NAMESPACE/NAME (kube:node/NAME for cluster-scoped kinds) and
// holding the object as indented JSON, so that a diagnostic about it reads
// kube:pod/prod/web-1:23:7: status.podIP: ..., with the line. uid and
// resourceVersion are left out of these sources, so the artifact (and its
// input digest) depends on the cluster's state, not on its history, and
// objects are ordered by namespace and name, whatever order the API
// server listed them in.
//
// The five lists are separate requests: the snapshot is consistent per
// kind, not across kinds, as an informer's caches are between events.
package kube
