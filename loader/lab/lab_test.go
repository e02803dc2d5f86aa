package lab

import (
	"crypto/rand"
	"encoding/hex"
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
		{"build", "-o", filepath.Join(dir, "static"), "github.com/containernetworking/plugins/plugins/ipam/static"},
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
