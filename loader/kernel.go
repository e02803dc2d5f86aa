package loader

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
)

// Datapath is an artifact made live: its maps filled and its programs
// loaded (through the verifier), not attached.
type Datapath struct {
	Maps     map[string]*ebpf.Map
	Programs map[string]*ebpf.Program // by name: the generic programs and, per inline policy, "DIRECTION/POLICY"
	Specs    map[string]*ebpf.ProgramSpec
	// EndpointPolicy is each endpoint's own policy number ("ns/name").
	EndpointPolicy map[string]uint32

	fingerprints map[string]string // per program, as in genPlan
	images       map[string][]byte // per map, the image its contents equal, but for runtimeWritten
	known        map[netip.Addr]bool
	runtimeTable *emit.RuntimeTable
	// runtimeWritten are the runtime pods (see SetRuntimePods) whose
	// entries this generation's maps hold beyond their images.
	runtimeWritten map[netip.Addr]bool
	rulesRaw       []byte
	rules          []emit.RuleSummary // rulesRaw parsed, on first use (ruleSummaries)
	rulesParsed    bool
	groupPolicies  map[uint32][]string
}

// ProgramFor returns the program to attach for an endpoint: its policy's
// own program when the cost model compiled the policy inline, else the
// node's generic one.
func (d *Datapath) ProgramFor(endpoint string, dir bpf.Direction) *ebpf.Program {
	if p, ok := d.Programs[groupProgram(dir, d.EndpointPolicy[endpoint])]; ok {
		return p
	}
	return d.Programs[dir.String()]
}

func groupProgram(dir bpf.Direction, policy uint32) string {
	return fmt.Sprintf("%s/%d", dir, policy)
}

// Close releases the kernel objects.
func (d *Datapath) Close() {
	for _, p := range d.Programs {
		p.Close()
	}
	for _, m := range d.Maps {
		m.Close()
	}
}

// ErrPrivilege says the machine does not let this process use BPF.
var ErrPrivilege = errors.New("BPF needs root (CAP_BPF and CAP_NET_ADMIN): run as root")

func isPermission(err error) bool {
	return errors.Is(err, os.ErrPermission)
}

// expectedLayout is what the programs read: key size, value size, type.
var expectedLayout = map[string][3]int{
	bpf.MapIPCache:      {emit.IPCacheKeySize, emit.IPCacheValueSize, int(ebpf.LPMTrie)},
	bpf.MapIPCacheExact: {emit.IPCacheExactKeySize, emit.IPCacheValueSize, int(ebpf.Hash)},
	bpf.MapClasses:      {emit.ClassKeySize, emit.ClassValueSize, int(ebpf.Hash)},
	bpf.MapPolicy:       {emit.PolicyKeySize, emit.PolicyValueSize, int(ebpf.LPMTrie)},
	bpf.MapEndpoints:    {emit.EndpointKeySize, emit.EndpointValueSize, int(ebpf.Hash)},
}

// FeaturesOf says which datapath choices an artifact was compiled with.
func FeaturesOf(m emit.Manifest) bpf.Features {
	var f bpf.Features
	lb := 0
	for _, mm := range m.Maps {
		switch mm.Name {
		case bpf.MapIPCacheExact:
			f.ExactIPCache = true
		case bpf.MapServices, bpf.MapBackends, bpf.MapServicesLocal:
			lb++
		case bpf.MapMaglev:
			f.LB.MaglevM = uint32(mm.ValueSize / 4)
		}
	}
	f.Services = lb == 3
	f.LB.NodeIndex = m.NodeIndex
	return f
}

// nodeStateSpecs are the maps that outlive generations: conntrack, the
// drop counters, the endpoints' links (veth ifindex → IPv4 address), the
// IPv4 fragments' ports, and the socket load balancer's reverse
// translations and affinities. LoadArtifact creates them for its
// generation alone; a Switch creates (or adopts) them once and passes
// them to each.
func nodeStateSpecs() []*ebpf.MapSpec {
	return []*ebpf.MapSpec{
		{Name: bpf.MapConntrack, Type: ebpf.LRUHash, KeySize: bpf.CTKeySize, ValueSize: bpf.CTValueSize, MaxEntries: uint32(bpf.CTDefaultEntries)},
		{Name: bpf.MapDrops, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: bpf.DropReasons},
		{Name: bpf.MapEndpointLinks, Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: bpf.EndpointLinksEntries},
		{Name: bpf.MapFrags, Type: ebpf.LRUHash, KeySize: bpf.FragKeySize, ValueSize: bpf.FragValueSize, MaxEntries: bpf.FragDefaultMax},
		{Name: bpf.MapSockRevNat, Type: ebpf.LRUHash, KeySize: bpf.SockRevNatKeySize, ValueSize: bpf.SockRevNatValueSize, MaxEntries: bpf.SockDefaultEntries},
		{Name: bpf.MapSockAffinity, Type: ebpf.LRUHash, KeySize: bpf.SockAffinityKeySize, ValueSize: bpf.SockAffinityValueSize, MaxEntries: bpf.SockDefaultEntries},
		{Name: bpf.MapLBNAT, Type: ebpf.LRUHash, KeySize: bpf.LBNATKey, ValueSize: bpf.LBNATValue, MaxEntries: bpf.LBNATSize},
	}
}

// The external device's programs among a generation's.
const (
	netdevIngress = "netdev-ingress"
	netdevEgress  = "netdev-egress"
)

// lbNodeIP is a node address as the load balancer's program compares and
// writes it: the packet's bytes, loaded as a little-endian word.
func lbNodeIP(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.LittleEndian.Uint32(b[:])
}

// sockProgram names a socket load-balancing program among a generation's.
func sockProgram(h bpf.SockHook) string { return "sock-" + h.String() }

// ProgramSpecs returns the generic programs of a node's datapath.
func ProgramSpecs(f bpf.Features) map[string]*ebpf.ProgramSpec {
	out := map[string]*ebpf.ProgramSpec{}
	for _, dir := range []bpf.Direction{bpf.FromContainer, bpf.ToContainer} {
		name := strings.ReplaceAll(dir.String(), "-", "_")
		out[dir.String()] = &ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: bpf.PolicyProgram(dir, f)}
	}
	if f.Services {
		out[netdevIngress] = &ebpf.ProgramSpec{Name: "sl_netdev_in", Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: bpf.NetdevIngress(f.LB)}
		out[netdevEgress] = &ebpf.ProgramSpec{Name: "sl_netdev_out", Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: bpf.NetdevEgress()}
		for h := range bpf.SockHooks {
			out[sockProgram(h)] = &ebpf.ProgramSpec{Name: "sl_" + h.String(), Type: ebpf.CGroupSockAddr, AttachType: h.AttachType(),
				License: "Dual BSD/GPL", Instructions: bpf.SockProgram(h)}
		}
	}
	return out
}

func mapType(t string) (ebpf.MapType, error) {
	switch t {
	case "lpm_trie":
		return ebpf.LPMTrie, nil
	case "hash":
		return ebpf.Hash, nil
	}
	return 0, fmt.Errorf("unknown map type %q", t)
}

// LoadArtifact creates the maps of a verified artifact, fills them from
// their images, and loads the programs. Nothing is attached or pinned.
func LoadArtifact(a *Artifact) (*Datapath, error) {
	return loadArtifact(a, nil)
}

// loadArtifact is LoadArtifact with node-state maps (conntrack, drop
// counters) passed in rather than created, so that they outlive the
// generation.
func loadArtifact(a *Artifact, nodeState map[string]*ebpf.Map) (*Datapath, error) {
	p, err := planArtifact(a)
	if err != nil {
		return nil, err
	}
	return p.load(nodeState)
}

// genPlan is an artifact's generation checked and described as specs,
// before any syscall: what a full load creates, and what an incremental
// update compares with the generation it rewrites.
type genPlan struct {
	dir            string
	spec           *ebpf.CollectionSpec
	endpointPolicy map[string]uint32
	// fingerprints says what each program's code is made of (its
	// direction, the datapath features and its inline policy entries):
	// two programs with the same fingerprint are the same code.
	fingerprints map[string]string
	// generate makes the instructions of programs whose spec has none yet.
	generate map[string]func() asm.Instructions
	images   map[string][]byte // each map's image, by map name
	// known are the endpoint addresses the artifact lists; runtime its
	// runtime table.
	known   map[netip.Addr]bool
	runtime *emit.RuntimeTable
	// rulesRaw (rules.json) and groupPolicies name what rule_drops counts.
	rulesRaw      []byte
	groupPolicies map[uint32][]string
}

// instructions generates the instructions of the named programs.
func (p *genPlan) instructions(names map[string]*ebpf.ProgramSpec) {
	for name, spec := range names {
		if spec.Instructions == nil {
			spec.Instructions = p.generate[name]()
		}
	}
}

func inlineFingerprint(dir bpf.Direction, f bpf.Features, entries []emit.InlineEntry) string {
	b := fmt.Appendf(nil, "%s %+v", dir, f)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint32(b, e.Class)
		b = append(b, e.Dir, e.Proto, e.Action)
		b = binary.LittleEndian.AppendUint16(b, e.Port)
		b = binary.LittleEndian.AppendUint32(b, e.Bits)
		b = binary.LittleEndian.AppendUint32(b, e.Rule)
	}
	return string(b)
}

func planArtifact(a *Artifact) (*genPlan, error) {
	features := FeaturesOf(a.Manifest)
	var ns emit.NodeSummary
	nj, haveSummary := a.Files["node.json"]
	if haveSummary {
		if err := json.Unmarshal(nj, &ns); err != nil {
			return nil, fmt.Errorf("%s/node.json: %w", a.Dir, err)
		}
		features.LB.NodeIP = lbNodeIP(ns.NodeIP)
	}
	p := &genPlan{dir: a.Dir, spec: &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{}, Programs: ProgramSpecs(features)},
		endpointPolicy: map[string]uint32{}, fingerprints: map[string]string{}, images: map[string][]byte{},
		generate: map[string]func() asm.Instructions{}, groupPolicies: map[uint32][]string{}}
	for name := range p.spec.Programs {
		p.fingerprints[name] = fmt.Sprintf("%s %+v", name, features)
	}
	cs := p.spec
	if haveSummary {
		inline := emit.InlineEntriesOf(a.Files["maps/policy.bin"])
		for _, g := range ns.Groups {
			p.groupPolicies[g.Policy] = g.Policies
			if g.Shared {
				continue
			}
			for _, e := range g.Endpoints {
				p.endpointPolicy[e] = g.Policy
			}
			if g.Lookup != "inline" {
				continue
			}
			for _, dir := range []bpf.Direction{bpf.FromContainer, bpf.ToContainer} {
				short := "in"
				if dir == bpf.FromContainer {
					short = "out"
				}
				name, entries := groupProgram(dir, g.Policy), nonNil(inline[g.Policy])
				// Instructions are generated in load (or by update, for
				// the programs it loads): most are unchanged and kept.
				cs.Programs[name] = &ebpf.ProgramSpec{Name: fmt.Sprintf("pol_%s_%d", short, g.Policy), Type: ebpf.SchedCLS, License: "Dual BSD/GPL"}
				p.generate[name] = func() asm.Instructions { return bpf.PolicyProgramFor(dir, entries, features) }
				p.fingerprints[name] = inlineFingerprint(dir, features, entries)
			}
		}
	}
	for _, m := range a.Manifest.Maps {
		typ, err := mapType(m.Type)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", m.Name, err)
		}
		data, ok := a.Files[m.File]
		if !ok {
			return nil, fmt.Errorf("%s: map %s: its image %s is not in the manifest's files", a.Dir, m.Name, m.File)
		}
		rec := m.KeySize + m.ValueSize
		if rec == 0 || len(data)%rec != 0 {
			return nil, fmt.Errorf("%s: map %s: %s holds %d bytes, not a whole number of %d-byte records (truncated?)", a.Dir, m.Name, m.File, len(data), rec)
		}
		if n := len(data) / rec; n != m.Entries || n > m.MaxEntries {
			return nil, fmt.Errorf("%s: map %s: %s holds %d entries; the manifest says %d, with room for %d", a.Dir, m.Name, m.File, n, m.Entries, m.MaxEntries)
		}
		if want, ok := expectedLayout[m.Name]; ok && (want[0] != m.KeySize || want[1] != m.ValueSize || want[2] != int(typ)) {
			return nil, fmt.Errorf("%s: map %s: key %d and value %d bytes (%s); this sluice's datapath reads %d and %d (%s)", a.Dir, m.Name, m.KeySize, m.ValueSize, typ, want[0], want[1], ebpf.MapType(want[2]))
		}
		// Contents are filled in load: an incremental update writes only
		// the entries that changed.
		cs.Maps[m.Name] = &ebpf.MapSpec{Name: m.Name, Type: typ, KeySize: uint32(m.KeySize), ValueSize: uint32(m.ValueSize),
			MaxEntries: uint32(max(m.MaxEntries, 1)), Flags: m.Flags}
		p.images[m.Name] = data
	}
	var err error
	if p.runtime, err = runtimeTableOf(a); err != nil {
		return nil, err
	}
	p.known = endpointAddrs(a)
	// rules.json only names drop counts: it is parsed when they are read,
	// not on the swap's path (it is most of a large artifact's JSON).
	p.rulesRaw = a.Files["rules.json"]
	// Node state (conntrack, ...): fresh maps here; a Switch passes its
	// own, which outlive generations.
	// Drops by rule are the generation's: its rule numbers are its keys.
	cs.Maps[bpf.MapRuleDrops] = &ebpf.MapSpec{Name: bpf.MapRuleDrops, Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: 8, MaxEntries: bpf.RuleDropsEntries}
	for _, spec := range nodeStateSpecs() {
		cs.Maps[spec.Name] = spec
	}
	return p, nil
}

// load creates the plan's maps, fills them, and loads its programs.
func (p *genPlan) load(nodeState map[string]*ebpf.Map) (*Datapath, error) {
	for name, data := range p.images {
		spec := p.spec.Maps[name]
		ks, rec := int(spec.KeySize), int(spec.KeySize+spec.ValueSize)
		spec.Contents = make([]ebpf.MapKV, 0, len(data)/rec)
		for off := 0; off < len(data); off += rec {
			spec.Contents = append(spec.Contents, ebpf.MapKV{Key: data[off : off+ks], Value: data[off+ks : off+rec]})
		}
	}
	p.instructions(p.spec.Programs)
	dp, err := loadCollection(p.dir, p.spec, nodeState)
	if err != nil {
		return nil, err
	}
	p.attach(dp)
	return dp, nil
}

// attach gives a generation built from the plan the plan's description.
func (p *genPlan) attach(dp *Datapath) {
	dp.EndpointPolicy, dp.fingerprints, dp.images = p.endpointPolicy, p.fingerprints, p.images
	dp.known, dp.runtimeTable, dp.runtimeWritten = p.known, p.runtime, map[netip.Addr]bool{}
	dp.rulesRaw, dp.groupPolicies = p.rulesRaw, p.groupPolicies
}

func loadCollection(dir string, cs *ebpf.CollectionSpec, replace map[string]*ebpf.Map) (*Datapath, error) {
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: replace})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("%s: the kernel verifier rejected a program: %w", dir, ve)
		}
		if isPermission(err) {
			return nil, fmt.Errorf("%w: %v", ErrPrivilege, err)
		}
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &Datapath{Maps: coll.Maps, Programs: coll.Programs, Specs: cs.Programs}, nil
}

// Drops returns the drop counters by reason, summed over CPUs.
func (d *Datapath) Drops() ([bpf.DropReasons]uint64, error) {
	return dropsOf(d.Maps[bpf.MapDrops])
}

// dropsOf sums a drops map's counters over CPUs; a map an earlier agent
// sized for fewer reasons counts those it has.
func dropsOf(m *ebpf.Map) ([bpf.DropReasons]uint64, error) {
	var out [bpf.DropReasons]uint64
	for r := range min(int(m.MaxEntries()), len(out)) {
		var perCPU []uint64
		if err := m.Lookup(uint32(r), &perCPU); err != nil {
			return out, err
		}
		for _, v := range perCPU {
			out[r] += v
		}
	}
	return out, nil
}

// Listings renders a node's programs for its artifact: the generic
// programs in programs/DIRECTION.txt, and in programs/inline.txt, per
// policy the cost model compiled inline and per direction, the
// compare-and-branch code (bpf.InlineLayer) that replaces the own-layer
// policy lookup, one line per test.
func Listings(ns emit.NodeSummary, policy []byte) map[string][]byte {
	out := map[string][]byte{}
	for name, spec := range ProgramSpecs(bpf.Features{ExactIPCache: ns.ExactIPCache, Services: true, LB: bpf.LBConfig{NodeIndex: ns.Index, MaglevM: uint32(ns.MaglevTableSize), NodeIP: lbNodeIP(ns.NodeIP)}}) {
		if spec.Type == ebpf.CGroupSockAddr {
			continue // the same on every node: SharedListings
		}
		out["programs/"+name+".txt"] = []byte(ProgramListing(spec.Instructions))
	}
	entries := emit.InlineEntriesOf(policy)
	var b []byte
	for _, g := range ns.Groups {
		if g.Lookup != "inline" {
			continue
		}
		for _, dir := range []bpf.Direction{bpf.FromContainer, bpf.ToContainer} {
			b = fmt.Appendf(b, "policy %d %s:\n", g.Policy, dir)
			for _, e := range entries[g.Policy] {
				if e.Dir != uint8(dir) {
					continue
				}
				b = append(b, "  if"...)
				if e.Class != emit.ClassAny {
					b = fmt.Appendf(b, " class == %d &&", e.Class)
				}
				if e.Bits >= 80 {
					b = fmt.Appendf(b, " proto == %d &&", e.Proto)
				}
				if e.Bits > 80 {
					mask := uint16(0xffff << (16 - (e.Bits - 80)))
					b = fmt.Appendf(b, " port & %#04x == %d &&", mask, e.Port&mask)
				}
				b = b[:len(b)-3]
				if b[len(b)-1] == 'i' { // no condition: "if" alone
					b = append(b, " true"...)
				}
				switch e.Action {
				case emit.ActionAllow:
					b = fmt.Appendf(b, " -> allow (rule %d)\n", e.Rule)
				case emit.ActionDeny:
					b = fmt.Appendf(b, " -> deny (rule %d)\n", e.Rule)
				default:
					b = append(b, " -> no verdict\n"...)
				}
			}
		}
	}
	if len(b) > 0 {
		out["programs/inline.txt"] = b
	}
	return out
}

// SharedListings renders the programs that are the same on every node
// (the socket load balancer's), for an artifact's shared files.
func SharedListings() map[string][]byte {
	out := map[string][]byte{}
	for h := range bpf.SockHooks {
		out["programs/"+sockProgram(h)+".txt"] = []byte(ProgramListing(bpf.SockProgram(h)))
	}
	return out
}

func nonNil(e []emit.InlineEntry) []emit.InlineEntry {
	if e == nil {
		return []emit.InlineEntry{}
	}
	return e
}

// ProgramListing renders a program as text, for the artifact and reviews.
func ProgramListing(insns asm.Instructions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d instructions\n", len(insns))
	for _, line := range strings.Split(fmt.Sprintf("%v", insns), "\n") {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}
