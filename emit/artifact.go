package emit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/sluicenet/sluice/ir"
)

// FormatVersion is written in every manifest; the loader refuses others.
const FormatVersion = "sluice.artifact/v1"

// MapSizes are the max_entries of the maps; a compile fails when content
// would not fit.
type MapSizes struct {
	IPCache   int
	Classes   int
	Policy    int
	Endpoints int
	Services  int
	Backends  int
	RevNat    int
	Maglev    int
}

// DefaultSizes are Cilium-like defaults (see the package documentation).
func DefaultSizes() MapSizes {
	return MapSizes{IPCache: 512000, Classes: 65536, Policy: 65536, Endpoints: 65535, Services: 262144, Backends: 262144, RevNat: 262144, Maglev: 8192}
}

// Options tune Build.
type Options struct {
	Sizes MapSizes
	// InputDigest is the sha256 of the inputs, recorded in manifests.
	InputDigest string
	// Sink, when set, receives each node's artifact as soon as it is
	// built (from several goroutines); Build then keeps only its Stats,
	// so that memory does not grow with the number of nodes.
	Sink func(*Artifact) error
	// Shared are extra files, the same on every node (the programs'
	// listings), by file name.
	Shared map[string][]byte
	// NodeFiles, when set, returns extra files of one node (the listings
	// of the code the cost model compiled for its policies), by name, from
	// its summary and its policy map image.
	NodeFiles func(summary NodeSummary, policy []byte) map[string][]byte
	// ExactIPCacheMin overrides ExactIPCacheMin (for tests).
	ExactIPCacheMin int
	// NoBackends is what a connection to a service frontend without
	// backends gets: "reject" (the default: refused at once, as kube-proxy
	// does) or "drop" (it times out).
	NoBackends string
	// MaglevTableSize is M, the entries of each external frontend's Maglev
	// table (a prime; 0: DefaultMaglevTableSize).
	MaglevTableSize int
}

// File is one file of an artifact. Files with Shared set have the same
// bytes on every node; writers may store them once.
type File struct {
	Name   string
	Data   []byte
	Shared bool
	sum    string
}

// Sum is the file's sha256, hex.
func (f *File) Sum() string {
	if f.sum == "" {
		s := sha256.Sum256(f.Data)
		f.sum = hex.EncodeToString(s[:])
	}
	return f.sum
}

// Artifact is everything one node loads, in file-name order, manifest.json
// last.
type Artifact struct {
	Node  string
	Files []*File
	Stats NodeStats
}

// NodeStats counts what one node's artifact holds.
type NodeStats struct {
	Node        string         `json:"node"`
	Endpoints   int            `json:"endpoints"`
	Policies    int            `json:"policies"`
	Classes     int            `json:"classes"`
	Entries     map[string]int `json:"entries"`
	PolicyBytes int            `json:"policyBytes"`
	bytes       int            // of files already handed to a Sink
}

// Stats summarises a build.
type Stats struct {
	Nodes              int            `json:"nodes"`
	Identities         int            `json:"identities"`
	Policies           int            `json:"policies"`
	Rules              int            `json:"rules"`
	Services           int            `json:"services"`
	Frontends          int            `json:"frontends"`
	Backends           int            `json:"backends"`
	Regions            int            `json:"regions"`
	Entries            map[string]int `json:"entries"` // summed over nodes; shared maps once
	TotalEntries       int            `json:"total_entries"`
	TotalBytes         int            `json:"total_bytes"`
	PolicyBytesMaxNode int            `json:"policy_bytes_max_node"`
	PerNode            []NodeStats    `json:"per_node"`
}

// Output is a build: one artifact per node.
type Output struct {
	Artifacts []*Artifact
	Stats     Stats
}

// ManifestMap describes one map image in a manifest.
type ManifestMap struct {
	MapSpec
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// Manifest is manifest.json: what the artifact holds and how to check it.
type Manifest struct {
	Format      string            `json:"format"`
	Node        string            `json:"node"`
	NodeIndex   uint16            `json:"nodeIndex"`
	Cluster     string            `json:"cluster"`
	InputDigest string            `json:"inputDigest"`
	Maps        []ManifestMap     `json:"maps"`
	Files       map[string]string `json:"files"` // name → sha256, every file but the manifest
}

// Build lowers a cluster into per-node artifacts.
func Build(c *ir.Cluster, opts Options) (*Output, error) {
	if opts.Sizes == (MapSizes{}) {
		opts.Sizes = DefaultSizes()
	}
	p, err := newPlan(c)
	if err != nil {
		return nil, err
	}
	p.exactMin = opts.ExactIPCacheMin
	switch opts.NoBackends {
	case "", "reject":
		p.reject = true
	case "drop":
	default:
		return nil, fmt.Errorf("no-backends mode %q: accepted are reject and drop", opts.NoBackends)
	}
	p.maglevM = opts.MaglevTableSize
	if p.maglevM == 0 {
		p.maglevM = DefaultMaglevTableSize
	}
	if err := CheckMaglevTableSize(p.maglevM); err != nil {
		return nil, err
	}
	lbs, err := p.buildLB()
	if err != nil {
		return nil, err
	}
	// The shared files (ir.json, the big dumps) are rendered while the
	// nodes are lowered; a node waits for them only to write its manifest.
	sharedFiles := sync.OnceValue(func() []*File {
		shared := p.sharedFiles(lbs)
		extra := make([]string, 0, len(opts.Shared))
		for name := range opts.Shared {
			extra = append(extra, name)
		}
		sort.Strings(extra)
		for _, name := range extra {
			shared = append(shared, &File{Name: name, Data: opts.Shared[name], Shared: true})
		}
		for _, f := range shared {
			f.Sum() // before the workers share them
		}
		return shared
	})
	go sharedFiles()
	out := &Output{Artifacts: make([]*Artifact, len(p.nodes))}
	// Nodes are independent: lower them in parallel, in a fixed order of
	// results.
	var wg sync.WaitGroup
	var sinkErr error
	var errOnce sync.Once
	work := make(chan int)
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				a := p.nodeArtifact(p.nodes[i], lbs, sharedFiles, opts)
				if opts.Sink != nil {
					if err := opts.Sink(a); err != nil {
						errOnce.Do(func() { sinkErr = err })
					}
					for _, f := range a.Files {
						if !f.Shared {
							a.Stats.bytes += len(f.Data)
						}
					}
					a.Files = nil
				}
				out.Artifacts[i] = a
			}
		}()
	}
	for i := range p.nodes {
		work <- i
	}
	close(work)
	wg.Wait()
	if sinkErr != nil {
		return nil, sinkErr
	}

	st := Stats{Nodes: len(p.nodes), Identities: len(c.Identities), Policies: len(c.Policies), Rules: len(p.rules),
		Services: len(c.Services), Frontends: lbs.frontends, Backends: len(lbs.backends), Regions: len(p.regions), Entries: map[string]int{}}
	for _, f := range sharedFiles() {
		st.TotalBytes += len(f.Data)
	}
	st.Entries["ipcache"] = len(p.ipcache)
	st.Entries["services"] = len(lbs.services)
	st.Entries["backends"] = len(lbs.backends)
	st.Entries["revnat"] = len(lbs.revnat)
	st.Entries["maglev"] = len(lbs.maglev)
	var over []string
	check := func(node, name string, n, max int) {
		if n > max {
			over = append(over, fmt.Sprintf("map %s%s needs %d entries but holds %d (raise --map-size-%s to at least %d)", name, node, n, max, name, n))
		}
	}
	check("", "ipcache", len(p.ipcache), opts.Sizes.IPCache)
	if x := p.sharedMaps["ipcache_exact"]; x != nil {
		st.Entries["ipcache_exact"] = x.Spec.Entries
	}
	check("", "services", len(lbs.services), opts.Sizes.Services)
	check("", "backends", len(lbs.backends), opts.Sizes.Backends)
	check("", "revnat", len(lbs.revnat), opts.Sizes.RevNat)
	check("", "maglev", len(lbs.maglev), opts.Sizes.Maglev)
	for _, a := range out.Artifacts {
		ns := a.Stats
		st.PerNode = append(st.PerNode, ns)
		for _, name := range []string{"classes", "policy", "endpoints", "services_local"} {
			st.Entries[name] += ns.Entries[name]
		}
		on := " on node " + a.Node
		check(on, "classes", ns.Entries["classes"], opts.Sizes.Classes)
		check(on, "policy", ns.Entries["policy"], opts.Sizes.Policy)
		check(on, "endpoints", ns.Entries["endpoints"], opts.Sizes.Endpoints)
		check(on, "services_local", ns.Entries["services_local"], opts.Sizes.Services)
		if ns.PolicyBytes > st.PolicyBytesMaxNode {
			st.PolicyBytesMaxNode = ns.PolicyBytes
		}
		st.TotalBytes += a.Stats.bytes
		for _, f := range a.Files {
			if !f.Shared {
				st.TotalBytes += len(f.Data)
			}
		}
	}
	for _, n := range st.Entries {
		st.TotalEntries += n
	}
	out.Stats = st
	if len(over) > 0 {
		return nil, fmt.Errorf("capacity exceeded:\n  %s", strings.Join(over, "\n  "))
	}
	return out, nil
}

// image encodes sorted records.
func image(spec MapSpec, n int, put func(i int, key, val []byte)) *Image {
	rec := spec.KeySize + spec.ValueSize
	data := make([]byte, n*rec)
	for i := 0; i < n; i++ {
		off := i * rec
		put(i, data[off:off+spec.KeySize], data[off+spec.KeySize:off+rec])
	}
	spec.Entries = n
	return &Image{Spec: spec, Data: data}
}

func (p *plan) sharedFiles(lbs *lb) []*File {
	var files []*File
	add := func(name string, data []byte) { files = append(files, &File{Name: name, Data: data, Shared: true}) }
	ipc := image(MapSpec{Name: "ipcache", Type: "lpm_trie", KeySize: IPCacheKeySize, ValueSize: IPCacheValueSize, Flags: flagNoPrealloc, Shared: true},
		len(p.ipcache), func(i int, k, v []byte) {
			IPCacheKey{p.ipcache[i].prefix}.put(k)
			p.ipcache[i].val.put(v)
		})
	p.sharedMaps = map[string]*Image{"ipcache": ipc}
	add("maps/ipcache.bin", ipc.Data)
	if p.exactIPCache() {
		var exact []ipEntry
		for _, e := range p.ipcache {
			if e.prefix.Bits() == 32 {
				exact = append(exact, e)
			}
		}
		ipx := image(MapSpec{Name: "ipcache_exact", Type: "hash", KeySize: IPCacheExactKeySize, ValueSize: IPCacheValueSize, Shared: true},
			len(exact), func(i int, k, v []byte) {
				a := exact[i].prefix.Addr().As4()
				copy(k, a[:])
				exact[i].val.put(v)
			})
		p.sharedMaps["ipcache_exact"] = ipx
		add("maps/ipcache_exact.bin", ipx.Data)
	}
	sortSvc(lbs.services)
	svc := image(MapSpec{Name: "services", Type: "hash", KeySize: ServiceKeySize, ValueSize: ServiceValueSize, Shared: true},
		len(lbs.services), func(i int, k, v []byte) { lbs.services[i].key.put(k); lbs.services[i].val.put(v) })
	be := image(MapSpec{Name: "backends", Type: "hash", KeySize: BackendKeySize, ValueSize: BackendValueSize, Shared: true},
		len(lbs.backends), func(i int, k, v []byte) { le.PutUint32(k, lbs.backends[i].id); lbs.backends[i].val.put(v) })
	rn := image(MapSpec{Name: "revnat", Type: "hash", KeySize: RevNatKeySize, ValueSize: RevNatValueSize, Shared: true},
		len(lbs.revnat), func(i int, k, v []byte) { le.PutUint16(k, lbs.revnat[i].idx); lbs.revnat[i].val.put(v) })
	mg := image(MapSpec{Name: "maglev", Type: "hash", KeySize: MaglevKeySize, ValueSize: 4 * p.maglevM, Flags: flagNoPrealloc, Shared: true},
		len(lbs.maglev), func(i int, k, v []byte) {
			le.PutUint32(k, uint32(lbs.maglev[i].revnat))
			for j, id := range lbs.maglev[i].table {
				le.PutUint32(v[4*j:], id)
			}
		})
	p.sharedMaps["services"], p.sharedMaps["backends"], p.sharedMaps["revnat"], p.sharedMaps["maglev"] = svc, be, rn, mg
	add("maps/maglev.bin", mg.Data)
	add("maps/services.bin", svc.Data)
	add("maps/backends.bin", be.Data)
	add("maps/revnat.bin", rn.Data)
	// The text files are independent: render them in parallel.
	jobs := []struct {
		name string
		fn   func() []byte
	}{
		{"dump/ipcache.txt", p.dumpIPCache},
		{"dump/services.txt", func() []byte { return dumpServices(lbs.services, lbs.backends) }},
		{"dump/backends.txt", func() []byte { return dumpBackends(lbs.backends, p.nodes) }},
		{"dump/revnat.txt", func() []byte { return dumpRevNat(lbs.revnat) }},
		{"dump/maglev.txt", func() []byte { return dumpMaglev(lbs, p.maglevM) }},
		{"dump/rules.txt", p.dumpRules},
		{"rules.json", p.rulesJSON},
		{"dump/identities.txt", p.dumpIdentities},
		{"dump/regions.txt", p.dumpRegions},
		{"ir.json", func() []byte {
			b, _ := json.Marshal(p.c) // no trailing newline: appending one would copy it all
			return b
		}},
	}
	out := make([][]byte, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = j.fn()
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		add(j.name, out[i])
	}
	return files
}

// sortSvc orders service entries by frontend (address, port, protocol),
// scope and slot, so that a frontend's entries stay together.
func sortSvc(es []svcEntry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i].key, es[j].key
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c < 0
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		if a.Scope != b.Scope {
			return a.Scope < b.Scope
		}
		return a.Slot < b.Slot
	})
}

func (p *plan) nodeArtifact(node string, lbs *lb, sharedFiles func() []*File, opts Options) *Artifact {
	np := p.lowerNode(node)
	a := &Artifact{Node: node}
	add := func(name string, data []byte) { a.Files = append(a.Files, &File{Name: name, Data: data}) }

	// classes: every key of a non-zero class.
	type ce struct {
		k  ClassKey
		id uint32
	}
	var ces []ce
	for k, id := range np.keyClass {
		if id != 0 {
			ces = append(ces, ce{p.keys[k].key, id})
		}
	}
	cls := image(MapSpec{Name: "classes", Type: "hash", KeySize: ClassKeySize, ValueSize: ClassValueSize}, len(ces), func(i int, k, v []byte) {
		ces[i].k.put(k)
		le.PutUint32(v, ces[i].id)
	})
	pol := image(MapSpec{Name: "policy", Type: "lpm_trie", KeySize: PolicyKeySize, ValueSize: PolicyValueSize, Flags: flagNoPrealloc}, len(np.policy), func(i int, k, v []byte) {
		np.policy[i].key.put(k)
		np.policy[i].val.put(v)
	})
	type ee struct {
		ip  [4]byte
		val EndpointValue
	}
	var ees []ee
	for e, ids := range np.epLayers {
		flags := np.flags(e)
		for _, ip := range e.IPs {
			if ip.Is4() {
				ees = append(ees, ee{ip.As4(), EndpointValue{Identity: e.Identity, Policy: ids[0], Shared: ids[1], Flags: flags}})
			}
		}
	}
	sort.Slice(ees, func(i, j int) bool { return bytes.Compare(ees[i].ip[:], ees[j].ip[:]) < 0 })
	eps := image(MapSpec{Name: "endpoints", Type: "hash", KeySize: EndpointKeySize, ValueSize: EndpointValueSize}, len(ees), func(i int, k, v []byte) {
		copy(k, ees[i].ip[:])
		ees[i].val.put(v)
	})
	loc := lbs.local[node]
	sortSvc(loc)
	sl := image(MapSpec{Name: "services_local", Type: "hash", KeySize: ServiceKeySize, ValueSize: ServiceValueSize}, len(loc), func(i int, k, v []byte) {
		loc[i].key.put(k)
		loc[i].val.put(v)
	})
	for _, im := range []*Image{cls, pol, eps, sl} {
		im.Spec.MaxEntries = sizeOf(opts.Sizes, im.Spec.Name)
	}
	add("maps/classes.bin", cls.Data)
	add("maps/policy.bin", pol.Data)
	add("maps/endpoints.bin", eps.Data)
	add("maps/services_local.bin", sl.Data)
	add("dump/classes.txt", np.dumpClasses())
	add("dump/policy.txt", np.dumpPolicy())
	add("dump/endpoints.txt", np.dumpEndpoints())
	add("dump/services_local.txt", dumpServices(loc, lbs.backends))
	runtimeJSON, _ := json.Marshal(np.runtimeTable())
	add("runtime.json", append(runtimeJSON, '\n'))
	summary := np.summary()
	nodeJSON, _ := json.MarshalIndent(summary, "", " ")
	add("node.json", append(nodeJSON, '\n'))
	if opts.NodeFiles != nil {
		extra := opts.NodeFiles(summary, pol.Data)
		names := make([]string, 0, len(extra))
		for n := range extra {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			add(n, extra[n])
		}
	}
	a.Files = append(a.Files, sharedFiles()...)
	sort.Slice(a.Files, func(i, j int) bool { return a.Files[i].Name < a.Files[j].Name })

	m := Manifest{Format: FormatVersion, Node: node, NodeIndex: np.idx, Cluster: p.c.Name, InputDigest: opts.InputDigest, Files: map[string]string{}}
	images := map[string]*Image{"classes": cls, "policy": pol, "endpoints": eps, "services_local": sl}
	for name, im := range p.sharedMaps {
		images[name] = im
	}
	names := make([]string, 0, len(images))
	for n := range images {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, f := range a.Files {
		m.Files[f.Name] = f.Sum()
	}
	for _, n := range names {
		spec := images[n].Spec
		spec.MaxEntries = sizeOf(opts.Sizes, n)
		file := "maps/" + n + ".bin"
		m.Maps = append(m.Maps, ManifestMap{MapSpec: spec, File: file, SHA256: m.Files[file]})
	}
	mj, _ := json.MarshalIndent(m, "", " ")
	add("manifest.json", append(mj, '\n'))

	a.Stats = NodeStats{Node: node, Endpoints: len(ees), Policies: len(np.groups), Classes: len(np.classes),
		Entries:     map[string]int{"classes": len(ces), "policy": len(np.policy), "endpoints": len(ees), "services_local": len(loc)},
		PolicyBytes: len(cls.Data) + len(pol.Data) + len(eps.Data)}
	return a
}

func sizeOf(s MapSizes, name string) int {
	switch name {
	case "ipcache", "ipcache_exact":
		return s.IPCache
	case "classes":
		return s.Classes
	case "policy":
		return s.Policy
	case "endpoints":
		return s.Endpoints
	case "services", "services_local":
		return s.Services
	case "backends":
		return s.Backends
	case "revnat":
		return s.RevNat
	case "maglev":
		return s.Maglev
	}
	return 0
}

// BuildBusiest builds every node's artifact and keeps only the busiest one
// (the most endpoints; ties go to the first name, so runs agree), without
// holding the others in memory: benchmarks and the full-size tests load it.
func BuildBusiest(cl *ir.Cluster, opts Options) (*Artifact, error) {
	var mu sync.Mutex
	var busiest *Artifact
	opts.Sink = func(a *Artifact) error {
		mu.Lock()
		defer mu.Unlock()
		if busiest == nil || a.Stats.Endpoints > busiest.Stats.Endpoints || a.Stats.Endpoints == busiest.Stats.Endpoints && a.Node < busiest.Node {
			busiest = &Artifact{Node: a.Node, Files: append([]*File(nil), a.Files...), Stats: a.Stats}
		}
		return nil
	}
	if _, err := Build(cl, opts); err != nil {
		return nil, err
	}
	if busiest == nil {
		return nil, fmt.Errorf("the cluster has no node artifact")
	}
	return busiest, nil
}
