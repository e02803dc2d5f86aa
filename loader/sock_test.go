package loader

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
)

// testCgroup makes a cgroup v2 directory for one test, removed at the end.
// It lies under a mount of the cgroup v2 hierarchy of the test's own (in a
// temporary directory), so that processes started with ip netns exec,
// which mounts a fresh /sys, see it too.
func testCgroup(t *testing.T) string {
	t.Helper()
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), " cgroup2 ") {
		if os.Getenv("CI") == "true" {
			t.Fatal("no cgroup v2 mount: the socket load balancer needs one")
		}
		t.Skip("no cgroup v2 mount")
	}
	mnt, err := os.MkdirTemp("", "sluice-cgroup-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", mnt, "cgroup2", 0, ""); err != nil {
		os.Remove(mnt)
		t.Fatalf("mount cgroup2: %v", err)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	dir := filepath.Join(mnt, "sluice-test-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		os.Remove(mnt)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer os.Remove(mnt)
		defer unix.Unmount(mnt, unix.MNT_DETACH)
		// Processes left in it (a failed test) are killed first.
		for range 50 {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644)
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s could not be removed", dir)
	})
	return dir
}

// cgroupPrograms counts the programs attached to a cgroup's socket hooks.
func cgroupPrograms(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for h := range bpf.SockHooks {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: h.AttachType()})
		if err != nil {
			t.Fatal(err)
		}
		n += len(res.Programs)
	}
	return n
}

// sockClientProc is a client (see SockClient) in a cgroup and a network
// namespace, failing the test on an error.
type sockClientProc struct {
	t *testing.T
	*SockClientProc
}

func startSockClient(t *testing.T, cgroup, netns string) *sockClientProc {
	t.Helper()
	c, err := StartSockClient(os.Args[0], netns, cgroup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &sockClientProc{t: t, SockClientProc: c}
}

func (c *sockClientProc) do(format string, args ...any) string {
	c.t.Helper()
	line, err := c.Do(fmt.Sprintf(format, args...))
	if err != nil {
		c.t.Fatal(err)
	}
	return line
}

// serveUDPEcho answers each datagram with the pod's name and the datagram.
func serveUDPEcho(t *testing.T, pn *podNet, name string, port int) {
	t.Helper()
	var conn *net.UDPConn
	if err := InNetNS(pn.podNS(name), func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(pn.pods[name]), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			conn.WriteToUDP(append([]byte(name+" "), buf[:n]...), from)
		}
	}()
}

const sockServices = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  clusterIP: 10.96.0.11
  selector: {app: nothing}
  ports: [{port: 80, targetPort: 8080}, {name: u, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  clusterIP: 10.96.0.12
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{port: 80, targetPort: 8080}]
---
`

func sockPods(b2Label string) string {
	pod := func(name, ip, app string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: %s, pod: %s}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: %s}\n---\n", name, app, name, ip)
	}
	return pod("client", "10.77.0.2", "client") + pod("b1", "10.77.0.3", "web") + pod("b2", "10.77.0.4", b2Label)
}

// Network policy applies to the backend, after translation: b1 admits
// only pods labelled trusted, and a service whose one backend is b1 is
// then unreachable to the client, which can still reach b2's.
const sockPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b1-trusted-only, namespace: default}
spec:
  podSelector: {matchLabels: {pod: b1}}
  ingress: [{from: [{podSelector: {matchLabels: {trusted: "yes"}}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: to-b1, namespace: default}
spec:
  clusterIP: 10.96.0.13
  selector: {pod: b1}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: to-b2, namespace: default}
spec:
  clusterIP: 10.96.0.14
  selector: {pod: b2}
  ports: [{port: 80, targetPort: 8080}]
---
`

// Socket-level load balancing, on real sockets: connects to a ClusterIP
// land on its backends, spread evenly, with getpeername showing the
// service; UDP through a ClusterIP answers from the service address;
// ClientIP affinity pins a client; a service without backends is refused
// at once; the backend's network policy applies after translation; a swap
// that removes a backend sends new connections to the others and leaves
// established ones alone.
func TestSocketLB(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pn := newPodNet(t, map[string]string{"client": "10.77.0.2", "b1": "10.77.0.3", "b2": "10.77.0.4"})
	for _, b := range []string{"b1", "b2"} {
		serveUDPEcho(t, pn, b, 5353)
	}
	gen := func(b2Label string) *Artifact {
		_, out := compileYAML(t, sockPods(b2Label)+sockServices)
		a, err := FromBuild(out.Artifacts[0])
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Swap(gen("web")); err != nil {
		t.Fatal(err)
	}
	cg := testCgroup(t)
	if err := sw.AttachCgroup(cg); err != nil {
		t.Fatal(err)
	}
	c := startSockClient(t, cg, "slclient-"+pn.id)

	// 400 connects: each lands on b1 or b2, the peer is the service, and
	// the spread passes a chi-squared test (1 degree of freedom, p=0.001).
	got := c.do("dial 10.96.0.10:80 400")
	var n1, n2 int
	if _, err := fmt.Sscanf(got, "ok b1=%d b2=%d peers=10.96.0.10:80", &n1, &n2); err != nil || n1+n2 != 400 {
		t.Fatalf("400 connects to the ClusterIP: %q", got)
	}
	if chi2 := float64((n1-200)*(n1-200)+(n2-200)*(n2-200)) / 200; chi2 > 10.83 {
		t.Errorf("backends b1 %d, b2 %d: chi-squared %.1f > 10.83", n1, n2, chi2)
	}
	t.Logf("400 connects: b1 %d, b2 %d", n1, n2)

	for _, target := range []string{"10.77.0.3:8080", "10.96.0.10:80"} {
		if got := c.do("latency %s 200", target); !strings.HasPrefix(got, "latency ") {
			t.Errorf("200 connects to %s, closed at once: %q", target, got)
		}
	}

	for _, cmd := range []string{"udp", "udpconn"} {
		got := c.do("%s 10.96.0.10:53", cmd)
		if !strings.HasPrefix(got, cmd+" ") || !strings.Contains(got, "=10.96.0.10:53 name=b") {
			t.Errorf("%s through the ClusterIP: %q, want the answer from 10.96.0.10:53", cmd, got)
		}
	}

	got = c.do("dial 10.96.0.12:80 30")
	if !strings.HasPrefix(got, "ok b1=30 ") && !strings.HasPrefix(got, "ok b2=30 ") {
		t.Errorf("30 connects with ClientIP affinity: %q, want one backend", got)
	}

	got = c.do("refuse 10.96.0.11:80")
	var errno string
	var ms int
	if _, err := fmt.Sscanf(got, "failed %s %d", &errno, &ms); err != nil || errno != "ECONNREFUSED" || ms > 100 {
		t.Errorf("a connect to a service without backends: %q, want ECONNREFUSED at once", got)
	}
	if got := c.do("udpsend 10.96.0.11:53"); got != "failed ECONNREFUSED" {
		t.Errorf("a UDP send to a service without backends: %q, want ECONNREFUSED", got)
	}

	// A generation with a policy on b1, enforced on the pods' veths.
	_, out := compileYAML(t, sockPods("web")+sockServices+sockPolicy)
	guarded, err := FromBuild(out.Artifacts[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Swap(guarded); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"client", "b1", "b2"} {
		idx := pn.ifindex(name)
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, pn.addr(name)) }); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.do("refuse 10.96.0.13:80"); !strings.HasPrefix(got, "failed ") || strings.Contains(got, "ECONNREFUSED") {
		t.Errorf("a service whose backend's policy denies the client: %q, want a timeout", got)
	}
	if got := c.do("dial 10.96.0.14:80 5"); got != "ok b2=5 peers=10.96.0.14:80" {
		t.Errorf("a service whose backend admits the client: %q", got)
	}

	// Hold a connection on b2, then swap to a generation where b2 is no
	// backend: new connections go to b1, the held one carries on.
	if got := c.do("hold 10.96.0.10:80 b2"); got != "held b2" {
		t.Fatalf("hold a connection on b2: %q", got)
	}
	if err := sw.Swap(gen("retired")); err != nil { // and without the policy
		t.Fatal(err)
	}
	if got := c.do("dial 10.96.0.10:80 50"); got != "ok b1=50 peers=10.96.0.10:80" {
		t.Errorf("50 connects after b2 left the service: %q", got)
	}
	if got := c.do("echo"); got != "echoed b2" {
		t.Errorf("the connection held on b2 across the swap: %q", got)
	}
	if n := strconv.Itoa(int(sw.Generation)); n != "3" {
		t.Errorf("generation %s", n)
	}
}

// internalTrafficPolicy: Local balances a node's clients over the node's
// own backends only.
func TestSocketLBInternalLocal(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	pn := newPodNet(t, map[string]string{"client": "10.77.0.2", "b1": "10.77.0.3", "b2": "10.77.0.4"})
	cluster := `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.77.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 192.168.77.9}]}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec: {clusterIP: 10.96.0.60, internalTrafficPolicy: Local, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: cluster, namespace: default}
spec: {clusterIP: 10.96.0.61, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
`
	// b2 is on n2 as far as the compiler knows (this test's namespaces
	// reach it from n1 all the same).
	for _, p := range []struct{ name, ip, app, node string }{{"client", "10.77.0.2", "client", "n1"}, {"b1", "10.77.0.3", "web", "n1"}, {"b2", "10.77.0.4", "web", "n2"}} {
		cluster += fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: %s}}\nspec: {nodeName: %s, containers: [{name: c, image: i}]}\nstatus: {podIP: %s}\n---\n", p.name, p.app, p.node, p.ip)
	}
	_, out := compileYAML(t, cluster)
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	for _, a := range out.Artifacts {
		if a.Node == "n1" {
			la, err := FromBuild(a)
			if err != nil {
				t.Fatal(err)
			}
			if err := sw.Swap(la); err != nil {
				t.Fatal(err)
			}
		}
	}
	cg := testCgroup(t)
	if err := sw.AttachCgroup(cg); err != nil {
		t.Fatal(err)
	}
	c := startSockClient(t, cg, "slclient-"+pn.id)
	if got := c.do("dial 10.96.0.60:80 40"); got != "ok b1=40 peers=10.96.0.60:80" {
		t.Errorf("40 connects to an internalTrafficPolicy Local service from n1: %q, want all on b1", got)
	}
	if got := c.do("dial 10.96.0.61:80 40"); !strings.HasPrefix(got, "ok b1=") || !strings.Contains(got, " b2=") {
		t.Errorf("40 connects to a Cluster-policy service: %q, want both backends", got)
	}
}
