package loader

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
)

// linksOf reads endpoint_links: ifindex → address.
func linksOf(t *testing.T, sw *Switch) map[uint32]netip.Addr {
	t.Helper()
	out := map[uint32]netip.Addr{}
	var k uint32
	var v [4]byte
	it := sw.nodeState[bpf.MapEndpointLinks].Iterate()
	for it.Next(&k, &v) {
		out[k] = netip.AddrFrom4(v)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// endpoint_links follows the attachments: an Attach links the veth to the
// pod's address (again with a new address), a Detach unlinks it, a pod
// without an IPv4 address and the external device are not linked, and
// an adoption takes the links back and drops those of no endpoint.
func TestEndpointLinks(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pins := mountBPFFS(t)
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3"})
	idxA, idxB := pn.ifindex("a"), pn.ifindex("b")
	sw, err := NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Swap(swapArtifact(t, swapAllow)); err != nil {
		t.Fatal(err)
	}
	attach := func(name string, idx int, addr netip.Addr) {
		t.Helper()
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, addr) }); err != nil {
			t.Fatal(err)
		}
	}
	a, b := pn.addr("a"), pn.addr("b")
	attach("a", idxA, a)
	attach("b", idxB, b)
	if got := linksOf(t, sw); len(got) != 2 || got[uint32(idxA)] != a || got[uint32(idxB)] != b {
		t.Fatalf("links %v, want %d → %s and %d → %s", got, idxA, a, idxB, b)
	}
	moved := netip.MustParseAddr("10.77.0.9")
	attach("b", idxB, moved)
	if got := linksOf(t, sw)[uint32(idxB)]; got != moved {
		t.Errorf("b attached again with %s: linked to %s", moved, got)
	}
	attach("b", idxB, netip.Addr{})
	if got, ok := linksOf(t, sw)[uint32(idxB)]; ok {
		t.Errorf("b attached without an IPv4 address is still linked to %s", got)
	}
	attach("b", idxB, b)
	sw.Detach("default/b")
	if got := linksOf(t, sw); len(got) != 1 || got[uint32(idxA)] != a {
		t.Errorf("after b's detach: links %v, want only a's", got)
	}
	attach("b", idxB, b)
	// An entry of no endpoint (an agent that died between link and attach).
	if err := sw.nodeState[bpf.MapEndpointLinks].Put(uint32(999999), [4]byte{10, 77, 0, 99}); err != nil {
		t.Fatal(err)
	}
	sw.Close()
	sw, err = NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Uninstall()
	if got := linksOf(t, sw); len(got) != 2 || got[uint32(idxA)] != a || got[uint32(idxB)] != b {
		t.Errorf("after adoption: links %v, want a's and b's", got)
	}
	if at := sw.endpoints["default/a"]; at == nil || at.addr != a {
		t.Errorf("adopted a: %+v, want linked to %s", at, a)
	}
}

// An agent adopts what an earlier one pinned that had fewer node-state
// maps (no endpoint_links, no ipv4_frags) and a drops map of fewer
// reasons: the endpoints are adopted, the new maps start empty, the old
// counts still count, and the next Attach links the adopted pods.
func TestAdoptAcrossNodeStateChanges(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pins := mountBPFFS(t)
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2"})
	idx := pn.ifindex("a")
	sw, err := NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Swap(swapArtifact(t, swapAllow)); err != nil {
		t.Fatal(err)
	}
	if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/a", idx, pn.addr("a")) }); err != nil {
		t.Fatal(err)
	}
	sw.Close()
	// What the earlier agent pinned: no endpoint_links, no ipv4_frags,
	// drops counted by 3 reasons.
	for _, name := range []string{bpf.MapEndpointLinks, bpf.MapFrags, bpf.MapDrops} {
		if err := os.Remove(filepath.Join(pins, name)); err != nil {
			t.Fatal(err)
		}
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: bpf.MapDrops, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	perCPU := make([]uint64, ebpf.MustPossibleCPU())
	perCPU[0] = 7
	if err := old.Put(uint32(bpf.DropDefault), perCPU); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(pins, bpf.MapDrops)); err != nil {
		t.Fatal(err)
	}
	sw, err = NewSwitch(pins)
	if err != nil {
		t.Fatalf("adopting an earlier agent's pins: %v", err)
	}
	defer sw.Uninstall()
	if !sw.serving || sw.endpoints["default/a"] == nil {
		t.Fatalf("nothing adopted: serving %v, endpoints %v", sw.serving, sw.endpointNames())
	}
	drops, err := sw.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if drops[bpf.DropDefault] != 7 {
		t.Errorf("drops after adoption %v, want the earlier agent's 7 default drops", drops)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pins, bpf.MapDrops), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if pinned.MaxEntries() != bpf.DropReasons {
		t.Errorf("the pinned drops map has %d entries, want %d", pinned.MaxEntries(), bpf.DropReasons)
	}
	at := sw.endpoints["default/a"]
	if at.addr.IsValid() {
		t.Errorf("a is linked to %s by an agent that had no links", at.addr)
	}
	// Without a link, a's dispatcher is kept (it verifies a's address,
	// and counts into the drops map this agent replaced) until Attach.
	own := bpf.Packet(pn.addr("a"), netip.MustParseAddr("10.77.0.3"), 6, 40000, 8080, 0x02)
	spoofed := bpf.Packet(netip.MustParseAddr("10.77.0.99"), netip.MustParseAddr("10.77.0.3"), 6, 40000, 8080, 0x02)
	if at.current || at.dispatchers[0] != nil {
		t.Errorf("a, adopted without a link: current %v, dispatcher replaced %v; want it kept until Attach", at.current, at.dispatchers[0] != nil)
	}
	if got, _, err := linkProgram(t, at.links[0]).Test(own); err != nil || got != bpf.TCXPass {
		t.Errorf("a's own packet through its adopted dispatcher: %d %v, want pass", got, err)
	}
	if err := sw.Swap(swapArtifact(t, swapAllowMore)); err != nil {
		t.Fatal(err)
	}
	if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/a", idx, pn.addr("a")) }); err != nil {
		t.Fatal(err)
	}
	if got := linksOf(t, sw)[uint32(idx)]; got != pn.addr("a") {
		t.Errorf("a attached again after the adoption: linked to %s, want %s", got, pn.addr("a"))
	}
	if !at.current || at.dispatchers[0] == nil {
		t.Errorf("a attached again: current %v, dispatcher replaced %v; want both", at.current, at.dispatchers[0] != nil)
	}
	for _, f := range [][]byte{own, spoofed} {
		if _, _, err := linkProgram(t, at.links[0]).Test(f); err != nil {
			t.Fatal(err)
		}
	}
	if drops, err := sw.Drops(); err != nil || drops[bpf.DropSpoofed] != 1 {
		t.Errorf("drops %v (%v), want the spoofed packet counted in this agent's map", drops, err)
	}
}
