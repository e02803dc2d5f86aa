package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"github.com/sluicenet/sluice/loader"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The test binary doubles as a fake compiler: run with fakeEnv set, it
// behaves as `sluice compile -f IN -o OUT --stats FILE` and exits.
const fakeEnv = "SLUICE_BENCH_FAKE_COMPILER"

func TestMain(m *testing.M) {
	if os.Getenv(loader.SockClientEnv) != "" { // the connect bench's client
		os.Exit(loader.SockClient(os.Stdin, os.Stdout))
	}
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeCompile(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeCompile(mode string, args []string) int {
	if len(args) == 0 || args[0] != "compile" {
		fmt.Fprintf(os.Stderr, "fake sluice: want the compile subcommand, got %q\n", args)
		return 2
	}
	fs := flag.NewFlagSet("compile", flag.ContinueOnError)
	in := fs.String("f", "", "")
	out := fs.String("o", "", "")
	stats := fs.String("stats", "", "")
	if err := fs.Parse(args[1:]); err != nil || *in == "" || *out == "" || *stats == "" {
		fmt.Fprintf(os.Stderr, "fake sluice: bad flags %q\n", args)
		return 2
	}
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "ns-x.yaml:12:3: spec.ingress[0].ports[0].port: invalid port \"http-\"")
		return 1
	}
	// Read the whole input, keep it in memory (peak RSS grows with size),
	// count the nodes.
	var held [][]byte
	nodes, total := 0, 0
	ents, err := os.ReadDir(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(*in, e.Name()))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		held = append(held, b)
		total += len(b)
		if e.Name() == "nodes.yaml" {
			nodes = strings.Count(string(b), "\nkind: Node\n")
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, _ := json.Marshal(map[string]any{
		"nodes": nodes, "identities": len(held), "policies": 1, "services": 2, "backends": 3,
		"total_entries": total / 64, "total_bytes": total / 8, "policy_bytes_max_node": total / 100,
		"entries": map[string]int{"policy": total / 128, "ipcache": total / 128},
		"version": "fake",
	})
	if err := os.WriteFile(*stats, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestBench(t *testing.T) {
	t.Setenv(fakeEnv, "ok")
	work := t.TempDir()
	var stdout, stderr strings.Builder
	code := run([]string{"-sluice", os.Args[0], "-work", work, "-scale", "0.02", "-datapath", "20000", "-swap", "2", "-connects", "50", "-lab=false", "-example", "../../examples/seed"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	wants := []string{"size (pods)", "250", "500", "1000", "time(1)/time(½)", "largest size", "ipcache"}
	if os.Geteuid() == 0 {
		wants = append(wants, "swap latency", "seed, node", "via ClusterIP", "10000", "NodePort, established flow")
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("report warns about the fake compiler")
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

func TestBenchCompilerFails(t *testing.T) {
	t.Setenv(fakeEnv, "fail")
	work := t.TempDir()
	var stdout, stderr strings.Builder
	code := run([]string{"-sluice", os.Args[0], "-work", work, "-scale", "0.01", "-q"}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d with a failing compiler, want 1", code)
	}
	if !strings.Contains(stderr.String(), "ns-x.yaml:12:3") {
		t.Errorf("stderr does not carry the compiler's message:\n%s", stderr.String())
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run(nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: sluice-bench -sluice PATH") {
		t.Errorf("no flags: exit %d, stderr %q", code, stderr.String())
	}
}
