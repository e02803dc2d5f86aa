package bpf_test

import (
	"path/filepath"
	"testing"

	"github.com/sluicenet/sluice/compiler/synth"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/loader"
)

// A slice of the benchmark's synthetic cluster — every policy construct
// it generates, on realistic label sets — loads through the verifier on
// every node, and the kernel agrees with the evaluator on a sample of
// pods, peers and ports.
func TestSyntheticClusterInTheKernel(t *testing.T) {
	requireBPF(t)
	dir := filepath.Join(t.TempDir(), "synth")
	if _, err := synth.Generate(synth.Full().Scale(0.05), dir); err != nil {
		t.Fatal(err)
	}
	cl := resolve(t, "", dir)
	checkKernelSample(t, cl, build(t, cl, emit.Options{}), 6, 7)
}

// The busiest node of the full-size benchmark cluster (50,000 pods): its
// maps load and every one of its programs — the generic pair and one pair
// per policy the cost model compiled inline — passes the verifier. The
// other nodes' programs have the same shapes; `sluice verify` on a compile
// output checks them all.
func TestFullSizeNodeVerifies(t *testing.T) {
	requireBPF(t)
	if testing.Short() {
		t.Skip("full-size cluster skipped in -short mode")
	}
	dir := filepath.Join(t.TempDir(), "synth")
	if _, err := synth.Generate(synth.Full(), dir); err != nil {
		t.Fatal(err)
	}
	cl := resolve(t, "", dir)
	busiest, err := emit.BuildBusiest(cl, emit.Options{NodeFiles: loader.Listings})
	if err != nil {
		t.Fatal(err)
	}
	la, err := loader.FromBuild(busiest)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := loader.LoadArtifact(la)
	if err != nil {
		t.Fatalf("node %s: %v", busiest.Node, err)
	}
	defer dp.Close()
	if len(dp.Programs) < 100 {
		t.Errorf("node %s: %d programs loaded; expected the generic pair and many inline ones", busiest.Node, len(dp.Programs))
	}
	t.Logf("node %s: %d endpoints, %d programs through the verifier", busiest.Node, busiest.Stats.Endpoints, len(dp.Programs))
}
