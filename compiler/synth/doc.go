// Package synth generates a deterministic synthetic Kubernetes cluster: the
// input of `make bench` and of scale tests of the compiler.
//
// Generate writes plain block-style YAML, keys sorted as `kubectl get -o yaml`
// prints them, into a directory:
//
//	nodes.yaml        every Node
//	cluster.yaml      every Namespace, then every CiliumClusterwideNetworkPolicy
//	ns-<name>.yaml    one per namespace: Deployments, StatefulSets, DaemonSets,
//	                  Pods, Services, EndpointSlices, NetworkPolicies,
//	                  CiliumNetworkPolicies, in that order
//
// Every document starts with a "---" line, so a reader can split files and
// documents and parse them in parallel. The file of a namespace with nothing
// in it is empty.
//
// Invariants (tested):
//   - The same Params, Seed included, give byte-identical files. All choices
//     come from one math/rand/v2 PCG seeded from Params.Seed, drawn in a fixed
//     order; nothing depends on time, hostnames or map iteration order.
//   - Object counts equal Params: Nodes, Namespaces (kube-system and default
//     included), Pods, Services (kubernetes and kube-dns included),
//     NetworkPolicies, CiliumPolicies (namespaced plus clusterwide).
//     EndpointSlice endpoints equal Params.Endpoints whenever the other counts
//     leave room to reach it; Stats says what was written.
//   - Node InternalIPs are in 10.255.0.0/16; pod CIDRs are carved from
//     10.0.0.0/9 around the service range; every pod IP is unique and inside
//     its node's podCIDR; ClusterIPs are unique in 10.96.0.0/12; NodePorts are
//     unique in 30000-32767.
//   - A Service's EndpointSlices list exactly the pods its selector matches
//     in its namespace, with their real IPs, nodes and UIDs.
//   - Policies use L3/L4 constructs only: no L7 rules, no toFQDNs, no
//     nodeSelector.
//
// Bench drives the compiler over generated clusters of growing size and
// reports time, memory and output size; cmd/sluice-bench is its flag parser.
package synth
