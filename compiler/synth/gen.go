package synth

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"slices"
)

// gen is the one source of randomness of a generation. Every choice is drawn
// from it in a fixed order, so a seed names a cluster.
type gen struct {
	r *rand.Rand
}

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, 0x736c75696365))} // "sluice"
}

func (g *gen) intn(n int) int { return g.r.IntN(n) }

// between returns an integer in [lo, hi].
func (g *gen) between(lo, hi int) int { return lo + g.r.IntN(hi-lo+1) }

// pct reports true with probability p percent.
func (g *gen) pct(p int) bool { return g.r.IntN(100) < p }

func pick[T any](g *gen, xs []T) T { return xs[g.r.IntN(len(xs))] }

// weighted returns an index into weights, with probability proportional to
// its weight.
func (g *gen) weighted(weights []int) int {
	sum := 0
	for _, w := range weights {
		sum += w
	}
	n := g.r.IntN(sum)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	panic("unreachable")
}

// suffixAlphabet is the alphabet of generated Kubernetes name suffixes
// (k8s.io/apimachinery/pkg/util/rand): no vowels, no 0, 1, 3.
const suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789"

func (g *gen) suffix(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = suffixAlphabet[g.r.IntN(len(suffixAlphabet))]
	}
	return string(b)
}

// uid returns a random (version 4) UUID.
func (g *gen) uid() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.r.Uint64())
	binary.BigEndian.PutUint64(b[8:], g.r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// skewed returns a weight from a long-tailed mix: mostly small, sometimes
// large, the way replica counts and namespace sizes are in real clusters.
// Integer only, so the result does not depend on floating-point libraries.
func (g *gen) skewed() int {
	switch n := g.r.IntN(100); {
	case n < 55:
		return g.between(1, 4)
	case n < 87:
		return g.between(5, 20)
	case n < 98:
		return g.between(21, 90)
	default:
		return g.between(100, 400)
	}
}

// apportion splits total into len(weights) parts proportional to the
// weights, by largest remainder, ties to the lower index.
func apportion(total int, weights []int) []int {
	out := make([]int, len(weights))
	sum := 0
	for _, w := range weights {
		sum += w
	}
	if sum == 0 || total <= 0 {
		return out
	}
	type rem struct{ r, i int }
	rs := make([]rem, len(weights))
	given := 0
	for i, w := range weights {
		out[i] = total * w / sum
		given += out[i]
		rs[i] = rem{total * w % sum, i}
	}
	slices.SortFunc(rs, func(a, b rem) int {
		if c := cmp.Compare(b.r, a.r); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	for k := 0; k < total-given; k++ {
		out[rs[k].i]++
	}
	return out
}

// pairs builds a mapping from alternating keys and values, sorted by key.
func pairs(kvs ...string) obj {
	o := make(obj, 0, len(kvs)/2)
	for i := 0; i+1 < len(kvs); i += 2 {
		o = append(o, kv{kvs[i], kvs[i+1]})
	}
	slices.SortStableFunc(o, func(a, b kv) int { return cmp.Compare(a.k, b.k) })
	return o
}
