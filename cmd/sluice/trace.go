package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/sluicenet/sluice/ir"
)

func cmdTrace(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf compileFlags
	cf.register(fs)
	from := fs.String("from", "", "source: NAMESPACE/POD, node:NAME or an IP address")
	to := fs.String("to", "", "destination: NAMESPACE/POD, node:NAME or an IP address")
	var ports multiFlag
	fs.Var(&ports, "port", "PORT/PROTO, e.g. 80/TCP, 53/UDP, 8/ICMP (repeatable with --matrix; default 80/TCP)")
	matrix := fs.Bool("matrix", false, "evaluate every ordered pair of pods")
	output := fs.String("o", "", "output: text or json (single query); tsv, table or json (--matrix)")
	args, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "sluice trace: unexpected argument %q; give manifests with -f PATH\n", args[0])
		return 2
	}
	if len(ports) == 0 {
		ports = multiFlag{"80/TCP"}
	}
	var pps []ir.PortProto
	for _, p := range ports {
		pp, err := parsePort(p)
		if err != nil {
			fmt.Fprintf(stderr, "sluice trace: %v\n", err)
			return 2
		}
		pps = append(pps, pp)
	}
	if !*matrix && (*from == "" || *to == "") {
		fmt.Fprintln(stderr, "sluice trace: give --from and --to, or --matrix")
		return 2
	}
	_, res, ok := cf.load(stdin, stderr)
	if !ok {
		return 1
	}
	ev := ir.NewEvaluator(res.cluster)
	if *matrix {
		m := ev.Matrix(pps)
		switch *output {
		case "", "tsv":
			ir.WriteMatrixTSV(stdout, m)
		case "table":
			ir.WriteMatrixTable(stdout, m)
		case "json":
			return writeJSON(stdout, stderr, m)
		default:
			fmt.Fprintf(stderr, "sluice trace: unknown output %q for --matrix; accepted: tsv, table, json\n", *output)
			return 2
		}
		return 0
	}
	if len(pps) != 1 {
		fmt.Fprintln(stderr, "sluice trace: give one --port for a single query (several only with --matrix)")
		return 2
	}
	src, err := resolvePeer(ev, *from)
	if err != nil {
		fmt.Fprintf(stderr, "sluice trace: --from: %v\n", err)
		return 2
	}
	dst, err := resolvePeer(ev, *to)
	if err != nil {
		fmt.Fprintf(stderr, "sluice trace: --to: %v\n", err)
		return 2
	}
	d := ev.Evaluate(ir.Query{Src: src, Dst: dst, Proto: pps[0].Proto, Port: pps[0].Port})
	switch *output {
	case "", "text":
		ir.WriteDecision(stdout, d)
	case "json":
		return writeJSON(stdout, stderr, d)
	default:
		fmt.Fprintf(stderr, "sluice trace: unknown output %q; accepted: text, json\n", *output)
		return 2
	}
	return 0
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	stdout.Write(append(b, '\n'))
	return 0
}
