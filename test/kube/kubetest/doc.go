// Package kubetest runs a real kube-apiserver with a real etcd inside the
// test process, for tests that need the API server's own behaviour rather
// than a fake: allocation of ClusterIPs and NodePorts, the status
// subresource, RBAC, resource versions, watches.
//
// etcd is go.etcd.io/etcd/server/v3/embed; the API server is
// k8s.io/kubernetes/cmd/kube-apiserver/app/testing. StartTestServer, which
// starts it and waits for /healthz and the default namespace. Start takes no
// testing.T, so that a package's TestMain can share one server among all
// its tests (a start costs seconds; the build that links it, minutes, once).
// Tests then give each test a namespace of its own (Namespace).
//
// What a test server is not: no controllers run (no EndpointSlices are made
// for Services, namespaces never finish deleting, pods with a nodeName need
// a grace period of 0 to go away), and there is no kubelet. Tests play those
// parts through client-go: they create Pods, set status.podIP through the
// status subresource, and write EndpointSlices.
//
// Authorization is RBAC. The admin client (Server.Admin) is the loopback
// superuser; Users gives bearer tokens (a static token file) for users that
// have only the permissions a test grants them, to test what a forbidden
// list or a rejected credential does.
package kubetest
