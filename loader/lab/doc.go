// Package lab builds a whole cluster out of network namespaces on one
// machine, from the manifests that describe it, and runs the real
// components in it: each Node is a namespace with an external device on a
// shared fabric (a bridge in a namespace of its own) and its node
// addresses, and runs a sluice-agent with its own bpffs directory and
// cgroup; each Pod with an address is a namespace wired by the real
// sluice-cni binary, invoked as a container runtime invokes it, with a
// small server on every container port that answers with the pod's name;
// a "world" namespace on the fabric stands for the outside. Cross-node pod
// traffic uses native routing: each node routes the other nodes' pod CIDRs
// (or, without them, their pods) via their node addresses.
//
// Everything a lab creates is recorded, as it is created, in its state
// directory (lab.json), so that Down removes it all — also what a failed
// Up left half-made — and nothing else. Addresses stay inside the lab's
// namespaces; the host's own interfaces, routes and cgroups are not
// touched.
package lab
