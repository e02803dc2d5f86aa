// Package adversary generates hostile clusters and checks Sluice against
// the spec oracle (package oracle) on them.
//
// Generate builds a cluster from a seed, the same one for the same seed:
// namespaces with labels (a wrong kubernetes.io/metadata.name among them),
// none to three nodes, pods with labels from fixed pools, per-pod labels
// (statefulset.kubernetes.io/pod-name, pod-template-hash, ...), labels
// under Cilium's reserved prefixes (a forged namespace, namespace labels,
// service account or cluster), terminal pods whose addresses live pods
// take over, pending pods, hostNetwork and dual-stack pods, named ports
// that mean different numbers on different pods; then NetworkPolicies,
// CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies whose
// selectors use every key the pods carry with every operator, ports,
// ranges, named ports, CIDRs around pod, node and world addresses,
// entities, requirements, deny rules and enableDefaultDeny; and sometimes
// one thing the compile must refuse. Manifests are written as YAML of
// varying style (block and flow collections, quoting) and go through the
// real front end (schema.Load, compiler.Compile, emit.Build).
//
// Checker.Run compares every query of a case three ways: the oracle,
// ir.Evaluator and, with Kernel, the compiled programs through
// BPF_PROG_TEST_RUN (loader.Tracer). IPv4 verdicts must be equal; IPv6,
// which the datapath does not enforce yet, must never be allowed where
// the oracle denies it nor at a pod that a policy isolates. Each
// difference is a Disagreement whose class names the kind of difference
// and the reasons on both sides, without the case's names; Shrink reduces
// a case to a minimal manifest that still shows one.
package adversary
