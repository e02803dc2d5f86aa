package bpf_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/emit/emittest"
	"github.com/sluicenet/sluice/loader"
)

var (
	podA = netip.MustParseAddr("10.77.0.2")
	podB = netip.MustParseAddr("10.77.0.3")
	podC = netip.MustParseAddr("10.77.0.4")
	podD = netip.MustParseAddr("10.77.0.5")
)

// offPathDatapath loads emittest.OffPathCluster's node.
func offPathDatapath(t *testing.T) *loader.Datapath {
	t.Helper()
	cl := resolve(t, emittest.OffPathCluster, "-")
	dp := load(t, build(t, cl, emit.Options{}).Artifacts[0])
	t.Cleanup(dp.Close)
	return dp
}

// programKinds are an endpoint's own program (inline where the cost model
// chose it) and the node's generic one, by name.
func programKinds(dp *loader.Datapath, endpoint string, dir bpf.Direction) map[string]*ebpf.Program {
	return map[string]*ebpf.Program{"own": dp.ProgramFor(endpoint, dir), "generic": dp.Programs[dir.String()]}
}

func runProg(t *testing.T, p *ebpf.Program, data []byte) uint32 {
	t.Helper()
	ret, err := p.Run(&ebpf.RunOptions{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

func verdictOf(r uint32) string {
	switch r {
	case bpf.TCXPass:
		return "pass"
	case bpf.TCXDrop:
		return "drop"
	}
	return "?"
}

// IPv6 is not enforced: on both programs of a pod that a policy isolates
// in either direction, every IPv6 frame is dropped and counted as such;
// a pod nothing isolates passes IPv6; ARP passes everywhere. Whose frame
// it is comes from endpoint_links (the interface), whatever its addresses
// say.
func TestIPv6IsDroppedWhereIsolated(t *testing.T) {
	requireBPF(t)
	dp := offPathDatapath(t)
	pods := map[string]struct {
		ip       netip.Addr
		isolated bool
	}{"default/a": {podA, false}, "default/b": {podB, true}, "default/c": {podC, true}, "default/d": {podD, true}}
	own, peer := netip.MustParseAddr("fd00:77::2"), netip.MustParseAddr("fd00:77::99")
	linkLocal := netip.MustParseAddr("fe80::1")
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	inlineSeen := false
	dropped := uint64(0)
	for name, pod := range pods {
		if err := dp.LinkEndpoint(1, pod.ip); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []bpf.Direction{bpf.ToContainer, bpf.FromContainer} {
			kinds := programKinds(dp, name, dir)
			inlineSeen = inlineSeen || kinds["own"] != kinds["generic"]
			for kind, prog := range kinds {
				for _, f := range []struct {
					what     string
					src, dst netip.Addr
					proto    uint8
					port     uint16
				}{
					{"TCP SYN", peer, own, 6, 80},
					{"UDP", peer, own, 17, 53},
					{"ICMPv6 echo request", peer, own, 58, 128},
					{"TCP SYN from a link-local source", linkLocal, peer, 6, 443},
				} {
					src, dst := f.src, f.dst
					if dir == bpf.FromContainer {
						src, dst = dst, src
					}
					want := uint32(bpf.TCXPass)
					if pod.isolated {
						want, dropped = bpf.TCXDrop, dropped+1
					}
					if got := runProg(t, prog, bpf.Packet6(src, dst, f.proto, 40000, f.port, 0x02)); got != want {
						t.Errorf("%s %s (%s program): IPv6 %s %s -> %s: %s, want %s", name, dir, kind, f.what, src, dst, verdictOf(got), verdictOf(want))
					}
				}
				if got := runProg(t, prog, arp); got != bpf.TCXPass {
					t.Errorf("%s %s (%s program): ARP %s, want pass", name, dir, kind, verdictOf(got))
				}
			}
		}
	}
	if !inlineSeen {
		t.Error("no endpoint got an inline program: the test covers only the generic one")
	}
	// An interface linked to no endpoint of the generation is not
	// enforced, as IPv4 of such an address is not; an interface with no
	// link at all is dropped.
	if err := dp.LinkEndpoint(1, netip.MustParseAddr("10.77.0.99")); err != nil {
		t.Fatal(err)
	}
	syn := bpf.Packet6(peer, own, 6, 40000, 80, 0x02)
	if got := runProg(t, dp.Programs[bpf.ToContainer.String()], syn); got != bpf.TCXPass {
		t.Errorf("IPv6 on an interface linked to an address the generation does not list: %s, want pass", verdictOf(got))
	}
	if err := dp.Maps[bpf.MapEndpointLinks].Delete(uint32(1)); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []bpf.Direction{bpf.ToContainer, bpf.FromContainer} {
		if got := runProg(t, dp.Programs[dir.String()], syn); got != bpf.TCXDrop {
			t.Errorf("IPv6 %s on an interface no endpoint is linked to: %s, want drop", dir, verdictOf(got))
		}
		dropped++
	}
	counts, err := dp.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if counts[bpf.DropIPv6] != dropped || counts[bpf.DropDefault] != 0 || counts[bpf.DropDenied] != 0 || counts[bpf.DropMalformed] != 0 {
		t.Errorf("drop counters %v, want %d under %s and no other", counts, dropped, bpf.DropReasonNames[bpf.DropIPv6])
	}
	// IPv4 is enforced as ever next to it: a -> b TCP 8080 passes b's
	// ingress, 9090 is dropped.
	to := dp.ProgramFor("default/b", bpf.ToContainer)
	if got := runProg(t, to, bpf.Packet(podA, podB, 6, 40001, 8080, 0x02)); got != bpf.TCXPass {
		t.Errorf("IPv4 a -> b:8080: %s, want pass", verdictOf(got))
	}
	if got := runProg(t, to, bpf.Packet(podA, podB, 6, 40001, 9090, 0x02)); got != bpf.TCXDrop {
		t.Errorf("IPv4 a -> b:9090: %s, want drop", verdictOf(got))
	}
}

// fragment crafts one IPv4 fragment of a datagram: the first (offset 0)
// carries the L4 header, a later one (offset in 8-byte units) bytes that
// would parse as ports 7 and 7 were they taken for a header.
func fragment(src, dst netip.Addr, proto uint8, sport, dport, id, offset uint16, more bool) []byte {
	b := bpf.Packet(src, dst, proto, sport, dport, 0)
	ip := b[14:]
	if offset != 0 {
		l4 := ip[20:]
		for i := range l4 {
			l4[i] = 0
		}
		binary.BigEndian.PutUint16(l4[0:], 7)
		binary.BigEndian.PutUint16(l4[2:], 7)
	}
	binary.BigEndian.PutUint16(ip[4:], id)
	fo := offset
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(ip[6:], fo)
	return b
}

// Later IPv4 fragments carry no ports: they get their first fragment's
// (recorded under source, destination, IP id and protocol) and follow
// the path it took. An allowed datagram passes whole, a denied one is
// dropped whole, and a later fragment whose first was never seen is
// dropped under its own reason — on both directions and both program
// kinds.
func TestIPv4FragmentsFollowTheirFirst(t *testing.T) {
	requireBPF(t)
	dp := offPathDatapath(t)
	id := uint16(100)
	datagram := func(prog *ebpf.Program, src, dst netip.Addr, sport, dport uint16, want string, what string) {
		t.Helper()
		id++
		for i, f := range [][]byte{
			fragment(src, dst, 17, sport, dport, id, 0, true),
			fragment(src, dst, 17, sport, dport, id, 185, true),
			fragment(src, dst, 17, sport, dport, id, 370, false),
		} {
			if got := verdictOf(runProg(t, prog, f)); got != want {
				t.Errorf("%s, fragment %d of datagram %d: %s, want %s", what, i, id, got, want)
			}
		}
	}
	before := func() [bpf.DropReasons]uint64 {
		t.Helper()
		c, err := dp.Drops()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sport := uint16(41000)
	for _, kind := range []string{"own", "generic"} {
		sport++
		bIn := programKinds(dp, "default/b", bpf.ToContainer)[kind]
		dOut := programKinds(dp, "default/d", bpf.FromContainer)[kind]
		cOut := programKinds(dp, "default/c", bpf.FromContainer)[kind]
		// Ingress: a -> b UDP 5353 is allowed, 9999 is not.
		datagram(bIn, podA, podB, sport, 5353, "pass", kind+" b ingress, a -> b UDP 5353")
		c0 := before()
		datagram(bIn, podA, podB, sport, 9999, "drop", kind+" b ingress, a -> b UDP 9999")
		if c := before(); c[bpf.DropDefault]-c0[bpf.DropDefault] != 3 || c[bpf.DropFragNotFound] != c0[bpf.DropFragNotFound] {
			t.Errorf("%s: a denied datagram's 3 fragments: default drops %d -> %d, frag_not_found %d -> %d; want all 3 by the policy", kind, c0[bpf.DropDefault], c[bpf.DropDefault], c0[bpf.DropFragNotFound], c[bpf.DropFragNotFound])
		}
		// Egress: d -> b UDP 5353 is allowed, c may send nothing.
		datagram(dOut, podD, podB, sport, 5353, "pass", kind+" d egress, d -> b UDP 5353")
		datagram(cOut, podC, podA, sport, 5353, "drop", kind+" c egress, c -> a UDP 5353")
		// A later fragment without its first: dropped as such, in both
		// directions, also when another datagram of the same flow was
		// recorded (another id unlocks nothing).
		c0 = before()
		id++
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 17, sport, 5353, id, 185, true))); got != "drop" {
			t.Errorf("%s: a later fragment of a datagram never seen, b ingress: %s, want drop", kind, got)
		}
		if got := verdictOf(runProg(t, dOut, fragment(podD, podB, 17, sport, 5353, id, 185, false))); got != "drop" {
			t.Errorf("%s: a later fragment of a datagram never seen, d egress: %s, want drop", kind, got)
		}
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 17, sport, 5353, id-1, 0, true))); got != "pass" {
			t.Errorf("%s: first fragment of datagram %d: %s, want pass", kind, id-1, got)
		}
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 17, sport, 5353, id+1, 185, false))); got != "drop" {
			t.Errorf("%s: a later fragment of datagram %d after the first of %d: %s, want drop", kind, id+1, id-1, got)
		}
		if c := before(); c[bpf.DropFragNotFound]-c0[bpf.DropFragNotFound] != 3 {
			t.Errorf("%s: frag_not_found drops %d -> %d, want 3 more", kind, c0[bpf.DropFragNotFound], c[bpf.DropFragNotFound])
		}
		// TCP the same way: a -> b 8080 allowed, 9090 not.
		id++
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 6, sport, 9090, id, 0, true))); got != "drop" {
			t.Errorf("%s: TCP a -> b:9090 first fragment: %s, want drop", kind, got)
		}
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 6, sport, 9090, id, 3, false))); got != "drop" {
			t.Errorf("%s: TCP a -> b:9090 later fragment: %s, want drop", kind, got)
		}
		id++
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 6, sport, 8080, id, 0, true))); got != "pass" {
			t.Errorf("%s: TCP a -> b:8080 first fragment: %s, want pass", kind, got)
		}
		if got := verdictOf(runProg(t, bIn, fragment(podA, podB, 6, sport, 8080, id, 3, false))); got != "pass" {
			t.Errorf("%s: TCP a -> b:8080 later fragment: %s, want pass", kind, got)
		}
	}
	// Don't Fragment is no fragment: a DF packet is parsed as any other.
	df := bpf.Packet(podA, podB, 17, 41100, 5353, 0)
	df[14+6] = 0x40
	if got := verdictOf(runProg(t, dp.Programs[bpf.ToContainer.String()], df)); got != "pass" {
		t.Errorf("a -> b UDP 5353 with DF: %s, want pass", got)
	}
	df = bpf.Packet(podA, podB, 17, 41100, 9999, 0)
	df[14+6] = 0x40
	if got := verdictOf(runProg(t, dp.Programs[bpf.ToContainer.String()], df)); got != "drop" {
		t.Errorf("a -> b UDP 9999 with DF: %s, want drop", got)
	}
}
