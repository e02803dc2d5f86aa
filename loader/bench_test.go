package loader

import (
	"strings"
	"testing"
)

// The datapath benchmark runs (few repeats: timing is make bench's job)
// and its programs return what each path must.
func TestBenchDatapathRuns(t *testing.T) {
	requireBPF(t)
	var b strings.Builder
	cases := []DatapathBenchCase{{"floor", 0, 0}, {"established", 1000, 10}, {"new", 1000, 10}, {"new inline", 1000, 10}, {"new", 1000, 100}}
	if err := BenchDatapath(&b, cases, 10); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "established") || strings.Count(b.String(), "\n") < 5 {
		t.Errorf("output:\n%s", b.String())
	}
}
