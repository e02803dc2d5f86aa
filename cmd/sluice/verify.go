package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/sluicenet/sluice/loader"
)

// cmdVerify loads every map and program of an artifact into the kernel
// (through the verifier; nothing is attached) and reports what it took.
func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	args, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(args) != 1 {
		fmt.Fprintln(stderr, "sluice verify: give one artifact directory (a compile output, or one node's subdirectory)")
		return 2
	}
	arts, err := loader.ReadOutput(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "sluice verify: %v\n", err)
		return 1
	}
	failed := false
	for _, a := range arts {
		dp, err := loader.LoadArtifact(a)
		if err != nil {
			fmt.Fprintf(stdout, "node %s: FAILED: %v\n", a.Manifest.Node, err)
			if errors.Is(err, loader.ErrPrivilege) {
				return 1
			}
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "node %s: loaded\n", a.Manifest.Node)
		names := make([]string, 0, len(dp.Programs))
		for n := range dp.Programs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			info, err := dp.Programs[n].Info()
			verified := "?"
			if err == nil {
				if v, ok := info.VerifiedInstructions(); ok {
					verified = fmt.Sprint(v)
				}
			}
			fmt.Fprintf(stdout, "  program %-15s %4d instructions, %s verified\n", n, len(dp.Specs[n].Instructions), verified)
		}
		for _, m := range a.Manifest.Maps {
			fmt.Fprintf(stdout, "  map %-15s %-8s %7d/%-7d entries, %2d+%-2d bytes each\n", m.Name, m.Type, m.Entries, m.MaxEntries, m.KeySize, m.ValueSize)
		}
		dp.Close()
	}
	if failed {
		fmt.Fprintln(stderr, "sluice verify: some artifacts did not load; see above")
		return 1
	}
	return 0
}
