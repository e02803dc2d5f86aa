// Command sluice compiles Kubernetes networking manifests into eBPF
// artifacts, and answers questions about them: trace, dump, diff.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sluicenet/sluice/loader"
)

const usage = `sluice compiles Kubernetes network policy and services into eBPF artifacts.

Usage:
  sluice compile -f PATH... -o DIR [flags]   compile manifests into one artifact per node
  sluice trace -f PATH... --from PEER --to PEER --port PORT/PROTO [-o text|json]
  sluice trace -f PATH... --matrix [--port PORT/PROTO...] [-o tsv|table|json]
  sluice dump DIR [--map NAME]                print an artifact as the cilium CLI would
  sluice diff OLD NEW [-o text|json]          what changed in access and routing
  sluice verify DIR                           load an artifact's maps and programs into the kernel (no attach)
  sluice lab up -f PATH... [--name NAME]      a whole cluster in network namespaces, with the real agents
  sluice lab probe --from POD|world --to POD|IP --port PORT/PROTO [--name NAME]
  sluice lab probe --matrix [--port PORT/PROTO...] [-o tsv|table] [--name NAME]
  sluice lab apply -f PATH... [--name NAME]   recompile; the lab's agents swap
  sluice lab down [--name NAME]               remove everything the lab made
  sluice version

Run "sluice COMMAND -h" for the flags of a command.
`

// version is set by the Makefile (-ldflags -X main.version=...).
var version = "dev"

func main() {
	if os.Getenv(loader.SockClientEnv) != "" { // a lab probe's client, in a pod
		os.Exit(loader.SockClient(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "compile":
		return cmdCompile(args[1:], stdin, stdout, stderr)
	case "trace":
		return cmdTrace(args[1:], stdin, stdout, stderr)
	case "dump":
		return cmdDump(args[1:], stdout, stderr)
	case "diff":
		return cmdDiff(args[1:], stdin, stdout, stderr)
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "lab":
		return cmdLab(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sluice", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// multiFlag collects repeated -f values (and comma lists, as kubectl).
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// parse parses flags wherever they appear among the arguments, as kubectl
// does ("sluice dump DIR --map policy"), and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
