// Package ir holds Sluice's intermediate representation and the reference
// evaluator.
//
// An ir.Cluster is what the compiler resolved from the manifests: nodes,
// identities, endpoints, policies with their rules and services with their
// backends. It is plain data (no Kubernetes, eBPF or OS imports), sorted,
// serialisable to JSON, and every element carries the Source (file:line:col)
// of the manifest text it came from.
//
// Evaluate is the one definition of what a packet gets: sluice trace prints
// its answer and the kernel datapath is tested against it. Its semantics are
// those of Kubernetes NetworkPolicy (per-direction isolation, union of
// allows, ipBlock matching any IP) and CiliumNetworkPolicy (entities, CIDR
// sets, deny beats allow), evaluated over identity labels and peer IPs:
//
//   - A direction (ingress of the destination, egress of the source) is
//     enforced for a pod when a policy selecting it isolates that direction.
//   - Deny rules that match win over everything, across all policy kinds.
//   - An isolated direction allows a packet only when an allow rule matches.
//   - Traffic between a pod and itself, and from a pod's own node to the pod,
//     is always allowed (kubelet probes); replies of an allowed connection
//     are allowed (the datapath is stateful).
//
// A connection to a service frontend is decided at the backend it is
// translated to, so EvaluateService (service.go) follows the datapath's
// translation: a local socket (a pod's, the host's) is translated on its
// own node before any packet, a packet from outside on the external device
// of the node that receives it (DNAT, and SNAT to that node for a backend
// elsewhere). It evaluates the connection to each backend the datapath may
// pick (Service.ActiveBackends, which emit lists in the service tables):
// the verdict is allow or deny when all agree, mixed when they do not, and
// reject or drop without a backend. A service address on a port that is
// none of its frontends is not translated: Evaluate answers it as a plain
// address.
//
// Invariants: slices are sorted as documented on each type; nothing depends
// on map iteration order; Cluster values are not mutated by evaluation.
package ir
