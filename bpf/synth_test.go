package bpf_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/compiler/synth"
	"github.com/sluicenet/sluice/emit"
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
	set, cl, diags := compiler.Load([]string{dir}, strings.NewReader(""), compiler.Options{})
	if len(diags) > 0 {
		var b strings.Builder
		diags.Format(&b, 10, set.Source)
		t.Fatal(b.String())
	}
	out, err := emit.Build(cl, emit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkKernelSample(t, cl, out, 6, 7)
}
