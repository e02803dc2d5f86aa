// Package loader owns every side effect on the node: writing and reading
// artifact directories, and (with the datapath) creating maps, loading
// programs, attaching and pinning them.
//
// Artifacts are written atomically: the whole output tree is built in a
// sibling temporary directory (made durable with one syncfs(2) when asked:
// sluice compile --fsync), and the temporary tree is exchanged with the
// destination in one
// renameat2(RENAME_EXCHANGE) — readers see the old tree or the new one,
// never a mix — before the old tree is removed. On any error the
// destination is left exactly as it was. Files that are the same on every
// node (shared maps, dumps, ir.json) are written once and hard-linked into
// each node's directory, so each node directory stays self-contained.
//
// An artifact is read back only after its manifest's format version and
// the sha256 of every file it lists have been checked.
//
// # Generations and the atomic swap
//
// A Switch holds what outlives generations: the node state (conntrack,
// the drop counters, endpoint_links, the IPv4 fragments' ports, the load
// balancer's state), a program array in two halves, and a one-word array
// map naming the serving half. Each endpoint gets, per direction, a tiny
// dispatcher program attached with TCX to its host veth once; the
// dispatcher reads the word and tail-calls the endpoint's program in that
// half (constant-key call sites, which the JIT makes direct jumps: no
// measurable cost). Before it attaches a pod, Attach links the veth to
// the pod's IPv4 address in endpoint_links, where the programs learn
// whose IPv6 frames they see (see package bpf); Detach unlinks it.
//
// A pod's from-container dispatcher also verifies sources
// (bpf.SourceCheck): it is built with the pod's IPv4 address as an
// immediate and drops every IPv4 packet from any other (counted as
// invalid_source in the drops map), before the tail call, so before
// conntrack and policy. Measured with the benchmark's established path
// (BPF_PROG_TEST_RUN, interleaved, same run): the dispatcher and program
// at 2.88x the floor without the check, 2.92x with it (+2 ns); a lookup
// of endpoint_links by ifindex in the program instead cost about 35 ns
// (+1.1x floor), and handing the address to the program in skb->cb no
// less than the compare. A pod without an IPv4 address has all its IPv4
// dropped. Attaching a pod again with another address (or none) builds
// its dispatcher anew and swaps it into the TCX link in place
// (BPF_LINK_UPDATE): the interface is never without one. Pods the
// artifact does not list (SetRuntimePods) are attached the same way, with
// the address of their CNI record. The external device's dispatchers do
// not check: what crosses it is no pod's.
//
// With a pin directory everything is pinned, and a new agent adopts what
// an earlier one left: the endpoints (by the slot map and their pinned
// links), their links, the serving half. Adoption needs only the switch's
// own maps; node state an earlier agent did not have starts empty, and a
// drops map it sized for fewer reasons keeps its counts (Drops adds them)
// while a new one takes its pin. An adopted dispatcher is kept when it is
// exactly what this agent builds for its endpoint (the kernel's tag of
// its code, and the maps it uses), and replaced in its link otherwise: one
// of an earlier version, one without the source check, one counting into
// a drops map that no longer has the pin. An endpoint adopted without a
// link (from an agent that had no endpoint_links) keeps its dispatcher and
// gets a link and a new dispatcher when it is attached again, which the
// agent does in the sync of its first swap, right after it; in between,
// that pod's IPv6 is dropped.
//
// Swap loads the new artifact's maps and programs (through the verifier)
// with the conntrack and drop maps passed in rather than created, writes
// the idle half of the program array for every endpoint, and only then
// writes the word. Why this is atomic: before that single map update no
// packet can reach the new generation (the dispatcher only indexes the
// serving half); after it, every dispatcher on every endpoint reads the new
// half. A packet runs either the old programs with the old maps or the new
// programs with the new maps, since each generation's programs reference
// only their own maps plus the shared node state. Any failure before the
// write (a checksum, a layout, the verifier, a full slot) leaves the word,
// and so the serving generation, untouched. The old half is not cleared:
// a packet that read the word just before the flip still finds its
// program, and the next swap overwrites it entry by entry.
//
// # Incremental swaps
//
// The generation that served before the last flip stays loaded in the
// idle half. The next swap rewrites it into the new generation rather than
// building one from scratch (update.go): programs whose code is unchanged
// (same fingerprint: direction, features, inline entries) are kept, the
// others loaded through the verifier against the idle maps, and each map
// gets only the entries that differ between its image and the new one.
// Then the idle half is flipped in as in a full swap, so atomicity is the
// same. It is safe to write the idle maps because no packet runs them:
// after every flip the switch waits out an RCU grace period (an update of
// a map-of-maps returns only after one, and TC programs run inside RCU
// read-side sections), off the swap's path, and the next swap waits for
// that wait to have ended. Programs are loaded before any map is touched;
// a failure after that drops the idle generation and the swap builds the
// new one in full, as it does when the map set or a map's shape changed.
//
// # Pods the artifact does not list
//
// SetRuntimePods writes, for each of the node's pods whose address the
// artifact does not list, an endpoints entry and an ipcache entry into the
// serving generation, and every later one, resolved through the
// artifact's runtime table (emit.RuntimeTable): the workload's identity
// and policy numbers, else the init identity. An incremental swap first
// puts the idle maps back to their images.
//
// # Service load balancing
//
// The socket load balancer hangs off one cgroup (AttachCgroup): per hook
// (connect4, sendmsg4, recvmsg4, getpeername4) a dispatcher attached once
// reads the generation word and tail-calls that half's program, in a
// two-entry program array of its own, so it swaps in the same flip as the
// endpoints. The external device (AttachDevice) is attached like an
// endpoint, with the generation's netdev programs; its dispatchers pass
// rather than drop when a half has no program. The load balancer's state
// (sock_revnat, sock_affinity, lb_nat) is node state, like conntrack.
//
// # Drops by rule
//
// Each generation counts its policy drops in its own rule_drops map, keyed
// by its rule numbers. Before the idle generation is rewritten or
// replaced, the switch adds its counts, named through its rules.json and
// node.json, to totals that outlive it.
package loader
