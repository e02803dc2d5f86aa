package compiler

import (
	"fmt"
	"net/netip"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// networkPolicy resolves a Kubernetes NetworkPolicy as the API reference
// defines it.
func (c *compilation) networkPolicy(o *schema.Object) (ir.Policy, bool) {
	np := o.Obj.(*networkingv1.NetworkPolicy)
	before := len(c.diags)
	p := ir.Policy{Kind: "NetworkPolicy", Namespace: o.Namespace, Name: np.Name, Source: src(o)}
	sel, _ := c.selector(o, "spec.podSelector", np.Spec.PodSelector.MatchLabels, np.Spec.PodSelector.MatchExpressions, k8sKeys)
	p.Subject = inNamespace(sel, o.Namespace)

	// policyTypes defaults: Ingress always; Egress when there are egress
	// rules.
	if len(np.Spec.PolicyTypes) == 0 {
		p.IsolateIngress = true
		p.IsolateEgress = len(np.Spec.Egress) > 0
	}
	for i, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.IsolateIngress = true
		case networkingv1.PolicyTypeEgress:
			p.IsolateEgress = true
		default:
			c.errorf(o, fmt.Sprintf("spec.policyTypes[%d]", i), "unknown policy type %q; accepted: Ingress, Egress", t)
		}
	}
	// Rules of a direction that policyTypes leaves out have no effect, as
	// in every conformant implementation.
	if p.IsolateIngress {
		for i, r := range np.Spec.Ingress {
			field := fmt.Sprintf("spec.ingress[%d]", i)
			rule := ir.Rule{Direction: ir.Ingress, Action: ir.Allow, Field: field, Source: srcAt(o, field)}
			rule.Peers = c.npPeers(o, field+".from", r.From)
			rule.Ports = c.npPorts(o, field+".ports", r.Ports)
			p.Rules = append(p.Rules, rule)
		}
	}
	if p.IsolateEgress {
		for i, r := range np.Spec.Egress {
			field := fmt.Sprintf("spec.egress[%d]", i)
			rule := ir.Rule{Direction: ir.Egress, Action: ir.Allow, Field: field, Source: srcAt(o, field)}
			rule.Peers = c.npPeers(o, field+".to", r.To)
			rule.Ports = c.npPorts(o, field+".ports", r.Ports)
			p.Rules = append(p.Rules, rule)
		}
	}
	return p, len(c.diags) == before
}

func (c *compilation) npPeers(o *schema.Object, field string, peers []networkingv1.NetworkPolicyPeer) []ir.Peer {
	var out []ir.Peer
	for i, pe := range peers {
		f := fmt.Sprintf("%s[%d]", field, i)
		s := srcAt(o, f)
		switch {
		case pe.IPBlock != nil:
			if pe.PodSelector != nil || pe.NamespaceSelector != nil {
				c.errorf(o, f+".ipBlock", "ipBlock cannot be combined with podSelector or namespaceSelector in one peer; write them as separate peers")
				continue
			}
			cidr, ok := c.prefix(o, f+".ipBlock.cidr", pe.IPBlock.CIDR)
			if !ok {
				continue
			}
			peer := ir.Peer{Kind: ir.PeerCIDR, CIDR: cidr, InCluster: true, Source: s}
			for j, e := range pe.IPBlock.Except {
				ef := fmt.Sprintf("%s.ipBlock.except[%d]", f, j)
				ex, ok := c.prefix(o, ef, e)
				if !ok {
					continue
				}
				if !strictlyInside(ex, cidr) {
					c.errorf(o, ef, "except %s must be a strict subset of cidr %s", ex, cidr)
					continue
				}
				peer.Except = append(peer.Except, ex)
			}
			out = append(out, peer)
		case pe.PodSelector == nil && pe.NamespaceSelector == nil:
			c.errorf(o, f, "a peer needs podSelector, namespaceSelector or ipBlock; to allow every source or destination, leave out the from/to list")
		default:
			var sel ir.Selector
			ok := true
			if pe.PodSelector != nil {
				var pok bool
				sel, pok = c.selector(o, f+".podSelector", pe.PodSelector.MatchLabels, pe.PodSelector.MatchExpressions, k8sKeys)
				ok = ok && pok
			}
			if pe.NamespaceSelector != nil {
				nsSel, nok := c.selector(o, f+".namespaceSelector", pe.NamespaceSelector.MatchLabels, pe.NamespaceSelector.MatchExpressions, k8sKeys)
				ok = ok && nok
				sel = sel.And(namespaceSelector(nsSel))
			} else {
				sel = inNamespace(sel, o.Namespace)
			}
			if ok {
				out = append(out, ir.Peer{Kind: ir.PeerEndpoints, Selector: &sel, Source: s})
			}
		}
	}
	return out
}

// strictlyInside reports whether a is a proper subset of b.
func strictlyInside(a, b netip.Prefix) bool {
	return a.Addr().Is4() == b.Addr().Is4() && a.Bits() > b.Bits() && b.Contains(a.Addr())
}

func (c *compilation) npPorts(o *schema.Object, field string, ports []networkingv1.NetworkPolicyPort) []ir.Port {
	var out []ir.Port
	for i, pp := range ports {
		f := fmt.Sprintf("%s[%d]", field, i)
		proto := ir.ProtoTCP
		if pp.Protocol != nil {
			var ok bool
			if proto, ok = c.k8sProto(o, f+".protocol", string(*pp.Protocol)); !ok {
				continue
			}
		}
		port := ir.Port{Proto: proto, Port: 0, EndPort: 65535, Source: srcAt(o, f)}
		if pp.Port != nil {
			if pp.Port.Type == intstr.String {
				if !c.portName(o, f+".port", pp.Port.StrVal) {
					continue
				}
				if pp.EndPort != nil {
					c.errorf(o, f+".endPort", "endPort needs a numeric port; a named port cannot start a range")
					continue
				}
				port.Name, port.Port, port.EndPort = pp.Port.StrVal, 0, 0
			} else {
				n := pp.Port.IntVal
				if n < 1 || n > 65535 {
					c.errorf(o, f+".port", "port %d out of range; accepted: 1-65535 or a port name", n)
					continue
				}
				port.Port, port.EndPort = uint16(n), uint16(n)
				if pp.EndPort != nil {
					e := *pp.EndPort
					if e < n || e > 65535 {
						c.errorf(o, f+".endPort", "endPort %d must be between port %d and 65535", e, n)
						continue
					}
					port.EndPort = uint16(e)
				}
			}
		} else if pp.EndPort != nil {
			c.errorf(o, f+".endPort", "endPort needs port to be set")
			continue
		}
		out = append(out, port)
	}
	return out
}

// portName validates an IANA service name as a named port.
func (c *compilation) portName(o *schema.Object, field, name string) bool {
	if errs := validation.IsValidPortName(name); len(errs) > 0 {
		c.errorf(o, field, "invalid port %q: expected a number 1-65535 or a port name (%s)", name, strings.Join(errs, "; "))
		return false
	}
	return true
}
