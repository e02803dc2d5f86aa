package synth

import (
	"fmt"
	"math"
	"strings"
)

// Params sizes a synthetic cluster. Counts are totals of objects written:
// Namespaces includes kube-system and default, Pods includes the CoreDNS pods,
// Services includes kubernetes and kube-dns, Endpoints counts EndpointSlice
// endpoints (one per address) over all slices, and CiliumPolicies counts
// CiliumNetworkPolicies plus CiliumClusterwideNetworkPolicies.
type Params struct {
	Seed            uint64
	Nodes           int
	Namespaces      int
	Pods            int
	Services        int
	Endpoints       int
	NetworkPolicies int
	CiliumPolicies  int
}

// Full is the size of the `make bench` cluster.
func Full() Params {
	return Params{
		Seed:            1,
		Nodes:           100,
		Namespaces:      1000,
		Pods:            50000,
		Services:        10000,
		Endpoints:       100000,
		NetworkPolicies: 5000,
		CiliumPolicies:  1000,
	}
}

// Smallest counts Generate accepts: a control-plane node and a worker;
// kube-system, default and one application namespace; the CoreDNS pod and one
// application pod; the kubernetes and kube-dns Services. Fewer endpoints than
// those two Services have are accepted but cannot be met.
const (
	minNodes      = 2
	minNamespaces = 3
	minPods       = 2
	minServices   = 2
	minEndpoints  = 2
)

// Scale multiplies every count by f, rounding to the nearest integer. Every
// count stays at least 1, and at least the smallest value Generate accepts
// (Nodes 2, Namespaces 3, Pods 2, Services 2, Endpoints 2: the API server and
// CoreDNS). The seed is kept.
func (p Params) Scale(f float64) Params {
	s := func(n, lo int) int {
		v := int(math.Round(float64(n) * f))
		return max(v, lo, 1)
	}
	return Params{
		Seed:            p.Seed,
		Nodes:           s(p.Nodes, minNodes),
		Namespaces:      s(p.Namespaces, minNamespaces),
		Pods:            s(p.Pods, minPods),
		Services:        s(p.Services, minServices),
		Endpoints:       s(p.Endpoints, minEndpoints),
		NetworkPolicies: s(p.NetworkPolicies, 1),
		CiliumPolicies:  s(p.CiliumPolicies, 1),
	}
}

// Address plan limits.
const (
	maxNodes     = 1<<16 - 2  // 10.255.0.0/16, host part 1..65534
	maxServices  = 1<<20 - 16 // 10.96.0.0/12 minus reserved addresses
	nodePortBase = 30000
	nodePortMax  = 32767
)

func (p Params) validate() error {
	var bad []string
	check := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			bad = append(bad, fmt.Sprintf("%s = %d, want %d..%d", name, v, lo, hi))
		}
	}
	check("Nodes", p.Nodes, minNodes, maxNodes)
	check("Namespaces", p.Namespaces, minNamespaces, 1<<20)
	check("Pods", p.Pods, minPods, 1<<24)
	check("Services", p.Services, minServices, maxServices)
	check("Endpoints", p.Endpoints, 0, 1<<26)
	check("NetworkPolicies", p.NetworkPolicies, 0, 1<<22)
	check("CiliumPolicies", p.CiliumPolicies, 0, 1<<22)
	if len(bad) > 0 {
		return fmt.Errorf("synth params: %s", strings.Join(bad, "; "))
	}
	return nil
}
