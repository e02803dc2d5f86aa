package synth

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeCompiler is a Runner standing in for `sluice compile`: it checks the
// command line, reads the input and writes a stats file; its "wall time" is
// cost(input bytes).
type fakeCompiler struct {
	t     *testing.T
	cost  func(bytes int64) time.Duration
	fail  int // fail on this call (1-based); 0 never
	calls int
	stats bool // write a stats file
}

func (f *fakeCompiler) run(_ context.Context, bin string, args []string) (Run, error) {
	f.calls++
	if bin != "/path/to/sluice" {
		f.t.Errorf("binary %q", bin)
	}
	if len(args) != 7 || args[0] != "compile" || args[1] != "-f" || args[3] != "-o" || args[5] != "--stats" {
		f.t.Fatalf("command line %q, want compile -f IN -o OUT --stats FILE", args)
	}
	if f.calls == f.fail {
		return Run{}, errors.New("exit status 1\nboom: policy.yaml:3:1: bad")
	}
	in, out, statsFile := args[2], args[4], args[6]
	var size int64
	ents, err := os.ReadDir(in)
	if err != nil {
		f.t.Fatal(err)
	}
	nodes := 0
	for _, e := range ents {
		fi, _ := e.Info()
		size += fi.Size()
		if e.Name() == "nodes.yaml" {
			b, _ := os.ReadFile(filepath.Join(in, e.Name()))
			nodes = strings.Count(string(b), "\nkind: Node\n")
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if f.stats {
		b, _ := json.Marshal(map[string]any{
			"nodes": nodes, "identities": 10, "policies": 20, "services": 30, "backends": 40,
			"total_entries": size / 100, "total_bytes": size, "policy_bytes_max_node": size / 10,
			"entries":      map[string]int{"ipcache": 7, "policy": 9},
			"future_field": []int{1, 2, 3},
		})
		if err := os.WriteFile(statsFile, b, 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	return Run{Wall: f.cost(size), MaxRSSKiB: size / 1024}, nil
}

func benchConfig(t *testing.T, f *fakeCompiler) BenchConfig {
	return BenchConfig{Sluice: "/path/to/sluice", Work: t.TempDir(), Scale: 0.04, Run: f.run}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("work dir %s after Bench: %v, %v; want it empty", dir, ents, err)
	}
}

func TestBenchLinear(t *testing.T) {
	f := &fakeCompiler{t: t, stats: true, cost: func(b int64) time.Duration { return time.Duration(b) * time.Microsecond }}
	cfg := benchConfig(t, f)
	rep, err := Bench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, cfg.Work)
	if f.calls != 9 || len(rep.Sizes) != 3 {
		t.Fatalf("%d compiler runs, %d sizes; want 9 and 3", f.calls, len(rep.Sizes))
	}
	for i, s := range rep.Sizes {
		if want := Full().Scale(0.04 * BenchFractions[i]); s.Params != want || s.Input.Pods != want.Pods {
			t.Errorf("size %d: params %+v, want %+v", i, s.Params, want)
		}
		if len(s.Walls) != 3 || s.Wall != time.Duration(s.Input.Bytes)*time.Microsecond {
			t.Errorf("size %d: walls %v, median %v", i, s.Walls, s.Wall)
		}
		if s.Stats.Nodes != s.Input.Nodes || s.Stats.Entries["policy"] != 9 || s.StatsVary {
			t.Errorf("size %d: stats %+v", i, s.Stats)
		}
	}
	v := rep.Verdict()
	if len(v.Growth) != 2 || v.Growth[1] < 1.5 || v.Growth[1] > 2.3 || !v.Met() {
		t.Errorf("verdict %+v, want growth about 2 and every target met", v)
	}
	var b strings.Builder
	rep.Print(&b)
	out := b.String()
	t.Logf("report:\n%s", out)
	for _, want := range []string{"size (pods)", "input MB", "wall s", "peak RSS MiB", "total entries", "max per-node policy MB",
		"time(½)/time(¼)", "time(1)/time(½)", "ipcache", "target < 5 s", "target < 1024 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "MISSED") || strings.Contains(out, "WARNING") {
		t.Errorf("report of a linear, fast compiler says MISSED or WARNING")
	}
}

func TestBenchMissedTargets(t *testing.T) {
	// Quadratic and slow: growth ~4, seconds at the largest size.
	f := &fakeCompiler{t: t, stats: true, cost: func(b int64) time.Duration {
		return time.Duration(b/1000) * time.Duration(b/1000) * time.Microsecond
	}}
	rep, err := Bench(context.Background(), benchConfig(t, f))
	if err != nil {
		t.Fatalf("missed targets must not fail Bench: %v", err)
	}
	v := rep.Verdict()
	if v.GrowthOK || v.Met() {
		t.Errorf("verdict %+v, want growth missed", v)
	}
	var b strings.Builder
	rep.Print(&b)
	if !strings.Contains(b.String(), "MISSED") {
		t.Errorf("report does not say MISSED:\n%s", b.String())
	}
}

func TestBenchCompilerFails(t *testing.T) {
	f := &fakeCompiler{t: t, stats: true, fail: 4, cost: func(int64) time.Duration { return time.Millisecond }}
	cfg := benchConfig(t, f)
	_, err := Bench(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "run 1 of 3") || !strings.Contains(err.Error(), "policy.yaml:3:1") {
		t.Errorf("Bench with a failing compiler: err = %v, want the run and the compiler's message", err)
	}
	assertEmpty(t, cfg.Work)

	f = &fakeCompiler{t: t, stats: false, cost: func(int64) time.Duration { return time.Millisecond }}
	cfg = benchConfig(t, f)
	if _, err := Bench(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no --stats file") {
		t.Errorf("Bench with a compiler that writes no stats: err = %v", err)
	}
	assertEmpty(t, cfg.Work)
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5}, 5},
		{[]time.Duration{9, 1, 5}, 5},
		{[]time.Duration{4, 1, 9, 6}, 5},
	} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestStatsLenient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	os.WriteFile(path, []byte(`{"nodes": 3, "new": {"x": 1}, "entries": {"lb": 2}}`), 0o644)
	got, err := readCompilerStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(CompilerStats{Nodes: 3, Entries: map[string]int64{"lb": 2}}, got); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
}

func TestExecRunner(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run")
	}
	r, err := ExecRunner(context.Background(), sh, []string{"-c", "echo hello"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Wall <= 0 || runtime.GOOS == "linux" && r.MaxRSSKiB <= 0 {
		t.Errorf("run %+v, want wall time and peak RSS", r)
	}
	_, err = ExecRunner(context.Background(), sh, []string{"-c", "echo bad input >&2; exit 3"})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "bad input") {
		t.Errorf("failing command: err = %v, want exit status and output", err)
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	tb.Write([]byte("abc"))
	tb.Write([]byte("defg\n"))
	if got := tb.String(); got != "[…]defg" {
		t.Errorf("tail = %q", got)
	}
}
