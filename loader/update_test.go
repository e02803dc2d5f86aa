package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/ir"
)

func TestImageDelta(t *testing.T) {
	rec := func(k, v byte) []byte { return []byte{0, k, v} } // 2-byte key, 1-byte value
	image := func(recs ...[]byte) []byte { return bytes.Join(recs, nil) }
	prev := image(rec(1, 1), rec(2, 2), rec(4, 4), rec(6, 6))
	next := image(rec(2, 2), rec(3, 3), rec(4, 9), rec(7, 7))
	for _, tc := range []struct {
		name       string
		prev, next []byte
	}{
		{"sorted", prev, next},
		// Out of order: the hash-table path must agree.
		{"unsorted", image(rec(6, 6), rec(1, 1), rec(4, 4), rec(2, 2)), image(rec(7, 7), rec(2, 2), rec(4, 9), rec(3, 3))},
	} {
		writes, deletes := imageDelta(tc.prev, tc.next, 2, 1)
		got := fmt.Sprintf("writes %v deletes %v", sortedRecs(writes), sortedRecs(deletes))
		want := "writes [[0 3 3] [0 4 9] [0 7 7]] deletes [[0 1] [0 6]]"
		if got != want {
			t.Errorf("%s: %s, want %s", tc.name, got, want)
		}
	}
	if w, d := imageDelta(prev, prev, 2, 1); len(w)+len(d) != 0 {
		t.Errorf("an image against itself: %d writes, %d deletes", len(w), len(d))
	}
	if w, d := imageDelta(nil, next, 2, 1); len(w) != 4 || len(d) != 0 {
		t.Errorf("from empty: %d writes, %d deletes, want 4 and 0", len(w), len(d))
	}
}

func sortedRecs(rs [][]byte) [][]byte {
	out := slices.Clone(rs)
	slices.SortFunc(out, bytes.Compare)
	return out
}

// Generations of one node that differ in policy (inline code changes, a
// policy too big to inline), in a service's backends, and in nothing.
var updateGenerations = func() []string {
	pods := swapPods + `apiVersion: v1
kind: Pod
metadata: {name: c, namespace: default, labels: {app: b}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.77.0.4}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.10, selector: {app: b}, ports: [{port: 80, targetPort: 8080}]}
---
`
	slice := func(ips ...string) string {
		s := `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints:
`
		for _, ip := range ips {
			s += "- {addresses: [" + ip + "], conditions: {ready: true}}\n"
		}
		return s + "---\n"
	}
	var bigPorts strings.Builder // more entries than the cost model inlines
	for p := 7000; p < 7040; p++ {
		fmt.Fprintf(&bigPorts, "    - {port: %d}\n", p)
	}
	big := strings.Replace(swapAllow, "    ports:\n", "    ports:\n"+bigPorts.String(), 1)
	return []string{
		pods + slice("10.77.0.3", "10.77.0.4") + swapAllow,
		pods + slice("10.77.0.3", "10.77.0.4") + swapAllowMore,
		pods + slice("10.77.0.3") + swapAllow, // one service changed
		pods + slice("10.77.0.4") + swapDeny,
		pods + slice("10.77.0.3", "10.77.0.4") + big,
	}
}()

// Swaps that rewrite the idle half entry by entry give exactly the maps a
// full load gives (read back from the kernel), and the kernel's verdicts
// agree with the evaluator after every one.
func TestIncrementalSwap(t *testing.T) {
	requireBPF(t)
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	sw.FullSwaps = os.Getenv("FULL") != ""
	for _, ep := range []string{"default/a", "default/b", "default/c"} {
		// Attach needs a serving generation and an interface: register the
		// endpoint in the slot table only, so that Swap fills its programs.
		sw.endpoints[ep] = &attachment{slot: sw.freeSlots[len(sw.freeSlots)-1]}
		sw.freeSlots = sw.freeSlots[:len(sw.freeSlots)-1]
	}
	order := []int{0, 1, 2, 3, 4, 0, 2, 4, 1, 3, 0, 0, 3}
	ports := []ir.PortProto{{Port: 8080, Proto: ir.ProtoTCP}, {Port: 9090, Proto: ir.ProtoTCP}, {Port: 7010, Proto: ir.ProtoTCP}, {Port: 5000, Proto: ir.ProtoUDP}}
	for i, g := range order {
		cl, out := compileYAML(t, updateGenerations[g])
		a, err := FromBuild(out.Artifacts[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.Swap(a); err != nil {
			t.Fatalf("swap %d (generation %d): %v", i, g, err)
		}
		info := sw.LastSwap
		if want := i >= 2; info.Incremental != want {
			t.Errorf("swap %d: incremental %v, want %v (fallback %q)", i, info.Incremental, want, info.Fallback)
		}
		if info.Incremental && order[i-2] == g && info.MapWrites+info.MapDeletes+info.ProgramsLoaded != 0 {
			t.Errorf("swap %d: the idle half held the same generation, yet %+v", i, info)
		}
		if info.Incremental && order[i-2] != g && info.MapWrites+info.MapDeletes+info.ProgramsLoaded == 0 {
			t.Errorf("swap %d: generation %d over %d changed nothing", i, g, order[i-2])
		}
		checkMapsEqualImages(t, fmt.Sprintf("swap %d", i), sw.gen)
		ev := ir.NewEvaluator(cl)
		tr := &Tracer{ev: ev, nodes: map[string]*Datapath{cl.Endpoints[0].Node: sw.gen}, sport: uint16(40000 + 1000*i)}
		for _, e := range ev.Matrix(ports) {
			q := ir.Query{Src: endpointAddr(cl, e.From), Dst: endpointAddr(cl, e.To), Proto: e.Proto, Port: e.Port}
			kv, err := tr.Trace(q)
			if err != nil {
				t.Fatal(err)
			}
			if kv.Verdict != e.Verdict {
				t.Errorf("swap %d (generation %d): %s -> %s %s: kernel %s, evaluator %s", i, g, e.From, e.To, ir.PortString(e.Proto, e.Port), kv.Verdict, e.Verdict)
			}
		}
		// Every endpoint's serving-half entry is the generation's program.
		for _, ep := range sw.endpointNames() {
			for d, dir := range directions {
				var id ebpf.ProgramID
				if err := sw.progs.Lookup(progKey(sw.endpoints[ep].slot, d, sw.half), &id); err != nil {
					t.Fatalf("%s %s: %v", ep, dir, err)
				}
				info, err := sw.gen.ProgramFor(ep, dir).Info()
				if err != nil {
					t.Fatal(err)
				}
				if want, _ := info.ID(); id != want {
					t.Errorf("swap %d: %s %s: the program array holds program %d, not the generation's %d", i, ep, dir, id, want)
				}
			}
		}
	}
}

func endpointAddr(cl *ir.Cluster, key string) (a netip.Addr) {
	for _, e := range cl.Endpoints {
		if e.Key() == key {
			return e.IPs[0]
		}
	}
	return a
}

// checkMapsEqualImages reads every map of a generation back from the
// kernel and compares it with the image it should hold.
func checkMapsEqualImages(t *testing.T, what string, dp *Datapath) {
	t.Helper()
	for name, image := range dp.images {
		m := dp.Maps[name]
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		ks, vs := int(info.KeySize), int(info.ValueSize)
		var recs [][]byte
		key, val := make([]byte, ks), make([]byte, vs)
		it := m.Iterate()
		for it.Next(&key, &val) {
			recs = append(recs, append(slices.Clone(key), val...))
		}
		if err := it.Err(); err != nil {
			t.Fatalf("%s: read map %s: %v", what, name, err)
		}
		slices.SortFunc(recs, bytes.Compare)
		var want [][]byte // images are not all in key-byte order (LPM keys lead with the prefix length)
		for off := 0; off < len(image); off += ks + vs {
			want = append(want, image[off:off+ks+vs])
		}
		slices.SortFunc(want, bytes.Compare)
		if got, image := bytes.Join(recs, nil), bytes.Join(want, nil); !bytes.Equal(got, image) {
			t.Errorf("%s: map %s holds %d entries that differ from its image's %d:\n%x\n%x", what, name, len(recs), len(image)/(ks+vs), got, image)
		}
	}
}

// A generation whose maps change shape cannot be rewritten in place: the
// swap says why and builds it in full.
func TestIncrementalSwapFallback(t *testing.T) {
	requireBPF(t)
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	for _, g := range []int{0, 1} {
		if err := sw.Swap(swapArtifact(t, updateGenerations[g][len(swapPods):])); err != nil {
			t.Fatal(err)
		}
	}
	a := swapArtifact(t, updateGenerations[2][len(swapPods):])
	a.Manifest.Maps[0].MaxEntries++
	if err := sw.Swap(a); err != nil {
		t.Fatal(err)
	}
	if sw.LastSwap.Incremental || !strings.Contains(sw.LastSwap.Fallback, "changed shape") {
		t.Errorf("a map that changed size: %+v, want a full swap saying the map changed shape", sw.LastSwap)
	}
	checkMapsEqualImages(t, "after the fallback", sw.gen)
}

// imageDelta (with its head and tail trimming and merge) against the plain
// hash-table comparison, on random edits of images in and out of key order.
func TestImageDeltaRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const ks, vs = 4, 2
	for round := range 300 {
		n := rng.IntN(3000)
		var recs [][]byte
		seen := map[uint32]bool{}
		for len(recs) < n {
			k := rng.Uint32N(1 << 20)
			if seen[k] {
				continue
			}
			seen[k] = true
			r := make([]byte, ks+vs)
			binary.BigEndian.PutUint32(r, k)
			r[4], r[5] = byte(rng.IntN(4)), 0
			recs = append(recs, r)
		}
		if round%2 == 0 {
			slices.SortFunc(recs, bytes.Compare)
		}
		prev := bytes.Join(recs, nil)
		next := slices.Clone(recs)
		for range rng.IntN(5) { // a few edits, anywhere
			if len(next) == 0 {
				break
			}
			i := rng.IntN(len(next))
			switch rng.IntN(3) {
			case 0:
				next = slices.Delete(next, i, i+1)
			case 1:
				r := slices.Clone(next[i])
				r[4] ^= 0xff
				next[i] = r
			case 2:
				r := make([]byte, ks+vs)
				binary.BigEndian.PutUint32(r, 1<<20+uint32(rng.IntN(1000)))
				if !slices.ContainsFunc(next, func(x []byte) bool { return bytes.Equal(x[:ks], r[:ks]) }) {
					next = slices.Insert(next, i, r)
				}
			}
		}
		if round%2 == 0 {
			slices.SortFunc(next, bytes.Compare)
		}
		nextImg := bytes.Join(next, nil)
		w, d := imageDelta(prev, nextImg, ks, vs)
		ww, dd := imageDeltaUnsorted(prev, nextImg, ks, ks+vs)
		if fmt.Sprint(sortedRecs(w), sortedRecs(d)) != fmt.Sprint(sortedRecs(ww), sortedRecs(dd)) {
			t.Fatalf("round %d: imageDelta gives %d writes, %d deletes; the hash table %d and %d", round, len(w), len(d), len(ww), len(dd))
		}
	}
}
