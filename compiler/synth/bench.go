package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of `make bench` at full size.
const (
	TargetWall   = 5 * time.Second
	TargetRSSKiB = 1 << 20 // 1 GiB
	TargetGrowth = 2.3     // time(1)/time(½): linear would be 2
)

// BenchFractions are the sizes Bench compiles, relative to its scale.
var BenchFractions = []float64{0.25, 0.5, 1}

// CompilerStats is the JSON the compiler writes with --stats. Unknown fields
// are ignored, missing ones read as zero.
type CompilerStats struct {
	Nodes              int              `json:"nodes"`
	Identities         int              `json:"identities"`
	Policies           int              `json:"policies"`
	Services           int              `json:"services"`
	Backends           int              `json:"backends"`
	TotalEntries       int64            `json:"total_entries"`
	TotalBytes         int64            `json:"total_bytes"`
	PolicyBytesMaxNode int64            `json:"policy_bytes_max_node"`
	Entries            map[string]int64 `json:"entries"`
}

// Run is one measured run of the compiler.
type Run struct {
	Wall      time.Duration
	MaxRSSKiB int64 // peak resident set size
}

// Runner runs bin with args to completion and measures it. A failed run
// returns an error that carries the command's output.
type Runner func(ctx context.Context, bin string, args []string) (Run, error)

// ExecRunner runs the compiler as a subprocess: wall time around the whole
// process, peak RSS from its rusage.
func ExecRunner(ctx context.Context, bin string, args []string) (Run, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	out := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	r := Run{Wall: time.Since(start)}
	if cmd.ProcessState != nil {
		r.MaxRSSKiB = maxRSSKiB(cmd.ProcessState)
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, out.String())
	}
	return r, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := string(bytes.TrimRight(t.b, "\n"))
	if t.cut {
		s = "[…]" + s
	}
	return s
}

// BenchConfig configures Bench.
type BenchConfig struct {
	Sluice string  // the compiler binary
	Work   string  // parent of the temporary directory; "" for the system default
	Scale  float64 // size of the largest cluster relative to Full; 0 means 1
	Runs   int     // runs per size; 0 means 3
	Run    Runner  // nil means ExecRunner
	Log    io.Writer
}

// BenchSize is the measurement of one cluster size.
type BenchSize struct {
	Fraction  float64 // of the configured scale
	Params    Params
	Input     Stats
	Walls     []time.Duration // per run, in run order
	Wall      time.Duration   // median over runs
	MaxRSSKiB int64           // maximum over runs
	Stats     CompilerStats   // of the last run
	StatsVary bool            // runs reported different stats
}

// BenchReport is what Bench measured, smallest size first.
type BenchReport struct {
	Scale float64
	Runs  int
	Sizes []BenchSize
}

// Bench generates a cluster at each of BenchFractions of cfg.Scale, compiles
// each cfg.Runs times with `SLUICE compile -f IN -o OUT --stats FILE`, and
// reports median wall time, peak RSS and the compiler's statistics. It fails
// only when generation or the compiler fails; missed targets are for the
// report to say. Everything it writes goes under one temporary directory,
// removed before it returns.
func Bench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	if cfg.Sluice == "" {
		return nil, errors.New("bench: no compiler binary given")
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if cfg.Run == nil {
		cfg.Run = ExecRunner
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	root, err := os.MkdirTemp(cfg.Work, "sluice-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)

	rep := &BenchReport{Scale: cfg.Scale, Runs: cfg.Runs}
	for i, f := range BenchFractions {
		sz := BenchSize{Fraction: f, Params: Full().Scale(cfg.Scale * f)}
		in := filepath.Join(root, fmt.Sprintf("in-%d", i))
		start := time.Now()
		sz.Input, err = Generate(sz.Params, in)
		if err != nil {
			return nil, fmt.Errorf("bench: generate %d pods: %w", sz.Params.Pods, err)
		}
		fmt.Fprintf(log, "generated %d pods, %.1f MB in %s\n", sz.Input.Pods, float64(sz.Input.Bytes)/1e6, time.Since(start).Round(time.Millisecond))

		var first CompilerStats
		for r := range cfg.Runs {
			out := filepath.Join(root, fmt.Sprintf("out-%d-%d", i, r))
			statsFile := filepath.Join(root, fmt.Sprintf("stats-%d-%d.json", i, r))
			args := []string{"compile", "-f", in, "-o", out, "--stats", statsFile}
			run, err := cfg.Run(ctx, cfg.Sluice, args)
			if err != nil {
				return nil, fmt.Errorf("bench: compile %d pods, run %d of %d: %w", sz.Input.Pods, r+1, cfg.Runs, err)
			}
			st, err := readCompilerStats(statsFile)
			if err != nil {
				return nil, fmt.Errorf("bench: compile %d pods, run %d of %d: %w", sz.Input.Pods, r+1, cfg.Runs, err)
			}
			if r == 0 {
				first = st
			} else if !statsEqual(first, st) {
				sz.StatsVary = true
			}
			sz.Stats = st
			sz.Walls = append(sz.Walls, run.Wall)
			sz.MaxRSSKiB = max(sz.MaxRSSKiB, run.MaxRSSKiB)
			fmt.Fprintf(log, "  run %d/%d: %.3f s, %.1f MiB\n", r+1, cfg.Runs, run.Wall.Seconds(), float64(run.MaxRSSKiB)/1024)
			if err := os.RemoveAll(out); err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
		}
		sz.Wall = median(sz.Walls)
		rep.Sizes = append(rep.Sizes, sz)
		if err := os.RemoveAll(in); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	return rep, nil
}

func readCompilerStats(path string) (CompilerStats, error) {
	var st CompilerStats
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("compiler wrote no --stats file: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("--stats file %s: %w", path, err)
	}
	return st, nil
}

func statsEqual(a, b CompilerStats) bool {
	ea, eb := a.Entries, b.Entries
	a.Entries, b.Entries = nil, nil
	return reflect.DeepEqual(a, b) && maps.Equal(ea, eb)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Verdict is how the largest size did against the targets.
type Verdict struct {
	Growth                  []float64 // time ratio of each size to the one before; 0 if unknown
	WallOK, RSSOK, GrowthOK bool
}

// Met reports whether every target was met.
func (v Verdict) Met() bool { return v.WallOK && v.RSSOK && v.GrowthOK }

// Verdict compares the report with the targets: the largest size's wall time
// and peak RSS, and the growth of time from the second largest to the
// largest.
func (r *BenchReport) Verdict() Verdict {
	var v Verdict
	for i := 1; i < len(r.Sizes); i++ {
		g := 0.0
		if prev := r.Sizes[i-1].Wall; prev > 0 {
			g = float64(r.Sizes[i].Wall) / float64(prev)
		}
		v.Growth = append(v.Growth, g)
	}
	if len(r.Sizes) == 0 {
		return v
	}
	last := r.Sizes[len(r.Sizes)-1]
	v.WallOK = last.Wall < TargetWall
	v.RSSOK = last.MaxRSSKiB < TargetRSSKiB
	v.GrowthOK = len(v.Growth) == 0 || v.Growth[len(v.Growth)-1] > 0 && v.Growth[len(v.Growth)-1] <= TargetGrowth
	return v
}

// Print writes the report: a table per size, the growth ratios, and whether
// the largest size met the targets ("MISSED" where not).
func (r *BenchReport) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "size (pods)\tinput MB\twall s\tpeak RSS MiB\ttotal entries\tmax per-node policy MB\t\n")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%.1f\t%.3f\t%.1f\t%d\t%.3f\t\n",
			s.Input.Pods, float64(s.Input.Bytes)/1e6, s.Wall.Seconds(), float64(s.MaxRSSKiB)/1024,
			s.Stats.TotalEntries, float64(s.Stats.PolicyBytesMaxNode)/1e6)
	}
	tw.Flush()
	fmt.Fprintf(w, "(median of %d runs; peak RSS is the maximum over runs)\n\n", r.Runs)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "size (pods)\tnodes\tidentities\tpolicies\tservices\tbackends\ttotal MB\t\n")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t\n", s.Input.Pods, s.Stats.Nodes, s.Stats.Identities,
			s.Stats.Policies, s.Stats.Services, s.Stats.Backends, float64(s.Stats.TotalBytes)/1e6)
	}
	tw.Flush()
	for _, s := range r.Sizes {
		if s.StatsVary {
			fmt.Fprintf(w, "WARNING: %d pods: the compiler reported different stats on different runs of the same input\n", s.Input.Pods)
		}
		if s.Stats.Nodes != s.Input.Nodes {
			fmt.Fprintf(w, "WARNING: %d pods: the compiler reports %d nodes, the input has %d\n", s.Input.Pods, s.Stats.Nodes, s.Input.Nodes)
		}
	}
	if len(r.Sizes) == 0 {
		return
	}
	last := r.Sizes[len(r.Sizes)-1]
	if len(last.Stats.Entries) > 0 {
		fmt.Fprintf(w, "\nmap entries at %d pods:\n", last.Input.Pods)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, k := range slices.Sorted(maps.Keys(last.Stats.Entries)) {
			fmt.Fprintf(tw, "  %s\t%d\n", k, last.Stats.Entries[k])
		}
		tw.Flush()
	}

	v := r.Verdict()
	mark := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	fmt.Fprintln(w)
	for i, g := range v.Growth {
		name := fmt.Sprintf("time(%s)/time(%s)", fraction(r.Sizes[i+1].Fraction), fraction(r.Sizes[i].Fraction))
		val := "n/a"
		if g > 0 {
			val = fmt.Sprintf("%.2f", g)
		}
		if i == len(v.Growth)-1 {
			fmt.Fprintf(w, "growth %s = %s (target <= %.1f) %s\n", name, val, TargetGrowth, mark(v.GrowthOK))
		} else {
			fmt.Fprintf(w, "growth %s = %s\n", name, val)
		}
	}
	scale := ""
	if r.Scale != 1 {
		scale = fmt.Sprintf(" (scale %g; the targets are for scale 1)", r.Scale)
	}
	fmt.Fprintf(w, "largest size%s: wall %.3f s (target < %.0f s) %s; peak RSS %.1f MiB (target < %d MiB) %s\n",
		scale, last.Wall.Seconds(), TargetWall.Seconds(), mark(v.WallOK),
		float64(last.MaxRSSKiB)/1024, TargetRSSKiB/1024, mark(v.RSSOK))
}

func fraction(f float64) string {
	switch f {
	case 0.25:
		return "¼"
	case 0.5:
		return "½"
	case 1:
		return "1"
	}
	return fmt.Sprintf("%g", f)
}
