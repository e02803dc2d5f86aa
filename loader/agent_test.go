package loader

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/loader/cni"
)

// writeOutput compiles swapPods plus policy into dir, as sluice compile
// does (the whole directory replaced at once).
func writeOutput(t *testing.T, dir, policy string) {
	t.Helper()
	_, cl, diags := compiler.Load([]string{"-"}, strings.NewReader(swapPods+policy), compiler.Options{})
	if len(diags) > 0 {
		t.Fatal(diags.Err())
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteArtifacts(dir, out.Artifacts, nil); err != nil {
		t.Fatal(err)
	}
}

// The agent binary, run in the node namespace the way a DaemonSet runs it
// on a host: it follows the artifact directory and the CNI records, swaps
// generations, refuses a bad one, attaches and detaches endpoints, and
// reports it all on /metrics.
func TestAgent(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	bin := filepath.Join(t.TempDir(), "sluice-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sluicenet/sluice/cmd/sluice-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3"})
	work := t.TempDir()
	artifacts, state := filepath.Join(work, "out"), filepath.Join(work, "cni")
	os.MkdirAll(state, 0o755)
	for _, name := range []string{"a", "b"} {
		if err := cni.WriteRecord(state, cni.Record{ContainerID: "ctr-" + name, IfName: "eth0", HostIfindex: pn.ifindex(name),
			IPs: []string{pn.pods[name]}, Namespace: "default", Pod: name}); err != nil {
			t.Fatal(err)
		}
	}
	writeOutput(t, artifacts, swapAllow)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", pn.node, bin, "--node", "cluster", "--artifacts", artifacts,
		"--cni-state", state, "--listen", "127.0.0.1:9964", "--rescan", "200ms")
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()
	defer func() { cmd.Process.Kill(); <-exited }()

	get := func(path string) (int, string) {
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
		code := resp.StatusCode
		return code, string(body)
	}
	waitFor := func(what string, ok func(metrics string) bool) time.Duration {
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
	waitFor("the first generation and two endpoints", func(m string) bool {
		return strings.Contains(m, "sluice_swaps_total 1\n") && strings.Contains(m, "sluice_endpoints 2\n")
	})
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	connects := func(port int) bool {
		c, err := pn.dial("a", "b", port)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !connects(8080) || connects(9090) {
		t.Fatal("the first generation does not enforce its policy: want a -> b:8080 allowed and :9090 denied")
	}

	// A new compile output is swapped in.
	writeOutput(t, artifacts, swapAllowMore)
	took := waitFor("the second generation", func(m string) bool { return strings.Contains(m, "sluice_swaps_total 2\n") })
	t.Logf("second generation serving %v after the output was replaced", took)
	if !connects(9090) {
		t.Error("a -> b:9090 denied after the swap to a policy that allows it")
	}

	// A tampered output is refused; the serving generation stays.
	writeOutput(t, artifacts, swapDeny)
	maps, _ := filepath.Glob(filepath.Join(artifacts, "cluster", "maps", "*.bin"))
	if len(maps) == 0 {
		t.Fatal("no map images in the output")
	}
	if err := os.WriteFile(maps[0], []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("the tampered output to be refused", func(m string) bool {
		return strings.Contains(m, `sluice_swap_failures_total{reason="verify"} 1`)
	})
	if !connects(9090) {
		t.Error("a refused generation changed what is enforced")
	}

	// A pod going away is detached.
	if err := cni.RemoveRecord(state, "ctr-b", "eth0"); err != nil {
		t.Fatal(err)
	}
	waitFor("b to be detached", func(m string) bool { return strings.Contains(m, "sluice_endpoints 1\n") })

	// SIGTERM ends the agent cleanly.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("the agent exited with %v after SIGTERM", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the agent did not exit within 5s of SIGTERM")
	}
}
