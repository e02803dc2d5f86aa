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
package loader
