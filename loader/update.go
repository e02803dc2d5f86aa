package loader

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// SwapInfo says how a swap was made.
type SwapInfo struct {
	// Incremental: the idle half's generation was rewritten entry by entry
	// into the new one, rather than built from scratch.
	Incremental bool
	// MapWrites and MapDeletes count the entries an incremental swap wrote
	// and removed; a full swap fills whole maps and counts none.
	MapWrites, MapDeletes int
	// ProgramsLoaded went through the verifier; ProgramsKept were the same
	// code as in the rewritten generation and were kept as they were.
	ProgramsLoaded, ProgramsKept int
	// Fallback is why an incremental swap was not possible and the
	// generation was built in full ("" when it was incremental, or when no
	// earlier generation was there to rewrite).
	Fallback string
}

// update rewrites gen, the generation in the idle half (which no packet
// runs: see barrier), into the plan's generation: programs whose code is
// unchanged are kept, the others are loaded through the verifier against
// gen's maps, and each map gets only the entries that differ between its
// image and the plan's. Programs are loaded before any map is touched, so
// a rejected program leaves gen as it was (dirty false); once maps are
// being written, a failure leaves gen unusable (dirty true). On success
// gen's maps and kept programs belong to the returned generation, and gen
// must not be used again.
func (s *Switch) update(gen *Datapath, p *genPlan) (dp *Datapath, info SwapInfo, dirty bool, err error) {
	if gen.images == nil {
		return nil, info, false, errors.New("the idle generation has no record of its map contents")
	}
	if len(gen.Maps) != len(p.spec.Maps) {
		return nil, info, false, fmt.Errorf("the map set changed (%d maps, now %d)", len(gen.Maps), len(p.spec.Maps))
	}
	for name, spec := range p.spec.Maps {
		m, ok := gen.Maps[name]
		if !ok {
			return nil, info, false, fmt.Errorf("map %s is new", name)
		}
		if err := spec.Compatible(m); err != nil {
			return nil, info, false, fmt.Errorf("map %s changed shape: %v", name, err)
		}
	}

	// Programs: keep those whose code is the same, load the rest.
	byPrint := map[string]*ebpf.Program{}
	for name, fp := range gen.fingerprints {
		if prog := gen.Programs[name]; prog != nil {
			byPrint[fp] = prog
		}
	}
	progs := map[string]*ebpf.Program{}
	kept := map[*ebpf.Program]bool{}
	toLoad := map[string]*ebpf.ProgramSpec{}
	for name, spec := range p.spec.Programs {
		prog := byPrint[p.fingerprints[name]]
		if prog == nil {
			toLoad[name] = spec
			continue
		}
		if kept[prog] { // two policies compiled to the same code
			if prog, err = prog.Clone(); err != nil {
				closePrograms(progs, kept)
				return nil, info, false, err
			}
		}
		kept[prog] = true
		progs[name] = prog
		info.ProgramsKept++
	}
	if len(toLoad) > 0 {
		p.instructions(toLoad)
		loaded, err := loadCollection(p.dir, &ebpf.CollectionSpec{Maps: p.spec.Maps, Programs: toLoad}, gen.Maps)
		if err != nil {
			closePrograms(progs, kept)
			return nil, info, false, err
		}
		for _, m := range loaded.Maps { // clones of gen's maps
			m.Close()
		}
		for name, prog := range loaded.Programs {
			progs[name] = prog
		}
		info.ProgramsLoaded = len(loaded.Programs)
	}

	// Maps: from here on gen is being rewritten. First back to its images,
	// without the runtime pods' entries (Swap writes the new ones).
	for addr := range gen.runtimeWritten {
		if err := gen.restoreRuntime(addr); err != nil {
			closePrograms(progs, kept)
			return nil, info, true, err
		}
	}
	for name, image := range p.images {
		spec := p.spec.Maps[name]
		writes, deletes := imageDelta(gen.images[name], image, int(spec.KeySize), int(spec.ValueSize))
		m := gen.Maps[name]
		// Deletes first, so that a full map has room for the writes.
		for _, k := range deletes {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				closePrograms(progs, kept)
				return nil, info, true, fmt.Errorf("map %s: delete an entry: %w", name, err)
			}
		}
		for _, rec := range writes {
			if err := m.Put(rec[:spec.KeySize], rec[spec.KeySize:]); err != nil {
				closePrograms(progs, kept)
				return nil, info, true, fmt.Errorf("map %s: write an entry: %w", name, err)
			}
		}
		info.MapWrites += len(writes)
		info.MapDeletes += len(deletes)
	}

	for name, prog := range gen.Programs {
		if !kept[prog] {
			prog.Close()
		}
		delete(gen.Programs, name)
	}
	info.Incremental = true
	dp = &Datapath{Maps: gen.Maps, Programs: progs, Specs: p.spec.Programs}
	p.attach(dp)
	return dp, info, true, nil
}

// closePrograms closes the programs update loaded or cloned, not those it
// took from the generation it was rewriting.
func closePrograms(progs map[string]*ebpf.Program, kept map[*ebpf.Program]bool) {
	for _, prog := range progs {
		if !kept[prog] {
			prog.Close()
		}
	}
}

// imageDelta compares two map images (records of key then value) and
// returns the records of next to write (new keys, changed values) and
// the keys of prev to delete. Where both images are in key-byte order one
// merge pass does it; otherwise (LPM images are sorted by prefix, not by
// key bytes) it compares through a hash table.
func imageDelta(prev, next []byte, keySize, valueSize int) (writes, deletes [][]byte) {
	rec := keySize + valueSize
	// Changes are usually local: records equal at the same place from
	// either end hold the same keys with the same values in both images
	// (a key is in an image once), so only the middles need comparing.
	head, tail := commonEnds(prev, next, rec)
	prev, next = prev[head:len(prev)-tail], next[head:len(next)-tail]
	if len(prev) == 0 && len(next) == 0 {
		return nil, nil
	}
	if !sortedImage(prev, keySize, rec) || !sortedImage(next, keySize, rec) {
		return imageDeltaUnsorted(prev, next, keySize, rec)
	}
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		var c int
		switch {
		case i >= len(prev):
			c = 1
		case j >= len(next):
			c = -1
		default:
			c = bytes.Compare(prev[i:i+keySize], next[j:j+keySize])
		}
		switch {
		case c < 0:
			deletes = append(deletes, prev[i:i+keySize])
			i += rec
		case c > 0:
			writes = append(writes, next[j:j+rec])
			j += rec
		default:
			if !bytes.Equal(prev[i+keySize:i+rec], next[j+keySize:j+rec]) {
				writes = append(writes, next[j:j+rec])
			}
			i += rec
			j += rec
		}
	}
	return writes, deletes
}

// commonEnds returns the lengths, in whole records, of the longest common
// head and (not overlapping it) tail of two images.
func commonEnds(prev, next []byte, rec int) (head, tail int) {
	n := min(len(prev), len(next))
	const chunk = 4096
	for head+chunk <= n && bytes.Equal(prev[head:head+chunk], next[head:head+chunk]) {
		head += chunk
	}
	for head < n && prev[head] == next[head] {
		head++
	}
	head -= head % rec
	room := n - head
	for tail+chunk <= room && bytes.Equal(prev[len(prev)-tail-chunk:len(prev)-tail], next[len(next)-tail-chunk:len(next)-tail]) {
		tail += chunk
	}
	for tail < room && prev[len(prev)-tail-1] == next[len(next)-tail-1] {
		tail++
	}
	tail -= tail % rec
	return head, tail
}

func sortedImage(image []byte, keySize, rec int) bool {
	for off := rec; off+rec <= len(image); off += rec {
		if bytes.Compare(image[off-rec:off-rec+keySize], image[off:off+keySize]) >= 0 {
			return false
		}
	}
	return true
}

func imageDeltaUnsorted(prev, next []byte, keySize, rec int) (writes, deletes [][]byte) {
	old := map[string][]byte{}
	for off := 0; off+rec <= len(prev); off += rec {
		old[string(prev[off:off+keySize])] = prev[off+keySize : off+rec]
	}
	seen := map[string]bool{}
	for off := 0; off+rec <= len(next); off += rec {
		k := string(next[off : off+keySize])
		seen[k] = true
		if v, ok := old[k]; !ok || !bytes.Equal(v, next[off+keySize:off+rec]) {
			writes = append(writes, next[off:off+rec])
		}
	}
	for off := 0; off+rec <= len(prev); off += rec {
		if !seen[string(prev[off:off+keySize])] {
			deletes = append(deletes, prev[off:off+keySize])
		}
	}
	return writes, deletes
}

// rcuBarrier waits until every BPF program that was running when it was
// called has returned. Updating a map-of-maps makes the kernel wait for an
// RCU grace period before the syscall returns (maybe_wait_bpf_programs),
// and TC programs run inside RCU read-side sections: after the wait, no
// packet that read the generation word before the last flip is still
// running the half that word named.
type rcuBarrier struct {
	outer, inner *ebpf.Map
}

func newRCUBarrier() (*rcuBarrier, error) {
	innerSpec := &ebpf.MapSpec{Name: "sl_rcu_inner", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	inner, err := ebpf.NewMap(innerSpec)
	if err != nil {
		return nil, privilege(fmt.Errorf("create the RCU barrier map: %w", err))
	}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Name: "sl_rcu", Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: innerSpec})
	if err != nil {
		inner.Close()
		return nil, privilege(fmt.Errorf("create the RCU barrier map: %w", err))
	}
	return &rcuBarrier{outer: outer, inner: inner}, nil
}

func (b *rcuBarrier) wait() error {
	if err := b.outer.Put(uint32(0), b.inner); err != nil {
		return fmt.Errorf("wait for running programs: %w", err)
	}
	return nil
}

func (b *rcuBarrier) close() {
	b.outer.Close()
	b.inner.Close()
}
