package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
)

// cmdDiff compares two artifacts or manifest trees. Exit status as
// diff(1): 0 no change, 1 changes, 2 trouble.
func cmdDiff(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf compileFlags
	fs.BoolVar(&cf.drop, "drop-unenforceable", false, "when a side is manifests: drop unenforceable rules instead of failing")
	fs.StringVar(&cf.cluster, "cluster-name", "default", "when a side is manifests: the cluster name")
	output := fs.String("o", "text", "output: text or json")
	args, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(args) != 2 {
		fmt.Fprintln(stderr, "sluice diff: give OLD and NEW, each an artifact directory (sluice compile -o) or manifests (a file or directory)")
		return 2
	}
	cf.maxErrors = 50
	var sides [2]*ir.Cluster
	for i, path := range args {
		cl, err := clusterOf(path, &cf, stdin, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sluice diff: %s: %v\n", path, err)
			return 2
		}
		sides[i] = cl
	}
	changes := ir.Diff(sides[0], sides[1])
	switch *output {
	case "text":
		ir.WriteDiff(stdout, changes)
	case "json":
		if changes == nil {
			changes = []ir.Change{}
		}
		b, _ := json.MarshalIndent(map[string]any{"changes": changes}, "", "  ")
		stdout.Write(append(b, '\n'))
	default:
		fmt.Fprintf(stderr, "sluice diff: unknown output %q; accepted: text, json\n", *output)
		return 2
	}
	if len(changes) > 0 {
		return 1
	}
	return 0
}

// clusterOf reads the IR of an artifact (verified against its manifest),
// or compiles manifests.
func clusterOf(path string, cf *compileFlags, stdin io.Reader, stderr io.Writer) (*ir.Cluster, error) {
	if isArtifact(path) {
		arts, err := loader.ReadOutput(path)
		if err != nil {
			return nil, err
		}
		data, ok := arts[0].Files["ir.json"]
		if !ok {
			return nil, fmt.Errorf("artifact %s has no ir.json", arts[0].Dir)
		}
		var cl ir.Cluster
		if err := json.Unmarshal(data, &cl); err != nil {
			return nil, fmt.Errorf("%s/ir.json: %w", arts[0].Dir, err)
		}
		return &cl, nil
	}
	cf.files = multiFlag{path}
	_, res, ok := cf.load(stdin, stderr)
	if !ok {
		return nil, fmt.Errorf("does not compile")
	}
	return res.cluster, nil
}

// isArtifact reports whether path is a node artifact or a compile output.
func isArtifact(path string) bool {
	if _, err := os.Stat(filepath.Join(path, "manifest.json")); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(path, "*", "manifest.json"))
	return len(m) > 0
}
