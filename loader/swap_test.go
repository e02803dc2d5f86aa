package loader

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
)

const swapPods = `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.77.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: b}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.77.0.3}
---
`

// Two policies that both allow a's TCP 8080 and UDP 5000 to b, with
// different map contents, and one that denies all ingress to b.
const (
	swapAllow = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports:
    - {port: 8080}
    - {port: 5000, protocol: UDP}
`
	swapAllowMore = swapAllow + `    - {port: 9090}
`
	swapDeny = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-isolated, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
`
)

// compileYAML compiles a cluster given as YAML, in memory.
func compileYAML(t *testing.T, yaml string) (*ir.Cluster, *emit.Output) {
	t.Helper()
	_, cl, diags := compiler.Load([]string{"-"}, strings.NewReader(yaml), compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags.Err())
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cl, out
}

func swapArtifact(t *testing.T, policy string) *Artifact {
	t.Helper()
	_, out := compileYAML(t, swapPods+policy)
	a, err := FromBuild(out.Artifacts[0])
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// 100 swaps under a long-lived TCP conversation and a steady UDP stream:
// nothing reset, nothing lost, nothing dropped. A bad generation is refused
// and the serving one keeps serving. A swap to a denying policy stops new
// connections at once and leaves established ones alone (conntrack is
// node state, kept across generations).
func TestSwapUnderLoad(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	allow, allowMore, deny := swapArtifact(t, swapAllow), swapArtifact(t, swapAllowMore), swapArtifact(t, swapDeny)
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3"})
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Swap(allow); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		idx := pn.ifindex(name)
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, pn.addr(name)) }); err != nil {
			t.Fatal(err)
		}
	}

	// The UDP receiver in b counts distinct sequence numbers.
	var udp *net.UDPConn
	if err := InNetNS(pn.podNS("b"), func() (err error) {
		udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("10.77.0.3"), Port: 5000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	// A buffer beyond rmem_max (root may), so that a receiver starved of
	// CPU on a busy machine does not lose datagrams the datapath passed.
	if rc, err := udp.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) })
	}
	var received atomic.Int64
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := udp.Read(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	var sender net.Conn
	if err := InNetNS(pn.podNS("a"), func() (err error) {
		sender, err = net.Dial("udp", "10.77.0.3:5000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sender.Close()

	conn, err := pn.dial("a", "b", 8080)
	if err != nil {
		t.Fatalf("a -> b:8080 before the swaps: %v", err)
	}
	defer conn.Close()
	reader := bufio.NewReader(conn)
	echo := func(i int) error {
		fmt.Fprintf(conn, "m%d\n", i)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := reader.ReadString('\n')
		if err == nil && line != fmt.Sprintf("b m%d\n", i) {
			err = fmt.Errorf("got %q", line)
		}
		return err
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, exchanges atomic.Int64
	var tcpErr atomic.Value
	wg.Add(2)
	go func() { // UDP: a datagram every 200µs
		defer wg.Done()
		var seq [8]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			binary.BigEndian.PutUint64(seq[:], uint64(sent.Load()))
			if _, err := sender.Write(seq[:]); err == nil {
				sent.Add(1)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	go func() { // TCP: back-to-back request and reply
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := echo(i); err != nil {
				tcpErr.Store(fmt.Errorf("message %d: %w", i, err))
				return
			}
			exchanges.Add(1)
		}
	}()

	// Three generations in turn, so that each incremental swap rewrites
	// the idle half for real; every tenth swap is a full one.
	const swaps = 100
	third := swapArtifact(t, swapAllow+"    - {port: 7070}\n")
	var worst, total time.Duration
	incremental := 0
	for i := 0; i < swaps; i++ {
		next := []*Artifact{allowMore, allow, third}[i%3]
		sw.FullSwaps = i%10 == 9
		start := time.Now()
		if err := sw.Swap(next); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("swap %d: %v", i+1, err)
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		if sw.LastSwap.Incremental && sw.LastSwap.MapWrites+sw.LastSwap.MapDeletes+sw.LastSwap.ProgramsLoaded > 0 {
			incremental++
		}
	}
	sw.FullSwaps = false
	if incremental < 80 {
		t.Errorf("only %d of %d swaps rewrote the idle half incrementally", incremental, swaps)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // the last datagrams in flight
	t.Logf("%d swaps: mean %v, worst %v; %d TCP exchanges, %d/%d datagrams", swaps, total/swaps, worst, exchanges.Load(), received.Load(), sent.Load())
	if err, _ := tcpErr.Load().(error); err != nil {
		t.Errorf("the TCP conversation broke during the swaps: %v", err)
	}
	if received.Load() != sent.Load() || sent.Load() == 0 {
		t.Errorf("UDP: %d datagrams sent, %d received", sent.Load(), received.Load())
	}
	if sw.Generation != swaps+1 {
		t.Errorf("generation %d, want %d", sw.Generation, swaps+1)
	}
	drops, err := sw.Drops()
	if err != nil {
		t.Fatal(err)
	}
	// The pods' own IPv6 chatter (neighbour discovery and MLD of their
	// link-local addresses) is dropped as unenforced IPv6 where they are
	// isolated; that says nothing about the swaps.
	drops[bpf.DropIPv6] = 0
	if drops != ([len(drops)]uint64{}) {
		t.Errorf("the datapath dropped packets during the swaps: %v", drops)
	}

	// A bad generation is refused; the serving one keeps serving.
	bad := swapArtifact(t, swapDeny)
	for i := range bad.Manifest.Maps {
		bad.Manifest.Maps[i].Entries++
	}
	if err := sw.Swap(bad); err == nil {
		t.Error("a generation whose map images disagree with the manifest was swapped in")
	}
	if sw.Generation != swaps+1 {
		t.Errorf("a refused swap counted: generation %d", sw.Generation)
	}
	if c, err := pn.dial("a", "b", 8080); err != nil {
		t.Errorf("a new a -> b:8080 after a refused swap: %v", err)
	} else {
		c.Close()
	}

	// Deny: new connections stop at once, the established one goes on.
	if err := sw.Swap(deny); err != nil {
		t.Fatal(err)
	}
	if c, err := pn.dial("a", "b", 8080); err == nil {
		c.Close()
		t.Error("a new a -> b:8080 connected after the swap to a denying policy")
	}
	if err := echo(-1); err != nil {
		t.Errorf("the established connection broke at the swap to a denying policy: %v", err)
	}
	if drops, _ := sw.Drops(); drops == ([len(drops)]uint64{}) {
		t.Error("no drops counted for the denied connection")
	}
}

// Pods attached and detached between swaps leave nothing stale: the slot
// map, the link pins and the program array hold exactly the attached
// endpoints.
func TestSwapEndpointChurn(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pins := mountBPFFS(t)
	pods := map[string]string{"a": "10.77.0.2", "b": "10.77.0.3", "c": "10.77.0.4", "d": "10.77.0.5"}
	pn := newPodNet(t, pods)
	idx := map[string]int{}
	for name := range pods {
		idx[name] = pn.ifindex(name)
	}
	gens := []*Artifact{swapArtifact(t, swapAllow), swapArtifact(t, swapAllowMore)}
	sw, err := NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Uninstall()
	if err := sw.Swap(gens[0]); err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c", "d"}
	attached := map[string]bool{}
	for i := 0; i < 42; i++ { // a and d end attached, b and c detached
		name := names[(i*7)%4]
		err := InNetNS(pn.nsPath(pn.node), func() error {
			if attached[name] {
				sw.Detach("default/" + name)
				return nil
			}
			return sw.Attach("default/"+name, idx[name], pn.addr(name))
		})
		if err != nil {
			t.Fatal(err)
		}
		attached[name] = !attached[name]
		if err := sw.Swap(gens[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	for _, on := range attached {
		if on {
			want++
		}
	}
	if want == 0 || want == len(names) {
		t.Fatalf("the churn left %d of %d attached; the test wants a mix", want, len(names))
	}
	var key []byte
	var val [8]byte
	slots := 0
	for it := sw.slots.Iterate(); it.Next(&key, &val); {
		slots++
		name := strings.TrimPrefix(strings.TrimRight(string(key), "\x00"), "default/")
		if !attached[name] {
			t.Errorf("slot map holds detached %s", name)
		}
	}
	pinned, _ := filepath.Glob(filepath.Join(pins, "link_*"))
	programs := 0
	for k := uint32(0); k < MaxEndpoints*4; k++ {
		var id uint32
		if sw.progs.Lookup(k, &id) == nil {
			programs++
		}
	}
	// Each attached endpoint: two links, and two programs in each half
	// (the serving one and the previous generation's).
	if slots != want || len(pinned) != 2*want || programs != 4*want {
		t.Errorf("%d attached: %d slots, %d link pins, %d programs in the array; want %d, %d, %d", want, slots, len(pinned), programs, want, 2*want, 4*want)
	}
}

// What an agent that died half-way through an attach leaves — TCX links
// pinned, the slot never recorded — is detached by the next adoption, and
// recorded endpoints are adopted as they were.
func TestAdoptRemovesHalfMadeAttachments(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pins := mountBPFFS(t)
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3"})
	idxA, idxB := pn.ifindex("a"), pn.ifindex("b")
	attached := func(ifindex int) (n int) {
		InNetNS(pn.nsPath(pn.node), func() error {
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				if q, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at}); err == nil {
					n += len(q.Programs)
				}
			}
			return nil
		})
		return n
	}
	sw, err := NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Swap(swapArtifact(t, swapAllow)); err != nil {
		t.Fatal(err)
	}
	for name, idx := range map[string]int{"a": idxA, "b": idxB} {
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, pn.addr(name)) }); err != nil {
			t.Fatal(err)
		}
	}
	// b's attach "crashed" before its slot was recorded.
	if err := sw.slots.Delete(slotKey("default/b")); err != nil {
		t.Fatal(err)
	}
	sw.Close()
	if attached(idxA) != 2 || attached(idxB) != 2 {
		t.Fatalf("after the agent let go: %d and %d programs attached, want 2 and 2 (pinned)", attached(idxA), attached(idxB))
	}
	sw, err = NewSwitch(pins)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Uninstall()
	if got := sw.endpointNames(); len(got) != 1 || got[0] != "default/a" {
		t.Errorf("adopted %v, want [default/a]", got)
	}
	if attached(idxA) != 2 || attached(idxB) != 0 {
		t.Errorf("after adoption: %d and %d programs attached, want 2 and 0", attached(idxA), attached(idxB))
	}
	if pinned, _ := filepath.Glob(filepath.Join(pins, "link_*")); len(pinned) != 2 {
		t.Errorf("link pins after adoption: %v", pinned)
	}
}

// The dispatcher runs the serving half; with that entry empty it runs the
// other half; with neither it drops rather than let a pod go unenforced.
func TestDispatcherFallback(t *testing.T) {
	requireBPF(t)
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Swap(swapArtifact(t, swapAllow)); err != nil {
		t.Fatal(err)
	}
	ret := func(r uint32) *ebpf.Program {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Dual BSD/GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, int32(r)), asm.Return()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	insns, err := dispatcher(sw.active.FD(), sw.progs.FD(), progKey(7, 1, 0), tcActShot, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pkt := bpf.Packet(netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3"), 6, 40000, 8080, 0x02)
	run := func() uint32 {
		r, err := d.Run(&ebpf.RunOptions{Data: pkt})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	serving, idle := progKey(7, 1, sw.half), progKey(7, 1, 1-sw.half)
	if got := run(); got != tcActShot {
		t.Errorf("no program in either half: %d, want TC_ACT_SHOT", got)
	}
	if err := sw.progs.Put(idle, ret(100)); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != 100 {
		t.Errorf("only the idle half filled: %d, want its program's 100", got)
	}
	if err := sw.progs.Put(serving, ret(200)); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != 200 {
		t.Errorf("both halves filled: %d, want the serving half's 200", got)
	}
}
