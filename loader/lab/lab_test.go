package lab

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/ir"
)

func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "the lab needs root (namespaces, BPF, cgroups)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "iproute2 (ip) is not installed"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
}

// buildBinaries builds what a lab runs into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"build", "-o", dir + "/", "../../cmd/sluice", "../../cmd/sluice-agent", "../../cmd/sluice-cni"},
		{"build", "-o", dir + "/", "github.com/containernetworking/plugins/plugins/ipam/static", "github.com/containernetworking/plugins/plugins/ipam/host-local"},
	} {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return dir
}

// The seed example as a lab: every pod-to-pod probe through the kernel
// agrees with the reference evaluator (local and cross-node, allowed and
// denied); a ClusterIP reaches both nginx replicas from a pod; the
// NodePort answers the world on every node address. Then down leaves
// nothing behind.
func TestLabSeed(t *testing.T) {
	requireRoot(t)
	bin := buildBinaries(t)
	var rnd [3]byte
	rand.Read(rnd[:])
	name := "t" + hex.EncodeToString(rnd[:])
	root := t.TempDir()
	l, err := Up(Config{Name: name, Manifests: []string{"../../examples/seed"}, Root: root, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			l.Down()
		}
	})

	_, cl, diags := compiler.Load([]string{"../../examples/seed"}, nil, compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags.Err())
	}
	p := l.Prober()
	defer p.Close()
	checked := 0
	for _, e := range ir.NewEvaluator(cl).Matrix([]ir.PortProto{{Port: 80, Proto: ir.ProtoTCP}}) {
		if e.From == e.To {
			continue
		}
		res, err := p.Probe(e.From, e.To, e.Port, "TCP")
		if err != nil {
			t.Fatal(err)
		}
		if got := map[bool]ir.Action{true: ir.Allow, false: ir.Deny}[res.Reached]; got != e.Verdict {
			t.Errorf("%s -> %s %d/TCP: the lab says %s (%s), the evaluator %s", e.From, e.To, e.Port, got, res.Detail, e.Verdict)
		}
		if res.Reached && !res.Refused && res.AnsweredBy != e.To {
			t.Errorf("%s -> %s: answered by %s", e.From, e.To, res.AnsweredBy)
		}
		checked++
	}
	if checked < 50 {
		t.Errorf("only %d pairs probed", checked)
	}

	seen := map[string]bool{}
	for range 30 {
		res, err := p.Probe("default/frontend", "10.103.111.79", 80, "TCP") // nginx-service
		if err != nil || !res.Reached {
			t.Fatalf("nginx-service from frontend: %v %+v", err, res)
		}
		seen[res.AnsweredBy] = true
	}
	if len(seen) != 2 {
		t.Errorf("30 connects to nginx-service reached %v, want both replicas", seen)
	}
	for _, n := range l.Nodes() {
		res, err := p.Probe("world", n.IP, 31355, "TCP")
		if err != nil || !res.Reached || !strings.HasPrefix(res.AnsweredBy, "default/nginx-deployment-") {
			t.Errorf("NodePort 31355 on %s (%s) from the world: %v %+v", n.Name, n.IP, err, res)
		}
	}
	if res, err := p.Probe("default/client", "10.96.0.10", 53, "UDP"); err != nil || !strings.HasPrefix(res.AnsweredBy, "kube-system/coredns-") {
		t.Errorf("kube-dns over UDP from client: %v %+v", err, res)
	}
	// Pods and nodes, both ways, and the outside: from-world-to-role-public
	// lets the world reach public alone, and l3-rule isolates backend.
	for _, c := range []struct {
		from, to string
		port     uint16
		want     bool
	}{
		{"default/client", "node:worker-2", 10250, true},  // pod to its node
		{"default/frontend", "node:master", 10250, true},  // pod to another node
		{"node:worker-1", "default/frontend", 80, true},   // node to its pod
		{"node:worker-1", "default/client", 80, true},     // node to another node's pod
		{"node:worker-2", "default/backend", 80, true},    // the own node is always allowed
		{"node:master", "default/backend", 80, false},     // l3-rule: not from another node
		{"world", "default/public", 80, true},             // from-world-to-role-public
		{"world", "default/frontend", 80, true},           // not isolated
		{"world", "default/backend", 80, false},           // l3-rule
		{"default/frontend", "default/public", 80, false}, // from-world-to-role-public
		{"default/frontend", "default/backend", 80, true}, // l3-rule allows frontend
	} {
		res, err := p.Probe(c.from, c.to, c.port, "TCP")
		if err != nil {
			t.Fatal(err)
		}
		if res.Reached != c.want {
			t.Errorf("%s -> %s %d/TCP: reached %v (%s), want %v", c.from, c.to, c.port, res.Reached, res.Detail, c.want)
		}
		ev := ir.NewEvaluator(cl).Evaluate(ir.Query{Src: l.addrOf(t, c.from), Dst: l.addrOf(t, c.to), Proto: ir.ProtoTCP, Port: c.port})
		if (ev.Verdict == ir.Allow) != c.want {
			t.Errorf("%s -> %s %d/TCP: the evaluator says %s", c.from, c.to, c.port, ev.Verdict)
		}
	}
	p.Close()

	// A second up over it is refused, with how to remove it.
	if _, err := Up(Config{Name: name, Manifests: []string{"../../examples/seed"}, Root: root, BinDir: bin}); err == nil || !strings.Contains(err.Error(), "sluice lab down --name "+name) {
		t.Errorf("up over an existing lab: %v", err)
	}

	downed = true
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "sl-"+name+"-") {
		t.Errorf("namespaces left after down:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, name)); !os.IsNotExist(err) {
		t.Errorf("state left after down: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), filepath.Join(root, name)) {
		t.Error("mounts left after down")
	}
}

// A lab that fails half-way up removes what it made: here sluice-cni
// fails at the first pod, after the fabric, the nodes and the mounts.
func TestLabUpFailureCleansUp(t *testing.T) {
	requireRoot(t)
	bin := buildBinaries(t)
	if err := os.WriteFile(filepath.Join(bin, "sluice-cni"), []byte("#!/bin/sh\necho 'a broken CNI plugin' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	name := "f" + hex.EncodeToString(rnd[:])
	root := t.TempDir()
	_, err := Up(Config{Name: name, Manifests: []string{"../../examples/seed"}, Root: root, BinDir: bin})
	if err == nil || !strings.Contains(err.Error(), "sluice-cni ADD") {
		t.Fatalf("up with a broken CNI plugin: %v", err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "sl-"+name+"-") {
		t.Errorf("namespaces left by a failed up:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, name)); !os.IsNotExist(err) {
		t.Errorf("state left by a failed up: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), filepath.Join(root, name)) {
		t.Error("mounts left by a failed up")
	}
}

func (l *Lab) addrOf(t *testing.T, end string) netip.Addr {
	t.Helper()
	if end == "world" {
		return netip.MustParseAddr(WorldIP)
	}
	for _, n := range l.Nodes() {
		if "node:"+n.Name == end {
			return netip.MustParseAddr(n.IP)
		}
	}
	for _, p := range l.Pods() {
		if p.Key == end {
			return netip.MustParseAddr(p.IP)
		}
	}
	t.Fatalf("no %s in the lab", end)
	return netip.Addr{}
}

// A pod the manifests give no address gets one from host-local IPAM in
// its node's pod CIDR, and its node's agent enforces it as a pod of its
// Deployment (the artifact's runtime table): its policy admits client,
// not other.
func TestLabRuntimePods(t *testing.T) {
	requireRoot(t)
	bin := buildBinaries(t)
	manifests := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(manifests, []byte(`apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.61.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.61.1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f8c6b5-k2x9p
  namespace: default
  labels: {app: web, pod-template-hash: 7d9f8c6b5}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f8c6b5, uid: u1}]
spec: {nodeName: n1, containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.61.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: default, labels: {app: other}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.61.1.11}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	l, err := Up(Config{Name: "r" + hex.EncodeToString(rnd[:]), Manifests: []string{manifests}, Root: t.TempDir(), BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Down() })
	web := l.addrOf(t, "default/web-7d9f8c6b5-k2x9p")
	if !netip.MustParsePrefix("10.61.1.0/24").Contains(web) {
		t.Errorf("the pod without an address got %s, outside its node's pod CIDR", web)
	}
	m, err := l.Metrics("n1")
	if err != nil || !strings.Contains(m, "sluice_endpoints_runtime 1\n") {
		t.Errorf("the agent does not enforce the pod as a workload's: %v\n%s", err, m)
	}
	p := l.Prober()
	defer p.Close()
	for from, want := range map[string]bool{"default/client": true, "default/other": false} {
		res, err := p.Probe(from, "default/web-7d9f8c6b5-k2x9p", 80, "TCP")
		if err != nil {
			t.Fatal(err)
		}
		if res.Reached != want {
			t.Errorf("%s -> web (%s): reached %v (%s), want %v", from, web, res.Reached, res.Detail, want)
		}
	}
}
