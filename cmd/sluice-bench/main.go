// Command sluice-bench is the driver behind `make bench`: it generates
// synthetic clusters at ¼, ½ and 1 × scale, compiles each three times with
// `SLUICE compile -f IN -o OUT --stats FILE`, and prints wall time, peak RSS,
// the compiler's statistics, growth ratios and the targets met or MISSED.
// With root it adds the datapath table (BPF_PROG_TEST_RUN) and the swap
// latency of the example's and the synthetic cluster's busiest node.
// It exits non-zero when the compiler fails, not when a target is missed.
//
//	sluice-bench -sluice PATH [-work DIR] [-scale 1.0]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/compiler/synth"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
	"github.com/sluicenet/sluice/loader/lab"
)

func main() {
	if os.Getenv(loader.SockClientEnv) != "" { // a child: the connect bench's client
		os.Exit(loader.SockClient(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sluice := fs.String("sluice", "", "the sluice compiler `binary` to measure")
	work := fs.String("work", "", "`directory` for generated input and output (a temporary directory inside it is removed afterwards; default: the system temp dir)")
	scale := fs.Float64("scale", 1.0, "size of the largest cluster relative to the full benchmark cluster")
	runs := fs.Int("runs", 3, "compiler runs per size (the median wall time is reported)")
	quiet := fs.Bool("q", false, "do not print progress")
	example := fs.String("example", "examples/seed", "the example `directory` whose busiest node the swap table measures")
	swapRuns := fs.Int("swap", 5, "swaps per artifact for the swap latency table (0: skip it; needs root)")
	datapath := fs.Int("datapath", 1000000, "BPF_PROG_TEST_RUN repeats for the datapath table (0: skip it; needs root)")
	labBench := fs.Bool("lab", true, "time sluice lab up and down for the example and 3 nodes × 100 pods, and probes through it (needs root)")
	connects := fs.Int("connects", 2000, "connects per round for the socket load balancing table (0: skip it; needs root)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice-bench -sluice PATH [-work DIR] [-scale 1.0]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sluice == "" || fs.NArg() > 0 || *scale <= 0 || *runs < 1 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := synth.BenchConfig{Sluice: *sluice, Work: *work, Scale: *scale, Runs: *runs, Log: stderr}
	if *quiet {
		cfg.Log = nil
	}
	rep, err := synth.Bench(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-bench: %v\n", err)
		return 1
	}
	rep.Print(stdout)
	if *datapath > 0 {
		fmt.Fprintln(stdout)
		if os.Geteuid() != 0 {
			fmt.Fprintln(stdout, "datapath: skipped (BPF_PROG_TEST_RUN needs root)")
			return 0
		}
		if err := loader.BenchDatapath(stdout, loader.DefaultDatapathBench, *datapath); err != nil {
			fmt.Fprintf(stderr, "sluice-bench: datapath: %v\n", err)
			return 1
		}
	}
	if *swapRuns > 0 && os.Geteuid() == 0 {
		fmt.Fprintln(stdout)
		rows, err := benchSwaps(*work, *example, *scale, *swapRuns)
		if err != nil {
			fmt.Fprintf(stderr, "sluice-bench: swap: %v\n", err)
			return 1
		}
		loader.PrintSwapBench(stdout, rows)
	}
	if *connects > 0 && os.Geteuid() == 0 {
		fmt.Fprintln(stdout)
		rows, err := benchConnects(*connects)
		if err != nil {
			fmt.Fprintf(stderr, "sluice-bench: connect: %v\n", err)
			return 1
		}
		loader.PrintSockBench(stdout, rows)
	}
	if *labBench && os.Geteuid() == 0 {
		fmt.Fprintln(stdout)
		rows, err := benchLab(*sluice, *example, *work)
		if err != nil {
			fmt.Fprintf(stderr, "sluice-bench: lab: %v\n", err)
			return 1
		}
		lab.PrintBench(stdout, rows)
	}
	if *datapath > 0 && os.Geteuid() == 0 {
		fmt.Fprintln(stdout)
		if err := benchNodePort(stdout, *datapath); err != nil {
			fmt.Fprintf(stderr, "sluice-bench: nodeport: %v\n", err)
			return 1
		}
	}
	return 0
}

// benchLab times labs of the example and of 3 nodes × 100 pods.
func benchLab(sluice, example, work string) ([]lab.BenchResult, error) {
	binDir, err := filepath.Abs(filepath.Dir(sluice))
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(work, "sluice-bench-lab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	scale, err := lab.ScaleManifests(tmp, 3, 100)
	if err != nil {
		return nil, err
	}
	var rows []lab.BenchResult
	for _, c := range []struct{ name, path string }{{filepath.Base(example), example}, {"3 nodes x 100 pods", scale}} {
		r, err := lab.Bench(c.name, []string{c.path}, binDir, 20)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// benchNodePort measures the external device's program on a node with
// 10,000 services, one of them a NodePort.
func benchNodePort(w io.Writer, repeat int) error {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDR: 10.78.0.0/24}\nstatus: {addresses: [{type: InternalIP, address: 192.168.78.1}]}\n---\n")
	for i := range 3 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: server-%d, namespace: default, labels: {app: server}}\nspec: {nodeName: n1, containers: [{name: c, image: i}]}\nstatus: {podIP: 10.78.0.%d}\n---\n", i, i+2)
	}
	for i := range 10000 {
		typ, np := "", ""
		if i == 0 {
			typ, np = "type: NodePort, ", ", nodePort: 30080"
		}
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: default}\nspec: {%sclusterIP: 10.96.%d.%d, selector: {app: server}, ports: [{port: 80, targetPort: 8080%s}]}\n---\n",
			i, typ, i/250, i%250+1, np)
	}
	_, cl, diags := compiler.Load([]string{"-"}, strings.NewReader(b.String()), compiler.Options{})
	if len(diags) > 0 {
		return diags.Err()
	}
	var nodePort uint16
	for _, s := range cl.Services {
		if s.Name == "s0" {
			nodePort = s.Ports[0].NodePort
		}
	}
	if nodePort == 0 {
		return fmt.Errorf("the NodePort service got no node port")
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		return err
	}
	a, err := loader.FromBuild(out.Artifacts[0])
	if err != nil {
		return err
	}
	return loader.BenchNodePort(w, a, netip.MustParseAddr("198.51.100.7"), netip.AddrPortFrom(netip.MustParseAddr("192.168.78.1"), nodePort), repeat)
}

// benchConnects measures connect() through ClusterIPs with 10, 1,000 and
// 10,000 services loaded, against connects to the pod IP.
func benchConnects(n int) ([]loader.SockBenchResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cases []loader.SockBenchCase
	for _, services := range []int{10, 1000, 10000} {
		var b strings.Builder
		for _, p := range []struct{ name, ip string }{{"client", loader.BenchClientIP}, {"server", loader.BenchServerIP}} {
			fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: %s}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: %s}\n---\n", p.name, p.name, p.ip)
		}
		clusterIP := func(i int) string { return fmt.Sprintf("10.96.%d.%d", i/250, i%250+1) }
		for i := range services {
			fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: default}\nspec: {clusterIP: %s, selector: {app: server}, ports: [{port: 80, targetPort: 8080}]}\n---\n", i, clusterIP(i))
		}
		_, cl, diags := compiler.Load([]string{"-"}, strings.NewReader(b.String()), compiler.Options{})
		if len(diags) > 0 {
			return nil, diags.Err()
		}
		out, err := emit.Build(cl, emit.Options{})
		if err != nil {
			return nil, err
		}
		a, err := loader.FromBuild(out.Artifacts[0])
		if err != nil {
			return nil, err
		}
		cases = append(cases, loader.SockBenchCase{Services: services, Artifact: a, Frontend: clusterIP(services/2) + ":80"})
	}
	return loader.BenchSockConnect(self, cases, 7, n)
}

// benchSwaps measures swap latency for the bundled example's busiest node
// and the synthetic cluster's, in full and incrementally, the latter over
// variants of the cluster that differ in one service's backends.
func benchSwaps(work, example string, scale float64, runs int) ([]loader.SwapBenchResult, error) {
	tmp, err := os.MkdirTemp(work, "sluice-bench-swap-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	synthDir := filepath.Join(tmp, "synth")
	if _, err := synth.Generate(synth.Full().Scale(scale), synthDir); err != nil {
		return nil, err
	}
	var rows []loader.SwapBenchResult
	for _, in := range []struct{ name, dir string }{{filepath.Base(example), example}, {fmt.Sprintf("synthetic (scale %g)", scale), synthDir}} {
		_, cl, diags := compiler.Load([]string{in.dir}, nil, compiler.Options{})
		if len(diags) > 0 {
			return nil, diags.Err()
		}
		variants, err := oneServiceChanged(cl)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.dir, err)
		}
		var dirs []string
		var busiest *emit.Artifact
		for i, v := range variants {
			a, err := emit.BuildBusiest(v, emit.Options{NodeFiles: loader.Listings})
			if err != nil {
				return nil, err
			}
			out := filepath.Join(tmp, fmt.Sprintf("out-%s-%d", filepath.Base(in.dir), i))
			if err := loader.WriteArtifacts(out, []*emit.Artifact{a}, nil); err != nil {
				return nil, err
			}
			dirs = append(dirs, filepath.Join(out, a.Node))
			if busiest == nil {
				busiest = a
			} else if a.Node != busiest.Node {
				return nil, fmt.Errorf("the busiest node moved from %s to %s with one service changed", busiest.Node, a.Node)
			}
		}
		r, err := loader.BenchSwap(fmt.Sprintf("%s, node %s (%d pods)", in.name, busiest.Node, busiest.Stats.Endpoints), dirs, runs)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// oneServiceChanged returns the cluster and two variants of it, each
// without one backend address of the service with the most addresses
// (the first by name among equals).
func oneServiceChanged(cl *ir.Cluster) ([]*ir.Cluster, error) {
	best, bestAddrs := -1, []netip.Addr(nil)
	for i := range cl.Services {
		var addrs []netip.Addr
		for _, b := range cl.Services[i].Backends {
			if !slices.Contains(addrs, b.IP) {
				addrs = append(addrs, b.IP)
			}
		}
		if len(addrs) > len(bestAddrs) {
			best, bestAddrs = i, addrs
		}
	}
	if len(bestAddrs) < 2 {
		return nil, fmt.Errorf("no service has two backend addresses to vary")
	}
	out := []*ir.Cluster{cl}
	for _, drop := range bestAddrs[:2] {
		v := *cl
		v.Services = slices.Clone(cl.Services)
		svc := &v.Services[best]
		svc.Backends = slices.DeleteFunc(slices.Clone(svc.Backends), func(b ir.Backend) bool { return b.IP == drop })
		out = append(out, &v)
	}
	return out, nil
}
