package emit

import (
	"fmt"
	"slices"
	"testing"
)

func maglevNames(n int) []string {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("10.0.%d.%d:8080/TCP", i/200, i%200+1))
	}
	return names
}

// The same backends in any order give the same table; each backend gets
// m/N entries give or take one; removing one of N moves about 1/N of the
// entries, and adding one back restores the table.
func TestMaglevTable(t *testing.T) {
	const m = DefaultMaglevTableSize
	for _, n := range []int{1, 2, 3, 10, 100} {
		names := maglevNames(n)
		table := MaglevTable(names, m)
		rev := slices.Clone(names)
		slices.Reverse(rev)
		tableRev := MaglevTable(rev, m)
		for i := range table {
			if names[table[i]] != rev[tableRev[i]] {
				t.Fatalf("n=%d: entry %d differs with the backends in another order", n, i)
			}
		}
		counts := make([]int, n)
		for _, b := range table {
			counts[b]++
		}
		lo, hi := slices.Min(counts), slices.Max(counts)
		if hi-lo > 1 || lo < m/n-1 {
			t.Errorf("n=%d: entries per backend from %d to %d, want %d give or take one", n, lo, hi, m/n)
		}
		if n < 2 {
			continue
		}
		// Remove one backend (the middle one by name).
		gone := names[n/2]
		fewer := slices.Delete(slices.Clone(names), n/2, n/2+1)
		after := MaglevTable(fewer, m)
		moved := 0
		for i := range table {
			if names[table[i]] != fewer[after[i]] {
				moved++
			}
		}
		share := float64(moved) / m
		t.Logf("n=%d: removing %s moved %.2f%% of entries (1/N = %.2f%%)", n, gone, 100*share, 100/float64(n))
		// At least the removed backend's share; more as N nears M/100
		// (the paper's figure 11): 1.06× at N=10, 2.3× at N=100 here.
		limit := 1.2
		if n*100 > m/2 {
			limit = 2.5
		}
		if share < 0.99/float64(n) || share > limit/float64(n) {
			t.Errorf("n=%d: removing one backend moved %.3f of the entries, want about 1/N = %.3f", n, share, 1/float64(n))
		}
	}
}

func TestCheckMaglevTableSize(t *testing.T) {
	for m, ok := range map[int]bool{16381: true, 251: true, 131071: true, 16384: false, 250: false, 1 << 20: false, 65521: true} {
		if err := CheckMaglevTableSize(m); (err == nil) != ok {
			t.Errorf("CheckMaglevTableSize(%d): %v", m, err)
		}
	}
}
