package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicenet/sluice/ir"
)

// BenchResult is the time to bring a lab up and down, and the rate of
// probes through it.
type BenchResult struct {
	Name                string
	Nodes, Pods         int
	Up, Down            time.Duration
	Probes              int
	ProbesPerSecond     float64
	DeniedProbeFraction float64
}

// Bench brings up a lab from manifests, probes the matrix of (at most
// sample of) its pods on 80/TCP, and takes it down, timing each.
func Bench(name string, manifests []string, binDir string, sample int) (BenchResult, error) {
	res := BenchResult{Name: name}
	root, err := os.MkdirTemp("", "sluice-lab-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	start := time.Now()
	l, err := Up(Config{Name: "bench", Manifests: manifests, Root: root, BinDir: binDir})
	if err != nil {
		return res, err
	}
	res.Up = time.Since(start)
	res.Nodes, res.Pods = len(l.Nodes()), len(l.Pods())
	p := l.Prober()
	start = time.Now()
	pods := l.Pods()
	if len(pods) > sample {
		step := len(pods) / sample
		var some []Pod
		for i := 0; i < len(pods) && len(some) < sample; i += step {
			some = append(some, pods[i])
		}
		pods = some
	}
	m, err := p.MatrixOf(pods, []ir.PortProto{{Port: 80, Proto: ir.ProtoTCP}})
	took := time.Since(start)
	p.Close()
	if err != nil {
		l.Down()
		return res, err
	}
	res.Probes = len(m)
	res.ProbesPerSecond = float64(len(m)) / took.Seconds()
	for _, e := range m {
		if e.Verdict == ir.Deny {
			res.DeniedProbeFraction++
		}
	}
	res.DeniedProbeFraction /= float64(max(len(m), 1))
	start = time.Now()
	err = l.Down()
	res.Down = time.Since(start)
	return res, err
}

// PrintBench prints the lab table.
func PrintBench(w io.Writer, rows []BenchResult) {
	fmt.Fprintln(w, "sluice lab (up: compile, namespaces, sluice-cni for every pod, agents serving; probes: the 80/TCP matrix of up to 20 pods,")
	fmt.Fprintln(w, "  real connections, a denied one waits out the 300 ms timeout):")
	fmt.Fprintf(w, "  %-34s %6s %6s %9s %9s %8s %12s %8s\n", "lab", "nodes", "pods", "up", "down", "probes", "probes/s", "denied")
	for _, r := range rows {
		fmt.Fprintf(w, "  %-34s %6d %6d %9s %9s %8d %12.0f %7.0f%%\n", r.Name, r.Nodes, r.Pods, r.Up.Round(10*time.Millisecond), r.Down.Round(10*time.Millisecond),
			r.Probes, r.ProbesPerSecond, 100*r.DeniedProbeFraction)
	}
}

// ScaleManifests writes a cluster of nodes × podsPerNode pods (in ten
// namespaces, each isolated but for its own pods) to dir.
func ScaleManifests(dir string, nodes, podsPerNode int) (string, error) {
	var b strings.Builder
	for n := range nodes {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Node\nmetadata: {name: n%d}\nspec: {podCIDR: 10.70.%d.0/24}\nstatus: {addresses: [{type: InternalIP, address: 192.168.70.%d}]}\n---\n", n, n, n+1)
	}
	for ns := range 10 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns%d, labels: {team: t%d}}\n---\n", ns, ns)
		fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: own, namespace: ns%d}\nspec: {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}\n---\n", ns)
	}
	for n := range nodes {
		for i := range podsPerNode {
			fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: p%d-%d, namespace: ns%d, labels: {app: a%d}}\nspec: {nodeName: n%d, containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}\nstatus: {podIP: 10.70.%d.%d}\n---\n",
				n, i, i%10, i%5, n, n, i+10)
		}
	}
	path := filepath.Join(dir, "scale.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
