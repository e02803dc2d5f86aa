package cni_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	// The tests build the standard host-local IPAM plugin; this keeps its
	// dependencies in go.mod.
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"

	"github.com/sluicenet/sluice/loader"
	"github.com/sluicenet/sluice/loader/cni"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("ip"); err == nil {
			return
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CNI tests need root and iproute2, and CI=true makes a missing privilege a failure")
	}
	t.Skip("CNI tests need root and iproute2")
}

// env is a node namespace with the plugins built and a config list, as a
// container runtime would have them.
type env struct {
	t        testing.TB
	id       string
	node     string
	bin      string
	state    string
	ipamDir  string
	conf     *libcni.NetworkConfigList
	cniCfg   *libcni.CNIConfig
	nextPod  int
	cleanups []func()
}

var buildOnce sync.Once
var binDir string
var buildErr error

func buildPlugins(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sluice-cni-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"github.com/sluicenet/sluice/cmd/sluice-cni", "github.com/containernetworking/plugins/plugins/ipam/host-local"} {
			out, err := exec.Command("go", "build", "-o", binDir+"/", pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newEnv(t testing.TB, cniVersion string) *env {
	t.Helper()
	requireRoot(t)
	var rnd [3]byte
	rand.Read(rnd[:])
	e := &env{t: t, id: hex.EncodeToString(rnd[:]), bin: buildPlugins(t), state: t.TempDir(), ipamDir: t.TempDir()}
	e.node = "slcninode-" + e.id
	ipCmd(t, "netns", "add", e.node)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", e.node).Run() })
	ipCmd(t, "-n", e.node, "addr", "add", "10.88.255.1/32", "dev", "lo")
	ipCmd(t, "-n", e.node, "link", "set", "lo", "up")
	ipCmd(t, "netns", "exec", e.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	list := fmt.Sprintf(`{"cniVersion": %q, "name": "sluice-test", "plugins": [{"type": "sluice-cni", "stateDir": %q,
		"ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.88.0.0/24"}]]}}]}`, cniVersion, e.state, e.ipamDir)
	conf, err := libcni.ConfListFromBytes([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	e.conf = conf
	e.cniCfg = libcni.NewCNIConfig([]string{e.bin}, nil)
	return e
}

// pod makes a pod network namespace.
func (e *env) pod(name string) (ns string, rt *libcni.RuntimeConf) {
	e.t.Helper()
	ns = "slcni" + name + "-" + e.id
	ipCmd(e.t, "netns", "add", ns)
	e.t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	return ns, &libcni.RuntimeConf{ContainerID: "ctr-" + name + "-" + e.id, NetNS: "/var/run/netns/" + ns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", name}}}
}

// inNode runs fn in the node namespace: the plugins it execs inherit it.
func (e *env) inNode(fn func() error) error {
	return loader.InNetNS("/var/run/netns/"+e.node, fn)
}

func (e *env) add(rt *libcni.RuntimeConf) (*current.Result, error) {
	var res *current.Result
	err := e.inNode(func() error {
		r, err := e.cniCfg.AddNetworkList(context.Background(), e.conf, rt)
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	return res, err
}

func (e *env) del(rt *libcni.RuntimeConf) error {
	return e.inNode(func() error { return e.cniCfg.DelNetworkList(context.Background(), e.conf, rt) })
}

func listen(t testing.TB, nsPath, addr string) {
	t.Helper()
	var ln net.Listener
	if err := loader.InNetNS(nsPath, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
}

func connect(nsPath, addr string) error {
	return loader.InNetNS(nsPath, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 3)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(buf)
		return err
	})
}

// ADD wires two pods; they reach each other and their gateway, the host
// reaches them; CHECK passes; records say what the agent needs; DEL (twice)
// removes everything.
func TestAddCheckDel(t *testing.T) {
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			preInterfaces := v == "0.1.0" || v == "0.2.0" // results carry no interfaces
			preCheck := preInterfaces || v == "0.3.1"     // CHECK arrived in 0.4.0
			e := newEnv(t, v)
			nsA, rtA := e.pod("a")
			nsB, rtB := e.pod("b")
			resA, err := e.add(rtA)
			if err != nil {
				t.Fatalf("ADD a: %v", err)
			}
			resB, err := e.add(rtB)
			if err != nil {
				t.Fatalf("ADD b: %v", err)
			}
			ipA, ipB := resA.IPs[0].Address.IP.String(), resB.IPs[0].Address.IP.String()
			if ipA == ipB || !preInterfaces && (len(resA.Interfaces) != 2 || resA.Interfaces[0].Name != cni.HostVethName(rtA.ContainerID, "eth0")) {
				t.Fatalf("results: %+v %+v", resA, resB)
			}
			listen(t, "/var/run/netns/"+nsB, ipB+":8080")
			listen(t, "/var/run/netns/"+nsA, ipA+":8080")
			listen(t, "/var/run/netns/"+e.node, "169.254.1.1:9000")
			if err := connect("/var/run/netns/"+nsA, ipB+":8080"); err != nil {
				t.Errorf("pod a -> pod b: %v", err)
			}
			if err := connect("/var/run/netns/"+nsA, "169.254.1.1:9000"); err != nil {
				t.Errorf("pod a -> its gateway: %v", err)
			}
			if err := connect("/var/run/netns/"+e.node, ipA+":8080"); err != nil {
				t.Errorf("host -> pod a: %v", err)
			}
			err = e.inNode(func() error { return e.cniCfg.CheckNetworkList(context.Background(), e.conf, rtA) })
			if preCheck != (err != nil) {
				t.Errorf("CHECK on %s: %v", v, err)
			}
			recs, err := cni.ReadRecords(e.state)
			if err != nil || len(recs) != 2 {
				t.Fatalf("records: %v %+v", err, recs)
			}
			for _, r := range recs {
				if r.Namespace != "default" || r.HostIfindex == 0 || len(r.IPs) != 1 || r.HostVeth == "" {
					t.Errorf("record %+v", r)
				}
			}
			for i := 0; i < 2; i++ {
				if err := e.del(rtA); err != nil {
					t.Fatalf("DEL a (%d): %v", i+1, err)
				}
			}
			if err := e.del(rtB); err != nil {
				t.Fatal(err)
			}
			recs, _ = cni.ReadRecords(e.state)
			if len(recs) != 0 {
				t.Errorf("records left after DEL: %+v", recs)
			}
			out, _ := exec.Command("ip", "-n", e.node, "-o", "link").CombinedOutput()
			if strings.Contains(string(out), "lxc") {
				t.Errorf("veths left after DEL:\n%s", out)
			}
			// The addresses are free again.
			_, rtC := e.pod("c")
			if resC, err := e.add(rtC); err != nil {
				t.Fatal(err)
			} else {
				e.del(rtC)
				_ = resC
			}
		})
	}
}

// Bad input changes nothing and answers with the CNI error code.
func TestBadInput(t *testing.T) {
	e := newEnv(t, "1.1.0")
	_, rt := e.pod("x")
	bin := filepath.Join(e.bin, "sluice-cni")
	run := func(stdin string, env ...string) (map[string]any, error) {
		var out []byte
		err := e.inNode(func() error {
			cmd := exec.Command(bin)
			cmd.Env = append([]string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + rt.ContainerID, "CNI_NETNS=" + rt.NetNS, "CNI_IFNAME=eth0", "CNI_PATH=" + e.bin}, env...)
			cmd.Stdin = strings.NewReader(stdin)
			out, _ = cmd.Output()
			return nil
		})
		var res map[string]any
		json.Unmarshal(out, &res)
		return res, err
	}
	good := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "n", "type": "sluice-cni", "stateDir": %q, "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.88.0.0/24"}]]}}`, e.state, e.ipamDir)
	cases := []struct {
		name  string
		stdin string
		env   []string
		code  float64
	}{
		{"malformed JSON", "{", nil, 6},
		{"unknown cniVersion", strings.Replace(good, `"1.1.0"`, `"9.9.9"`, 1), nil, 1},
		{"missing ipam", `{"cniVersion": "1.1.0", "name": "n", "type": "sluice-cni"}`, nil, 7},
		{"not a network namespace", good, []string{"CNI_NETNS=/proc/self/status"}, 4},
		{"interface name too long", good, []string{"CNI_IFNAME=abcdefghijklmnopq"}, 4},
	}
	for _, c := range cases {
		res, err := run(c.stdin, c.env...)
		if err != nil {
			t.Fatal(err)
		}
		if res["code"] != c.code || res["msg"] == "" {
			t.Errorf("%s: %v, want code %v", c.name, res, c.code)
		}
	}
	recs, _ := cni.ReadRecords(e.state)
	out, _ := exec.Command("ip", "-n", e.node, "-o", "link").CombinedOutput()
	if len(recs) != 0 || strings.Contains(string(out), "lxc") {
		t.Errorf("bad input changed the host: %+v\n%s", recs, out)
	}
	// No address was kept either: host-local's data has no allocation.
	entries, _ := os.ReadDir(filepath.Join(e.ipamDir, "sluice-test"))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "10.88.") {
			t.Errorf("address %s left allocated", en.Name())
		}
	}
}

// 50 ADDs and DELs at once: no address twice, nothing left behind, the
// state directory intact.
func TestConcurrency(t *testing.T) {
	e := newEnv(t, "1.1.0")
	const n = 50
	rts := make([]*libcni.RuntimeConf, n)
	for i := range rts {
		_, rts[i] = e.pod(fmt.Sprintf("p%d", i))
	}
	results := make([]*current.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range rts {
		wg.Go(func() { results[i], errs[i] = e.add(rts[i]) })
	}
	wg.Wait()
	seen := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD %d: %v", i, err)
		}
		ip := results[i].IPs[0].Address.IP.String()
		if j, dup := seen[ip]; dup {
			t.Fatalf("pods %d and %d both got %s", j, i, ip)
		}
		seen[ip] = i
	}
	recs, err := cni.ReadRecords(e.state)
	if err != nil || len(recs) != n {
		t.Fatalf("%d records (%v), want %d", len(recs), err, n)
	}
	for i := range rts {
		wg.Go(func() { errs[i] = e.del(rts[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	recs, _ = cni.ReadRecords(e.state)
	out, _ := exec.Command("ip", "-n", e.node, "-o", "link").CombinedOutput()
	if len(recs) != 0 || strings.Contains(string(out), "lxc") {
		t.Fatalf("left behind: %d records\n%s", len(recs), out)
	}
	stray, _ := filepath.Glob(filepath.Join(e.state, ".record-*"))
	if len(stray) > 0 {
		t.Errorf("temporary files left in the state directory: %v", stray)
	}
}

// GC removes what belongs to attachments no longer valid, and nothing
// else; STATUS reports readiness.
func TestGCAndStatus(t *testing.T) {
	e := newEnv(t, "1.1.0")
	_, keep := e.pod("keep")
	_, stale := e.pod("stale")
	for _, rt := range []*libcni.RuntimeConf{keep, stale} {
		if _, err := e.add(rt); err != nil {
			t.Fatal(err)
		}
	}
	// Something that is not ours, which GC must not touch.
	ipCmd(t, "-n", e.node, "link", "add", "lxcnotours", "type", "veth", "peer", "name", "othr0")
	err := e.inNode(func() error {
		return e.cniCfg.GCNetworkList(context.Background(), e.conf, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: keep.ContainerID, IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	recs, _ := cni.ReadRecords(e.state)
	if len(recs) != 1 || recs[0].ContainerID != keep.ContainerID {
		t.Fatalf("records after GC: %+v", recs)
	}
	out, _ := exec.Command("ip", "-n", e.node, "-o", "link").CombinedOutput()
	if strings.Contains(string(out), cni.HostVethName(stale.ContainerID, "eth0")) || !strings.Contains(string(out), cni.HostVethName(keep.ContainerID, "eth0")) || !strings.Contains(string(out), "lxcnotours") {
		t.Fatalf("links after GC:\n%s", out)
	}
	// The stale pod's address is free again: host-local holds only one.
	held := 0
	entries, _ := os.ReadDir(filepath.Join(e.ipamDir, "sluice-test"))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "10.88.") {
			held++
		}
	}
	if held != 1 {
		t.Errorf("host-local holds %d addresses after GC, want 1", held)
	}
	if err := e.inNode(func() error { return e.cniCfg.GetStatusNetworkList(context.Background(), e.conf) }); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	// A state directory that cannot be written makes STATUS fail.
	os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o644)
	bad := strings.Replace(string(e.conf.Bytes), e.state, "/proc/sluice-no-such-dir", 1)
	badConf, err := libcni.ConfListFromBytes([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.inNode(func() error { return e.cniCfg.GetStatusNetworkList(context.Background(), badConf) }); err == nil {
		t.Error("STATUS with an unwritable state directory succeeded")
	}
	e.del(keep)
}

// CHECK notices each kind of drift from what ADD left, and says which.
func TestCheckDrift(t *testing.T) {
	e := newEnv(t, "1.1.0")
	check := func(rt *libcni.RuntimeConf) error {
		return e.inNode(func() error { return e.cniCfg.CheckNetworkList(context.Background(), e.conf, rt) })
	}
	drifts := []struct {
		name, want string
		drift      func(ns, ip, veth string)
	}{
		{"host veth down", "is down", func(_, _, veth string) { ipCmd(t, "-n", e.node, "link", "set", veth, "down") }},
		{"host route gone", "no route to", func(_, ip, veth string) { ipCmd(t, "-n", e.node, "route", "del", ip+"/32", "dev", veth) }},
		{"pod address gone", "lacks address", func(ns, ip, _ string) { ipCmd(t, "-n", ns, "addr", "del", ip+"/32", "dev", "eth0") }},
		{"pod default route gone", "no default route", func(ns, _, _ string) { ipCmd(t, "-n", ns, "route", "del", "default") }},
		{"record gone", "no endpoint record", func(_, _, _ string) {
			recs, _ := cni.ReadRecords(e.state)
			for _, r := range recs {
				os.Remove(filepath.Join(e.state, r.ContainerID+"-"+r.IfName+".json"))
			}
		}},
	}
	for i, d := range drifts {
		t.Run(d.name, func(t *testing.T) {
			ns, rt := e.pod(fmt.Sprintf("d%d", i))
			res, err := e.add(rt)
			if err != nil {
				t.Fatal(err)
			}
			defer e.del(rt)
			if err := check(rt); err != nil {
				t.Fatalf("CHECK before drift: %v", err)
			}
			d.drift(ns, res.IPs[0].Address.IP.String(), cni.HostVethName(rt.ContainerID, "eth0"))
			if err := check(rt); err == nil || !strings.Contains(err.Error(), d.want) {
				t.Errorf("CHECK after %s: %v, want an error saying %q", d.name, err, d.want)
			}
		})
	}
}

// A failed ADD releases its address and leaves no link or record; DEL
// afterwards succeeds.
func TestFailedAdd(t *testing.T) {
	e := newEnv(t, "1.1.0")
	_, rt := e.pod("f")
	rt.NetNS = "/var/run/netns/slcni-no-such-" + e.id
	if _, err := e.add(rt); err == nil {
		t.Fatal("ADD into a missing namespace succeeded")
	}
	if err := e.del(rt); err != nil {
		t.Errorf("DEL after a failed ADD: %v", err)
	}
	recs, _ := cni.ReadRecords(e.state)
	entries, _ := os.ReadDir(filepath.Join(e.ipamDir, "sluice-test"))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "10.88.") {
			t.Errorf("address %s still allocated", en.Name())
		}
	}
	if len(recs) != 0 {
		t.Errorf("records: %+v", recs)
	}
	// A failure after the address was taken: the host-side name is in use.
	_, rt2 := e.pod("g")
	ipCmd(t, "-n", e.node, "link", "add", cni.HostVethName(rt2.ContainerID, "eth0"), "type", "veth", "peer", "name", "gpeer0")
	if _, err := e.add(rt2); err == nil {
		t.Fatal("ADD with its veth name taken succeeded")
	}
	entries, _ = os.ReadDir(filepath.Join(e.ipamDir, "sluice-test"))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "10.88.") {
			t.Errorf("address %s still allocated after a failed ADD", en.Name())
		}
	}
	if recs, _ := cni.ReadRecords(e.state); len(recs) != 0 {
		t.Errorf("records after a failed ADD: %+v", recs)
	}
	if out, _ := exec.Command("ip", "-n", e.node, "-o", "link").CombinedOutput(); !strings.Contains(string(out), "gpeer0") {
		t.Errorf("the failed ADD removed a link it did not create:\n%s", out)
	}
}

func TestInstall(t *testing.T) {
	bin, conf := t.TempDir(), t.TempDir()
	self := filepath.Join(t.TempDir(), "plugin")
	os.WriteFile(self, []byte("binary"), 0o755)
	list, err := os.ReadFile("../../examples/cni/10-sluice.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := libcni.ConfListFromBytes(list); err != nil {
		t.Fatalf("the example config list does not parse: %v", err)
	}
	if err := cni.Install(self, bin, conf, list, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(bin, "sluice-cni")); string(b) != "binary" {
		t.Errorf("binary: %q", b)
	}
	if fi, err := os.Stat(filepath.Join(bin, "sluice-cni")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("binary not executable: %v", err)
	}
	// An existing configuration stays unless asked.
	os.WriteFile(filepath.Join(conf, "10-sluice.conflist"), []byte(`{"mine": true}`), 0o644)
	cni.Install(self, bin, conf, list, false)
	if b, _ := os.ReadFile(filepath.Join(conf, "10-sluice.conflist")); string(b) != `{"mine": true}` {
		t.Errorf("install replaced an existing configuration")
	}
	if err := cni.Install(self, bin, conf, []byte("{"), true); err == nil {
		t.Error("installing a configuration that is not JSON succeeded")
	}
}
