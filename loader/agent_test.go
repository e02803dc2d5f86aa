package loader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/loader/cni"
)

// writeOutput compiles swapPods plus policy into dir, as sluice compile
// does (the whole directory replaced at once).
func writeOutput(t *testing.T, dir, policy string) {
	t.Helper()
	_, out := compileYAML(t, swapPods+policy)
	if err := WriteArtifacts(dir, out.Artifacts, nil); err != nil {
		t.Fatal(err)
	}
}

// mountBPFFS mounts a private bpf filesystem for the test's pins, leaving
// the machine's /sys/fs/bpf alone.
func mountBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpf filesystem: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return filepath.Join(dir, "sluice")
}

// agentProc is the agent binary run in the node namespace, the way a
// DaemonSet runs it on a host.
type agentProc struct {
	cmd    *exec.Cmd
	exited chan error
	logs   *strings.Builder
}

func startAgent(t *testing.T, pn *podNet, bin string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command("ip", append([]string{"netns", "exec", pn.node, bin}, args...)...), exited: make(chan error, 1), logs: &strings.Builder{}}
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("the agent exited with %v after SIGTERM", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the agent did not exit within 5s of SIGTERM")
	}
}

// replaceOutput swaps a prepared output directory in for dir in one
// rename, as sluice compile does.
func replaceOutput(t *testing.T, staged, dir string) {
	t.Helper()
	if err := unix.Renameat2(unix.AT_FDCWD, staged, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(staged)
}

// agentSetup builds the agent, mounts a bpf filesystem, wires pods a and b,
// records them as sluice-cni would, and writes a first output that allows
// a to reach b on TCP 8080 and UDP 5000. It returns the agent's arguments.
func agentSetup(t *testing.T) (bin string, pn *podNet, work, artifacts, state, pins string, args []string) {
	t.Helper()
	requireBPF(t)
	requireIP(t)
	bin = filepath.Join(t.TempDir(), "sluice-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sluicenet/sluice/cmd/sluice-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pins = mountBPFFS(t)
	// c has a veth but no record yet, and is not in the manifests.
	pn = newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3", "c": "10.77.0.4"})
	work = t.TempDir()
	artifacts, state = filepath.Join(work, "out"), filepath.Join(work, "cni")
	os.MkdirAll(state, 0o755)
	for _, name := range []string{"a", "b"} {
		if err := cni.WriteRecord(state, cni.Record{ContainerID: "ctr-" + name, IfName: "eth0", HostIfindex: pn.ifindex(name),
			IPs: []string{pn.pods[name]}, Namespace: "default", Pod: name}); err != nil {
			t.Fatal(err)
		}
	}
	writeOutput(t, artifacts, swapAllow)
	args = []string{"--node", "cluster", "--artifacts", artifacts, "--cni-state", state, "--bpffs", pins, "--listen", "127.0.0.1:9964", "--rescan", "200ms",
		"--device", "lo", "--cgroup", testCgroup(t)}
	return
}

// The agent follows the artifact directory and the CNI records, swaps
// generations, refuses a bad one, attaches and detaches endpoints, and
// reports it all on /metrics. SIGTERM leaves the datapath serving from its
// pins, with its connections; a new agent adopts it and converges to the
// newest output; --uninstall removes it all.
func TestAgent(t *testing.T) {
	bin, pn, work, artifacts, state, pins, args := agentSetup(t)
	agent := startAgent(t, pn, bin, args...)

	get, waitFor, has, expect := agentProbes(t, pn)
	waitFor("the first generation, two endpoints and the socket load balancer", func(m string) bool {
		return has(`sluice_swaps_total{kind="full"} 1`+"\n")(m) && has("sluice_endpoints 2\n")(m) && has("sluice_socket_lb 1\n")(m)
	})
	cgroup := args[len(args)-1]
	if n := cgroupPrograms(t, cgroup); n != 4 {
		t.Errorf("%d programs on the cgroup's socket hooks, want 4", n)
	}
	// The external device (the node namespace's lo here) has the packet
	// load balancer on TCX ingress and egress.
	if n := tcxPrograms(t, pn, "lo"); n != 2 {
		t.Errorf("%d TCX programs on the external device, want 2", n)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	status, err := exec.Command("ip", "netns", "exec", pn.node, bin, "status", "--listen", "127.0.0.1:9964").CombinedOutput()
	if err != nil || !strings.Contains(string(status), "health: ok") || !strings.Contains(string(status), "sluice_endpoints 2") || strings.Contains(string(status), "# HELP") {
		t.Errorf("sluice-agent status: %v\n%s", err, status)
	}
	expect("first generation", map[int]string{8080: "allowed", 9090: "dropped", 7070: "dropped"})
	// Each pod's veth is linked to its address, for its IPv6.
	links := func() map[uint32]netip.Addr {
		t.Helper()
		m, err := ebpf.LoadPinnedMap(filepath.Join(pins, bpf.MapEndpointLinks), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		out := map[uint32]netip.Addr{}
		var k uint32
		var v [4]byte
		for it := m.Iterate(); it.Next(&k, &v); {
			out[k] = netip.AddrFrom4(v)
		}
		return out
	}
	if got := links(); len(got) != 2 || got[uint32(pn.ifindex("a"))] != pn.addr("a") || got[uint32(pn.ifindex("b"))] != pn.addr("b") {
		t.Errorf("endpoint_links %v, want a's and b's veths linked to their addresses", got)
	}
	waitFor("the drops counted by the policy that isolates b", has(`sluice_policy_drops_total{verdict="default_deny",direction="ingress",policy="NetworkPolicy default/b-from-a",rule="",source=""} `))

	// A pod created after the compile is attached and reported as not
	// enforced; a and b, which the artifact knows, are not.
	waitFor("a and b known", has("sluice_endpoints_unenforced 0\n"))
	recC := cni.Record{ContainerID: "ctr-c", IfName: "eth0", HostIfindex: pn.ifindex("c"), IPs: []string{pn.pods["c"]}, Namespace: "default", Pod: "c"}
	start := time.Now()
	if err := cni.WriteRecord(state, recC); err != nil {
		t.Fatal(err)
	}
	waitFor("c to be attached and reported unenforced", func(m string) bool {
		return has("sluice_endpoints 3\n")(m) && has("sluice_endpoints_unenforced 1\n")(m)
	})
	t.Logf("a new pod attached %v after its record appeared", time.Since(start).Round(time.Millisecond))
	if got := links()[uint32(pn.ifindex("c"))]; got != pn.addr("c") {
		t.Errorf("c's veth is linked to %s, want %s", got, pn.addr("c"))
	}
	// c's packets from a's address (which b admits on UDP 5000) are
	// dropped, although the artifact does not list c.
	if err := pn.sendUDP("c", pn.addr("a"), 5001, netip.AddrPortFrom(pn.addr("b"), 5000), "from c as a"); err != nil {
		t.Fatal(err)
	}
	waitFor("c's spoofed datagram counted", has(`sluice_drops_total{reason="invalid_source"} 1`+"\n"))
	if err := cni.RemoveRecord(state, "ctr-c", "eth0"); err != nil {
		t.Fatal(err)
	}
	waitFor("c to be detached", func(m string) bool {
		return has("sluice_endpoints 2\n")(m) && has("sluice_endpoints_unenforced 0\n")(m)
	})
	if got, ok := links()[uint32(pn.ifindex("c"))]; ok {
		t.Errorf("c's veth is still linked to %s after its detach", got)
	}

	// A new compile output is swapped in.
	writeOutput(t, artifacts, swapAllowMore)
	took := waitFor("the second generation", has(`sluice_swaps_total{kind="full"} 2`+"\n"))
	t.Logf("second generation serving %v after the output was replaced", took)
	expect("second generation", map[int]string{8080: "allowed", 9090: "allowed", 7070: "dropped"})

	// The third rewrites the first, which the idle half holds. 7070 is
	// now let through to b, where nothing listens: refused, not dropped.
	writeOutput(t, artifacts, swapAllowMore+"    - {port: 7070}\n")
	took = waitFor("the third generation, incremental", has(`sluice_swaps_total{kind="incremental"} 1`+"\n"))
	t.Logf("third generation serving %v after the output was replaced", took)
	expect("third generation", map[int]string{8080: "allowed", 9090: "allowed", 7070: "refused"})

	// A tampered output is refused; the serving generation stays.
	staged := filepath.Join(work, "staged")
	writeOutput(t, staged, swapDeny)
	// node.json changes with this output: the agent reads and checks it
	// (a file whose checksum is one it verified before, it does not read
	// again).
	if err := os.WriteFile(filepath.Join(staged, "cluster", "node.json"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	replaceOutput(t, staged, artifacts)
	waitFor("the tampered output to be refused", has(`sluice_swap_failures_total{reason="verify"} 1`))
	expect("after a refused generation", map[int]string{9090: "allowed", 7070: "refused"})

	// SIGTERM: the datapath keeps enforcing, and a connection keeps going.
	conn, err := pn.dial("a", "b", 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reader := bufio.NewReader(conn)
	echo := func(msg string) error {
		fmt.Fprintf(conn, "%s\n", msg)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := reader.ReadString('\n')
		if err == nil && line != "b "+msg+"\n" {
			err = fmt.Errorf("got %q", line)
		}
		return err
	}
	agent.stop(t)
	if err := echo("after SIGTERM"); err != nil {
		t.Errorf("the connection broke when the agent stopped: %v", err)
	}
	expect("with no agent running", map[int]string{9090: "allowed", 7070: "refused"})

	// A new agent adopts the pins and converges to the newest output: b
	// isolated. New connections stop; the established one goes on.
	writeOutput(t, artifacts, swapDeny)
	agent = startAgent(t, pn, bin, args...)
	waitFor("the restarted agent to swap in the newest output", func(m string) bool {
		return has(`sluice_swaps_total{kind="full"} 1`+"\n")(m) && has("sluice_endpoints 2\n")(m) && has("sluice_socket_lb 1\n")(m)
	})
	if n := cgroupPrograms(t, cgroup); n != 4 {
		t.Errorf("after the restart, %d programs on the cgroup's socket hooks, want the 4 adopted", n)
	}
	if n := tcxPrograms(t, pn, "lo"); n != 2 {
		t.Errorf("after the restart, %d TCX programs on the external device, want the 2 adopted", n)
	}
	if !strings.Contains(agent.logs.String(), "adopted the pinned datapath") {
		t.Error("the restarted agent did not say it adopted the pinned datapath")
	}
	expect("after the restart", map[int]string{8080: "dropped", 9090: "dropped"})
	// The adopted dispatchers verify sources as before.
	if err := pn.sendUDP("a", netip.MustParseAddr("10.77.0.99"), 5001, netip.AddrPortFrom(pn.addr("b"), 5000), "from a as no endpoint"); err != nil {
		t.Fatal(err)
	}
	waitFor("a's spoofed datagram counted", has(`sluice_drops_total{reason="invalid_source"} 2`+"\n"))
	if err := echo("after the restart"); err != nil {
		t.Errorf("the established connection broke across the restart: %v", err)
	}

	// A pod going away is detached.
	if err := cni.RemoveRecord(state, "ctr-b", "eth0"); err != nil {
		t.Fatal(err)
	}
	waitFor("b to be detached", has("sluice_endpoints 1\n"))
	agent.stop(t)

	// --uninstall removes every attachment and pin.
	un := startAgent(t, pn, bin, "--uninstall", "--bpffs", pins)
	if err := <-un.exited; err != nil {
		t.Fatalf("--uninstall: %v", err)
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		left, _ := os.ReadDir(pins)
		t.Errorf("pins left after --uninstall: %v", left)
	}
	expect("after --uninstall", map[int]string{8080: "allowed", 7070: "refused"})
	if n := cgroupPrograms(t, cgroup); n != 0 {
		t.Errorf("after --uninstall, %d programs left on the cgroup's socket hooks", n)
	}
	if n := tcxPrograms(t, pn, "lo"); n != 0 {
		t.Errorf("after --uninstall, %d TCX programs left on the external device", n)
	}
}

// agentProbes returns probes of an agent in pn's node namespace: get
// (an HTTP path), waitFor (a condition on /metrics), has (a /metrics
// substring condition) and expect (a -> b verdicts by port: "allowed",
// "refused" (allowed, no listener) or "dropped").
func agentProbes(t *testing.T, pn *podNet) (get func(string) (int, string), waitFor func(string, func(string) bool) time.Duration,
	has func(string) func(string) bool, expect func(string, map[int]string)) {
	get = func(path string) (int, string) {
		// The client dials on its own goroutine, outside the namespace:
		// hand it a connection made inside.
		var conn net.Conn
		if err := InNetNS(pn.nsPath(pn.node), func() (err error) {
			conn, err = net.DialTimeout("tcp", "127.0.0.1:9964", time.Second)
			return err
		}); err != nil {
			return 0, err.Error()
		}
		c := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
		resp, err := c.Get("http://127.0.0.1:9964" + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitFor = func(what string, ok func(metrics string) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 10*time.Second {
			if _, m := get("/metrics"); ok(m) {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		_, m := get("/metrics")
		t.Fatalf("waited 10s for %s; metrics:\n%s", what, m)
		return 0
	}
	has = func(s string) func(string) bool { return func(m string) bool { return strings.Contains(m, s) } }
	// verdict dials a -> b: "allowed", "refused" (allowed, no listener) or
	// "dropped" (the datapath dropped the SYN).
	verdict := func(port int) string {
		c, err := pn.dial("a", "b", port)
		switch {
		case err == nil:
			c.Close()
			return "allowed"
		case errors.Is(err, syscall.ECONNREFUSED):
			return "refused"
		default:
			return "dropped"
		}
	}
	expect = func(when string, want map[int]string) {
		t.Helper()
		for port, v := range want {
			if got := verdict(port); got != v {
				t.Errorf("%s: a -> b:%d %s, want %s", when, port, got, v)
			}
		}
	}

	return get, waitFor, has, expect
}

// kill -9 of the agent at points in the middle of swaps, then a restart:
// the connection never stops, and each new agent converges to the newest
// output.
func TestAgentKilledMidSwap(t *testing.T) {
	bin, pn, _, artifacts, _, _, args := agentSetup(t)
	_, waitFor, has, expect := agentProbes(t, pn)
	agent := startAgent(t, pn, bin, args...)
	waitFor("the first generation", func(m string) bool {
		return has(`sluice_swaps_total{kind="full"} 1`+"\n")(m) && has("sluice_endpoints 2\n")(m)
	})

	conn, err := pn.dial("a", "b", 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reader := bufio.NewReader(conn)
	for i := 0; i < 6; i++ {
		policy, want := swapAllowMore, "allowed"
		if i%2 == 1 {
			policy, want = swapAllow, "dropped"
		}
		writeOutput(t, artifacts, policy)
		time.Sleep(time.Duration(i*8) * time.Millisecond) // 0 to 40 ms into the swap
		agent.cmd.Process.Kill()
		<-agent.exited
		fmt.Fprintf(conn, "kill %d\n", i)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if line, err := reader.ReadString('\n'); err != nil || line != fmt.Sprintf("b kill %d\n", i) {
			t.Fatalf("the connection broke at kill -9 number %d: %q %v", i+1, line, err)
		}
		agent = startAgent(t, pn, bin, args...)
		waitFor("the restarted agent to converge", func(m string) bool {
			return has(`sluice_swaps_total{kind="full"} 1`+"\n")(m) && has("sluice_endpoints 2\n")(m)
		})
		expect(fmt.Sprintf("after kill -9 number %d", i+1), map[int]string{8080: "allowed", 9090: want})
	}
}

// Before any generation serves, /healthz says so with a 503.
func TestAgentHealthBeforeServing(t *testing.T) {
	requireBPF(t)
	a, err := NewAgent(AgentConfig{Node: "n", Artifacts: t.TempDir(), CNIState: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with nothing compiled for the node: %d, want 503", rec.Code)
	}
}

// tcxPrograms counts the TCX programs on a device of the node namespace.
func tcxPrograms(t *testing.T, pn *podNet, dev string) int {
	t.Helper()
	n := 0
	if err := InNetNS(pn.nsPath(pn.node), func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: at})
			if err != nil {
				return err
			}
			n += len(res.Programs)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
