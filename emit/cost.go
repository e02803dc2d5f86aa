package emit

import (
	"sort"
)

// The cost model. Measured on this project's machines (KERNEL-NOTES): one
// inlined compare-and-branch costs about 0.5-0.75 ns, an LPM lookup
// 55-120 ns hot. An inlined entry takes up to three compares (class,
// protocol, port prefix), so a policy whose own layer has at most
// InlineMaxEntries entries is cheaper as generated code than as a policy
// map lookup (two lookups on a class miss): its endpoints get a program
// with the entries compiled in. The entries stay in the policy map too,
// for the generic program.
const (
	compareNs        = 0.75
	lpmLookupNs      = 55
	InlineMaxEntries = 24 // 24 entries × 3 compares × 0.75 ns ≈ 54 ns < one LPM lookup
)

// ExactIPCacheMin is the ipcache size from which the datapath looks /32
// peers up in a hash before the LPM trie. With hot caches the two cost
// about the same here; with cold ones an LPM miss costs about 2 µs and a
// hash miss 0.65 µs (KERNEL-NOTES), and a large ipcache is the one whose
// entries fall out of the caches.
const ExactIPCacheMin = 65536

func (p *plan) exactIPCache() bool {
	min := ExactIPCacheMin
	if p.exactMin > 0 {
		min = p.exactMin
	}
	return len(p.ipcache) >= min
}

// InlineEntry is a policy entry compiled into a program: Bits as in
// PolicyKey (72: any protocol, 80: any port, 80+n: the first n bits of
// Port); Class is ClassAny or a class.
type InlineEntry struct {
	Class  uint32 `json:"class"`
	Dir    uint8  `json:"dir"`
	Proto  uint8  `json:"proto"`
	Port   uint16 `json:"port"`
	Bits   uint32 `json:"bits"`
	Action uint8  `json:"action"`
	Rule   uint32 `json:"rule"`
}

// InlineEntriesOf reads a policy map image and returns, per policy
// number, its entries in the order an inline program tests them.
func InlineEntriesOf(image []byte) map[uint32][]InlineEntry {
	out := map[uint32][]InlineEntry{}
	rec := PolicyKeySize + PolicyValueSize
	for off := 0; off+rec <= len(image); off += rec {
		k, v := image[off:off+PolicyKeySize], image[off+PolicyKeySize:off+rec]
		policy := le.Uint32(k[4:])
		out[policy] = append(out[policy], InlineEntry{Bits: le.Uint32(k), Class: le.Uint32(k[8:]), Dir: k[12], Proto: k[13],
			Port: be.Uint16(k[14:]), Action: v[0], Rule: le.Uint32(v[4:])})
	}
	for _, es := range out {
		inlineOrder(es)
	}
	return out
}

// inlineOrder sorts entries as an inline program tests them.
func inlineOrder(out []InlineEntry) {
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Class == ClassAny) != (b.Class == ClassAny) {
			return b.Class == ClassAny
		}
		return a.Bits > b.Bits
	})
}

// inlineEntries returns a group's entries in the order a program must test
// them to give what the two LPM lookups give: class-specific entries
// before ClassAny ones, longer prefixes first; nil when the group is
// better served by the map.
func (np *nodePlan) inlineEntries(g *policyGroup) []InlineEntry {
	// np.policy is sorted by policy number: find this group's run.
	lo := sort.Search(len(np.policy), func(i int) bool { return np.policy[i].key.Policy >= g.id })
	hi := lo
	for hi < len(np.policy) && np.policy[hi].key.Policy == g.id {
		hi++
	}
	if hi-lo > InlineMaxEntries {
		return nil
	}
	var out []InlineEntry
	for _, e := range np.policy[lo:hi] {
		out = append(out, InlineEntry{Class: e.key.Class, Dir: e.key.Dir, Proto: e.key.Proto, Port: e.key.Port, Bits: e.key.Bits, Action: e.val.Action, Rule: e.val.Rule})
	}
	if float64(3*len(out))*compareNs >= lpmLookupNs {
		return nil
	}
	inlineOrder(out)
	if out == nil {
		out = []InlineEntry{} // inline, and empty: no verdict from this layer
	}
	return out
}
