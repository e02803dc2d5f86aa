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

	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/emit"
)

// WriteArtifacts writes one subdirectory per artifact, plus the extra
// top-level files, into dir, atomically (see the package documentation).
func WriteArtifacts(dir string, arts []*emit.Artifact, extra map[string][]byte) (err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	parent, base := filepath.Dir(abs), filepath.Base(abs)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return fmt.Errorf("output %s exists and is not a directory", abs)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("create temporary output next to %s: %w", abs, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	written := map[*emit.File]string{}
	for _, a := range arts {
		nd := filepath.Join(tmp, a.Node)
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
			if first, ok := written[f]; ok && f.Shared {
				if err := os.Link(first, path); err != nil {
					return fmt.Errorf("link %s: %w", path, err)
				}
				continue
			}
			if err := writeFileSync(path, f.Data); err != nil {
				return err
			}
			written[f] = path
		}
		for d := range dirs {
			if err := syncDir(d); err != nil {
				return err
			}
		}
		if err := syncDir(nd); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := writeFileSync(filepath.Join(tmp, n), extra[n]); err != nil {
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if _, err := os.Lstat(abs); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(tmp, abs); err != nil {
			return fmt.Errorf("move output into place: %w", err)
		}
		return syncDir(parent)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, abs, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("swap output into place: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	// tmp now holds the previous output.
	return os.RemoveAll(tmp)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
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

// ErrNotArtifact is returned for a directory without manifest.json.
var ErrNotArtifact = errors.New("not an artifact directory (no manifest.json)")

// ReadArtifact reads a node's artifact directory and checks its format
// and every checksum.
func ReadArtifact(dir string) (*Artifact, error) {
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotArtifact)
	}
	if err != nil {
		return nil, err
	}
	a := &Artifact{Dir: dir, Files: map[string][]byte{}}
	if err := json.Unmarshal(mb, &a.Manifest); err != nil {
		return nil, fmt.Errorf("%s/manifest.json: %w", dir, err)
	}
	if a.Manifest.Format != emit.FormatVersion {
		return nil, fmt.Errorf("%s: format %q is not %q, the one this sluice reads", dir, a.Manifest.Format, emit.FormatVersion)
	}
	for name, sum := range a.Manifest.Files {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return nil, fmt.Errorf("%s: file %s of the manifest: %w", dir, name, err)
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != sum {
			return nil, fmt.Errorf("%s: %s has sha256 %s, the manifest says %s", dir, name, hex.EncodeToString(got[:]), sum)
		}
		a.Files[name] = data
	}
	return a, nil
}

// ReadOutput reads every node artifact of a compile output directory
// (or a single node's artifact directory).
func ReadOutput(dir string) ([]*Artifact, error) {
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
		a, err := ReadArtifact(filepath.Join(dir, e.Name()))
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
