package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
)

func cmdTrace(args []string, stdin io.Reader, stdout, stderr io.Writer) (rc int) {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf compileFlags
	cf.register(fs)
	from := fs.String("from", "", "source: NAMESPACE/POD, node:NAME or an IP address")
	to := fs.String("to", "", "destination: NAMESPACE/POD, node:NAME or an IP address")
	var ports multiFlag
	fs.Var(&ports, "port", "PORT/PROTO, e.g. 80/TCP, 53/UDP, 8/ICMP (repeatable with --matrix; default 80/TCP)")
	matrix := fs.Bool("matrix", false, "evaluate every ordered pair of pods")
	datapath := fs.Bool("datapath", false, "also ask the kernel: run crafted packets through the compiled programs (BPF_PROG_TEST_RUN; needs root)")
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
	var tracer *loader.Tracer
	if *datapath {
		out, err := emit.Build(res.cluster, emit.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "sluice trace: %v\n", err)
			return 1
		}
		if tracer, err = loader.NewTracer(res.cluster, out); err != nil {
			fmt.Fprintf(stderr, "sluice trace --datapath: %v\n", err)
			return 1
		}
		defer tracer.Close()
	}
	if *matrix {
		m := ev.Matrix(pps)
		if tracer != nil {
			disagree := 0
			for i := range m {
				e := &m[i]
				q := ir.Query{Src: addrOfKey(ev, e.From), Dst: addrOfKey(ev, e.To), Proto: e.Proto, Port: e.Port}
				kv, err := tracer.Trace(q)
				if err != nil {
					fmt.Fprintf(stderr, "sluice trace --datapath: %v\n", err)
					return 1
				}
				if kv.Verdict != e.Verdict {
					disagree++
					fmt.Fprintf(stderr, "DISAGREE %s -> %s %s: kernel %s (egress %s, ingress %s), evaluator %s\n", e.From, e.To, ir.PortString(e.Proto, e.Port), kv.Verdict, kv.Egress, kv.Ingress, e.Verdict)
				}
				e.Verdict = kv.Verdict // the matrix shows what the kernel did
			}
			defer func() {
				if disagree > 0 {
					fmt.Fprintf(stderr, "sluice trace --datapath: the kernel and the evaluator disagree on %d of %d entries\n", disagree, len(m))
				}
			}()
			if disagree > 0 {
				defer func() { rc = 1 }()
			}
		}
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
	q := ir.Query{Src: src, Dst: dst, Proto: pps[0].Proto, Port: pps[0].Port}
	d := ev.Evaluate(q)
	var kv *loader.KernelVerdict
	if tracer != nil {
		v, err := tracer.Trace(q)
		if err != nil {
			fmt.Fprintf(stderr, "sluice trace --datapath: %v\n", err)
			return 1
		}
		kv = &v
		if v.Verdict != d.Verdict {
			rc = 1
		}
	}
	switch *output {
	case "", "text":
		ir.WriteDecision(stdout, d)
		if kv != nil {
			agree := "agrees with the evaluator"
			if kv.Verdict != d.Verdict {
				agree = "DISAGREES with the evaluator"
			}
			fmt.Fprintf(stdout, "kernel (BPF_PROG_TEST_RUN): %s; egress %s, ingress %s, reply %s; %s\n", strings.ToUpper(kv.Verdict.String()), kv.Egress, kv.Ingress, kv.Reply, agree)
		}
	case "json":
		if kv != nil {
			if writeJSON(stdout, stderr, struct {
				ir.Decision
				Kernel *loader.KernelVerdict `json:"kernel"`
			}{d, kv}) != 0 {
				return 1
			}
			return rc
		}
		return writeJSON(stdout, stderr, d)
	default:
		fmt.Fprintf(stderr, "sluice trace: unknown output %q; accepted: text, json\n", *output)
		return 2
	}
	return rc
}

// addrOfKey is the first address of the pod "ns/name".
func addrOfKey(ev *ir.Evaluator, key string) netip.Addr {
	for _, e := range ev.Cluster().Endpoints {
		if e.Key() == key {
			return e.IPs[0]
		}
	}
	return netip.Addr{}
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
