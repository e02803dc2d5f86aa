package adversary

import (
	"strings"
	"time"

	"github.com/sluicenet/sluice/internal/oracle"
)

// shrinkBudget bounds the time one shrink may take (with the kernel, each
// attempt loads the programs); the case so far is returned when it runs
// out.
const shrinkBudget = 20 * time.Second

// Shrink returns a smaller case that still shows a disagreement of the
// same class (on the same query, if it has one): whole documents first,
// then any list item or mapping entry, greedily, until nothing more can
// go. The result is written in plain style when that still shows it.
func (ck *Checker) Shrink(c *Case, d Disagreement) *Case {
	small := &Case{Seed: c.Seed, Docs: c.Docs, Queries: c.Queries}
	if d.Query != nil {
		small.Queries = []oracle.Query{*d.Query}
	}
	// A mistake the evaluator shows shrinks without loading programs.
	run := ck
	if !needsKernel(d.Class) {
		run = &Checker{}
	}
	want := evaluatorKind(d.Class)
	deadline := time.Now().Add(shrinkBudget)
	fails := func(docs []mapping, plain bool) bool {
		if time.Now().After(deadline) {
			return false
		}
		res, err := run.Run(&Case{Seed: c.Seed, Docs: docs, Queries: small.Queries, Plain: plain})
		if err != nil {
			return false
		}
		for _, got := range res.Disagreements {
			if evaluatorKind(got.Class) == want {
				return true
			}
		}
		return false
	}
	if !fails(small.Docs, false) {
		return small // not reproducible alone (it should be: cases are deterministic)
	}
	for changed := true; changed; {
		changed = false
		for i := 0; i < len(small.Docs); i++ {
			docs := append(append([]mapping(nil), small.Docs[:i]...), small.Docs[i+1:]...)
			if fails(docs, false) {
				small.Docs, changed = docs, true
				i--
			}
		}
		for i := range small.Docs {
			for k := 0; ; {
				doc, ok := deleteAt(small.Docs[i], k, true)
				if !ok {
					break
				}
				docs := append([]mapping(nil), small.Docs...)
				docs[i] = doc.(mapping)
				if fails(docs, false) {
					small.Docs, changed = docs, true
					continue // the same position now holds the next candidate
				}
				k++
			}
		}
	}
	small.Plain = fails(small.Docs, true)
	return small
}

// needsKernel reports whether a class shows only when the programs are
// built and loaded.
func needsKernel(class string) bool {
	for _, p := range []string{"the kernel", "the datapath", "emit"} {
		if strings.HasPrefix(class, p) {
			return true
		}
	}
	return false
}

// evaluatorKind is the class of a disagreement with the evaluator's part
// of it (shared with the kernel or not) made one.
func evaluatorKind(class string) string {
	for _, who := range []string{evaluatorAndKernel, "the evaluator "} {
		if k, ok := strings.CutPrefix(class, who); ok {
			return "the evaluator " + k
		}
	}
	return class
}

// protected keys keep a document an object.
var protected = map[string]bool{"apiVersion": true, "kind": true, "metadata": true, "name": true}

// deleteAt returns v without its k-th deletable part (in pre-order), and
// whether there was one. top marks a document root, whose apiVersion,
// kind and metadata stay, as does metadata's name.
func deleteAt(v any, k int, top bool) (any, bool) {
	out, left := del(v, &k, top, false)
	return out, left
}

func del(v any, k *int, top, inMeta bool) (any, bool) {
	switch x := v.(type) {
	case mapping:
		for i, e := range x {
			keep := top && protected[e.k] || inMeta && e.k == "name"
			if !keep {
				if *k == 0 {
					return append(append(mapping(nil), x[:i]...), x[i+1:]...), true
				}
				*k--
			}
			if sub, ok := del(e.v, k, false, top && e.k == "metadata"); ok {
				out := append(mapping(nil), x...)
				out[i] = kv{e.k, sub}
				return out, true
			}
		}
	case seq:
		for i, e := range x {
			if *k == 0 {
				return append(append(seq(nil), x[:i]...), x[i+1:]...), true
			}
			*k--
			if sub, ok := del(e, k, false, false); ok {
				out := append(seq(nil), x...)
				out[i] = sub
				return out, true
			}
		}
	}
	return v, false
}
