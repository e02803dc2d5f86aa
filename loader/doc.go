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
// A Switch holds what outlives generations: the conntrack and drop-counter
// maps, a program array in two halves, and a one-word array map naming the
// serving half. Each endpoint gets, per direction, a tiny dispatcher
// program attached with TCX to its host veth once; the dispatcher reads the
// word and tail-calls the endpoint's program in that half (constant-key
// call sites, which the JIT makes direct jumps: no measurable cost).
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
package loader
