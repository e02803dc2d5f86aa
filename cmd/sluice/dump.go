package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sluicenet/sluice/loader"
)

// dumpOrder is the order dump prints an artifact's maps in.
var dumpOrder = []string{"endpoints", "policy", "classes", "ipcache", "services", "services_local", "backends", "revnat", "maglev", "rules", "regions", "identities"}

func cmdDump(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("map", "", "print only this map: "+strings.Join(dumpOrder, ", "))
	args, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(args) != 1 {
		fmt.Fprintln(stderr, "sluice dump: give one artifact directory (a compile output, or one node's subdirectory)")
		return 2
	}
	arts, err := loader.ReadOutput(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "sluice dump: %v\n", err)
		return 1
	}
	if *only != "" && !contains(dumpOrder, *only) {
		fmt.Fprintf(stderr, "sluice dump: unknown map %q; accepted: %s\n", *only, strings.Join(dumpOrder, ", "))
		return 2
	}
	sort.Slice(arts, func(i, j int) bool { return arts[i].Manifest.Node < arts[j].Manifest.Node })
	shared := map[string]bool{}
	for _, a := range arts {
		fmt.Fprintf(stdout, "=== node %s (%s, input %s)\n", a.Manifest.Node, a.Dir, short(a.Manifest.InputDigest))
		for _, name := range dumpOrder {
			if *only != "" && name != *only {
				continue
			}
			file := "dump/" + name + ".txt"
			data, ok := a.Files[file]
			if !ok {
				continue
			}
			key := name + "\x00" + a.Manifest.Files[file]
			if isShared(name) && shared[key] {
				fmt.Fprintf(stdout, "--- %s: same as above\n", name)
				continue
			}
			shared[key] = true
			fmt.Fprintf(stdout, "--- %s\n%s", name, data)
		}
	}
	return 0
}

func isShared(name string) bool {
	switch name {
	case "ipcache", "services", "backends", "revnat", "rules", "regions", "identities":
		return true
	}
	return false
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
