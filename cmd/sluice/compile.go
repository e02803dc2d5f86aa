package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
	"github.com/sluicenet/sluice/schema"
)

// compileFlags are the flags shared by every command that compiles.
type compileFlags struct {
	files     multiFlag
	drop      bool
	cluster   string
	maxErrors int
	apiserver multiFlag
}

func (cf *compileFlags) register(fs *flag.FlagSet) {
	fs.Var(&cf.files, "f", "manifest file, directory (recursive: *.yaml, *.yml, *.json) or - for stdin; repeatable")
	fs.Var(&cf.files, "filename", "same as -f")
	fs.BoolVar(&cf.drop, "drop-unenforceable", false, "drop rules the datapath cannot enforce (L7, toFQDNs, host policies, ...) instead of failing; each dropped rule is listed")
	fs.StringVar(&cf.cluster, "cluster-name", "default", "cluster name (the io.cilium.k8s.policy.cluster label)")
	fs.IntVar(&cf.maxErrors, "max-errors", 50, "report at most this many errors")
	fs.Var(&cf.apiserver, "apiserver-ip", "an address of the kube-apiserver, for the kube-apiserver entity, besides the endpoints of default/kubernetes; repeatable or comma-separated")
}

func (cf *compileFlags) options() (compiler.Options, error) {
	opts := compiler.Options{ClusterName: cf.cluster, DropUnenforceable: cf.drop}
	for _, f := range cf.apiserver {
		for _, s := range strings.Split(f, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return opts, fmt.Errorf("--apiserver-ip %q: expected an IP address such as 10.0.0.1", s)
			}
			opts.APIServerIPs = append(opts.APIServerIPs, ip)
		}
	}
	return opts, nil
}

// load compiles the inputs, printing diagnostics on failure.
func (cf *compileFlags) load(stdin io.Reader, stderr io.Writer) (*schema.Set, *compilerResult, bool) {
	if len(cf.files) == 0 {
		fmt.Fprintln(stderr, "sluice: no input: give manifests with -f PATH (a file, a directory or - for stdin)")
		return nil, nil, false
	}
	var paths []string
	for _, f := range cf.files {
		paths = append(paths, strings.Split(f, ",")...)
	}
	opts, err := cf.options()
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return nil, nil, false
	}
	set, cl, diags := compiler.Load(paths, stdin, opts)
	if len(diags) > 0 {
		var src func(string) []byte
		if set != nil {
			src = set.Source
		}
		diags.Format(stderr, cf.maxErrors, src)
		fmt.Fprintf(stderr, "sluice: %d error(s); nothing was written\n", len(diags))
		return set, nil, false
	}
	for _, w := range cl.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	return set, &compilerResult{cluster: cl}, true
}

func cmdCompile(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf compileFlags
	cf.register(fs)
	out := fs.String("o", "", "output directory: one subdirectory per node (required)")
	stats := fs.String("stats", "", "also write build statistics as JSON to this file")
	quiet := fs.Bool("q", false, "print only errors")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	noBackends := fs.String("no-backends", "reject", "what a connection to a service without backends gets: reject (refused at once, as kube-proxy does) or drop (it times out)")
	fsync := fs.Bool("fsync", false, "make the output durable (syncfs) before swapping it in; without it a crash can leave files that fail their checksums, which readers then refuse")
	sizes := emit.DefaultSizes()
	fs.IntVar(&sizes.IPCache, "map-size-ipcache", sizes.IPCache, "max entries of the ipcache map")
	fs.IntVar(&sizes.Classes, "map-size-classes", sizes.Classes, "max entries of each node's classes map")
	fs.IntVar(&sizes.Policy, "map-size-policy", sizes.Policy, "max entries of each node's policy map")
	fs.IntVar(&sizes.Endpoints, "map-size-endpoints", sizes.Endpoints, "max entries of each node's endpoints map")
	fs.IntVar(&sizes.Services, "map-size-services", sizes.Services, "max entries of the services maps")
	fs.IntVar(&sizes.Backends, "map-size-backends", sizes.Backends, "max entries of the backends map")
	fs.IntVar(&sizes.RevNat, "map-size-revnat", sizes.RevNat, "max entries of the reverse-NAT map")
	fs.IntVar(&sizes.Maglev, "map-size-maglev", sizes.Maglev, "max Maglev tables (one per external frontend)")
	maglevM := fs.Int("maglev-table-size", emit.DefaultMaglevTableSize, "entries of each Maglev table: a prime, well above 100 × the backends of any external frontend")
	args, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "sluice compile: unexpected argument %q; give manifests with -f PATH\n", args[0])
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "sluice compile: -o DIR is required")
		return 2
	}
	if err := emit.CheckMaglevTableSize(*maglevM); err != nil {
		fmt.Fprintf(stderr, "sluice compile: --maglev-table-size: %v\n", err)
		return 2
	}
	if *noBackends != "reject" && *noBackends != "drop" {
		fmt.Fprintf(stderr, "sluice compile: --no-backends %q: accepted are reject and drop\n", *noBackends)
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "sluice compile: %v\n", err)
			return 2
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	// A compile is a short batch job: let the heap grow to twice the
	// default before collecting (GOGC=200), and bound it with a soft limit
	// that keeps a large compile inside a CI runner's memory. GOGC and
	// GOMEMLIMIT override them.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	start := time.Now()
	set, res, ok := cf.load(stdin, stderr)
	if !ok {
		return 1
	}
	resolved := time.Now()
	// The decoded objects are not needed past this point; let them go
	// before the memory-hungry lowering.
	digest, objects := compiler.Digest(set), len(set.Objects)
	set.Objects, set.Source = nil, nil
	w, err := loader.NewOutputWriter(*out)
	if err != nil {
		fmt.Fprintf(stderr, "sluice compile: %v\n", err)
		return 1
	}
	w.Durable = *fsync
	build, err := emit.Build(res.cluster, emit.Options{Sizes: sizes, InputDigest: digest, Sink: w.Write, NodeFiles: loader.Listings, Shared: loader.SharedListings(), NoBackends: *noBackends, MaglevTableSize: *maglevM})
	if err != nil {
		w.Abort()
		fmt.Fprintf(stderr, "sluice compile: %v\nnothing was written\n", err)
		return 1
	}
	if err := w.Commit(); err != nil {
		fmt.Fprintf(stderr, "sluice compile: %v\nthe output directory was left as it was\n", err)
		return 1
	}
	if *stats != "" {
		b, _ := json.MarshalIndent(build.Stats, "", " ")
		if err := writeFile(*stats, append(b, '\n')); err != nil {
			fmt.Fprintf(stderr, "sluice compile: stats: %v\n", err)
			return 1
		}
	}
	if !*quiet {
		summary(stderr, set, objects, res, build, sizes, *out)
		fmt.Fprintf(stderr, "time: %.2fs reading and resolving, %.2fs lowering and writing\n", resolved.Sub(start).Seconds(), time.Since(resolved).Seconds())
	}
	return 0
}

// defaultMemoryLimit is sluice compile's soft heap limit.
const defaultMemoryLimit = 960 << 20

type compilerResult struct {
	cluster *ir.Cluster
}

func summary(w io.Writer, set *schema.Set, objects int, res *compilerResult, b *emit.Output, sizes emit.MapSizes, out string) {
	cl := res.cluster
	var kinds []string
	for k, n := range set.Read {
		kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "read %d objects from %d files: %s\n", objects, set.Files, strings.Join(kinds, ", "))
	if len(set.Skipped) > 0 {
		var sk []string
		total := 0
		for k, n := range set.Skipped {
			sk = append(sk, fmt.Sprintf("%d %s", n, k))
			total += n
		}
		sort.Strings(sk)
		fmt.Fprintf(w, "skipped %d objects of kinds sluice does not use: %s\n", total, strings.Join(sk, ", "))
	}
	st := b.Stats
	reserved := 0
	for _, id := range cl.Identities {
		if id.Reserved {
			reserved++
		}
	}
	fmt.Fprintf(w, "identities: %d (%d reserved, %d workload); policies: %d with %d rules; services: %d with %d frontends and %d backends\n",
		len(cl.Identities), reserved, len(cl.Identities)-reserved, st.Policies, st.Rules, st.Services, st.Frontends, st.Backends)
	for _, c := range cl.Collisions {
		fmt.Fprintf(w, "identity collision: %s\n", c)
	}
	for _, d := range cl.Dropped {
		fmt.Fprintf(w, "dropped (--drop-unenforceable): %s %s at %s: %s\n", d.Policy, d.Field, d.Source, d.Reason)
	}
	fmt.Fprintf(w, "shared maps: ipcache %d/%d, services %d/%d, backends %d/%d, revnat %d/%d, maglev %d/%d (%d CIDR regions)\n",
		st.Entries["ipcache"], sizes.IPCache, st.Entries["services"], sizes.Services, st.Entries["backends"], sizes.Backends, st.Entries["revnat"], sizes.RevNat,
		st.Entries["maglev"], sizes.Maglev, st.Regions)
	for _, n := range st.PerNode {
		fmt.Fprintf(w, "node %s: %d endpoints, %d policies, classes %d/%d, policy %d/%d, endpoints %d/%d, services_local %d; policy state %.1f KiB\n",
			n.Node, n.Endpoints, n.Policies, n.Entries["classes"], sizes.Classes, n.Entries["policy"], sizes.Policy, n.Entries["endpoints"], sizes.Endpoints, n.Entries["services_local"], float64(n.PolicyBytes)/1024)
	}
	fmt.Fprintf(w, "wrote %d node artifacts to %s (%d entries, %.1f MiB)\n", len(b.Artifacts), out, st.TotalEntries, float64(st.TotalBytes)/(1<<20))
}
