package loader

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
)

// Two nodes; web has backends on both, and a NodePort and an ExternalIP.
const nodePortCluster = `apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.77.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.77.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec: {podCIDR: 10.77.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.77.9}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalIPs: [203.0.113.10]
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: dns, port: 53, targetPort: 5353, nodePort: 30053, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: sctp, namespace: default}
spec:
  clusterIP: 10.96.0.20
  externalIPs: [203.0.113.20]
  selector: {app: web}
  ports:
  - {name: same, port: 9000, targetPort: 9000, protocol: SCTP}
  - {name: other, port: 9001, targetPort: 9999, protocol: SCTP}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.40
  selector: {app: nothing}
  ports: [{name: t, port: 80, nodePort: 30099}, {name: u, port: 53, protocol: UDP, nodePort: 30098}]
---
apiVersion: v1
kind: Service
metadata: {name: local-ext, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30070}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  sessionAffinity: ClientIP
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
---
`

func nodePortPods() string {
	var s string
	for _, p := range []struct{ name, ip, node string }{{"b1", "10.77.0.3", "n1"}, {"b2", "10.77.0.4", "n1"}, {"b3", "10.77.1.3", "n2"}} {
		s += fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: web}}\nspec: {nodeName: %s, containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]}\nstatus: {podIP: %s}\n---\n", p.name, p.node, p.ip)
	}
	return s
}

// withChecksums fills in a crafted packet's IPv4 and TCP/UDP checksums
// (and the UDP length), so that a test can check the program's rewrites
// keep them right.
func withChecksums(b []byte) []byte {
	ip := b[14:34]
	l4 := b[34:]
	if ip[9] == 17 {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^sum16(0, ip))
	off := map[byte]int{6: 16, 17: 6}[ip[9]]
	l4[off], l4[off+1] = 0, 0
	binary.BigEndian.PutUint16(l4[off:], ^pseudoSum(ip, l4))
	return b
}

func sum16(s uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func pseudoSum(ip, l4 []byte) uint16 {
	var s uint32
	s += uint32(sum16(0, ip[12:20]))
	s += uint32(ip[9]) + uint32(len(l4))
	return sum16(s, l4)
}

// checksumsOK says whether a packet's IPv4 and L4 checksums verify.
func checksumsOK(b []byte) bool {
	ip, l4 := b[14:34], b[34:]
	return sum16(0, ip) == 0xffff && pseudoSum(ip, l4) == 0xffff
}

type flow struct {
	src, dst     netip.Addr
	sport, dport uint16
}

func parseFlow(b []byte) flow {
	return flow{netip.AddrFrom4([4]byte(b[26:30])), netip.AddrFrom4([4]byte(b[30:34])),
		binary.BigEndian.Uint16(b[34:]), binary.BigEndian.Uint16(b[36:])}
}

func runPacket(t *testing.T, p *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	ret, err := p.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut
}

// The external device's programs, through BPF_PROG_TEST_RUN: a NodePort
// flow is DNAT-ed to a backend chosen by Maglev — the same one on both
// nodes — with checksums right; a flow to a backend on the other node is
// also SNAT-ed to the node address, and its replies are reversed on the
// way in; a local backend's replies get the frontend back on the way out;
// the flow keeps its backend; flows spread over all backends; a flow to
// an ExternalIP gets the same backend on either node.
func TestNodePortPrograms(t *testing.T) {
	requireBPF(t)
	_, out := compileYAML(t, nodePortCluster+nodePortPods())
	dps := map[string]*Datapath{}
	for _, a := range out.Artifacts {
		la, err := FromBuild(a)
		if err != nil {
			t.Fatal(err)
		}
		dp, err := LoadArtifact(la)
		if err != nil {
			t.Fatal(err)
		}
		defer dp.Close()
		dps[a.Node] = dp
	}
	in1, eg1 := dps["n1"].Programs[netdevIngress], dps["n1"].Programs[netdevEgress]
	if in1 == nil || eg1 == nil {
		t.Fatal("no external device programs in n1's generation")
	}
	client := netip.MustParseAddr("198.51.100.7")
	node1 := netip.MustParseAddr("192.168.77.1")
	backends := map[netip.Addr]string{netip.MustParseAddr("10.77.0.3"): "n1", netip.MustParseAddr("10.77.0.4"): "n1", netip.MustParseAddr("10.77.1.3"): "n2"}
	counts := map[netip.Addr]int{}
	for i := range 300 {
		sport := uint16(40000 + i)
		pkt := withChecksums(bpf.Packet(client, node1, 6, sport, 30080, 0x02))
		ret, got := runPacket(t, in1, pkt)
		f := parseFlow(got)
		node, ok := backends[f.dst]
		if ret != 0 || !ok || f.dport != 8080 || !checksumsOK(got) {
			t.Fatalf("flow %d: ret %d, %s:%d -> %s:%d, checksums ok %v", i, ret, f.src, f.sport, f.dst, f.dport, checksumsOK(got))
		}
		counts[f.dst]++
		wantSrc := client
		if node != "n1" {
			wantSrc = node1 // SNAT: the reply must come back through n1
		}
		if f.src != wantSrc || f.sport != sport {
			t.Fatalf("flow %d to %s on %s: source %s:%d, want %s:%d", i, f.dst, node, f.src, f.sport, wantSrc, sport)
		}
		// The same flow again: the same backend.
		if _, again := runPacket(t, in1, withChecksums(bpf.Packet(client, node1, 6, sport, 30080, 0x10))); parseFlow(again).dst != f.dst {
			t.Fatalf("flow %d moved from %s to %s", i, f.dst, parseFlow(again).dst)
		}
		// A flow to the ExternalIP, which may reach either node (ECMP):
		// each picks by its own Maglev table and NAT table, and they
		// agree.
		vip := netip.MustParseAddr("203.0.113.10")
		// (Another source port: replies are told apart by their tuple.)
		_, on1 := runPacket(t, in1, withChecksums(bpf.Packet(client, vip, 6, sport+1000, 80, 0x02)))
		_, on2 := runPacket(t, dps["n2"].Programs[netdevIngress], withChecksums(bpf.Packet(client, vip, 6, sport+1000, 80, 0x02)))
		if parseFlow(on1).dst != parseFlow(on2).dst || parseFlow(on1).dport != 8080 {
			t.Fatalf("flow %d to the ExternalIP: n1 picked %s, n2 %s", i, parseFlow(on1).dst, parseFlow(on2).dst)
		}
		// The reply.
		if node == "n1" {
			_, rep := runPacket(t, eg1, withChecksums(bpf.Packet(f.dst, client, 6, 8080, sport, 0x12)))
			if r := parseFlow(rep); r.src != node1 || r.sport != 30080 || r.dst != client || r.dport != sport || !checksumsOK(rep) {
				t.Fatalf("flow %d: the local backend's reply leaves as %s:%d -> %s:%d (checksums ok %v)", i, r.src, r.sport, r.dst, r.dport, checksumsOK(rep))
			}
		} else {
			_, rep := runPacket(t, in1, withChecksums(bpf.Packet(f.dst, node1, 6, 8080, sport, 0x12)))
			if r := parseFlow(rep); r.src != node1 || r.sport != 30080 || r.dst != client || r.dport != sport || !checksumsOK(rep) {
				t.Fatalf("flow %d: the remote backend's reply comes in as %s:%d -> %s:%d (checksums ok %v)", i, r.src, r.sport, r.dst, r.dport, checksumsOK(rep))
			}
		}
	}
	t.Logf("300 NodePort flows: %v", counts)
	for b := range backends {
		if counts[b] < 60 {
			t.Errorf("backend %s got %d of 300 flows", b, counts[b])
		}
	}

	// UDP to the ExternalIP, and traffic to no frontend, which passes as is.
	ext := netip.MustParseAddr("203.0.113.10")
	if _, got := runPacket(t, in1, withChecksums(bpf.Packet(client, ext, 17, 5000, 53, 0))); parseFlow(got).dport != 5353 || !checksumsOK(got) {
		t.Errorf("UDP to the ExternalIP: %+v, checksums ok %v", parseFlow(got), checksumsOK(got))
	}
	// SCTP to an ExternalIP: the address is translated (its CRC32c
	// covers no pseudo-header); a port change, which would need the CRC
	// recomputed, is dropped rather than mistranslated.
	sctpVIP := netip.MustParseAddr("203.0.113.20")
	if ret, got := runPacket(t, in1, bpf.Packet(client, sctpVIP, 132, 5000, 9000, 0)); ret != 0 || parseFlow(got).dport != 9000 || backends[parseFlow(got).dst] == "" {
		t.Errorf("SCTP to the ExternalIP: ret %d, %+v", ret, parseFlow(got))
	}
	if ret, _ := runPacket(t, in1, bpf.Packet(client, sctpVIP, 132, 5000, 9001, 0)); ret != 2 {
		t.Errorf("SCTP to a frontend whose target port differs: ret %d, want a drop", ret)
	}
	// externalTrafficPolicy: Local: each node picks among its own
	// backends, and never SNATs.
	for node, want := range map[string]string{"n1": "10.77.0.", "n2": "10.77.1."} {
		addr := map[string]netip.Addr{"n1": node1, "n2": netip.MustParseAddr("192.168.77.9")}[node]
		for i := range 30 {
			_, got := runPacket(t, dps[node].Programs[netdevIngress], withChecksums(bpf.Packet(client, addr, 6, uint16(10000+i), 30070, 0x02)))
			if f := parseFlow(got); !strings.HasPrefix(f.dst.String(), want) || f.src != client {
				t.Fatalf("externalTrafficPolicy Local on %s: %s -> %s", node, f.src, f.dst)
			}
		}
	}
	// ClientIP affinity: one client, many flows, one backend.
	sticky := map[netip.Addr]bool{}
	for i := range 50 {
		_, got := runPacket(t, in1, withChecksums(bpf.Packet(client, node1, 6, uint16(20000+i), 30090, 0x02)))
		sticky[parseFlow(got).dst] = true
	}
	if len(sticky) != 1 {
		t.Errorf("50 flows of one client to a ClientIP-affinity NodePort reached %d backends", len(sticky))
	}
	// A SYN to a NodePort without backends gets a reset back, out of the
	// device it came in by (TC_ACT_REDIRECT): from the frontend, acking
	// the SYN, with checksums right.
	syn := bpf.Packet(client, node1, 6, 5001, 30099, 0x02)
	binary.BigEndian.PutUint32(syn[38:], 0x01020304)
	if ret, rst := runPacket(t, in1, withChecksums(syn)); ret != 7 || len(rst) != 54 {
		t.Errorf("a SYN to a NodePort without backends: ret %d, %d bytes", ret, len(rst))
	} else if f := parseFlow(rst); f.src != node1 || f.sport != 30099 || f.dst != client || f.dport != 5001 || rst[47] != 0x14 ||
		binary.BigEndian.Uint32(rst[42:]) != 0x01020305 || !checksumsOK(rst) {
		t.Errorf("the reset: %s:%d -> %s:%d flags %#x ack %#x, checksums ok %v", f.src, f.sport, f.dst, f.dport, rst[47], binary.BigEndian.Uint32(rst[42:]), checksumsOK(rst))
	}
	// A datagram to it gets an ICMP port unreachable quoting it.
	dgram := withChecksums(bpf.Packet(client, node1, 17, 5002, 30098, 0))
	if ret, icmp := runPacket(t, in1, dgram); ret != 7 || len(icmp) != 70 {
		t.Errorf("a datagram to a NodePort without backends: ret %d, %d bytes", ret, len(icmp))
	} else if f := parseFlow(icmp); f.src != node1 || f.dst != client || icmp[23] != 1 || icmp[34] != 3 || icmp[35] != 3 ||
		sum16(0, icmp[14:34]) != 0xffff || sum16(0, icmp[34:]) != 0xffff || string(icmp[42:70]) != string(dgram[14:42]) {
		t.Errorf("the ICMP answer: %s -> %s proto %d type %d code %d, quoted %x", f.src, f.dst, icmp[23], icmp[34], icmp[35], icmp[42:70])
	}
	// With --no-backends drop, both are dropped instead.
	cl, _ := compileYAML(t, nodePortCluster+nodePortPods())
	dropOut, err := emit.Build(cl, emit.Options{NoBackends: "drop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range dropOut.Artifacts {
		if a.Node != "n1" {
			continue
		}
		la, err := FromBuild(a)
		if err != nil {
			t.Fatal(err)
		}
		dp, err := LoadArtifact(la)
		if err != nil {
			t.Fatal(err)
		}
		defer dp.Close()
		for _, pkt := range [][]byte{withChecksums(syn), dgram} {
			if ret, _ := runPacket(t, dp.Programs[netdevIngress], pkt); ret != 2 {
				t.Errorf("--no-backends drop: a packet to a NodePort without backends: ret %d, want a drop", ret)
			}
		}
	}
	other := withChecksums(bpf.Packet(client, node1, 6, 5000, 22, 0x02))
	if _, got := runPacket(t, in1, other); parseFlow(got) != parseFlow(other) {
		t.Errorf("traffic to no frontend was changed: %+v", parseFlow(got))
	}
}

// NodePort and ExternalIP from a client outside the cluster, on real
// sockets: from a "world" namespace, over a bridge that also joins a
// second node, through the first node's external device to backend pods
// on that node and on the other one (SNAT-ed, its replies coming back
// through the first node), the replies coming back from the frontend.
func TestNodePortTraffic(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pn := newPodNet(t, map[string]string{"b1": "10.77.0.3", "b2": "10.77.0.4"})
	id := pn.id
	fabric, world, node2, b3 := "slfab-"+id, "slworld-"+id, "slnode2-"+id, "slb3-"+id
	for _, ns := range []string{fabric, world, node2, b3} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipCmd(t, "-n", fabric, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", fabric, "link", "set", "br0", "up")
	ports := 0
	join := func(ns, ifname, addr string) {
		ports++
		port := fmt.Sprintf("f%d%s", ports, id)
		ipCmd(t, "-n", fabric, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
		ipCmd(t, "-n", fabric, "link", "set", port, "master", "br0")
		ipCmd(t, "-n", fabric, "link", "set", port, "up")
		ipCmd(t, "-n", ns, "addr", "add", addr, "dev", ifname)
		ipCmd(t, "-n", ns, "link", "set", ifname, "up")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ext := "ext" + id
	join(pn.node, ext, "192.168.77.1/24")
	join(world, "eth0", "192.168.77.2/24")
	join(node2, "eth0", "192.168.77.9/24")
	ipCmd(t, "-n", world, "route", "add", "203.0.113.10/32", "via", "192.168.77.1")
	// Native routing between the nodes' pod CIDRs.
	ipCmd(t, "-n", pn.node, "route", "add", "10.77.1.0/24", "via", "192.168.77.9")
	ipCmd(t, "-n", node2, "route", "add", "10.77.0.0/24", "via", "192.168.77.1")
	ipCmd(t, "netns", "exec", node2, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	ipCmd(t, "-n", node2, "link", "add", "vb3", "type", "veth", "peer", "name", "eth0", "netns", b3)
	ipCmd(t, "-n", node2, "link", "set", "vb3", "up")
	ipCmd(t, "-n", node2, "route", "add", "10.77.1.3/32", "dev", "vb3")
	ipCmd(t, "netns", "exec", node2, "sysctl", "-qw", "net.ipv4.conf.vb3.proxy_arp=1")
	ipCmd(t, "-n", b3, "addr", "add", "10.77.1.3/32", "dev", "eth0")
	ipCmd(t, "-n", b3, "link", "set", "eth0", "up")
	ipCmd(t, "-n", b3, "route", "add", "default", "dev", "eth0")
	var ln net.Listener
	if err := InNetNS(pn.nsPath(b3), func() (err error) {
		ln, err = net.Listen("tcp", "10.77.1.3:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveEcho(ln, "b3")
	for _, b := range []string{"b1", "b2"} {
		ipCmd(t, "-n", "sl"+b+"-"+id, "route", "add", "default", "dev", "eth0")
	}

	cluster := nodePortCluster
	for _, p := range []struct{ name, ip, node string }{{"b1", "10.77.0.3", "n1"}, {"b2", "10.77.0.4", "n1"}, {"b3", "10.77.1.3", "n2"}} {
		cluster += fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: web}}\nspec: {nodeName: %s, containers: [{name: c, image: i}]}\nstatus: {podIP: %s}\n---\n", p.name, p.node, p.ip)
	}
	_, out := compileYAML(t, cluster)
	var a *Artifact
	for _, art := range out.Artifacts {
		if art.Node == "n1" {
			var err error
			if a, err = FromBuild(art); err != nil {
				t.Fatal(err)
			}
		}
	}
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Swap(a); err != nil {
		t.Fatal(err)
	}
	if err := InNetNS(pn.nsPath(pn.node), func() error {
		ifc, err := net.InterfaceByName(ext)
		if err != nil {
			return err
		}
		return sw.AttachDevice(ext, ifc.Index)
	}); err != nil {
		t.Fatal(err)
	}
	dial := func(addr string) (string, string, error) {
		var name, peer string
		err := InNetNS(pn.nsPath(world), func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			peer = c.RemoteAddr().String()
			name, err = echoName(c, bufio.NewReader(c))
			return err
		})
		return name, peer, err
	}
	for _, frontend := range []string{"192.168.77.1:30080", "203.0.113.10:80"} {
		seen := map[string]int{}
		for range 60 {
			name, peer, err := dial(frontend)
			if err != nil {
				t.Fatalf("%s from outside (after %v): %v", frontend, seen, err)
			}
			if peer != frontend {
				t.Fatalf("%s: connected to %s", frontend, peer)
			}
			seen[name]++
		}
		t.Logf("60 connections to %s: %v", frontend, seen)
		for _, b := range []string{"b1", "b2", "b3"} {
			if seen[b] == 0 {
				t.Errorf("60 connections to %s reached %v: none %s", frontend, seen, b)
			}
		}
	}
	// A NodePort without backends refuses at once, TCP and UDP.
	start := time.Now()
	_, _, err = dial("192.168.77.1:30099")
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > 200*time.Millisecond {
		t.Errorf("a NodePort without backends: %v after %v, want connection refused at once", err, time.Since(start))
	}
	err = InNetNS(pn.nsPath(world), func() error {
		c, err := net.Dial("udp4", "192.168.77.1:30098")
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 16))
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("UDP to a NodePort without backends: %v, want connection refused", err)
	}
	sw.DetachDevice(ext)
	if _, _, err := dial("192.168.77.1:30080"); err == nil {
		t.Errorf("the NodePort answered with the device detached")
	}
}
