package loader

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
)

// DatapathBenchCase is one row of the datapath benchmark.
type DatapathBenchCase struct {
	Path     string // floor, established, new
	IPCache  int    // ipcache entries
	Policies int    // policy entries of the endpoint
}

// DefaultDatapathBench are the rows make bench measures.
var DefaultDatapathBench = []DatapathBenchCase{
	{"floor", 0, 0},
	{"established", 1000, 10},
	{"established", 1000000, 10},
	{"new", 1000, 10},
	{"new", 100000, 10},
	{"new", 1000000, 10},
	{"new inline", 1000, 10},
	{"new inline", 1000000, 10},
	{"new world", 1000, 10},
	{"new world", 1000000, 10},
	{"new", 1000, 100},
	{"new", 1000, 10000},
	{"established via switch", 1000, 10},
	{"new via switch", 1000, 10},
	{"egress established", 1000, 10},
	{"egress established via switch", 1000, 10},
}

var (
	benchLocal = netip.MustParseAddr("10.0.0.10")
	benchPeer  = netip.MustParseAddr("10.200.0.1")
)

// benchArtifact lays out maps with n ipcache entries (random /32s, the
// peer among them) and m policy entries for the one local endpoint, whose
// ingress is enforced and has no rule for the benchmark packet: a new
// connection makes every lookup and is dropped by default.
func benchArtifact(n, m int, allow bool) *Artifact {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	a := &Artifact{Dir: fmt.Sprintf("bench-%d-%d", n, m), Files: map[string][]byte{}}
	add := func(name, typ string, ks, vs, size int, recs [][2][]byte) {
		var data []byte
		for _, r := range recs {
			data = append(data, r[0]...)
			data = append(data, r[1]...)
		}
		file := "maps/" + name + ".bin"
		a.Files[file] = data
		flags := uint32(0)
		if typ == "lpm_trie" {
			flags = 1
		}
		a.Manifest.Maps = append(a.Manifest.Maps, ManifestMapOf(name, typ, ks, vs, max(size, len(recs), 1), flags, len(recs), file))
	}
	ipc := [][2][]byte{
		{emit.IPCacheKey{Prefix: netip.MustParsePrefix("0.0.0.0/0")}.Bytes(), emit.IPCacheValue{Identity: 2, Node: emit.NodeNone}.Bytes()},
		{emit.IPCacheKey{Prefix: netip.PrefixFrom(benchPeer, 32)}.Bytes(), emit.IPCacheValue{Identity: 1000, Node: 1, Flags: emit.FlagEndpoint}.Bytes()},
		{emit.IPCacheKey{Prefix: netip.PrefixFrom(benchLocal, 32)}.Bytes(), emit.IPCacheValue{Identity: 1001, Node: 0, Flags: emit.FlagEndpoint}.Bytes()},
	}
	seen := map[netip.Addr]bool{benchPeer: true, benchLocal: true}
	for len(ipc) < n {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0b000000|rng.Uint32()&0x00ffffff) // 11.0.0.0/8
		ip := netip.AddrFrom4(b)
		if seen[ip] {
			continue
		}
		seen[ip] = true
		ipc = append(ipc, [2][]byte{emit.IPCacheKey{Prefix: netip.PrefixFrom(ip, 32)}.Bytes(), emit.IPCacheValue{Identity: 256 + uint32(len(ipc)%5000), Node: 1, Flags: emit.FlagEndpoint}.Bytes()})
	}
	add("ipcache", "lpm_trie", emit.IPCacheKeySize, emit.IPCacheValueSize, n, ipc)
	var exact [][2][]byte
	for _, r := range ipc {
		if binary.LittleEndian.Uint32(r[0]) == 32 {
			exact = append(exact, [2][]byte{r[0][4:8], r[1]})
		}
	}
	if n >= emit.ExactIPCacheMin { // as emit decides
		add("ipcache_exact", "hash", emit.IPCacheExactKeySize, emit.IPCacheValueSize, n, exact)
	}
	cls := [][2][]byte{{emit.ClassKey{Identity: 1000, PeerNode: emit.NodeNone}.Bytes(), binary.LittleEndian.AppendUint32(nil, 7)}}
	add("classes", "hash", emit.ClassKeySize, emit.ClassValueSize, 16, cls)
	var pol [][2][]byte
	for i := 0; len(pol) < m; i++ {
		// Entries of other classes and ports than the packet's.
		k := emit.PolicyKey{Bits: 96, Policy: 1, Class: uint32(8 + i/1000), Dir: emit.DirIngress, Proto: 6, Port: uint16(1000 + i%1000)}
		pol = append(pol, [2][]byte{k.Bytes(), emit.PolicyValue{Action: emit.ActionAllow, Rule: uint32(i + 1)}.Bytes()})
	}
	if allow {
		k := emit.PolicyKey{Bits: 96, Policy: 1, Class: 7, Dir: emit.DirIngress, Proto: 6, Port: 80}
		pol[0] = [2][]byte{k.Bytes(), emit.PolicyValue{Action: emit.ActionAllow, Rule: 1}.Bytes()}
	}
	add("policy", "lpm_trie", emit.PolicyKeySize, emit.PolicyValueSize, m, pol)
	l4 := benchLocal.As4()
	eps := [][2][]byte{{l4[:], emit.EndpointValue{Identity: 1001, Policy: 1, Flags: emit.EndpointIngressEnforced}.Bytes()}}
	add("endpoints", "hash", emit.EndpointKeySize, emit.EndpointValueSize, 16, eps)
	return a
}

// ManifestMapOf describes a map image for a hand-built artifact.
func ManifestMapOf(name, typ string, keySize, valueSize, maxEntries int, flags uint32, entries int, file string) emit.ManifestMap {
	return emit.ManifestMap{MapSpec: emit.MapSpec{Name: name, Type: typ, KeySize: keySize, ValueSize: valueSize,
		MaxEntries: maxEntries, Flags: flags, Entries: entries}, File: file}
}

// BenchDatapath measures the to-container program (the from-container one
// for the "egress" rows) with BPF_PROG_TEST_RUN repeat counts and prints
// ns/packet and the ratio to a program that returns at once, all measured
// in this run. The "via switch" rows run what an attached veth runs: the
// endpoint's dispatcher (on from-container with its source check), then a
// tail call into the serving half.
func BenchDatapath(w io.Writer, cases []DatapathBenchCase, repeat int) error {
	pkt := bpf.Packet(benchPeer, benchLocal, 6, 40000, 80, 0x02)
	floorProg, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Dual BSD/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return fmt.Errorf("load the floor program: %w", err)
	}
	defer floorProg.Close()
	_, floor, err := floorProg.Benchmark(pkt, repeat, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "datapath: to-container (egress: from-container), BPF_PROG_TEST_RUN, %d repeats, hot caches\n", repeat)
	fmt.Fprintf(w, "  %-30s %10s %12s %10s %8s\n", "path", "ipcache", "policy/ep", "ns/packet", "x floor")
	results := map[DatapathBenchCase]float64{}
	for _, c := range cases {
		var d time.Duration
		if c.Path == "floor" {
			d = floor
		} else {
			established := strings.Contains(c.Path, "established")
			dir, in := bpf.ToContainer, pkt
			if strings.HasPrefix(c.Path, "egress") {
				// The pod's egress is not enforced: the first packet is
				// allowed and tracked.
				dir, in = bpf.FromContainer, bpf.Packet(benchLocal, benchPeer, 6, 40000, 80, 0x02)
			}
			a := benchArtifact(c.IPCache, c.Policies, established)
			dp, err := LoadArtifact(a)
			if err != nil {
				return err
			}
			prog := dp.Programs[dir.String()]
			if strings.HasSuffix(c.Path, "via switch") {
				d, done, err := dispatchedBench(a, dir)
				if err != nil {
					dp.Close()
					return err
				}
				defer done()
				prog = d
			}
			if c.Path == "new inline" {
				// The same entries, compiled into the program.
				var inline []emit.InlineEntry
				data := a.Files["maps/policy.bin"]
				for off := 0; off+emit.PolicyKeySize+emit.PolicyValueSize <= len(data); off += emit.PolicyKeySize + emit.PolicyValueSize {
					k, v := data[off:], data[off+emit.PolicyKeySize:]
					inline = append(inline, emit.InlineEntry{Bits: binary.LittleEndian.Uint32(k), Class: binary.LittleEndian.Uint32(k[8:]), Dir: k[12], Proto: k[13],
						Port: binary.BigEndian.Uint16(k[14:]), Action: v[0], Rule: binary.LittleEndian.Uint32(v[4:])})
				}
				spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{}, Programs: map[string]*ebpf.ProgramSpec{"p": {Name: "bench_inline", Type: ebpf.SchedCLS,
					License: "Dual BSD/GPL", Instructions: bpf.PolicyProgramFor(bpf.ToContainer, inline, FeaturesOf(a.Manifest))}}}
				repl := map[string]*ebpf.Map{}
				for name, m := range dp.Maps {
					info, err := m.Info()
					if err != nil {
						dp.Close()
						return err
					}
					spec.Maps[name] = &ebpf.MapSpec{Name: name, Type: info.Type, KeySize: info.KeySize, ValueSize: info.ValueSize, MaxEntries: info.MaxEntries, Flags: info.Flags}
					repl[name] = m
				}
				coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
				if err != nil {
					dp.Close()
					return fmt.Errorf("inline program: %w", err)
				}
				defer coll.Close()
				prog = coll.Programs["p"]
			}
			want := uint32(bpf.TCXDrop)
			if established {
				// The first packet is allowed and tracked; the rest hit
				// conntrack.
				want = bpf.TCXPass
				if _, err := prog.Run(&ebpf.RunOptions{Data: in}); err != nil {
					dp.Close()
					return err
				}
			}
			if c.Path == "new world" {
				// A peer outside the exact map: the LPM lookup.
				in = bpf.Packet(netip.MustParseAddr("203.0.113.9"), benchLocal, 6, 40000, 80, 0x02)
			}
			ret, dd, err := prog.Benchmark(in, repeat, nil)
			dp.Close()
			if err != nil {
				return err
			}
			if ret != want {
				return fmt.Errorf("%s path returned %d, want %d", c.Path, ret, want)
			}
			d = dd
		}
		ns := float64(d.Nanoseconds())
		results[c] = ns
		fmt.Fprintf(w, "  %-30s %10d %12d %10.1f %8.2f\n", c.Path, c.IPCache, c.Policies, ns, ns/float64(floor.Nanoseconds()))
	}
	fl := float64(floor.Nanoseconds())
	est := results[DatapathBenchCase{"established", 1000000, 10}]
	new1M := max(results[DatapathBenchCase{"new", 1000000, 10}], results[DatapathBenchCase{"new world", 1000000, 10}])
	new1k := results[DatapathBenchCase{"new", 1000, 10}]
	if e, d := results[DatapathBenchCase{"egress established", 1000, 10}], results[DatapathBenchCase{"egress established via switch", 1000, 10}]; e > 0 && d > 0 && fl > 0 {
		fmt.Fprintf(w, "  egress established: %.2fx floor, via switch (source check, tail call) %.2fx\n", e/fl, d/fl)
	}
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	if est > 0 && new1M > 0 && new1k > 0 && fl > 0 {
		fmt.Fprintf(w, "  established path %.2fx floor (target <= 3) %s; new path at 1M ipcache %.2fx floor (target <= 8) %s; growth 1k -> 1M %.2fx (target <= 1.5) %s\n",
			est/fl, verdict(est/fl <= 3), new1M/fl, verdict(new1M/fl <= 8), new1M/new1k, verdict(new1M/new1k <= 1.5))
	}
	return nil
}

// dispatchedBench swaps a into a fresh Switch with one endpoint, the
// benchmark's local pod, in slot 0 and returns that endpoint's dispatcher
// for dir.
func dispatchedBench(a *Artifact, dir bpf.Direction) (*ebpf.Program, func(), error) {
	sw, err := NewSwitch("")
	if err != nil {
		return nil, nil, err
	}
	if err := sw.Swap(a); err != nil {
		sw.Close()
		return nil, nil, err
	}
	at := &attachment{slot: 0, addr: benchLocal}
	sw.endpoints["bench"] = at
	if err := sw.fill(sw.gen, "bench", sw.half); err != nil {
		sw.Close()
		return nil, nil, err
	}
	spec, _, err := sw.dispatcherSpec("bench", at, slices.Index(directions[:], dir))
	if err != nil {
		sw.Close()
		return nil, nil, err
	}
	d, err := ebpf.NewProgram(spec)
	if err != nil {
		sw.Close()
		return nil, nil, err
	}
	return d, func() { d.Close(); sw.Close() }, nil
}

// SwapBenchResult is the swap latency of one node's artifact: from reading
// (and verifying) the artifact directory to the new generation serving,
// built in full and incrementally.
type SwapBenchResult struct {
	Name     string
	Programs int
	// Full is the median (and FullMax the worst) of swaps that build the
	// generation from scratch.
	Full, FullMax time.Duration
	// Incremental is the median (and IncrementalMax the worst) of swaps that
	// rewrite the idle half's generation, each differing from it by one
	// service; IncrementalWrites is the median of map entries written.
	Incremental, IncrementalMax time.Duration
	IncrementalWrites           int
	LoadOnlyMedian              time.Duration // LoadArtifact alone, the floor a full swap builds on
	// Barrier is the median wait for an RCU grace period, which a swap
	// right after another waits out.
	Barrier time.Duration
}

// BenchSwap measures swaps of the artifact in dirs[0] in full, runs times
// (after a first swap), and loads it alone as often, for the baseline.
// Then it swaps dirs in rotation, each a variant of the first with one
// service changed: the idle half always holds the generation two swaps
// back, so each incremental swap rewrites one service's entries.
func BenchSwap(name string, dirs []string, runs int) (SwapBenchResult, error) {
	res := SwapBenchResult{Name: name}
	sw, err := NewSwitch("")
	if err != nil {
		return res, err
	}
	defer sw.Close()
	sw.FullSwaps = true
	var full, loads, incr []time.Duration
	var writes []int
	for i := 0; i <= runs; i++ {
		start := time.Now()
		a, err := ReadDatapath(dirs[0])
		if err != nil {
			return res, err
		}
		if err := sw.Swap(a); err != nil {
			return res, err
		}
		if i > 0 {
			full = append(full, time.Since(start))
		}
		res.Programs = len(sw.gen.Programs)
		start = time.Now()
		dp, err := LoadArtifact(a)
		if err != nil {
			return res, err
		}
		loads = append(loads, time.Since(start))
		dp.Close()
	}
	sw.FullSwaps = false
	var prev *Artifact // what the agent keeps of the serving artifact
	for i := 0; len(incr) < runs; i++ {
		// Generations come seconds apart in practice; give the RCU grace
		// period that follows each flip time to end, as it would.
		time.Sleep(swapSpacing)
		start := time.Now()
		a, err := ReadDatapathAfter(dirs[i%len(dirs)], prev)
		if err != nil {
			return res, err
		}
		if err := sw.Swap(a); err != nil {
			return res, err
		}
		took := time.Since(start)
		prev = a
		if !sw.LastSwap.Incremental {
			if i > 2 {
				return res, fmt.Errorf("swap %d was not incremental: %s", i, sw.LastSwap.Fallback)
			}
			continue
		}
		incr = append(incr, took)
		writes = append(writes, sw.LastSwap.MapWrites+sw.LastSwap.MapDeletes)
	}
	// What a swap right after another waits for: the RCU grace period.
	var barriers []time.Duration
	for range 5 {
		start := time.Now()
		if err := sw.barrier.wait(); err != nil {
			return res, err
		}
		barriers = append(barriers, time.Since(start))
	}
	slices.Sort(barriers)
	res.Barrier = barriers[len(barriers)/2]
	slices.Sort(full)
	slices.Sort(loads)
	slices.Sort(incr)
	slices.Sort(writes)
	res.Full, res.FullMax, res.LoadOnlyMedian = full[len(full)/2], full[len(full)-1], loads[len(loads)/2]
	res.Incremental, res.IncrementalMax, res.IncrementalWrites = incr[len(incr)/2], incr[len(incr)-1], writes[len(writes)/2]
	return res, nil
}

// swapSpacing is the time between incremental swaps in BenchSwap.
const swapSpacing = 100 * time.Millisecond

// PrintSwapBench prints the swap table.
func PrintSwapBench(w io.Writer, rows []SwapBenchResult) {
	fmt.Fprintln(w, "swap latency (read and verify the artifact, build the generation, fill the idle half, flip):")
	fmt.Fprintf(w, "  %-44s %8s %10s %10s %10s %12s %14s %8s\n", "artifact", "programs", "full", "full max", "load alone", "incremental", "incr. max", "entries")
	for _, r := range rows {
		fmt.Fprintf(w, "  %-44s %8d %10s %10s %10s %12s %14s %8d\n", r.Name, r.Programs, ms(r.Full), ms(r.FullMax), ms(r.LoadOnlyMedian),
			ms(r.Incremental), ms(r.IncrementalMax), r.IncrementalWrites)
	}
	var barrier time.Duration
	for _, r := range rows {
		barrier = max(barrier, r.Barrier)
	}
	fmt.Fprintf(w, "  (incremental: swaps %v apart, each generation differing from the one the idle half holds by one service's\n", swapSpacing)
	fmt.Fprintf(w, "   backends; back to back, a swap also waits out the RCU grace period after the previous flip: %s measured;\n", ms(barrier))
	fmt.Fprintln(w, "   entries: map entries written or deleted per incremental swap, median)")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
