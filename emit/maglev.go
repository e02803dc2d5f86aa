package emit

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// DefaultMaglevTableSize is M, the entries of each frontend's Maglev
// lookup table: a prime, Cilium's default.
const DefaultMaglevTableSize = 16381

// CheckMaglevTableSize says whether m can be a Maglev table size.
func CheckMaglevTableSize(m int) error {
	if m < 251 || m > 131071 || !big.NewInt(int64(m)).ProbablyPrime(0) {
		return fmt.Errorf("Maglev table size %d: it must be a prime between 251 and 131071 (Cilium's sizes: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)", m)
	}
	return nil
}

// MaglevTable fills a Maglev lookup table of m entries (m prime) with
// indexes into backends, which are named by stable strings (address, port
// and protocol): the table depends only on the set of names, not their
// order, so every node that compiles the same service computes the same
// table, and removing one of N backends moves little more than the 1/N of
// entries it held (Eisenbud et al., NSDI 2016). Each backend gets m/N
// entries, give or take one. Nil for no backends.
func MaglevTable(backends []string, m int) []uint32 {
	n := len(backends)
	if n == 0 {
		return nil
	}
	// Turns go in name order, so that input order does not matter.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(backends[a], backends[b]) })
	offset, skip, next := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	for i, b := range backends {
		offset[i] = maglevHash(b, 0x5bd1e995) % uint64(m)
		skip[i] = maglevHash(b, 0x27d4eb2f)%uint64(m-1) + 1
	}
	table := make([]uint32, m)
	filled := make([]bool, m)
	for done := 0; ; {
		for _, i := range order {
			c := (offset[i] + next[i]*skip[i]) % uint64(m)
			for filled[c] {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % uint64(m)
			}
			table[c], filled[c] = uint32(i), true
			next[i]++
			if done++; done == m {
				return table
			}
		}
	}
}

// maglevHash is FNV-1a over the name, seeded: fixed and documented, so
// tables do not change with the toolchain.
func maglevHash(s string, seed uint64) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	// A final mix: FNV's low bits alone spread consecutive names poorly.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}
