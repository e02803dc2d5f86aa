package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader/lab"
)

func cmdLab(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "sluice lab: give up, probe, apply, down (or serve, which the lab runs in its pods)")
		return 2
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "sluice", "the lab's `name` (1 to 8 lower-case letters and digits)")
	root := fs.String("root", lab.DefaultRoot, "`directory` of the labs' state")
	switch args[0] {
	case "up":
		var files multiFlag
		fs.Var(&files, "f", "manifest file or directory (repeatable, or comma-separated)")
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		if len(files) == 0 {
			fmt.Fprintln(stderr, "sluice lab up: give the manifests with -f PATH")
			return 2
		}
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab up: %v\n", err)
			return 1
		}
		l, err := lab.Up(lab.Config{Name: *name, Manifests: files, Root: *root, BinDir: filepath.Dir(self), Log: stdout})
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab up: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "lab %s is up: %d nodes, %d pods; sluice lab down --name %s removes it\n", *name, len(l.Nodes()), len(l.Pods()), *name)
		return 0
	case "apply":
		var files multiFlag
		fs.Var(&files, "f", "manifest file or directory (repeatable, or comma-separated)")
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		if len(files) == 0 {
			fmt.Fprintln(stderr, "sluice lab apply: give the manifests with -f PATH")
			return 2
		}
		l, err := lab.Open(*root, *name)
		if err == nil {
			l.SetLog(stdout)
			err = l.Apply(files)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab apply: %v\n", err)
			return 1
		}
		return 0
	case "down":
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		l, err := lab.Open(*root, *name)
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab down: %v\n", err)
			return 1
		}
		if err := l.Down(); err != nil {
			fmt.Fprintf(stderr, "sluice lab down: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "lab %s removed\n", *name)
		return 0
	case "probe":
		from := fs.String("from", "", "the probing pod (namespace/name), node (node:NAME), or world")
		to := fs.String("to", "", "the probed pod (namespace/name), node (node:NAME), or an address")
		var ports multiFlag
		fs.Var(&ports, "port", "PORT/PROTO (TCP or UDP; repeatable with --matrix; default 80/TCP)")
		matrix := fs.Bool("matrix", false, "probe every ordered pair of pods, as sluice trace --matrix evaluates them")
		output := fs.String("o", "tsv", "output of --matrix: tsv or table")
		timeout := fs.Duration("timeout", 300*time.Millisecond, "how long a probe waits for an answer (a drop is told by it)")
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		if len(ports) == 0 {
			ports = multiFlag{"80/TCP"}
		}
		var pps []ir.PortProto
		for _, p := range ports {
			pp, err := parsePort(p)
			if err != nil || (pp.Proto != ir.ProtoTCP && pp.Proto != ir.ProtoUDP) {
				fmt.Fprintf(stderr, "sluice lab probe: --port %q: want PORT/TCP or PORT/UDP\n", p)
				return 2
			}
			pps = append(pps, pp)
		}
		if !*matrix && (*from == "" || *to == "" || len(pps) != 1) {
			fmt.Fprintln(stderr, "sluice lab probe: give --from, --to and one --port PORT/PROTO, or --matrix")
			return 2
		}
		l, err := lab.Open(*root, *name)
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab probe: %v\n", err)
			return 1
		}
		p := l.Prober()
		p.Timeout = *timeout
		defer p.Close()
		if *matrix {
			m, err := p.Matrix(pps)
			if err != nil {
				fmt.Fprintf(stderr, "sluice lab probe: %v\n", err)
				return 1
			}
			switch *output {
			case "tsv":
				ir.WriteMatrixTSV(stdout, m)
			case "table":
				ir.WriteMatrixTable(stdout, m)
			default:
				fmt.Fprintf(stderr, "sluice lab probe: unknown output %q; accepted: tsv, table\n", *output)
				return 2
			}
			return 0
		}
		pp := pps[0]
		res, err := p.Probe(*from, *to, pp.Port, pp.Proto.String())
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab probe: %v\n", err)
			return 1
		}
		verdict := ir.Deny
		if res.Reached {
			verdict = ir.Allow
		}
		fmt.Fprintf(stdout, "%s -> %s %s: %s", *from, *to, ir.PortString(pp.Proto, pp.Port), verdict)
		if res.AnsweredBy != "" {
			fmt.Fprintf(stdout, " (answered by %s)", res.AnsweredBy)
		}
		fmt.Fprintln(stdout)
		return 0
	case "serve":
		spec := fs.String("spec", "", "a JSON `file` listing the servers (name, netns, ip, ports)")
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		var servers []lab.Server
		data, err := os.ReadFile(*spec)
		if err == nil {
			err = json.Unmarshal(data, &servers)
		}
		if err == nil {
			err = lab.Serve(servers)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab serve: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "sluice lab: unknown subcommand %q: up, probe, apply, down\n", args[0])
	return 2
}
