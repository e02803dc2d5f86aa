package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader/lab"
)

func cmdLab(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "sluice lab: give up, probe, down (or serve, which the lab runs in its pods)")
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
		from := fs.String("from", "", "the probing pod (namespace/name), or world")
		to := fs.String("to", "", "the probed pod (namespace/name), or an address")
		port := fs.String("port", "", "PORT/PROTO")
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		pp, err := parsePort(*port)
		if err != nil || *from == "" || *to == "" {
			fmt.Fprintln(stderr, "sluice lab probe: give --from, --to and --port PORT/PROTO")
			return 2
		}
		l, err := lab.Open(*root, *name)
		if err != nil {
			fmt.Fprintf(stderr, "sluice lab probe: %v\n", err)
			return 1
		}
		p := l.Prober()
		defer p.Close()
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
		pod := fs.String("pod", "", "the pod's name")
		ip := fs.String("ip", "", "the pod's address")
		ports := fs.String("ports", "", "PORT/PROTO,...")
		if _, err := parse(fs, args[1:]); err != nil {
			return 2
		}
		if err := lab.Serve(*pod, *ip, strings.Split(*ports, ",")); err != nil {
			fmt.Fprintf(stderr, "sluice lab serve: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "sluice lab: unknown subcommand %q: up, probe, down\n", args[0])
	return 2
}
