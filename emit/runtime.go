package emit

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"strings"

	"github.com/sluicenet/sluice/ir"
)

// RuntimeTable is a node's runtime.json: what its agent needs to enforce a
// pod that the compile did not place on the node — created since, or
// restarted with a new address — until the next compile lists it.
//
// The agent resolves the pod by namespace and name: first among the
// node's listed pods (kind Pod: a pod that came back with a new address),
// then by the name its owner template gives its pods (see Resolve). The
// policy numbers are this artifact's; the pod's ipcache entry takes its
// region from the longest prefix of the ipcache that holds its address
// (RuntimeIPCacheValue), and the classes map holds the keys of every
// runtime identity in every region of the node's pod CIDRs, so that its
// peers' rules here see it as they would see it compiled in. Other nodes
// learn of it at the next compile.
type RuntimeTable struct {
	NodeIndex uint16            `json:"nodeIndex"`
	NodeIP    netip.Addr        `json:"nodeIP"`
	Workloads []RuntimeWorkload `json:"workloads"` // by namespace, kind, name
}

// RuntimeWorkload is the endpoint entry a new pod of a workload gets.
type RuntimeWorkload struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"` // Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job
	Name      string `json:"name"`
	Identity  uint32 `json:"identity"`
	Policy    uint32 `json:"policy"`
	Shared    uint32 `json:"shared,omitempty"`
	Flags     uint32 `json:"flags"` // EndpointIngressEnforced, EndpointEgressEnforced, EndpointDenyRules
}

// Endpoint is the workload's endpoints map value.
func (w RuntimeWorkload) Endpoint() EndpointValue {
	return EndpointValue{Identity: w.Identity, Policy: w.Policy, Shared: w.Shared, Flags: w.Flags}
}

// InitEndpoint is the endpoints map value of a pod no workload accounts
// for: the reserved init identity, under no policy of this node (peers'
// rules see it as init, which only entity selectors match).
var InitEndpoint = EndpointValue{Identity: ir.IdentityInit}

func (np *nodePlan) runtimeTable() RuntimeTable {
	t := RuntimeTable{NodeIndex: np.idx, NodeIP: np.p.tunnel[np.node]}
	add := func(kind string, e *ir.Endpoint, name string) {
		ids := np.epLayers[e]
		w := RuntimeWorkload{Namespace: e.Namespace, Kind: kind, Name: name, Identity: e.Identity, Policy: ids[0], Shared: ids[1], Flags: np.flags(e)}
		t.Workloads = append(t.Workloads, w)
	}
	// Listed pods by name: those that come back under the same name (bare
	// pods, StatefulSets'); the others' replacements are found by their
	// owner template.
	for e := range np.epLayers {
		if len(e.IPs) > 0 && (e.Owner == "" || strings.HasPrefix(e.Owner, "StatefulSet/")) {
			add("Pod", e, e.Name)
		}
	}
	for _, r := range np.runtime {
		add(r.workload.Kind, r.ep, r.workload.Name)
	}
	sort.Slice(t.Workloads, func(i, j int) bool {
		a, b := t.Workloads[i], t.Workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return t
}

// Resolve finds the workload of a pod by namespace and name: a listed pod
// of that name, else the owner template whose pods' names it has —
// Deployment NAME-HASH-XXXXX, ReplicaSet, DaemonSet and Job NAME-XXXXX,
// StatefulSet NAME-ORDINAL — the longest such name winning.
func (t *RuntimeTable) Resolve(namespace, pod string) (RuntimeWorkload, bool) {
	var best RuntimeWorkload
	found := false
	for _, w := range t.Workloads {
		if w.Namespace != namespace {
			continue
		}
		if w.Kind == "Pod" {
			if w.Name == pod {
				return w, true
			}
			continue
		}
		rest, ok := strings.CutPrefix(pod, w.Name+"-")
		if !ok || !podNameOf(w.Kind, rest) {
			continue
		}
		if !found || len(w.Name) > len(best.Name) {
			best, found = w, true
		}
	}
	return best, found
}

// podNameOf says whether rest is what the controller of kind appends to
// its name (and a dash) to name a pod.
func podNameOf(kind, rest string) bool {
	switch kind {
	case "StatefulSet":
		return rest != "" && strings.Trim(rest, "0123456789") == ""
	case "Deployment":
		hash, suffix, ok := strings.Cut(rest, "-")
		return ok && hash != "" && isAlnum(hash) && randomSuffix(suffix)
	case "ReplicaSet", "DaemonSet", "Job":
		return randomSuffix(rest)
	}
	return false
}

// randomSuffix is the five characters of utilrand.String that Kubernetes
// appends to generated names.
func randomSuffix(s string) bool { return len(s) == 5 && isAlnum(s) }

func isAlnum(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// RuntimeIPCacheValue is the ipcache value of a pod added at run time on
// the node of t: its identity, this node, and the region of the longest
// prefix shorter than /32 in the ipcache image that holds its address.
func (t *RuntimeTable) RuntimeIPCacheValue(ipcache []byte, addr netip.Addr, identity uint32) []byte {
	var region uint16
	best := -1
	for off := 0; off+IPCacheKeySize+IPCacheValueSize <= len(ipcache); off += IPCacheKeySize + IPCacheValueSize {
		bits := int(binary.LittleEndian.Uint32(ipcache[off:]))
		if bits >= 32 || bits <= best {
			continue
		}
		if netip.PrefixFrom(netip.AddrFrom4([4]byte(ipcache[off+4:off+8])), bits).Contains(addr) {
			best = bits
			region = binary.LittleEndian.Uint16(ipcache[off+IPCacheKeySize+4:])
		}
	}
	return IPCacheValue{Identity: identity, Region: region, Node: t.NodeIndex, Tunnel: t.NodeIP, Flags: FlagEndpoint}.Bytes()
}
