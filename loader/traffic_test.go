package loader

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/ir"
)

const trafficCluster = `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.77.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: b}}
spec: {containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.77.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: default, labels: {app: c}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.77.0.4}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: web}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-no-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: c}}
  policyTypes: [Egress]
`

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Real TCP between network namespaces, through the compiled programs
// attached with TCX (by a Switch) to each pod's host-side veth in a
// namespace that plays the node: what connects is what the evaluator allows, and an allowed
// connection keeps working both ways (conntrack).
func TestTrafficThroughTCX(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	cl, out := compileYAML(t, trafficCluster)
	a, err := FromBuild(out.Artifacts[0])
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Swap(a); err != nil {
		t.Fatal(err)
	}

	pods := map[string]string{"a": "10.77.0.2", "b": "10.77.0.3", "c": "10.77.0.4"}
	pn := newPodNet(t, pods)
	for name := range pods {
		idx := pn.ifindex(name)
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, pn.addr(name)) }); err != nil {
			t.Fatal(err)
		}
	}
	dial := pn.dial
	ev := ir.NewEvaluator(cl)
	for _, from := range []string{"a", "b", "c"} {
		for _, to := range []string{"a", "b", "c"} {
			if from == to {
				continue
			}
			for _, port := range []int{8080, 9090} {
				want := ev.Evaluate(ir.Query{Src: netip.MustParseAddr(pods[from]), Dst: netip.MustParseAddr(pods[to]), Proto: ir.ProtoTCP, Port: uint16(port)}).Verdict
				c, err := dial(from, to, port)
				got := ir.Deny
				if err == nil {
					fmt.Fprintf(c, "hello\n")
					c.SetReadDeadline(time.Now().Add(time.Second))
					line, rerr := bufio.NewReader(c).ReadString('\n')
					if rerr == nil && line == to+" hello\n" {
						got = ir.Allow
					}
					c.Close()
				}
				if got != want {
					t.Errorf("%s -> %s:%d: real traffic %s, evaluator %s (%v)", from, to, port, got, want, err)
				}
			}
		}
	}
	// An allowed connection keeps carrying data both ways.
	c, err := dial("a", "b", 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := 0; i < 20; i++ {
		fmt.Fprintf(c, "ping %d\n", i)
		c.SetReadDeadline(time.Now().Add(time.Second))
		line, err := r.ReadString('\n')
		if err != nil || line != fmt.Sprintf("b ping %d\n", i) {
			t.Fatalf("long-lived a -> b, message %d: %q, %v", i, line, err)
		}
	}
	counts, err := sw.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if counts[bpf.DropDefault] == 0 {
		t.Errorf("no default drops counted after denied connections: %v", counts)
	}
}

func requireIP(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("iproute2 (ip) is missing; .ci/run installs it")
		}
		t.Skip("iproute2 (ip) is not installed")
	}
}

// podNet is a namespace playing the node, and one namespace per pod wired to
// it by a veth (host end "sl"+name+id), with servers in every pod on TCP
// 8080 and 9090 that echo each line prefixed with the pod's name.
type podNet struct {
	t    *testing.T
	id   string
	node string
	pods map[string]string // name → IP
}

func newPodNet(t *testing.T, pods map[string]string) *podNet {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	pn := &podNet{t: t, id: hex.EncodeToString(rnd[:]), pods: pods}
	id, node := pn.id, "slnode-"+pn.id
	pn.node = node
	ipCmd(t, "netns", "add", node)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", node).Run() })
	ipCmd(t, "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	// The node needs an address of its own to ask ARP for its pods.
	ipCmd(t, "-n", node, "addr", "add", "10.77.255.1/32", "dev", "lo")
	ipCmd(t, "-n", node, "link", "set", "lo", "up")
	names := make([]string, 0, len(pods))
	for name := range pods {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ns, host, ip := "sl"+name+"-"+id, "sl"+name+id, pods[name]
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", node, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", ns, "addr", "add", ip+"/32", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "route", "add", "10.77.0.0/24", "dev", "eth0")
		ipCmd(t, "-n", node, "link", "set", host, "up")
		ipCmd(t, "-n", node, "route", "add", ip+"/32", "dev", host)
		ipCmd(t, "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf."+host+".proxy_arp=1", "net.ipv4.conf."+host+".rp_filter=0", "net.ipv4.neigh."+host+".proxy_delay=0")
		for _, port := range []int{8080, 9090} {
			var ln net.Listener
			if err := InNetNS(pn.nsPath(ns), func() (err error) {
				ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go serveEcho(ln, name)
		}
	}
	return pn
}

func serveEcho(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s %s", name, line)
			}
		}()
	}
}

func (pn *podNet) nsPath(ns string) string { return "/var/run/netns/" + ns }

// addr is a pod's address.
func (pn *podNet) addr(name string) netip.Addr { return netip.MustParseAddr(pn.pods[name]) }

// podNS is the namespace of a pod.
func (pn *podNet) podNS(name string) string { return pn.nsPath("sl" + name + "-" + pn.id) }

// ifindex is the index of a pod's host-side veth in the node namespace.
func (pn *podNet) ifindex(name string) int {
	pn.t.Helper()
	var idx int
	if err := InNetNS(pn.nsPath(pn.node), func() error {
		ifc, err := net.InterfaceByName("sl" + name + pn.id)
		if err == nil {
			idx = ifc.Index
		}
		return err
	}); err != nil {
		pn.t.Fatal(err)
	}
	return idx
}

func (pn *podNet) dial(from, to string, port int) (net.Conn, error) {
	var c net.Conn
	err := InNetNS(pn.podNS(from), func() (err error) {
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", pn.pods[to], port), 700*time.Millisecond)
		return err
	})
	return c, err
}
