package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
)

// MaxEndpoints is how many endpoints a Switch serves at once.
const MaxEndpoints = 4096

// tcActShot is TC_ACT_SHOT: a dispatcher with no program to run drops,
// so that a pod is never left unenforced.
const tcActShot = 2

// Switch is the part of a node's datapath that outlives generations:
//   - the conntrack and drop-counter maps, shared by every generation;
//   - a program array in two halves, one per generation, indexed by
//     (endpoint slot, direction, half);
//   - a one-word map saying which half serves;
//   - per endpoint and direction, a dispatcher program attached with TCX
//     that reads the word and tail-calls into that half.
//
// Swap loads a generation into the idle half and then writes the word: one
// map update, after which every packet on every endpoint runs the new
// generation, and before which every packet runs the old one. See doc.go.
type Switch struct {
	pinDir    string                   // where everything is pinned; "" for nothing
	nodeState map[string]*ebpf.Map     // conntrack and drops, by map name
	progs     *ebpf.Map                // program array: key progKey(slot, dir, half)
	active    *ebpf.Map                // array of one uint32: the serving half
	half      uint32                   // the serving half, as last written
	serving   bool                     // a half serves (swapped in, or adopted from pins)
	slots     *ebpf.Map                // endpoint name → slot and ifindex, so a restart can adopt
	sockProgs [bpf.SockHooks]*ebpf.Map // per socket hook, a program array by half
	sock      *sockAttachment          // the socket load balancer's cgroup attachment; nil for none
	gen       *Datapath                // the serving generation; nil before the first Swap
	idleGen   *Datapath                // the generation the idle half holds, to rewrite; nil for none
	barrier   *rcuBarrier
	settled   chan error // the RCU barrier started after the last flip; nil once waited for
	endpoints map[string]*attachment
	freeSlots []uint32
	runtime   map[netip.Addr]PodRef // pods to enforce beyond what the artifact lists (SetRuntimePods)
	ruleDrops map[RuleDrop]uint64   // drop counts harvested from generations no longer serving
	// retiredDrops is a drops map an earlier agent pinned with fewer
	// reasons: the generation adopted with it counts there until the
	// next swap, and Drops adds what it holds.
	retiredDrops *ebpf.Map

	// Generation counts the swaps that took effect.
	Generation uint64
	// LastSwap describes the last swap that took effect.
	LastSwap SwapInfo
	// RuntimePods says how the serving generation enforces the pods it
	// does not list (as of the last Swap or SetRuntimePods).
	RuntimePods []RuntimePod
	// FullSwaps makes every swap build its generation from scratch rather
	// than rewrite the idle half's (for benchmarks and troubleshooting).
	FullSwaps bool
}

type attachment struct {
	slot        uint32
	ifindex     int
	addr        netip.Addr          // the IPv4 address endpoint_links gives ifindex; invalid for none
	installed   [2][2]*ebpf.Program // by half and direction: what fill last put in the program array
	dispatchers [2]*ebpf.Program    // by direction; nil for one adopted in its link and kept
	links       []link.Link
	// current: the links run the dispatchers this switch builds for addr
	// (an adopted endpoint's are checked, and replaced where they are not).
	current bool
}

var directions = [2]bpf.Direction{bpf.FromContainer, bpf.ToContainer}

func progKey(slot uint32, dirIndex int, half uint32) uint32 {
	return (slot*2+uint32(dirIndex))*2 + half
}

// NewSwitch creates the node-lifetime maps. With a pin directory (on a
// bpf filesystem) it pins them and every endpoint's TCX links there, and
// adopts what an earlier agent pinned: the serving generation, the
// attachments and conntrack stay as they are, and the next Swap goes into
// the idle half. Nothing serves until the first Swap, unless adopted.
func NewSwitch(pinDir string) (*Switch, error) {
	s := &Switch{pinDir: pinDir, nodeState: map[string]*ebpf.Map{}, endpoints: map[string]*attachment{}}
	if pinDir != "" {
		if err := checkBPFFS(pinDir); err != nil {
			return nil, err
		}
	}
	specs := append(nodeStateSpecs(),
		&ebpf.MapSpec{Name: "sl_gen_progs", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: MaxEndpoints * 4},
		&ebpf.MapSpec{Name: "sl_gen_active", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		&ebpf.MapSpec{Name: "sl_slots", Type: ebpf.Hash, KeySize: slotKeySize, ValueSize: 8, MaxEntries: MaxEndpoints},
	)
	for h := range bpf.SockHooks {
		specs = append(specs, &ebpf.MapSpec{Name: sockArrayName(h), Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	}
	// An earlier agent's datapath is adopted when the switch's own maps
	// are pinned; node state it did not have (a map added since) starts
	// empty.
	adopted := 0
	for _, spec := range specs {
		m, found, err := s.openMap(spec)
		if err != nil {
			s.Close()
			return nil, err
		}
		switch spec.Name {
		case "sl_gen_progs":
			s.progs = m
		case "sl_gen_active":
			s.active = m
		case "sl_slots":
			s.slots = m
		case sockArrayName(bpf.SockConnect4), sockArrayName(bpf.SockSendmsg4), sockArrayName(bpf.SockRecvmsg4), sockArrayName(bpf.SockGetpeername4):
			for h := range bpf.SockHooks {
				if spec.Name == sockArrayName(h) {
					s.sockProgs[h] = m
				}
			}
		default:
			s.nodeState[spec.Name] = m
		}
		if found && (m == s.progs || m == s.active || m == s.slots) {
			adopted++
		}
	}
	var err error
	if s.barrier, err = newRCUBarrier(); err != nil {
		s.Close()
		return nil, err
	}
	used := map[uint32]bool{}
	if adopted == 3 {
		if err := s.adopt(used); err != nil {
			s.Close()
			return nil, err
		}
	}
	for i := MaxEndpoints - 1; i >= 0; i-- {
		if !used[uint32(i)] {
			s.freeSlots = append(s.freeSlots, uint32(i))
		}
	}
	return s, nil
}

// slotKeySize bounds an endpoint name ("namespace/name": 63 + 1 + 253).
const slotKeySize = 320

func slotKey(endpoint string) []byte {
	k := make([]byte, slotKeySize)
	copy(k, endpoint)
	return k
}

// openMap opens the pinned map of that name when there is one with the
// same layout, else creates (and pins) it.
func (s *Switch) openMap(spec *ebpf.MapSpec) (*ebpf.Map, bool, error) {
	if s.pinDir != "" {
		path := filepath.Join(s.pinDir, spec.Name)
		if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
			err := spec.Compatible(m)
			switch {
			case err == nil:
				return m, true, nil
			case s.retiredDrops == nil && fewerCounters(spec, m):
				// Counted by reasons an earlier agent knew fewer of: a
				// new map takes the pin, the old one keeps its counts.
				if err := m.Unpin(); err != nil {
					m.Close()
					return nil, false, fmt.Errorf("unpin the old %s: %w", path, err)
				}
				s.retiredDrops = m
			default:
				m.Close()
				return nil, false, fmt.Errorf("pinned map %s is not what this agent uses (%v); remove it with sluice-agent --uninstall", path, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, false, privilege(fmt.Errorf("open pinned %s: %w", path, err))
		}
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, false, privilege(fmt.Errorf("create %s: %w", spec.Name, err))
	}
	if s.pinDir != "" {
		if err := m.Pin(filepath.Join(s.pinDir, spec.Name)); err != nil {
			m.Close()
			return nil, false, fmt.Errorf("pin %s: %w", spec.Name, err)
		}
	}
	return m, false, nil
}

// fewerCounters says whether a pinned map is the drops map of an agent
// that knew fewer drop reasons: the same layout, fewer entries.
func fewerCounters(spec *ebpf.MapSpec, m *ebpf.Map) bool {
	return spec.Name == bpf.MapDrops && m.Type() == spec.Type && m.KeySize() == spec.KeySize &&
		m.ValueSize() == spec.ValueSize && m.Flags() == spec.Flags && m.MaxEntries() < spec.MaxEntries
}

// adopt takes over an earlier agent's endpoints from the slot map and the
// pinned links, their addresses from endpoint_links, and the serving half
// from the generation word.
func (s *Switch) adopt(used map[uint32]bool) error {
	if err := s.active.Lookup(uint32(0), &s.half); err != nil {
		return err
	}
	var key []byte
	var val [8]byte
	it := s.slots.Iterate()
	var stale [][]byte
	for it.Next(&key, &val) {
		name := strings.TrimRight(string(key), "\x00")
		at := &attachment{slot: binary.LittleEndian.Uint32(val[:4]), ifindex: int(binary.LittleEndian.Uint32(val[4:]))}
		ok := true
		for i := range directions {
			l, err := link.LoadPinnedLink(s.linkPin(at.slot, i), nil)
			if err != nil {
				ok = false
				break
			}
			at.links = append(at.links, l)
		}
		if !ok || at.slot >= MaxEndpoints || used[at.slot] {
			// Half-made: detach what there is. A slot claimed twice keeps
			// its links for the endpoint that claimed it first.
			for _, l := range at.links {
				if !used[at.slot] {
					l.Unpin()
				}
				l.Close()
			}
			stale = append(stale, append([]byte(nil), key...))
			continue
		}
		s.endpoints[name] = at
		used[at.slot] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the pinned endpoint slots: %w", err)
	}
	for _, k := range stale {
		s.slots.Delete(k)
	}
	s.adoptLinks()
	// The adopted dispatchers become this agent's: each that is not
	// exactly what this agent builds for its endpoint (an earlier
	// version's, one without the source check, one counting into a drops
	// map this agent replaced) is replaced in its link. One whose
	// endpoint has no link (an agent that had no endpoint_links) is kept
	// until Attach links it, which the agent does in the sync right after
	// its first swap, rather than drop all its IPv4 meanwhile. A failure
	// leaves the endpoint for that Attach too.
	for _, name := range s.endpointNames() {
		at := s.endpoints[name]
		s.refreshDispatchers(name, at, at.addr.IsValid() || isDevice(name))
	}
	// Links pinned by an agent that died before recording their slot (or
	// after forgetting it) belong to no endpoint: detach them.
	pins, _ := filepath.Glob(filepath.Join(s.pinDir, "link_*"))
	for _, p := range pins {
		var slot uint32
		var dir string
		if n, _ := fmt.Sscanf(filepath.Base(p), "link_%d_%s", &slot, &dir); n == 2 && used[slot] {
			continue
		}
		if l, err := link.LoadPinnedLink(p, nil); err == nil {
			l.Unpin()
			l.Close()
		} else {
			os.Remove(p)
		}
	}
	for slot := uint32(0); slot < MaxEndpoints; slot++ {
		if !used[slot] {
			for i := range directions {
				s.progs.Delete(progKey(slot, i, 0))
				s.progs.Delete(progKey(slot, i, 1))
			}
		}
	}
	s.adoptSock()
	// An earlier agent ran: the word names the half it served (or half 0,
	// empty, had it never swapped); the next swap goes into the other.
	s.serving = true
	return nil
}

// adoptLinks reads the adopted endpoints' addresses from endpoint_links
// and removes the entries of interfaces no adopted endpoint has. An
// endpoint adopted from an agent without endpoint_links has none until
// the next Attach gives it one.
func (s *Switch) adoptLinks() {
	links := s.nodeState[bpf.MapEndpointLinks]
	byIfindex := map[uint32]*attachment{}
	for _, at := range s.endpoints {
		byIfindex[uint32(at.ifindex)] = at
	}
	var key uint32
	var val [4]byte
	var stale []uint32
	for it := links.Iterate(); it.Next(&key, &val); {
		if at, ok := byIfindex[key]; ok {
			at.addr = netip.AddrFrom4(val)
		} else {
			stale = append(stale, key)
		}
	}
	for _, k := range stale {
		links.Delete(k)
	}
}

// link gives an endpoint's interface its IPv4 address in endpoint_links,
// where the programs look up whose IPv6 frames they see (see
// bpf.MapEndpointLinks). Without an IPv4 address the interface has no
// entry, and the programs drop its IPv6.
func (s *Switch) link(at *attachment, addr netip.Addr) error {
	at.addr = netip.Addr{}
	if err := setEndpointLink(s.nodeState[bpf.MapEndpointLinks], at.ifindex, addr); err != nil {
		return err
	}
	if addr.Is4() {
		at.addr = addr
	}
	return nil
}

// setEndpointLink writes ifindex → addr into an endpoint_links map, or
// removes the ifindex's entry when addr is not IPv4.
func setEndpointLink(links *ebpf.Map, ifindex int, addr netip.Addr) error {
	if !addr.Is4() {
		if err := links.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unlink ifindex %d: %w", ifindex, err)
		}
		return nil
	}
	a := addr.As4()
	if err := links.Put(uint32(ifindex), a[:]); err != nil {
		return fmt.Errorf("link ifindex %d to %s: %w", ifindex, addr, err)
	}
	return nil
}

func (s *Switch) linkPin(slot uint32, dirIndex int) string {
	return filepath.Join(s.pinDir, fmt.Sprintf("link_%d_%s", slot, directions[dirIndex]))
}

func checkBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("%s is not on a bpf filesystem; mount one (mount -t bpf bpf /sys/fs/bpf) or choose a directory under it", dir)
	}
	return nil
}

func privilege(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) || isPermission(err) {
		return fmt.Errorf("%w: %v", ErrPrivilege, err)
	}
	return err
}

// Swap makes a verified artifact the serving generation. It builds the
// generation in the idle half — incrementally, by rewriting the generation
// the idle half last held where it can (see update), else in full — fills
// the idle half of the program array for every attached endpoint, and
// flips the generation word. On any error the serving generation is
// untouched. LastSwap says how it went.
func (s *Switch) Swap(a *Artifact) error {
	p, err := planArtifact(a)
	if err != nil {
		return err
	}
	idle := 1 - s.half
	if !s.serving {
		idle = s.half
	}
	var dp *Datapath
	var info SwapInfo
	settled := s.settle() == nil
	if s.idleGen != nil && settled {
		// No packet runs the idle generation any more: keep its drop
		// counts before it is rewritten or replaced.
		s.harvestRuleDrops(s.idleGen)
	}
	if s.idleGen != nil && !s.FullSwaps && settled {
		var dirty bool
		dp, info, dirty, err = s.update(s.idleGen, p)
		switch {
		case err == nil:
			s.idleGen = nil // its maps and programs are dp's now
		case dirty:
			s.idleGen.Close()
			s.idleGen = nil
			fallthrough
		default:
			info = SwapInfo{Fallback: err.Error()}
		}
	}
	if dp == nil {
		if dp, err = p.load(s.nodeState); err != nil {
			return err
		}
		info.ProgramsLoaded = len(dp.Programs)
	}
	runtimePods, err := s.applyRuntime(dp)
	if err != nil {
		dp.Close()
		return err
	}
	for _, name := range s.endpointNames() {
		if err := s.fill(dp, name, idle); err != nil {
			dp.Close()
			return err
		}
	}
	if err := s.fillSock(dp, idle); err != nil {
		dp.Close()
		return err
	}
	if err := s.active.Put(uint32(0), idle); err != nil {
		dp.Close()
		return fmt.Errorf("flip the generation word: %w", err)
	}
	// The old generation's programs stay in their half: a packet that read
	// the word just before the flip still finds a program, and the next
	// swap rewrites that generation (after an RCU barrier) rather than
	// building one from scratch. A generation the idle half held before
	// this full build is no longer referenced by any program array entry.
	if s.idleGen != nil {
		s.idleGen.Close()
	}
	dp.shareRules(s.gen)
	s.idleGen, s.gen, s.half, s.serving = s.gen, dp, idle, true
	// Packets that read the word before the flip may still be running in
	// the now idle half: wait them out off the swap's path, and before the
	// next swap rewrites that half (settle).
	done := make(chan error, 1)
	s.settled = done
	go func() { done <- s.barrier.wait() }()
	s.RuntimePods = runtimePods
	s.Generation++
	s.LastSwap = info
	return nil
}

// settle waits until no packet runs the idle half any more: for the RCU
// barrier started after the last flip, which has usually long returned.
func (s *Switch) settle() error {
	if s.settled == nil {
		return nil
	}
	err := <-s.settled
	s.settled = nil
	return err
}

// endpointAddrs lists the addresses in an artifact's endpoints map image.
func endpointAddrs(a *Artifact) map[netip.Addr]bool {
	known := map[netip.Addr]bool{}
	data := a.Files["maps/endpoints.bin"]
	for off := 0; off+emit.EndpointKeySize+emit.EndpointValueSize <= len(data); off += emit.EndpointKeySize + emit.EndpointValueSize {
		known[netip.AddrFrom4([4]byte(data[off:off+4]))] = true
	}
	return known
}

// Knows says whether the serving generation's datapath knows an address
// as one of this node's endpoints. Traffic of an address it does not know
// is not enforced (see bpf.lookupEndpoint) until a compile includes it.
// Before the first swap (as after an adoption) it knows nothing.
func (s *Switch) Knows(addr netip.Addr) bool { return s.gen != nil && s.gen.known[addr] }

func (s *Switch) fill(dp *Datapath, endpoint string, half uint32) error {
	at := s.endpoints[endpoint]
	for i, dir := range directions {
		p := dp.ProgramFor(endpoint, dir)
		if isDevice(endpoint) {
			p = dp.Programs[[2]string{netdevIngress, netdevEgress}[i]]
		}
		if p == nil {
			return fmt.Errorf("the generation has no %s program for %s", dir, endpoint)
		}
		if at.installed[half][i] == p {
			continue // kept by an incremental swap: the entry holds it already
		}
		if err := s.progs.Put(progKey(at.slot, i, half), p); err != nil {
			at.installed[half][i] = nil
			return fmt.Errorf("install the %s program of %s: %w", dir, endpoint, err)
		}
		at.installed[half][i] = p
	}
	return nil
}

func (s *Switch) endpointNames() []string {
	names := make([]string, 0, len(s.endpoints))
	for n := range s.endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Attach enforces the serving generation's policy for an endpoint
// ("ns/name") on its host-side veth: from-container on TCX ingress,
// to-container on TCX egress. addr is the pod's IPv4 address, its
// endpoints key: endpoint_links gives it the veth before the programs are
// attached, so that they know whose IPv6 frames they see, and the
// from-container dispatcher drops every IPv4 packet whose source is not
// addr (bpf.SourceCheck). A pod without one (invalid addr) has its IPv6
// and IPv4 dropped. Attaching an endpoint again moves it to the new
// ifindex, or links it to the new address and rebuilds its dispatchers.
func (s *Switch) Attach(endpoint string, ifindex int, addr netip.Addr) error {
	if s.gen == nil {
		return errors.New("no generation is serving yet; swap one in first")
	}
	if at, ok := s.endpoints[endpoint]; ok {
		if at.ifindex == ifindex {
			if s.attachedAs(endpoint, ifindex, addr) {
				return nil
			}
			if err := s.link(at, addr); err != nil {
				return fmt.Errorf("attach %s: %w", endpoint, err)
			}
			if err := s.refreshDispatchers(endpoint, at, true); err != nil {
				return fmt.Errorf("attach %s: %w", endpoint, err)
			}
			return nil
		}
		s.Detach(endpoint)
	}
	if len(s.freeSlots) == 0 {
		return fmt.Errorf("attach %s: all %d endpoint slots are in use", endpoint, MaxEndpoints)
	}
	at := &attachment{slot: s.freeSlots[len(s.freeSlots)-1], ifindex: ifindex}
	s.freeSlots = s.freeSlots[:len(s.freeSlots)-1]
	s.endpoints[endpoint] = at
	fail := func(err error) error {
		s.Detach(endpoint)
		return fmt.Errorf("attach %s: %w", endpoint, err)
	}
	if err := s.link(at, addr); err != nil {
		return fail(err)
	}
	if err := s.fill(s.gen, endpoint, s.half); err != nil {
		return fail(err)
	}
	for i, tcx := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		spec, _, err := s.dispatcherSpec(endpoint, at, i)
		if err != nil {
			return fail(err)
		}
		d, err := ebpf.NewProgram(spec)
		if err != nil {
			return fail(fmt.Errorf("load the %s dispatcher: %w", directions[i], err))
		}
		at.dispatchers[i] = d
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: d, Attach: tcx})
		if err != nil {
			return fail(fmt.Errorf("attach the %s dispatcher to ifindex %d: %w", directions[i], ifindex, err))
		}
		at.links = append(at.links, l)
		if s.pinDir != "" {
			if err := l.Pin(s.linkPin(at.slot, i)); err != nil {
				return fail(fmt.Errorf("pin the %s link: %w", directions[i], err))
			}
		}
	}
	var val [8]byte
	binary.LittleEndian.PutUint32(val[:4], at.slot)
	binary.LittleEndian.PutUint32(val[4:], uint32(ifindex))
	if err := s.slots.Put(slotKey(endpoint), val[:]); err != nil {
		return fail(fmt.Errorf("record its slot: %w", err))
	}
	at.current = true
	return nil
}

// attachedAs says whether an endpoint is attached on ifindex with
// dispatchers built for addr: attaching it again would change nothing.
func (s *Switch) attachedAs(endpoint string, ifindex int, addr netip.Addr) bool {
	at, ok := s.endpoints[endpoint]
	return ok && at.ifindex == ifindex && at.addr == addr && at.current
}

// dispatcherSpec is the dispatcher this switch runs for an endpoint in one
// direction, and the maps it uses: a pod's from-container one verifies
// sources against the address it is linked to.
func (s *Switch) dispatcherSpec(endpoint string, at *attachment, dirIndex int) (*ebpf.ProgramSpec, []*ebpf.Map, error) {
	maps := []*ebpf.Map{s.active, s.progs}
	var check *sourceCheck
	if directions[dirIndex] == bpf.FromContainer && !isDevice(endpoint) {
		check = &sourceCheck{src: at.addr, drops: s.nodeState[bpf.MapDrops]}
		maps = append(maps, check.drops)
	}
	insns, err := dispatcher(s.active.FD(), s.progs.FD(), progKey(at.slot, dirIndex, 0), fallbackVerdict(endpoint), check)
	if err != nil {
		return nil, nil, fmt.Errorf("the %s dispatcher: %w", directions[dirIndex], err)
	}
	return &ebpf.ProgramSpec{Name: "sl_dispatch", Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: insns}, maps, nil
}

// refreshDispatchers makes each of an endpoint's links run the dispatcher
// this switch builds for it (dispatcherSpec): one that already does (an
// adopted one an earlier agent built the same way, with the same maps) is
// kept, any other replaced in its link (unless replace is false: then the
// endpoint is left not current), atomically (BPF_LINK_UPDATE): no packet
// finds the interface without a dispatcher.
func (s *Switch) refreshDispatchers(endpoint string, at *attachment, replace bool) error {
	at.current = false
	for i, l := range at.links {
		spec, maps, err := s.dispatcherSpec(endpoint, at, i)
		if err != nil {
			return err
		}
		if runs(l, spec, maps) {
			continue
		}
		if !replace {
			return nil
		}
		d, err := ebpf.NewProgram(spec)
		if err != nil {
			return fmt.Errorf("load the %s dispatcher: %w", directions[i], err)
		}
		if err := l.Update(d); err != nil {
			d.Close()
			return fmt.Errorf("replace the %s dispatcher: %w", directions[i], err)
		}
		if at.dispatchers[i] != nil {
			at.dispatchers[i].Close()
		}
		at.dispatchers[i] = d
	}
	at.current = len(at.links) == len(directions)
	return nil
}

// runs says whether a link runs what spec would load: the same code
// (the kernel's tag, which leaves out map references) over the same maps.
func runs(l link.Link, spec *ebpf.ProgramSpec, maps []*ebpf.Map) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return false
	}
	defer p.Close()
	pi, err := p.Info()
	if err != nil {
		return false
	}
	// The tag hashes the instructions with their jumps resolved, as the
	// kernel received them: resolve them (in place) first. (The asm
	// package marshals in an explicit byte order: the hosts' is little.)
	if err := spec.Instructions.Marshal(io.Discard, binary.LittleEndian); err != nil || spec.Compatible(pi) != nil {
		return false
	}
	used, ok := pi.MapIDs()
	if !ok || len(used) != len(maps) {
		return false
	}
	for _, m := range maps {
		mi, err := m.Info()
		if err != nil {
			return false
		}
		if id, ok := mi.ID(); !ok || !slices.Contains(used, id) {
			return false
		}
	}
	return true
}

// dispatcher reads the serving half and tail-calls the endpoint's program
// in it (key base+half). Should that slot be empty, it tries the other
// half, and with no program at all it returns fallback. With a source
// check (a pod's from-container dispatcher) it first drops an IPv4 packet
// whose source is not src (bpf.SourceCheck), counted in drops.
func dispatcher(activeFD, progsFD int, base uint32, fallback int32, check *sourceCheck) (asm.Instructions, error) {
	// Each tail call site has a constant key, so the JIT turns it into a
	// direct jump patched when the array entry changes, rather than an
	// indirect one (which costs more than the rest of the dispatcher).
	call := func(key uint32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.LoadMapPtr(asm.R2, progsFD),
			asm.Mov.Imm(asm.R3, int32(key)),
			asm.FnTailCall.Call(),
		}
	}
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	var drop asm.Instructions
	if check != nil {
		var verify asm.Instructions
		verify, drop = bpf.SourceCheck(check.src)
		for i := range drop {
			if drop[i].Reference() == bpf.MapDrops {
				if err := drop[i].AssociateMap(check.drops); err != nil {
					return nil, err
				}
			}
		}
		insns = append(insns, verify...)
	}
	insns = append(insns,
		// The word's address is resolved at load (direct value access):
		// no helper call on the hot path.
		asm.LoadMapValue(asm.R0, activeFD, 0),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.JNE.Imm(asm.R7, 0, "half1"),
	)
	// Half 0 serves: try it, then half 1 should the entry be empty.
	insns = append(insns, call(base)...)
	insns = append(insns, call(base+1)...)
	insns = append(insns, asm.Ja.Label("drop"))
	half1 := call(base + 1)
	half1[0] = half1[0].WithSymbol("half1")
	insns = append(insns, half1...)
	insns = append(insns, call(base)...)
	insns = append(insns,
		asm.Mov.Imm(asm.R0, fallback).WithSymbol("drop"),
		asm.Return(),
	)
	return append(insns, drop...), nil
}

// sourceCheck is what a pod's from-container dispatcher verifies sources
// against: the pod's IPv4 address (invalid for none: every IPv4 packet is
// dropped), counted in the node's drops map.
type sourceCheck struct {
	src   netip.Addr
	drops *ebpf.Map
}

// devicePrefix names the external devices among the switch's endpoints
// ('@' is in no Kubernetes name).
const devicePrefix = "@device/"

func isDevice(name string) bool { return strings.HasPrefix(name, devicePrefix) }

// fallbackVerdict is what a dispatcher does with no program to run: an
// endpoint drops (never unenforced); the external device passes (never a
// node cut off).
func fallbackVerdict(name string) int32 {
	if isDevice(name) {
		return 0 // TC_ACT_OK
	}
	return tcActShot
}

// AttachDevice runs the serving generation's load balancer on the node's
// external device (NodePort, ExternalIPs, LoadBalancer IPs from outside):
// on TCX ingress and egress of ifindex, swapped with the endpoints.
func (s *Switch) AttachDevice(name string, ifindex int) error {
	return s.Attach(devicePrefix+name, ifindex, netip.Addr{})
}

// DetachDevice removes it.
func (s *Switch) DetachDevice(name string) { s.Detach(devicePrefix + name) }

// Detach removes an endpoint's attachments and programs. Detaching an
// endpoint that is not attached does nothing.
func (s *Switch) Detach(endpoint string) {
	at, ok := s.endpoints[endpoint]
	if !ok {
		return
	}
	for _, l := range at.links {
		l.Unpin()
		l.Close()
	}
	for _, d := range at.dispatchers {
		if d != nil {
			d.Close()
		}
	}
	for i := range directions {
		for half := uint32(0); half < 2; half++ {
			s.progs.Delete(progKey(at.slot, i, half))
		}
	}
	s.slots.Delete(slotKey(endpoint))
	delete(s.endpoints, endpoint)
	s.freeSlots = append(s.freeSlots, at.slot)
	for _, other := range s.endpoints {
		if other.ifindex == at.ifindex {
			// The interface is another endpoint's now: its link names
			// that endpoint, whichever was written last.
			s.link(other, other.addr)
			return
		}
	}
	setEndpointLink(s.nodeState[bpf.MapEndpointLinks], at.ifindex, netip.Addr{})
}

// Drops returns the node's drop counters by reason, over all generations
// (and an earlier agent's, adopted).
func (s *Switch) Drops() ([bpf.DropReasons]uint64, error) {
	out, err := dropsOf(s.nodeState[bpf.MapDrops])
	if err != nil || s.retiredDrops == nil {
		return out, err
	}
	old, err := dropsOf(s.retiredDrops)
	for r := range out {
		out[r] += old[r]
	}
	return out, err
}

// Close releases this process's hold on the datapath. What is pinned
// (maps, links) stays in the kernel and keeps serving; without a pin
// directory, closing detaches everything.
func (s *Switch) Close() {
	for _, at := range s.endpoints {
		for _, l := range at.links {
			l.Close()
		}
		for _, d := range at.dispatchers {
			if d != nil {
				d.Close()
			}
		}
	}
	if s.sock != nil {
		s.sock.close()
	}
	for _, g := range []*Datapath{s.gen, s.idleGen} {
		if g != nil {
			g.Close()
		}
	}
	if s.barrier != nil {
		s.settle()
		s.barrier.close()
	}
	for _, m := range append([]*ebpf.Map{s.progs, s.active, s.slots, s.retiredDrops}, s.sockProgs[:]...) {
		if m != nil {
			m.Close()
		}
	}
	for _, m := range s.nodeState {
		m.Close()
	}
}

// Uninstall detaches every endpoint and removes every pin of the switch,
// then closes it: the node is left with nothing of ours.
func (s *Switch) Uninstall() error {
	for _, n := range s.endpointNames() {
		s.Detach(n)
	}
	var errs []error
	errs = append(errs, s.DetachCgroup())
	maps := append([]*ebpf.Map{s.progs, s.active, s.slots}, s.sockProgs[:]...)
	for _, m := range s.nodeState {
		maps = append(maps, m)
	}
	for _, m := range maps {
		if m != nil && s.pinDir != "" {
			errs = append(errs, m.Unpin())
		}
	}
	s.Close()
	if s.pinDir != "" {
		if err := os.Remove(s.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
