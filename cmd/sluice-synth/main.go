// Command sluice-synth writes a deterministic synthetic cluster (see package
// compiler/synth) into a directory.
//
//	sluice-synth -o DIR [-scale 1.0] [-seed 1]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicenet/sluice/compiler/synth"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-synth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output `directory` (created if missing)")
	scale := fs.Float64("scale", 1.0, "size relative to the full benchmark cluster")
	seed := fs.Uint64("seed", 1, "random seed; the same seed and scale give identical files")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice-synth -o DIR [-scale 1.0] [-seed 1]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 || *scale <= 0 {
		fs.Usage()
		return 2
	}
	p := synth.Full().Scale(*scale)
	p.Seed = *seed
	start := time.Now()
	st, err := synth.Generate(p, *out)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-synth: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s in %.2fs\n%s", *out, time.Since(start).Seconds(), st)
	return 0
}
