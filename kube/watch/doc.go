// Package watch is the node agent's view of the cluster: client-go shared
// informers, from one factory, for the five kinds the runtime state comes
// from (Namespaces, Nodes, Pods, Services, EndpointSlices, in all
// namespaces).
//
// Every object is stripped before it is stored (the factory's transform is
// Strip: the kube.Strip* functions, what kube.Combine compiles and no
// more), and a pod is kept as a kube.Pod, which holds what kube.StripPod
// keeps without corev1.Pod's empty fields. Measured against a real API
// server (test/kube/watch TestBytesPerPod, 400 pods of a Deployment-like
// spec: two containers with env, resources, probes and mounts, a volume,
// and the API server's managedFields): about 1.6 KiB of heap per pod in
// the store, against about 12 KiB for the pod as listed.
//
// # Never from half-synced state
//
// The handler gets nothing until every informer has synced. Then it gets
// one Synced event with the whole state (a kube.Snapshot, which
// kube.Combine takes), and after it every change, one event at a time:
// an event for an object already in the snapshot may repeat it, so the
// handler applies events as upserts. Ready says, until then, which kinds
// are not synced and each one's last watch error — for a /readyz.
//
// A broken watch is the reflector's to retry (with backoff and jitter);
// the stores keep what they had, so nothing is flushed because a watch
// broke, and Ready stays nil. When the watch cannot resume (410 Gone after
// a compaction), the reflector relists and replaces its store in one step:
// objects that vanished meanwhile arrive as Deleted with Tombstone set
// (client-go's DeletedFinalStateUnknown, unwrapped), and objects never
// disappear and reappear.
//
// Not yet here: writing the events into the datapath's maps, metrics.
package watch
