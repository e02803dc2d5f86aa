// Package compiler resolves decoded manifests (schema.Set) into an
// ir.Cluster: namespaces and nodes, workload identities, endpoints,
// policies with their selectors, ports and peers validated, and services
// with their backends.
//
// It owns the semantic checks a user can trip over (invalid CIDRs, ports
// out of range, unknown protocols and entities, malformed selectors,
// constructs the datapath cannot enforce) and reports each as a
// schema.Diagnostic positioned at the manifest field. It never touches the
// kernel and reads no files: its input is the schema.Set.
//
// Identities are a hash of a workload's security labels (pod labels, minus
// per-revision labels such as pod-template-hash, plus its namespace, the
// namespace's labels, its service account and the cluster name), placed in
// the 24-bit identity space and probed linearly on collision in the sorted
// order of the label sets. Adding or removing a workload therefore never
// renumbers another unless their hashes collide, which is reported.
//
// Unenforceable constructs (L7 rules, toFQDNs, serverNames, listeners,
// auth, host policies, CIDR groups) are errors by default. With
// Options.DropUnenforceable the whole rule that holds one is lowered to
// nothing — never to its L4 part, which would allow more than the manifest
// says — and recorded in ir.Cluster.Dropped. Dropping an allow rule can
// only allow less. A dropped host policy (a CCNP with nodeSelector) leaves
// the node's own traffic unfiltered, as it is without it; the summary
// lists it.
package compiler
