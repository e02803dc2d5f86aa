// Package schema reads Kubernetes manifests and decodes them, strictly and
// with source positions, into typed objects.
//
// It owns:
//
//   - reading input the way kubectl -f does: files, directories (recursively,
//     *.yaml, *.yml and *.json only, in lexical order) and "-" for standard
//     input (Load);
//   - splitting YAML streams into documents, and List kinds into items;
//   - strict decoding into the typed structs of the kind table below, with
//     every problem reported as a positioned Diagnostic;
//   - the cilium.io/v2 policy types (cilium.go).
//
// It does not resolve selectors, look up ports, parse CIDRs or otherwise
// interpret what it decodes: the compiler does, and reports its own errors
// at Object.PosOf positions.
//
// # Kinds
//
//	networking.k8s.io/v1  NetworkPolicy                   *networkingv1.NetworkPolicy
//	cilium.io/v2          CiliumNetworkPolicy             *schema.CiliumNetworkPolicy
//	cilium.io/v2          CiliumClusterwideNetworkPolicy  *schema.CiliumClusterwideNetworkPolicy
//	v1                    Service, Endpoints, Pod         *corev1.Service, ...
//	v1                    Namespace, Node                 *corev1.Namespace, *corev1.Node
//	discovery.k8s.io/v1   EndpointSlice                   *discoveryv1.EndpointSlice
//	apps/v1               Deployment, ReplicaSet, StatefulSet, DaemonSet
//	batch/v1              Job                             *batchv1.Job
//
// Documents of other kinds are counted in Skipped, not reported. A policy
// kind with another apiVersion is an error, since skipping a policy
// silently would leave traffic open that the user meant to close. Other
// known kinds with another apiVersion are skipped. "List", and any kind
// ending in "List" that has an items list, is unpacked: each item is
// decoded as an object of its own, with field paths relative to the item.
//
// # Decoding
//
// Decoding follows what the API server does with sigs.k8s.io/yaml (YAML to
// JSON, then encoding/json with the types' json tags), with strict field
// validation and positions kept: each document is parsed by
// go.yaml.in/yaml/v3 into a node tree and decoded by a reflection decoder
// that honours json tags, inline structs and json.Unmarshaler types. The
// following are errors, all collected rather than stopping at the first:
// unknown fields (the message lists the accepted ones), duplicate keys,
// values of the wrong type, integers out of range of their Go type, and
// unquoted numbers or booleans where a string is expected (kubectl's
// "quote it"), except for Cilium's port field, which takes either.
//
// YAML is read as go.yaml.in/yaml/v3 reads it: YAML 1.2 scalars (yes is a
// string), anchors, aliases and << merge keys, flow style with trailing
// commas (KYAML), and JSON. Streams are split into documents on "---" and
// "..." lines before parsing, as kubectl splits them, so a syntax error in
// one document does not hide the next, documents are parsed in parallel,
// and anchors do not reach across documents. Aliases are expanded within a
// node budget, so an alias bomb is an error rather than an outage.
//
// Parsing is most of the cost of decoding, so documents in the plain block
// style kubectl writes, and strict JSON documents, are parsed by a fast
// path (fastparse.go, fastjson.go) that builds the very yaml.Node tree
// yaml.v3 would, and gives up on anything else, which yaml.v3 then parses.
// FuzzFastParse holds the fast path to yaml.v3's output.
//
// # Invariants
//
//   - Output is deterministic: objects come in argument, directory and file
//     order, diagnostics are sorted and deduplicated, and neither depends on
//     GOMAXPROCS or scheduling.
//   - Every diagnostic has a file position (line and column from 1; only an
//     unreadable file has a position without a line), a field path when it
//     is about a field, and a message that says what would be accepted.
//   - An object is returned only if its document (or List item) decoded
//     without error; a namespaced object always has a namespace ("default"
//     when none is given) and a cluster-scoped one never has.
//   - Parsed node trees are not kept: Object remembers where its document
//     is, and PosOf parses it again when an error needs a position.
//
// # Field paths
//
// Diagnostic.Field and Object.PosOf use JSON names from the object root:
// spec.ingress[0].from[1].ipBlock.cidr. A map key that is not a plain
// identifier is written in brackets, Go-quoted:
// metadata.labels["app.kubernetes.io/name"] (see Key).
package schema
