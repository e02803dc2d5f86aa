package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/emit"
)

// WriteArtifacts writes one subdirectory per artifact, plus the extra
// top-level files, into dir, atomically (see the package documentation).
func WriteArtifacts(dir string, arts []*emit.Artifact, extra map[string][]byte) error {
	w, err := NewOutputWriter(dir)
	if err != nil {
		return err
	}
	for _, a := range arts {
		if err := w.Write(a); err != nil {
			w.Abort()
			return err
		}
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := w.WriteFile(n, extra[n]); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// OutputWriter writes a compile output incrementally, so that a node's
// artifact can be dropped from memory once written, and swaps it into
// place at Commit. Write may be called from several goroutines.
type OutputWriter struct {
	// Durable makes Commit wait until the new tree is on disk before
	// swapping it in.
	Durable bool

	abs, parent, tmp string
	mu               sync.Mutex
	written          map[*emit.File]string
}

// NewOutputWriter starts an output that will replace dir.
func NewOutputWriter(dir string) (*OutputWriter, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	w := &OutputWriter{abs: abs, parent: filepath.Dir(abs), written: map[*emit.File]string{}}
	if err := os.MkdirAll(w.parent, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", w.parent, err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("output %s exists and is not a directory", abs)
	}
	w.tmp, err = os.MkdirTemp(w.parent, "."+filepath.Base(abs)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("create temporary output next to %s: %w", abs, err)
	}
	if err := os.Chmod(w.tmp, 0o755); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// Write writes one node's artifact. Shared files are written once and
// hard-linked after that.
func (w *OutputWriter) Write(a *emit.Artifact) error {
	nd := filepath.Join(w.tmp, a.Node)
	dirs := map[string]bool{}
	for _, f := range a.Files {
		path := filepath.Join(nd, filepath.FromSlash(f.Name))
		d := filepath.Dir(path)
		if !dirs[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			dirs[d] = true
		}
		if f.Shared {
			if err := w.writeShared(f, path); err != nil {
				return err
			}
			continue
		}
		if err := writeFile(path, f.Data); err != nil {
			return err
		}
	}
	return nil
}

func (w *OutputWriter) writeShared(f *emit.File, path string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if first, ok := w.written[f]; ok {
		if err := os.Link(first, path); err != nil {
			return fmt.Errorf("link %s: %w", path, err)
		}
		return nil
	}
	if err := writeFile(path, f.Data); err != nil {
		return err
	}
	w.written[f] = path
	return nil
}

// WriteFile writes a top-level file of the output.
func (w *OutputWriter) WriteFile(name string, data []byte) error {
	return writeFile(filepath.Join(w.tmp, name), data)
}

// Abort removes what was written; the destination is untouched.
func (w *OutputWriter) Abort() { os.RemoveAll(w.tmp) }

// Commit makes the output durable and swaps it into place.
func (w *OutputWriter) Commit() (err error) {
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	// With Durable, one syncfs makes every file of the new tree durable
	// before it becomes visible (far cheaper than an fsync per file).
	// Without it a crash may leave files that fail their checksums — and
	// are then refused by every reader — but costs no wait for the disk.
	if w.Durable {
		if err := syncFS(w.tmp); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(w.abs); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(w.tmp, w.abs); err != nil {
			return fmt.Errorf("move output into place: %w", err)
		}
		return syncDir(w.parent)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, w.tmp, unix.AT_FDCWD, w.abs, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("swap output into place: %w", err)
	}
	if err := syncDir(w.parent); err != nil {
		return err
	}
	// tmp now holds the previous output.
	return os.RemoveAll(w.tmp)
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func syncFS(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", path, err)
	}
	return nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// Artifact is an artifact directory read back and verified.
type Artifact struct {
	Dir      string
	Manifest emit.Manifest
	Files    map[string][]byte
}

// FromBuild makes an artifact from a build's in-memory files, checked as
// if read from disk (for tests and for loading what was just compiled).
func FromBuild(a *emit.Artifact) (*Artifact, error) {
	files := map[string][]byte{}
	for _, f := range a.Files {
		files[f.Name] = f.Data
	}
	return fromFiles(a.Node, files)
}

func fromFiles(dir string, files map[string][]byte) (*Artifact, error) {
	return fromFilesSums(dir, files, nil, nil)
}

// fromFilesSums checks files against the manifest, trusting the sums
// already computed for some of them.
func fromFilesSums(dir string, files map[string][]byte, sums map[string]string, only func(string) bool) (*Artifact, error) {
	a := &Artifact{Dir: dir, Files: map[string][]byte{}}
	if err := json.Unmarshal(files["manifest.json"], &a.Manifest); err != nil {
		return nil, fmt.Errorf("%s/manifest.json: %w", dir, err)
	}
	if a.Manifest.Format != emit.FormatVersion {
		return nil, fmt.Errorf("%s: format %q is not %q, the one this sluice reads", dir, a.Manifest.Format, emit.FormatVersion)
	}
	for name, sum := range a.Manifest.Files {
		if only != nil && !only(name) {
			continue
		}
		data, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("%s: file %s of the manifest is missing", dir, name)
		}
		got, ok := sums[name]
		if !ok {
			s := sha256.Sum256(data)
			got = hex.EncodeToString(s[:])
		}
		if got != sum {
			return nil, fmt.Errorf("%s: %s has sha256 %s, the manifest says %s", dir, name, got, sum)
		}
		a.Files[name] = data
	}
	return a, nil
}

// ErrNotArtifact is returned for a directory without manifest.json.
var ErrNotArtifact = errors.New("not an artifact directory (no manifest.json)")

// ReadArtifact reads a node's artifact directory and checks its format
// and every checksum.
func ReadArtifact(dir string) (*Artifact, error) {
	return readArtifact(dir, &fileCache{}, nil)
}

// ReadDatapath reads what the datapath loads from a node's artifact
// directory — the manifest, the map images, node.json, runtime.json and
// rules.json —
// and checks the format and the checksum of each of those files. The
// review files (dumps, listings, ir.json: most of the bytes of a large
// cluster's artifact) are neither read nor checked.
func ReadDatapath(dir string) (*Artifact, error) {
	return readArtifact(dir, &fileCache{}, datapathFile)
}

// ReadDatapathAfter is ReadDatapath for the artifact that follows prev
// (verified earlier): a file whose checksum in the new manifest is the one
// prev verified is taken from prev rather than read and hashed again —
// most of a large artifact, when little changed.
func ReadDatapathAfter(dir string, prev *Artifact) (*Artifact, error) {
	cache := fileCache{}
	if prev != nil {
		cache.prev = map[string][]byte{}
		for name, sum := range prev.Manifest.Files {
			if data, ok := prev.Files[name]; ok {
				cache.prev[sum] = data
			}
		}
	}
	return readArtifact(dir, &cache, datapathFile)
}

func datapathFile(name string) bool {
	return strings.HasPrefix(name, "maps/") || name == "node.json" || name == "runtime.json" || name == "rules.json"
}

// fileCache reads a file shared by several node artifacts (hard links)
// once, and checksums it once; with prev, a file whose manifest checksum
// is among prev's (verified files, by sha256) is not read at all.
type fileCache struct {
	links map[[2]uint64]cachedFile
	prev  map[string][]byte
}

type cachedFile struct {
	data []byte
	sum  string
}

func (c *fileCache) read(path, want string) ([]byte, string, error) {
	if data, ok := c.prev[want]; ok {
		return data, want, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if f, ok := c.links[key]; ok {
			return f.data, f.sum, nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", err
		}
		s := sha256.Sum256(data)
		f := cachedFile{data, hex.EncodeToString(s[:])}
		if c.links == nil {
			c.links = map[[2]uint64]cachedFile{}
		}
		c.links[key] = f
		return f.data, f.sum, nil
	}
	data, err := os.ReadFile(path)
	return data, "", err
}

func readArtifact(dir string, c *fileCache, only func(string) bool) (*Artifact, error) {
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotArtifact)
	}
	if err != nil {
		return nil, err
	}
	var m emit.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("%s/manifest.json: %w", dir, err)
	}
	files := map[string][]byte{"manifest.json": mb}
	sums := map[string]string{}
	for name, want := range m.Files {
		if only != nil && !only(name) {
			continue
		}
		data, sum, err := c.read(filepath.Join(dir, filepath.FromSlash(name)), want)
		if err != nil {
			return nil, fmt.Errorf("%s: file %s of the manifest: %w", dir, name, err)
		}
		files[name] = data
		if sum != "" {
			sums[name] = sum
		}
	}
	return fromFilesSums(dir, files, sums, only)
}

// ReadOutput reads every node artifact of a compile output directory
// (or a single node's artifact directory).
func ReadOutput(dir string) ([]*Artifact, error) {
	cache := &fileCache{}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		a, err := ReadArtifact(dir)
		if err != nil {
			return nil, err
		}
		return []*Artifact{a}, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*Artifact
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		a, err := readArtifact(filepath.Join(dir, e.Name()), cache, nil)
		if errors.Is(err, ErrNotArtifact) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no artifact (a directory with manifest.json) found", dir)
	}
	return out, nil
}
