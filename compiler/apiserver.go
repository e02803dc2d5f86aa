package compiler

import (
	"net/netip"
	"slices"

	"github.com/sluicenet/sluice/ir"
)

// apiserverIPs returns the addresses given with --apiserver-ip, sorted
// and without duplicates.
func apiserverIPs(given []netip.Addr) []netip.Addr {
	ips := slices.Clone(given)
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips)
}

// checkAPIServerEntity warns at every kube-apiserver entity peer when the
// cluster gives the entity no address: such a peer selects nothing, which
// a user who wrote "allow to the API server" must hear about.
func (c *compilation) checkAPIServerEntity(cl *ir.Cluster) {
	if len(ir.APIServerIPs(cl)) > 0 {
		return
	}
	for i := range cl.Policies {
		p := &cl.Policies[i]
		for j := range p.Rules {
			r := &p.Rules[j]
			for k := range r.Peers {
				pe := &r.Peers[k]
				if pe.Kind == ir.PeerEntity && pe.Entity == "kube-apiserver" {
					c.warnings = append(c.warnings, ir.Warning{Source: pe.Source, Field: r.Field,
						Message: "the kube-apiserver entity selects no address: the input has no default/kubernetes Service with endpoints; add its EndpointSlice or Endpoints, or give the API server's addresses with --apiserver-ip"})
				}
			}
		}
	}
}
