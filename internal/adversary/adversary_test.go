package adversary

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	clusters = flag.Int("clusters", envInt("SLUICE_ADVERSARY_CLUSTERS", 60), "generated clusters to check (make fuzz raises it)")
	seedBase = flag.Int64("seed", int64(envInt("SLUICE_ADVERSARY_SEED", 1)), "seed of the first cluster; the others follow")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// checker returns a checker that uses the kernel when it can: without
// root the datapath part is skipped with a note, except under CI=true,
// where it is a failure. SLUICE_ADVERSARY_KERNEL=0 leaves it out (quick
// exploration with many clusters).
func checker(t testing.TB) *Checker {
	if os.Getenv("SLUICE_ADVERSARY_KERNEL") == "0" {
		t.Log("SLUICE_ADVERSARY_KERNEL=0: comparing the oracle with the evaluator only")
		return &Checker{}
	}
	if os.Geteuid() == 0 {
		return &Checker{Kernel: true}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the datapath comparison needs root (BPF_PROG_TEST_RUN), and CI=true makes a missing privilege a failure")
	}
	t.Log("not root: comparing the oracle with the evaluator only; the datapath part needs root")
	return &Checker{}
}

func run(t testing.TB, ck *Checker, c *Case) Result {
	res, err := ck.Run(c)
	if errors.Is(err, ErrNoKernel) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Log("the kernel refused the programs for lack of privilege; comparing with the evaluator only")
		ck.Kernel = false
		res, err = ck.Run(c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// report shrinks the first case of a class and describes it.
func report(ck *Checker, c *Case, d Disagreement) string {
	small := ck.Shrink(c, d)
	return fmt.Sprintf("first seen with seed %d: %s\nminimal case (seed %d):\n%s", c.Seed, d, c.Seed, small.YAML())
}

// TestAdversary generates clusters, some of them hostile, and compares
// every verdict three ways: the oracle, Sluice's evaluator and the
// kernel. Any disagreement fails, once per class, with the seed and a
// shrunk manifest that shows it.
func TestAdversary(t *testing.T) {
	ck := checker(t)
	type class struct {
		n     int
		first Disagreement
		c     *Case
	}
	var mu sync.Mutex
	classes := map[string]*class{}
	verdicts, refused, limited := 0, 0, 0
	seeds := make(chan int64)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for seed := range seeds {
				c := Generate(seed)
				res := run(t, ck, c)
				mu.Lock()
				verdicts += res.Verdicts
				if res.Refused {
					refused++
				}
				if res.Limited {
					limited++
				}
				for _, d := range res.Disagreements {
					cl := classes[d.Class]
					if cl == nil {
						cl = &class{first: d, c: c}
						classes[d.Class] = cl
					}
					cl.n++
				}
				mu.Unlock()
			}
		})
	}
	for i := range *clusters {
		seeds <- *seedBase + int64(i)
	}
	close(seeds)
	wg.Wait()
	where := "oracle, evaluator and kernel"
	if !ck.Kernel {
		where = "oracle and evaluator"
	}
	t.Logf("%d clusters from seed %d (%d to be refused, %d at a documented limitation): %d verdicts compared (%s)", *clusters, *seedBase, refused, limited, verdicts, where)
	if *clusters >= 50 && verdicts < 3000 {
		t.Errorf("only %d verdicts from %d clusters: the generator asks too little", verdicts, *clusters)
	}
	names := make([]string, 0, len(classes))
	for name := range classes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cl := classes[name]
		t.Errorf("%s (%d times)\n%s", name, cl.n, report(ck, cl.c, cl.first))
	}
}

// FuzzAdversary checks the cluster of one seed; under go test -fuzz the
// seed is the fuzzed input.
func FuzzAdversary(f *testing.F) {
	for _, seed := range []int64{7, 1009, 65537} {
		f.Add(seed)
	}
	ck := checker(f)
	f.Fuzz(func(t *testing.T, seed int64) {
		c := Generate(seed)
		res := run(t, ck, c)
		if len(res.Disagreements) > 0 {
			var b strings.Builder
			for i, d := range res.Disagreements {
				if i == 5 {
					fmt.Fprintf(&b, "... and %d more\n", len(res.Disagreements)-i)
					break
				}
				fmt.Fprintf(&b, "%s\n", d)
			}
			t.Fatalf("seed %d: %d disagreements:\n%s%s", seed, len(res.Disagreements), b.String(), report(ck, c, res.Disagreements[0]))
		}
	})
}

// The generator is deterministic: the same seed gives the same text and
// queries, so a printed seed reproduces a failure.
func TestGenerateDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		a, b := Generate(seed), Generate(seed)
		if a.YAML() != b.YAML() || fmt.Sprint(a.Queries) != fmt.Sprint(b.Queries) {
			t.Fatalf("seed %d: two generations differ", seed)
		}
	}
}
