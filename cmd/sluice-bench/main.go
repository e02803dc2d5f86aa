// Command sluice-bench is the driver behind `make bench`: it generates
// synthetic clusters at ¼, ½ and 1 × scale, compiles each three times with
// `SLUICE compile -f IN -o OUT --stats FILE`, and prints wall time, peak RSS,
// the compiler's statistics, growth ratios and the targets met or MISSED.
// It exits non-zero when the compiler fails, not when a target is missed.
//
//	sluice-bench -sluice PATH [-work DIR] [-scale 1.0]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/sluicenet/sluice/compiler/synth"
	"github.com/sluicenet/sluice/loader"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sluice := fs.String("sluice", "", "the sluice compiler `binary` to measure")
	work := fs.String("work", "", "`directory` for generated input and output (a temporary directory inside it is removed afterwards; default: the system temp dir)")
	scale := fs.Float64("scale", 1.0, "size of the largest cluster relative to the full benchmark cluster")
	runs := fs.Int("runs", 3, "compiler runs per size (the median wall time is reported)")
	quiet := fs.Bool("q", false, "do not print progress")
	datapath := fs.Int("datapath", 1000000, "BPF_PROG_TEST_RUN repeats for the datapath table (0: skip it; needs root)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice-bench -sluice PATH [-work DIR] [-scale 1.0]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sluice == "" || fs.NArg() > 0 || *scale <= 0 || *runs < 1 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := synth.BenchConfig{Sluice: *sluice, Work: *work, Scale: *scale, Runs: *runs, Log: stderr}
	if *quiet {
		cfg.Log = nil
	}
	rep, err := synth.Bench(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-bench: %v\n", err)
		return 1
	}
	rep.Print(stdout)
	if *datapath > 0 {
		fmt.Fprintln(stdout)
		if os.Geteuid() != 0 {
			fmt.Fprintln(stdout, "datapath: skipped (BPF_PROG_TEST_RUN needs root)")
			return 0
		}
		if err := loader.BenchDatapath(stdout, loader.DefaultDatapathBench, *datapath); err != nil {
			fmt.Fprintf(stderr, "sluice-bench: datapath: %v\n", err)
			return 1
		}
	}
	return 0
}
