package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr strings.Builder
	if code := run([]string{"-o", dir, "-scale", "0.01", "-seed", "9"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"Pod                                500", "NetworkPolicy                      50"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, f := range []string{"nodes.yaml", "cluster.yaml", "ns-kube-system.yaml", "ns-default.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"-scale", "1"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: sluice-synth -o DIR") {
		t.Errorf("no -o: exit %d, stderr %q", code, stderr.String())
	}
}
