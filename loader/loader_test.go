package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/emit"
)

func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (BPF), and CI=true makes a missing privilege a failure")
	}
	t.Skip("this test needs root (CAP_BPF)")
}

// writeSeed compiles the example and writes it; it returns worker-2's
// directory.
func writeSeed(t *testing.T) string {
	t.Helper()
	_, cl, diags := compiler.Load([]string{"../examples/seed"}, nil, compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags.Err())
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := WriteArtifacts(dir, out.Artifacts, nil); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "worker-2")
}

// editManifest rewrites manifest.json, keeping it consistent with the
// files (their sums recomputed) unless edit breaks that on purpose.
func editManifest(t *testing.T, dir string, edit func(m *emit.Manifest)) {
	t.Helper()
	var m emit.Manifest
	data, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for name := range m.Files {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		s := sha256.Sum256(b)
		m.Files[name] = hex.EncodeToString(s[:])
	}
	edit(&m)
	data, _ = json.Marshal(m)
	// Files are hard-linked between nodes: replace, never write through.
	os.Remove(filepath.Join(dir, "manifest.json"))
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	os.Remove(path)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// swapRefused swaps a into a Switch serving the seed and returns the error;
// the test fails if the bad generation replaced the serving one.
func swapRefused(t *testing.T, bad *Artifact) error {
	t.Helper()
	good, err := ReadArtifact(writeSeed(t))
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	// Twice, so that the bad one meets a generation in the idle half and
	// is tried incrementally first, then in full.
	for range 2 {
		if err := sw.Swap(good); err != nil {
			t.Fatal(err)
		}
	}
	serving, half := sw.gen, sw.half
	var word uint32
	err = sw.Swap(bad)
	if lerr := sw.active.Lookup(uint32(0), &word); lerr != nil || err != nil && (sw.gen != serving || sw.half != half || word != half || sw.Generation != 2) {
		t.Errorf("a refused generation changed the serving one (word %d, half %d→%d, generation %d)", word, half, sw.half, sw.Generation)
	}
	return err
}

// Bad artifacts are refused with a message that names the file and why,
// and a Switch keeps serving the generation it had.
func TestBadArtifacts(t *testing.T) {
	t.Run("tampered file", func(t *testing.T) {
		dir := writeSeed(t)
		replaceFile(t, filepath.Join(dir, "maps", "policy.bin"), []byte("x"))
		_, err := ReadArtifact(dir)
		if err == nil || !strings.Contains(err.Error(), "maps/policy.bin has sha256") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong format version", func(t *testing.T) {
		dir := writeSeed(t)
		editManifest(t, dir, func(m *emit.Manifest) { m.Format = "sluice.artifact/v0" })
		_, err := ReadArtifact(dir)
		if err == nil || !strings.Contains(err.Error(), `format "sluice.artifact/v0" is not "sluice.artifact/v1"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		dir := writeSeed(t)
		os.Remove(filepath.Join(dir, "maps", "ipcache.bin"))
		_, err := ReadArtifact(dir)
		if err == nil || !strings.Contains(err.Error(), "maps/ipcache.bin") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not an artifact", func(t *testing.T) {
		_, err := ReadArtifact(t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "no manifest.json") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("truncated map image", func(t *testing.T) {
		requireBPF(t)
		dir := writeSeed(t)
		path := filepath.Join(dir, "maps", "ipcache.bin")
		b, _ := os.ReadFile(path)
		replaceFile(t, path, b[:len(b)-3])
		editManifest(t, dir, func(*emit.Manifest) {})
		a, err := ReadArtifact(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = swapRefused(t, a)
		if err == nil || !strings.Contains(err.Error(), "map ipcache: maps/ipcache.bin holds") || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("map larger than its declared size", func(t *testing.T) {
		requireBPF(t)
		dir := writeSeed(t)
		editManifest(t, dir, func(m *emit.Manifest) {
			for i := range m.Maps {
				if m.Maps[i].Name == "ipcache" {
					m.Maps[i].MaxEntries = 4
				}
			}
		})
		a, err := ReadArtifact(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = swapRefused(t, a)
		if err == nil || !strings.Contains(err.Error(), "map ipcache: maps/ipcache.bin holds 15 entries; the manifest says 15, with room for 4") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("layout this datapath does not read", func(t *testing.T) {
		requireBPF(t)
		dir := writeSeed(t)
		editManifest(t, dir, func(m *emit.Manifest) {
			for i := range m.Maps {
				if m.Maps[i].Name == "endpoints" {
					m.Maps[i].KeySize, m.Maps[i].ValueSize = 8, 28 // same record size, other layout
				}
			}
		})
		a, err := ReadArtifact(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = swapRefused(t, a)
		if err == nil || !strings.Contains(err.Error(), "map endpoints: key 8 and value 28 bytes") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("program the verifier rejects", func(t *testing.T) {
		requireBPF(t)
		cs := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"bad": {
			Name: "bad", Type: ebpf.SchedCLS, License: "Dual BSD/GPL",
			Instructions: asm.Instructions{
				asm.LoadMem(asm.R0, asm.R2, 0, asm.DWord), // R2 was never set
				asm.Return(),
			},
		}}}
		_, err := loadCollection("testdir", cs, nil)
		if err == nil || !strings.Contains(err.Error(), "testdir: the kernel verifier rejected a program") {
			t.Fatalf("got %v", err)
		}
		// The agent counts it as the artifact's fault, under "verifier".
		if reason, final := swapRefusal(err); reason != "verifier" || !final {
			t.Errorf("swapRefusal: %q, artifact at fault %v", reason, final)
		}
	})
}

// Failures of the node, not the artifact, are retried; the rest wait for a
// new artifact.
func TestSwapRefusal(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason string
		final  bool
	}{
		{fmt.Errorf("load: %w", ErrPrivilege), "load", false},
		{fmt.Errorf("create map: %w", unix.ENOMEM), "load", false},
		{errors.New("map ipcache: truncated"), "load", true},
	} {
		if reason, final := swapRefusal(c.err); reason != c.reason || final != c.final {
			t.Errorf("swapRefusal(%v) = %q, %v; want %q, %v", c.err, reason, final, c.reason, c.final)
		}
	}
}

// ReadDatapathAfter takes the files whose checksums it verified in the
// previous artifact from it, and reads and checks the others.
func TestReadDatapathAfter(t *testing.T) {
	dir := writeSeed(t)
	prev, err := ReadDatapath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := prev.Files["ir.json"]; ok {
		t.Error("ReadDatapath read ir.json, which the datapath does not load")
	}
	want := prev.Files["maps/ipcache.bin"]
	// Unchanged by checksum: not read again (garbage on disk goes unseen,
	// and what is loaded is what was verified).
	replaceFile(t, filepath.Join(dir, "maps", "ipcache.bin"), []byte("garbage"))
	next, err := ReadDatapathAfter(dir, prev)
	if err != nil {
		t.Fatalf("an artifact whose files prev verified: %v", err)
	}
	if !bytes.Equal(next.Files["maps/ipcache.bin"], want) {
		t.Error("the ipcache image was not taken from the previous artifact")
	}
	// A file whose checksum is new is read and checked.
	editManifest(t, dir, func(m *emit.Manifest) { m.Files["maps/ipcache.bin"] = strings.Repeat("0", 64) })
	if _, err := ReadDatapathAfter(dir, prev); err == nil || !strings.Contains(err.Error(), "ipcache.bin has sha256") {
		t.Errorf("a changed file that does not match its checksum: %v", err)
	}
}
