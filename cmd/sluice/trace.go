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
	to := fs.String("to", "", "destination: NAMESPACE/POD, node:NAME, svc:NAMESPACE/NAME (the service's ClusterIP) or an IP address; a service frontend is traced to each backend")
	via := fs.String("via", "", "for a client outside the cluster and a service frontend that is no node's address: the `node` whose external device receives the connection (needed with several nodes)")
	noBackends := fs.String("no-backends", "reject", "as compiled: what a connection to a service frontend without backends gets, reject or drop")
	var ports multiFlag
	fs.Var(&ports, "port", "PORT/PROTO, e.g. 80/TCP, 53/UDP, 8/ICMP (repeatable with --matrix; default 80/TCP)")
	matrix := fs.Bool("matrix", false, "evaluate every ordered pair of pods")
	datapath := fs.Bool("datapath", false, "also ask the kernel: run crafted packets through the compiled programs (BPF_PROG_TEST_RUN; needs root); for a service frontend, each backend's translated connection (the translation itself is not run: the load balancer's tests cover it)")
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
	if *noBackends != ir.VerdictReject && *noBackends != ir.VerdictDrop {
		fmt.Fprintf(stderr, "sluice trace: --no-backends %q: accepted are reject and drop\n", *noBackends)
		return 2
	}
	if *matrix && *via != "" {
		fmt.Fprintln(stderr, "sluice trace: --via is for a single query to a service frontend, not --matrix")
		return 2
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
		out, err := emit.Build(res.cluster, emit.Options{NoBackends: *noBackends})
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
	if strings.HasPrefix(*from, "svc:") {
		fmt.Fprintln(stderr, "sluice trace: --from: a service is no client; give the pod, node or address that connects to it")
		return 2
	}
	src, err := resolvePeer(ev, *from)
	if err != nil {
		fmt.Fprintf(stderr, "sluice trace: --from: %v\n", err)
		return 2
	}
	dst, err := resolveDestination(ev, *to)
	if err != nil {
		fmt.Fprintf(stderr, "sluice trace: --to: %v\n", err)
		return 2
	}
	q := ir.Query{Src: src, Dst: dst, Proto: pps[0].Proto, Port: pps[0].Port}
	sd, isService, err := ev.EvaluateService(q, ir.ServiceOptions{NoBackends: *noBackends, Via: strings.TrimPrefix(*via, "node:")})
	if err != nil {
		fmt.Fprintf(stderr, "sluice trace: --via: %v\n", err)
		return 2
	}
	if isService {
		return traceService(sd, tracer, *output, stdout, stderr)
	}
	if *via != "" {
		fmt.Fprintf(stderr, "sluice trace: --via: %s is no service frontend; --via names the node that receives a connection from outside the cluster to one\n", netip.AddrPortFrom(dst, q.Port))
		return 2
	}
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
			fmt.Fprintln(stdout, kernelLine(*kv, d.Verdict.String()))
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

// kernelLine says what the kernel did and whether the evaluator agrees.
func kernelLine(kv loader.KernelVerdict, want string) string {
	agree := "agrees with the evaluator"
	if kv.Verdict.String() != want {
		agree = "DISAGREES with the evaluator"
	}
	return fmt.Sprintf("kernel (BPF_PROG_TEST_RUN): %s; egress %s, ingress %s, reply %s; %s", strings.ToUpper(kv.Verdict.String()), kv.Egress, kv.Ingress, kv.Reply, agree)
}

// traceService prints a query whose destination is a service address:
// with the tracer, each backend's connection (or the untranslated one)
// also goes through the kernel, and a disagreement makes the status 1.
func traceService(sd ir.ServiceDecision, tracer *loader.Tracer, output string, stdout, stderr io.Writer) int {
	rc := 0
	t := &sd.Service
	var direct *loader.KernelVerdict
	kernel := make([]*loader.KernelVerdict, len(t.Backends))
	if tracer != nil {
		if sd.Direct != nil {
			kv, err := tracer.Trace(sd.Query)
			if err != nil {
				fmt.Fprintf(stderr, "sluice trace --datapath: %v\n", err)
				return 1
			}
			direct = &kv
			if kv.Verdict != sd.Direct.Verdict {
				rc = 1
			}
		}
		for i := range t.Backends {
			b := &t.Backends[i]
			// The socket path translates before the first packet: every
			// program sees the backend. The device path translates
			// between the client's program and the backend's.
			arrived := ir.Query{Src: b.SeenSource, Dst: b.IP, Proto: sd.Query.Proto, Port: b.Port}
			sent := arrived
			if t.Path == ir.PathDevice {
				sent = sd.Query
			}
			kv, err := tracer.TraceTranslated(sent, arrived)
			if err != nil {
				fmt.Fprintf(stderr, "sluice trace --datapath: backend %s: %v\n", netip.AddrPortFrom(b.IP, b.Port), err)
				return 1
			}
			kernel[i] = &kv
			if kv.Verdict != b.Decision.Verdict {
				rc = 1
			}
		}
	}
	switch output {
	case "", "text":
		ir.WriteServiceDecision(stdout, sd, func(i int) []string {
			kv, want := direct, sd.Verdict
			if i >= 0 {
				kv, want = kernel[i], t.Backends[i].Decision.Verdict.String()
			}
			if kv == nil {
				return nil
			}
			return []string{kernelLine(*kv, want)}
		})
	case "json":
		if sd.Direct != nil {
			if writeJSON(stdout, stderr, struct {
				ir.Decision
				Kernel  *loader.KernelVerdict `json:"kernel,omitempty"`
				Service ir.ServiceTrace       `json:"service"`
			}{*sd.Direct, direct, *t}) != 0 {
				return 1
			}
			break
		}
		type backend struct {
			ir.BackendDecision
			Kernel *loader.KernelVerdict `json:"kernel,omitempty"`
		}
		svc := struct {
			ir.ServiceTrace
			Backends []backend `json:"backends"`
		}{ServiceTrace: *t, Backends: []backend{}}
		for i := range t.Backends {
			svc.Backends = append(svc.Backends, backend{t.Backends[i], kernel[i]})
		}
		if writeJSON(stdout, stderr, struct {
			Query   ir.Query    `json:"query"`
			Verdict string      `json:"verdict"`
			From    ir.PeerInfo `json:"from"`
			Service any         `json:"service"`
		}{sd.Query, sd.Verdict, sd.From, svc}) != 0 {
			return 1
		}
	default:
		fmt.Fprintf(stderr, "sluice trace: unknown output %q; accepted: text, json\n", output)
		return 2
	}
	if rc != 0 {
		fmt.Fprintln(stderr, "sluice trace --datapath: the kernel and the evaluator disagree")
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
