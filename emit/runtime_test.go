package emit

import (
	"net/netip"
	"testing"
)

func TestRuntimeResolve(t *testing.T) {
	tab := RuntimeTable{Workloads: []RuntimeWorkload{
		{Namespace: "ns", Kind: "Deployment", Name: "web", Identity: 1},
		{Namespace: "ns", Kind: "Deployment", Name: "web-api", Identity: 2},
		{Namespace: "ns", Kind: "StatefulSet", Name: "db", Identity: 3},
		{Namespace: "ns", Kind: "DaemonSet", Name: "agent", Identity: 4},
		{Namespace: "ns", Kind: "Job", Name: "migrate", Identity: 5},
		{Namespace: "ns", Kind: "ReplicaSet", Name: "legacy", Identity: 6},
		{Namespace: "ns", Kind: "Pod", Name: "db-0", Identity: 7},
		{Namespace: "other", Kind: "Deployment", Name: "web", Identity: 8},
	}}
	for _, tc := range []struct {
		ns, pod string
		want    uint32 // 0: unresolved
	}{
		{"ns", "web-5d8f7c9b4-abcde", 1},
		{"ns", "web-api-6f7d8-x9z2k", 2}, // the longer name wins
		{"ns", "db-1", 3},
		{"ns", "db-0", 7}, // a listed pod by name first
		{"ns", "agent-k2x9p", 4},
		{"ns", "migrate-q8w7e", 5},
		{"ns", "legacy-abcde", 6},
		{"other", "web-5d8f7c9b4-abcde", 8},
		{"ns", "web-abcde", 0},           // a Deployment's pods carry the template hash
		{"ns", "web-5d8f7c9b4-ABCDE", 0}, // generated suffixes are lower case
		{"ns", "db-x", 0},                // a StatefulSet's ordinal is a number
		{"ns", "agent-k2x9", 0},          // five characters
		{"missing", "web-5d8f7c9b4-abcde", 0},
	} {
		w, ok := tab.Resolve(tc.ns, tc.pod)
		if got := map[bool]uint32{true: w.Identity}[ok]; got != tc.want {
			t.Errorf("Resolve(%s, %s) = identity %d, want %d", tc.ns, tc.pod, got, tc.want)
		}
	}
}

func TestRuntimeIPCacheValue(t *testing.T) {
	rec := func(bits uint32, a [4]byte, region uint16) []byte {
		k := IPCacheKey{}.Bytes()
		le.PutUint32(k, bits)
		copy(k[4:], a[:])
		return append(k, IPCacheValue{Identity: 2, Region: region}.Bytes()...)
	}
	var image []byte
	image = append(image, rec(0, [4]byte{}, 0)...)
	image = append(image, rec(24, [4]byte{10, 0, 0, 0}, 1)...)
	image = append(image, rec(29, [4]byte{10, 0, 0, 8}, 2)...)
	image = append(image, rec(32, [4]byte{10, 0, 0, 9}, 3)...) // a /32 is never the region source
	tab := RuntimeTable{NodeIndex: 4}
	for addr, want := range map[string]uint16{"10.0.0.2": 1, "10.0.0.9": 2, "10.0.0.10": 2, "10.0.1.1": 0} {
		v := tab.RuntimeIPCacheValue(image, mustAddr(addr), 77)
		if got := le.Uint16(v[4:]); got != want || le.Uint32(v) != 77 || le.Uint16(v[6:]) != 4 || v[12] != FlagEndpoint {
			t.Errorf("%s: value %x, want region %d, identity 77, node 4, endpoint flag", addr, v, want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
