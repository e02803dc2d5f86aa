package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// requireRoot skips a test that loads BPF when not root, except under
// CI=true, where a missing privilege is a failure.
func requireRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal(what + " needs root, and CI=true makes a missing privilege a failure")
		}
		t.Skip(what + " needs root (CAP_BPF)")
	}
}

func copySeed(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	files, _ := filepath.Glob("../../examples/seed/*.yaml")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644)
	}
	if extra != "" {
		os.WriteFile(filepath.Join(dir, "zz-extra.yaml"), []byte(extra), 0o644)
	}
	return dir
}

func TestDiff(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if _, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/seed", "-o", out); rc != 0 {
		t.Fatal(errs)
	}
	if stdout, errs, rc := sluice(t, "", "diff", out, "../../examples/seed"); rc != 0 {
		t.Fatalf("diff of the same input: rc %d, want 0\n%s%s", rc, stdout, errs)
	}
	changed := copySeed(t, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: open-backend, namespace: default}
spec:
  endpointSelector: {matchLabels: {role: backend}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: tools}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`)
	stdout, errs, rc := sluice(t, "", "diff", out, changed)
	if rc != 1 {
		t.Fatalf("diff with a new policy: rc %d, want 1\n%s", rc, errs)
	}
	for _, want := range []string{
		"+ CiliumNetworkPolicy default/open-backend",
		"+ default/client -> default/backend 80/TCP: now allowed by CiliumNetworkPolicy default/open-backend spec.ingress[0]",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("diff output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, rc = sluice(t, "", "diff", "-o", "json", out, changed)
	var res struct {
		Changes []struct{ Section, Op string }
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || rc != 1 || len(res.Changes) == 0 {
		t.Fatalf("diff -o json: rc %d, err %v, %d changes", rc, err, len(res.Changes))
	}
	if _, _, rc := sluice(t, "", "diff", out, "/nonexistent"); rc != 2 {
		t.Errorf("diff with a missing side: rc %d, want 2", rc)
	}
}

func TestTrace(t *testing.T) {
	stdout, errs, rc := sluice(t, "", "trace", "-f", "../../examples/seed", "--from", "default/client", "--to", "default/backend", "--port", "80/TCP", "-o", "json")
	if rc != 0 {
		t.Fatal(errs)
	}
	var d struct {
		Verdict string
		Ingress struct{ Reason string }
	}
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatal(err)
	}
	if d.Verdict != "deny" || d.Ingress.Reason != "isolated and no rule allows it" {
		t.Errorf("client -> backend: %+v", d)
	}
	stdout, _, _ = sluice(t, "", "trace", "-f", "../../examples/seed", "--from", "default/frontend", "--to", "default/backend", "--port", "80/TCP")
	if !strings.Contains(stdout, "ALLOW") || !strings.Contains(stdout, "CiliumNetworkPolicy default/l3-rule spec.ingress[0] (../../examples/seed/policies.yaml:12:5)") {
		t.Errorf("frontend -> backend:\n%s", stdout)
	}
	stdout, _, _ = sluice(t, "", "trace", "-f", "../../examples/seed", "--matrix", "--port", "80/TCP", "-o", "tsv")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 64 {
		t.Errorf("matrix of 8 pods: %d lines, want 64", len(lines))
	}
	if !strings.Contains(stdout, "default/frontend\tdefault/backend\t80\tTCP\tallow\n") || !strings.Contains(stdout, "default/client\tdefault/backend\t80\tTCP\tdeny\n") {
		t.Errorf("matrix:\n%s", stdout)
	}
	if _, errs, rc := sluice(t, "", "trace", "-f", "../../examples/seed", "--from", "default/nope", "--to", "default/backend"); rc != 2 || !strings.Contains(errs, "no pod default/nope") {
		t.Errorf("unknown pod: rc %d, %s", rc, errs)
	}
}

// A failed compile writes nothing and leaves an existing output as it was.
func TestCompileErrorLeavesOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if _, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/seed", "-o", out); rc != 0 {
		t.Fatal(errs)
	}
	before := readTree(t, out)
	bad := copySeed(t, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 99999}]\n")
	_, errs, rc := sluice(t, "", "compile", "-f", bad, "-o", out)
	if rc != 1 || !strings.Contains(errs, "zz-extra.yaml:7:20: spec.ingress[0].ports[0].port: port 99999 out of range") || !strings.Contains(errs, "nothing was written") {
		t.Fatalf("rc %d, errors:\n%s", rc, errs)
	}
	after := readTree(t, out)
	if len(before) != len(after) {
		t.Fatalf("output changed: %d files before, %d after", len(before), len(after))
	}
	for k, v := range before {
		if string(after[k]) != string(v) {
			t.Fatalf("%s changed after a failed compile", k)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("leftovers beside the output: %v", entries)
	}
}

// Recompiling over an existing output replaces it whole.
func TestCompileReplacesOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	for i := 0; i < 2; i++ {
		if _, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/seed", "-o", out); rc != 0 {
			t.Fatal(errs)
		}
	}
	os.MkdirAll(filepath.Join(out, "stale-node"), 0o755)
	if _, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/seed", "-o", out); rc != 0 {
		t.Fatal(errs)
	}
	if _, err := os.Stat(filepath.Join(out, "stale-node")); err == nil {
		t.Error("a directory of the previous output survived the swap")
	}
	stdout, errs, rc := sluice(t, "", "dump", filepath.Join(out, "worker-2"), "--map", "policy")
	if rc != 0 || !strings.Contains(stdout, "CiliumNetworkPolicy default/l3-rule spec.ingress[0]") {
		t.Errorf("dump: rc %d %s\n%s", rc, errs, stdout)
	}
}

func TestVerify(t *testing.T) {
	requireRoot(t, "sluice verify")
	out := filepath.Join(t.TempDir(), "out")
	if _, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/seed", "-o", out); rc != 0 {
		t.Fatal(errs)
	}
	stdout, errs, rc := sluice(t, "", "verify", out)
	if rc != 0 {
		t.Fatalf("verify: rc %d\n%s%s", rc, stdout, errs)
	}
	for _, want := range []string{"node master: loaded", "node worker-2: loaded", "program to-container", "map policy"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, stdout)
		}
	}
	// A tampered artifact is refused before anything is loaded.
	os.WriteFile(filepath.Join(out, "worker-2", "maps", "policy.bin"), []byte("tampered"), 0o644)
	if _, errs, rc := sluice(t, "", "verify", filepath.Join(out, "worker-2")); rc != 1 || !strings.Contains(errs, "maps/policy.bin has sha256") {
		t.Errorf("tampered artifact: rc %d\n%s", rc, errs)
	}
}

// trace --datapath asks the kernel, and it agrees with the evaluator on
// the whole matrix of the example.
func TestTraceDatapath(t *testing.T) {
	requireRoot(t, "trace --datapath")
	stdout, errs, rc := sluice(t, "", "trace", "-f", "../../examples/seed", "--from", "default/client", "--to", "default/backend", "--port", "80/TCP", "--datapath")
	if rc != 0 || !strings.Contains(stdout, "kernel (BPF_PROG_TEST_RUN): DENY; egress pass, ingress drop, reply -; agrees with the evaluator") {
		t.Errorf("rc %d\n%s%s", rc, stdout, errs)
	}
	stdout, errs, rc = sluice(t, "", "trace", "-f", "../../examples/seed", "--from", "default/frontend", "--to", "default/backend", "--port", "80/TCP", "--datapath", "-o", "json")
	var res struct {
		Verdict string
		Kernel  struct{ Verdict, Egress, Ingress, Reply string }
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || rc != 0 {
		t.Fatalf("rc %d, %v\n%s%s", rc, err, stdout, errs)
	}
	if res.Verdict != "allow" || res.Kernel.Verdict != "allow" || res.Kernel.Reply != "pass" {
		t.Errorf("frontend -> backend: %+v", res)
	}
	evalOut, _, _ := sluice(t, "", "trace", "-f", "../../examples/seed", "--matrix", "--port", "80/TCP", "--port", "53/UDP", "--port", "8/ICMP")
	kernOut, errs, rc := sluice(t, "", "trace", "-f", "../../examples/seed", "--matrix", "--port", "80/TCP", "--port", "53/UDP", "--port", "8/ICMP", "--datapath")
	if rc != 0 || kernOut != evalOut {
		t.Errorf("kernel matrix differs from the evaluator's (rc %d):\n%s", rc, errs)
	}
}

// A map that would overflow fails the compile with the numbers, and
// nothing is written.
func TestCapacity(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	_, errs, rc := sluice(t, "", "compile", "-q", "-f", "../../examples/seed", "-o", out, "--map-size-ipcache", "10", "--map-size-policy", "1")
	if rc != 1 {
		t.Fatalf("rc %d, want 1\n%s", rc, errs)
	}
	for _, want := range []string{
		"capacity exceeded",
		"map ipcache needs 15 entries but holds 10 (raise --map-size-ipcache to at least 15)",
		"map policy on node worker-2 needs 2 entries but holds 1 (raise --map-size-policy to at least 2)",
		"nothing was written",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors lack %q:\n%s", want, errs)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output written despite the overflow: %v", err)
	}
}

func TestCompileFsync(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if _, errs, rc := sluice(t, "", "compile", "-q", "--fsync", "-f", "../../examples/seed", "-o", out); rc != 0 {
		t.Fatal(errs)
	}
	if _, err := os.Stat(filepath.Join(out, "worker-1", "manifest.json")); err != nil {
		t.Fatal(err)
	}
}

// --apiserver-ip, repeated and comma-separated, gives the kube-apiserver
// entity its addresses; without it the compile warns that the entity
// selects nothing; a bad address is refused.
func TestAPIServerIPFlag(t *testing.T) {
	in := `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c}]}
status: {podIP: 10.1.0.5}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-api, namespace: x}
spec:
  endpointSelector: {}
  egress: [{toEntities: [kube-apiserver]}]
`
	trace := func(to string, extra ...string) (string, string, int) {
		args := append([]string{"trace", "-f", "-", "--from", "x/a", "--to", to, "--port", "443/TCP"}, extra...)
		return sluice(t, in, args...)
	}
	out, errs, _ := trace("10.0.0.9")
	if !strings.HasPrefix(out, "DENY") || !strings.Contains(errs, "the kube-apiserver entity selects no address") {
		t.Errorf("without --apiserver-ip: %s\nstderr: %s", out, errs)
	}
	for _, to := range []string{"10.0.0.9", "10.0.0.10", "10.0.0.11"} {
		out, errs, _ := trace(to, "--apiserver-ip", "10.0.0.9,10.0.0.10", "--apiserver-ip", "10.0.0.11")
		if !strings.HasPrefix(out, "ALLOW") || strings.Contains(errs, "selects no address") {
			t.Errorf("to %s with --apiserver-ip: %s\nstderr: %s", to, out, errs)
		}
	}
	if out, _, _ := trace("10.0.0.12", "--apiserver-ip", "10.0.0.9"); !strings.HasPrefix(out, "DENY") {
		t.Errorf("to another address: %s", out)
	}
	if _, errs, rc := trace("10.0.0.9", "--apiserver-ip", "10.0.0.x"); rc == 0 || !strings.Contains(errs, `--apiserver-ip "10.0.0.x": expected an IP address`) {
		t.Errorf("bad address: rc %d, %s", rc, errs)
	}
}
