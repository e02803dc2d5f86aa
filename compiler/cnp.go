package compiler

import (
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// ciliumPolicy resolves a CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy: one ir.Policy per rule of spec and specs.
func (c *compilation) ciliumPolicy(o *schema.Object) ([]ir.Policy, []ir.Dropped) {
	rules := ciliumRules(o)
	if len(rules) == 0 {
		c.errorf(o, "spec", "a %s needs spec (one rule) or specs (a list of rules)", o.Kind)
		return nil, nil
	}
	_, clusterwide := o.Obj.(*schema.CiliumClusterwideNetworkPolicy)
	cp := cnpContext{c: c, o: o, clusterwide: clusterwide}
	var out []ir.Policy
	for _, cr := range rules {
		if p, ok := cp.rule(cr.field, cr.rule); ok {
			out = append(out, p)
		}
	}
	return out, cp.dropped
}

type cnpContext struct {
	c           *compilation
	o           *schema.Object
	clusterwide bool
	dropped     []ir.Dropped
}

// unenforceable reports a construct the datapath cannot enforce: an error,
// or with --drop-unenforceable a dropped rule.
func (cp *cnpContext) unenforceable(ruleField, field, what string) {
	if cp.c.opts.DropUnenforceable {
		cp.dropped = append(cp.dropped, ir.Dropped{Policy: cp.o.Ref(), Field: ruleField, Reason: what + " (" + field + ")", Source: srcAt(cp.o, field)})
		return
	}
	cp.c.errorf(cp.o, field, "%s cannot be enforced by Sluice's L3/L4 datapath; remove it, or compile with --drop-unenforceable to drop the whole rule %s (it then allows nothing, never just its L4 part)", what, ruleField)
}

func (cp *cnpContext) rule(pfx string, r *schema.Rule) (ir.Policy, bool) {
	c, o := cp.c, cp.o
	before := len(c.diags)
	p := ir.Policy{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Source: srcAt(o, pfx)}
	// A host policy is validated in full, then dropped as a whole.
	hostPolicy := false
	subject, subjectField := r.EndpointSelector, pfx+".endpointSelector"
	switch {
	case r.NodeSelector != nil && r.EndpointSelector != nil:
		c.errorf(o, pfx+".nodeSelector", "a rule has either endpointSelector or nodeSelector, not both")
		return p, false
	case r.NodeSelector != nil:
		if !cp.clusterwide {
			c.errorf(o, pfx+".nodeSelector", "nodeSelector (host policy) is only valid in a CiliumClusterwideNetworkPolicy")
			return p, false
		}
		hostPolicy, subject, subjectField = true, r.NodeSelector, pfx+".nodeSelector"
	case r.EndpointSelector == nil:
		c.errorf(o, pfx, "a rule needs endpointSelector (which pods it applies to); use endpointSelector: {} for every pod")
		return p, false
	case cp.clusterwide && selectsHost(r.EndpointSelector):
		// reserved:host is the node itself: a host policy, like
		// nodeSelector, and no pod's.
		hostPolicy = true
	}
	if r.Ingress == nil && r.IngressDeny == nil && r.Egress == nil && r.EgressDeny == nil {
		// Cilium's CRD schema requires one of them.
		c.errorf(o, pfx, "a rule needs at least one of ingress, ingressDeny, egress or egressDeny (Cilium rejects a rule without them); to isolate pods, write ingress: [{}] or egress: [{}]")
		return p, false
	}
	matchLabels := subject.MatchLabels
	if !cp.clusterwide {
		matchLabels = cp.ownNamespace(subjectField, matchLabels)
	}
	sel, ok := c.selector(o, subjectField, matchLabels, subject.MatchExpressions, ciliumKeys)
	if !ok {
		return p, false
	}
	if !cp.clusterwide {
		sel = inNamespace(sel, o.Namespace)
	}
	p.Subject = sel
	// Cilium: default deny only in a direction the rule has rules for;
	// enableDefaultDeny can turn it off there, never on elsewhere.
	p.IsolateIngress = len(r.Ingress) > 0 || len(r.IngressDeny) > 0
	if v := r.EnableDefaultDeny.Ingress; v != nil && !*v {
		p.IsolateIngress = false
	}
	p.IsolateEgress = len(r.Egress) > 0 || len(r.EgressDeny) > 0
	if v := r.EnableDefaultDeny.Egress; v != nil && !*v {
		p.IsolateEgress = false
	}

	// Every rule is validated; one that holds an unenforceable construct
	// is then reported, or dropped whole.
	keep := func(f string, rule ir.Rule, ok bool, why, field string) {
		if why != "" {
			if !hostPolicy {
				cp.unenforceable(f, field, why)
			}
			return
		}
		if ok {
			p.Rules = append(p.Rules, rule)
		}
	}
	for i := range r.Ingress {
		in := &r.Ingress[i]
		f := fmt.Sprintf("%s.ingress[%d]", pfx, i)
		why, field := cp.portRulesUnenforceable(f, in.ToPorts)
		if in.Authentication != nil {
			why, field = "mutual authentication", f+".authentication"
		} else if in.Auth != nil {
			why, field = "mutual authentication", f+".auth"
		}
		peers, hasL3, pok := cp.ingressPeers(f, &in.IngressCommonRule)
		pok = cp.oneL3Kind(f, ingressL3(&in.IngressCommonRule)) && pok
		p.IngressRequires = append(p.IngressRequires, cp.requires(f+".fromRequires", in.FromRequires)...)
		ports := cp.ports(f, portLists(in.ToPorts), in.ICMPs)
		rule, rok := cp.makeRule(f, ir.Ingress, ir.Allow, peers, hasL3, pok, ports, len(in.ToPorts) > 0 || len(in.ICMPs) > 0)
		keep(f, rule, rok, why, field)
	}
	for i := range r.IngressDeny {
		in := &r.IngressDeny[i]
		f := fmt.Sprintf("%s.ingressDeny[%d]", pfx, i)
		peers, hasL3, pok := cp.ingressPeers(f, &in.IngressCommonRule)
		p.IngressDenyRequires = append(p.IngressDenyRequires, cp.requires(f+".fromRequires", in.FromRequires)...)
		ports := cp.ports(f, denyPortLists(in.ToPorts), in.ICMPs)
		rule, rok := cp.makeRule(f, ir.Ingress, ir.Deny, peers, hasL3, pok, ports, len(in.ToPorts) > 0 || len(in.ICMPs) > 0)
		keep(f, rule, rok, "", "")
	}
	for i := range r.Egress {
		eg := &r.Egress[i]
		f := fmt.Sprintf("%s.egress[%d]", pfx, i)
		why, field := cp.portRulesUnenforceable(f, eg.ToPorts)
		switch {
		case eg.Authentication != nil:
			why, field = "mutual authentication", f+".authentication"
		case eg.Auth != nil:
			why, field = "mutual authentication", f+".auth"
		case len(eg.ToFQDNs) > 0:
			why, field = "toFQDNs (DNS-name peers, enforced through a DNS proxy)", f+".toFQDNs"
		}
		peers, hasL3, pok := cp.egressPeers(f, &eg.EgressCommonRule)
		hasL3 = hasL3 || eg.ToFQDNs != nil
		pok = cp.oneL3Kind(f, egressL3(&eg.EgressCommonRule, len(eg.ToFQDNs))) && pok
		if len(eg.ToServices) > 0 && len(eg.ToPorts) > 0 {
			c.errorf(o, f+".toPorts", "toServices and toPorts cannot be combined in one rule (Cilium rejects it); the service's ports are those of its backends")
			pok = false
		}
		p.EgressRequires = append(p.EgressRequires, cp.requires(f+".toRequires", eg.ToRequires)...)
		ports := cp.ports(f, portLists(eg.ToPorts), eg.ICMPs)
		rule, rok := cp.makeRule(f, ir.Egress, ir.Allow, peers, hasL3, pok, ports, len(eg.ToPorts) > 0 || len(eg.ICMPs) > 0)
		keep(f, rule, rok, why, field)
	}
	for i := range r.EgressDeny {
		eg := &r.EgressDeny[i]
		f := fmt.Sprintf("%s.egressDeny[%d]", pfx, i)
		peers, hasL3, pok := cp.egressPeers(f, &eg.EgressCommonRule)
		p.EgressDenyRequires = append(p.EgressDenyRequires, cp.requires(f+".toRequires", eg.ToRequires)...)
		ports := cp.ports(f, denyPortLists(eg.ToPorts), eg.ICMPs)
		rule, rok := cp.makeRule(f, ir.Egress, ir.Deny, peers, hasL3, pok, ports, len(eg.ToPorts) > 0 || len(eg.ICMPs) > 0)
		keep(f, rule, rok, "", "")
	}
	if hostPolicy {
		cp.unenforceable(pfx, subjectField, "a host policy (the node's own traffic, selected by nodeSelector or reserved:host)")
		return p, false
	}
	return p, len(c.diags) == before
}

// makeRule applies Cilium's rules for rules without peers: no L3 selector
// but ports or ICMP types means every peer; no L3 and no L4 (`{}`) means
// nothing; L3 fields that select nothing (`fromEndpoints: []`) mean
// nothing. A rule that allows nothing still isolates its direction.
func (cp *cnpContext) makeRule(f string, dir ir.Direction, act ir.Action, peers []ir.Peer, hasL3, ok bool, ports []ir.Port, hasL4 bool) (ir.Rule, bool) {
	if !ok {
		return ir.Rule{}, false
	}
	if hasL3 && len(peers) == 0 {
		return ir.Rule{}, false
	}
	if !hasL3 && !hasL4 {
		return ir.Rule{}, false
	}
	if hasL4 && len(ports) == 0 {
		return ir.Rule{}, false // every port entry was invalid (reported)
	}
	return ir.Rule{Direction: dir, Action: act, Field: f, Peers: peers, Ports: ports, Source: srcAt(cp.o, f)}, true
}

// portRulesUnenforceable names the first construct of a rule's toPorts
// that needs a proxy, and its field; "" when there is none.
func (cp *cnpContext) portRulesUnenforceable(f string, prs []schema.PortRule) (why, field string) {
	for j := range prs {
		pr := &prs[j]
		pf := fmt.Sprintf("%s.toPorts[%d]", f, j)
		switch {
		case pr.Rules != nil:
			kind := "L7"
			switch {
			case pr.Rules.HTTP != nil:
				kind = "HTTP"
			case pr.Rules.Kafka != nil:
				kind = "Kafka"
			case pr.Rules.DNS != nil:
				kind = "DNS"
			}
			return kind + " rules (enforced by Cilium's L7 proxy)", pf + ".rules"
		case pr.Listener != nil:
			return "an Envoy listener redirect", pf + ".listener"
		case pr.ServerNames != nil:
			return "serverNames (TLS SNI matching)", pf + ".serverNames"
		case pr.TerminatingTLS != nil:
			return "TLS termination", pf + ".terminatingTLS"
		case pr.OriginatingTLS != nil:
			return "TLS origination", pf + ".originatingTLS"
		}
	}
	return "", ""
}

// scoped limits a peer selector to the pods Cilium lets it select
// (getEndpointSelector in Cilium's k8s policy parsing): a selector that
// names the namespace, or (in a namespaced policy) a namespace label,
// stands as written; otherwise it is limited to the policy's namespace,
// or in a clusterwide policy to pods. A fromEndpoints/toEndpoints
// selector on reserved labels stands as written; fromRequires/toRequires
// are scoped even then (Cilium adds no exception for them).
func (cp *cnpContext) scoped(sel ir.Selector, raw *schema.EndpointSelector, requires bool) ir.Selector {
	if !requires && hasKeyPrefix(raw, "reserved:") {
		return sel
	}
	if mentionsNamespace(sel) {
		return sel
	}
	if !cp.clusterwide && mentionsNamespaceLabel(sel) {
		return sel
	}
	if cp.clusterwide {
		// Cilium restricts an unscoped selector of a clusterwide policy to
		// pods: only they carry a namespace label.
		return sel.And(ir.Selector{Requirements: []ir.Requirement{{Key: ir.LabelNamespace, Op: ir.OpExists}}})
	}
	return inNamespace(sel, cp.o.Namespace)
}

func (cp *cnpContext) endpointPeers(f string, sels []schema.EndpointSelector, kind ir.PeerKind) ([]ir.Peer, bool) {
	var out []ir.Peer
	ok := true
	for i := range sels {
		sf := fmt.Sprintf("%s[%d]", f, i)
		sel, sok := cp.c.selector(cp.o, sf, sels[i].MatchLabels, sels[i].MatchExpressions, ciliumKeys)
		if !sok {
			ok = false
			continue
		}
		if kind == ir.PeerEndpoints {
			sel = cp.scoped(sel, &sels[i], false)
		}
		s := sel
		out = append(out, ir.Peer{Kind: kind, Selector: &s, Source: srcAt(cp.o, sf)})
	}
	return out, ok
}

// requires converts fromRequires/toRequires, scoped to the policy's
// namespace as fromEndpoints is (Cilium scopes both the same way).
func (cp *cnpContext) requires(f string, sels []schema.EndpointSelector) []ir.Selector {
	var out []ir.Selector
	for i := range sels {
		sf := fmt.Sprintf("%s[%d]", f, i)
		sel, ok := cp.c.selector(cp.o, sf, sels[i].MatchLabels, sels[i].MatchExpressions, ciliumKeys)
		if ok {
			out = append(out, cp.scoped(sel, &sels[i], true))
		}
	}
	return out
}

// ownNamespace removes a namespace match from a namespaced policy's
// endpointSelector: Cilium always applies such a policy in its own
// namespace, replacing the match (and warning, as Sluice does when the
// match named another namespace).
func (cp *cnpContext) ownNamespace(field string, ml map[string]string) map[string]string {
	var out map[string]string
	for _, k := range sortedKeys(ml) {
		if ciliumKey(k) != ir.LabelNamespace {
			continue
		}
		if ml[k] != cp.o.Namespace {
			cp.c.warnf(cp.o, field+".matchLabels"+schema.Key(k), "an endpointSelector of a CiliumNetworkPolicy always applies in the policy's own namespace %q; the match on namespace %q is replaced by it, as Cilium does (use a CiliumClusterwideNetworkPolicy to select pods of other namespaces)", cp.o.Namespace, ml[k])
		}
		if out == nil {
			out = maps.Clone(ml)
		}
		delete(out, k)
	}
	if out == nil {
		return ml
	}
	return out
}

func hasKeyPrefix(s *schema.EndpointSelector, prefix string) bool {
	for k := range s.MatchLabels {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	for _, e := range s.MatchExpressions {
		if strings.HasPrefix(e.Key, prefix) {
			return true
		}
	}
	return false
}

// selectsHost reports whether an endpointSelector names reserved:host.
func selectsHost(s *schema.EndpointSelector) bool { return hasKeyPrefix(s, ir.LabelHost) }

// l3Kind is one kind of peer field of a rule and how many entries it has.
type l3Kind struct {
	field string
	n     int
}

func ingressL3(r *schema.IngressCommonRule) []l3Kind {
	return []l3Kind{{"fromEndpoints", len(r.FromEndpoints)}, {"fromCIDR", len(r.FromCIDR)}, {"fromCIDRSet", len(r.FromCIDRSet)},
		{"fromEntities", len(r.FromEntities)}, {"fromNodes", len(r.FromNodes)}, {"fromGroups", len(r.FromGroups)}}
}

func egressL3(r *schema.EgressCommonRule, fqdns int) []l3Kind {
	return []l3Kind{{"toEndpoints", len(r.ToEndpoints)}, {"toCIDR", len(r.ToCIDR)}, {"toCIDRSet", len(r.ToCIDRSet)},
		{"toEntities", len(r.ToEntities)}, {"toServices", len(r.ToServices)}, {"toFQDNs", fqdns}, {"toGroups", len(r.ToGroups)}, {"toNodes", len(r.ToNodes)}}
}

// oneL3Kind refuses an allow rule with two kinds of peer, as Cilium's
// rule validation does ("Combining FromEndpoints and FromCIDR is not
// supported yet"): a union there would allow more than Cilium does.
func (cp *cnpContext) oneL3Kind(f string, kinds []l3Kind) bool {
	first := ""
	for _, k := range kinds {
		if k.n == 0 {
			continue
		}
		if first != "" {
			cp.c.errorf(cp.o, f+"."+k.field, "%s and %s cannot be combined in one rule (Cilium rejects it); write one rule for each", first, k.field)
			return false
		}
		first = k.field
	}
	return true
}

func (cp *cnpContext) ingressPeers(f string, r *schema.IngressCommonRule) (peers []ir.Peer, hasL3, ok bool) {
	ok = true
	hasL3 = r.FromEndpoints != nil || r.FromCIDR != nil || r.FromCIDRSet != nil || r.FromEntities != nil || r.FromNodes != nil || r.FromGroups != nil
	if len(r.FromGroups) > 0 {
		cp.c.errorf(cp.o, f+".fromGroups", "fromGroups (cloud provider groups) cannot be resolved ahead of time; list the CIDRs with fromCIDRSet instead")
		return nil, hasL3, false
	}
	ps, eok := cp.endpointPeers(f+".fromEndpoints", r.FromEndpoints, ir.PeerEndpoints)
	peers, ok = append(peers, ps...), ok && eok
	ps, cok := cp.cidrPeers(f+".fromCIDR", f+".fromCIDRSet", r.FromCIDR, r.FromCIDRSet)
	peers, ok = append(peers, ps...), ok && cok
	ps, nok := cp.entityPeers(f+".fromEntities", r.FromEntities)
	peers, ok = append(peers, ps...), ok && nok
	ps, dok := cp.endpointPeers(f+".fromNodes", r.FromNodes, ir.PeerNodes)
	peers, ok = append(peers, ps...), ok && dok
	return peers, hasL3, ok
}

func (cp *cnpContext) egressPeers(f string, r *schema.EgressCommonRule) (peers []ir.Peer, hasL3, ok bool) {
	ok = true
	hasL3 = r.ToEndpoints != nil || r.ToCIDR != nil || r.ToCIDRSet != nil || r.ToEntities != nil || r.ToNodes != nil || r.ToServices != nil || r.ToGroups != nil
	if len(r.ToGroups) > 0 {
		cp.c.errorf(cp.o, f+".toGroups", "toGroups (cloud provider groups) cannot be resolved ahead of time; list the CIDRs with toCIDRSet instead")
		return nil, hasL3, false
	}
	ps, eok := cp.endpointPeers(f+".toEndpoints", r.ToEndpoints, ir.PeerEndpoints)
	peers, ok = append(peers, ps...), ok && eok
	ps, cok := cp.cidrPeers(f+".toCIDR", f+".toCIDRSet", r.ToCIDR, r.ToCIDRSet)
	peers, ok = append(peers, ps...), ok && cok
	ps, nok := cp.entityPeers(f+".toEntities", r.ToEntities)
	peers, ok = append(peers, ps...), ok && nok
	ps, dok := cp.endpointPeers(f+".toNodes", r.ToNodes, ir.PeerNodes)
	peers, ok = append(peers, ps...), ok && dok
	ps, sok := cp.servicePeers(f+".toServices", r.ToServices)
	peers, ok = append(peers, ps...), ok && sok
	return peers, hasL3, ok
}

// ciliumCIDR parses a Cilium CIDR, where a bare address means /32 (/128).
func (cp *cnpContext) ciliumCIDR(field, s string) (netip.Prefix, bool) {
	if ip, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
		return netip.PrefixFrom(ip, ip.BitLen()), true
	}
	return cp.c.prefix(cp.o, field, s)
}

func (cp *cnpContext) cidrPeers(fCIDR, fSet string, cidrs []string, sets []schema.CIDRRule) ([]ir.Peer, bool) {
	var out []ir.Peer
	ok := true
	for i, s := range cidrs {
		f := fmt.Sprintf("%s[%d]", fCIDR, i)
		if p, pok := cp.ciliumCIDR(f, s); pok {
			out = append(out, ir.Peer{Kind: ir.PeerCIDR, CIDR: p, Source: srcAt(cp.o, f)})
		} else {
			ok = false
		}
	}
	for i := range sets {
		cs := &sets[i]
		f := fmt.Sprintf("%s[%d]", fSet, i)
		if cs.CIDRGroupRef != "" || cs.CIDRGroupSelector != nil {
			cp.c.errorf(cp.o, f, "CIDR groups (cidrGroupRef, cidrGroupSelector) refer to CiliumCIDRGroup objects, which Sluice does not read; write the CIDRs out with cidr and except")
			ok = false
			continue
		}
		if cs.Cidr == "" {
			cp.c.errorf(cp.o, f+".cidr", "cidr is required")
			ok = false
			continue
		}
		p, pok := cp.ciliumCIDR(f+".cidr", cs.Cidr)
		if !pok {
			ok = false
			continue
		}
		peer := ir.Peer{Kind: ir.PeerCIDR, CIDR: p, Source: srcAt(cp.o, f)}
		for j, e := range cs.ExceptCIDRs {
			ef := fmt.Sprintf("%s.except[%d]", f, j)
			ex, eok := cp.ciliumCIDR(ef, e)
			if !eok {
				ok = false
				continue
			}
			if !strictlyInside(ex, p) {
				cp.c.errorf(cp.o, ef, "except %s must be a strict subset of cidr %s", ex, p)
				ok = false
				continue
			}
			peer.Except = append(peer.Except, ex)
		}
		out = append(out, peer)
	}
	return out, ok
}

// entityAliases are accepted entities that select nothing in this
// datapath (ingress: Cilium's ingress proxy; none).
var entityAliases = map[string]string{"ingress": "ingress", "none": "none"}

func (cp *cnpContext) entityPeers(f string, ents []string) ([]ir.Peer, bool) {
	var out []ir.Peer
	ok := true
	for i, e := range ents {
		ef := fmt.Sprintf("%s[%d]", f, i)
		name := e
		if a, found := entityAliases[e]; found {
			name = a
		} else if !contains(ir.Entities, e) {
			cp.c.errorf(cp.o, ef, "unknown entity %q; accepted: %s", e, strings.Join(ir.Entities, ", "))
			ok = false
			continue
		}
		out = append(out, ir.Peer{Kind: ir.PeerEntity, Entity: name, Source: srcAt(cp.o, ef)})
	}
	return out, ok
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// servicePeers resolves toServices as Cilium does: a service with a
// selector stands for its pods; one without, for its backend addresses
// (which, as CIDRs, never select pods).
func (cp *cnpContext) servicePeers(f string, svcs []schema.Service) ([]ir.Peer, bool) {
	var out []ir.Peer
	ok := true
	for i := range svcs {
		s := &svcs[i]
		sf := fmt.Sprintf("%s[%d]", f, i)
		var match func(o *schema.Object, svc *corev1.Service) bool
		switch {
		case s.K8sService != nil:
			name, ns := s.K8sService.ServiceName, s.K8sService.Namespace
			if name == "" {
				cp.c.errorf(cp.o, sf+".k8sService.serviceName", "serviceName is required")
				ok = false
				continue
			}
			match = func(o *schema.Object, svc *corev1.Service) bool {
				return o.Name == name && (ns == "" || o.Namespace == ns)
			}
		case s.K8sServiceSelector != nil:
			sel, sok := cp.c.selector(cp.o, sf+".k8sServiceSelector.selector", s.K8sServiceSelector.Selector.MatchLabels, s.K8sServiceSelector.Selector.MatchExpressions, ciliumKeys)
			if !sok {
				ok = false
				continue
			}
			ns := s.K8sServiceSelector.Namespace
			match = func(o *schema.Object, svc *corev1.Service) bool {
				return (ns == "" || o.Namespace == ns) && sel.Matches(svc.Labels)
			}
		default:
			continue // Cilium: an empty entry selects no service
		}
		for _, so := range cp.c.serviceObjs {
			svc := so.Obj.(*corev1.Service)
			if !match(so, svc) {
				continue
			}
			if len(svc.Spec.Selector) > 0 {
				sel := ir.Selector{}
				for k, v := range svc.Spec.Selector {
					sel.Requirements = append(sel.Requirements, ir.Requirement{Key: k, Op: ir.OpIn, Values: []string{v}})
				}
				sel = inNamespace(sel, so.Namespace)
				out = append(out, ir.Peer{Kind: ir.PeerEndpoints, Selector: &sel, Source: srcAt(cp.o, sf)})
				continue
			}
			for _, ip := range cp.c.backendIPs[so.Namespace+"/"+so.Name] {
				out = append(out, ir.Peer{Kind: ir.PeerCIDR, CIDR: netip.PrefixFrom(ip, ip.BitLen()), Source: srcAt(cp.o, sf)})
			}
		}
	}
	return out, ok
}

type portList struct {
	field string
	ports []schema.PortProtocol
}

func portLists(prs []schema.PortRule) []portList {
	var out []portList
	for _, pr := range prs {
		out = append(out, portList{ports: pr.Ports})
	}
	return out
}

func denyPortLists(prs []schema.PortDenyRule) []portList {
	var out []portList
	for _, pr := range prs {
		out = append(out, portList{ports: pr.Ports})
	}
	return out
}

// ports converts toPorts and icmps. ANY (or no protocol) means TCP, UDP
// and SCTP, as in Cilium; port "0" or none means every port.
func (cp *cnpContext) ports(f string, lists []portList, icmps []schema.ICMPRule) []ir.Port {
	c, o := cp.c, cp.o
	if len(lists) > 0 && len(icmps) > 0 {
		c.errorf(o, f+".icmps", "icmps and toPorts cannot be in the same rule (Cilium rejects it); write two rules")
		return nil
	}
	var out []ir.Port
	for j, l := range lists {
		// A port rule without ports adds no port: Cilium merges a rule
		// port by port, so toPorts: [{}] allows (or denies) nothing.
		for k, pp := range l.ports {
			pf := fmt.Sprintf("%s.toPorts[%d].ports[%d]", f, j, k)
			var protos []ir.Proto
			switch strings.ToUpper(pp.Protocol) {
			case "", "ANY":
				protos = []ir.Proto{ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP}
			case "TCP":
				protos = []ir.Proto{ir.ProtoTCP}
			case "UDP":
				protos = []ir.Proto{ir.ProtoUDP}
			case "SCTP":
				protos = []ir.Proto{ir.ProtoSCTP}
			default:
				ext, found := extendedProtocols[strings.ToUpper(pp.Protocol)]
				if !found {
					c.errorf(o, pf+".protocol", "unknown protocol %q; accepted: TCP, UDP, SCTP, ANY, and without ports VRRP, IGMP, GRE, IPIP, ESP, AH (use icmps for ICMP)", pp.Protocol)
					continue
				}
				if pp.Port != "" && pp.Port != "0" {
					c.errorf(o, pf+".port", "protocol %s has no ports; leave port out or set it to 0", pp.Protocol)
					continue
				}
				protos = []ir.Proto{ext}
			}
			if pp.Protocol != strings.ToUpper(pp.Protocol) {
				c.errorf(o, pf+".protocol", "protocol %q must be upper case: %s", pp.Protocol, strings.ToUpper(pp.Protocol))
				continue
			}
			port := ir.Port{Source: srcAt(o, pf)}
			switch n, err := strconv.Atoi(pp.Port); {
			case pp.Port == "" || (err == nil && n == 0):
				port.Port, port.EndPort = 0, 65535
			case err == nil:
				if n < 0 || n > 65535 {
					c.errorf(o, pf+".port", "port %d out of range; accepted: 0 (all ports), 1-65535 or a port name", n)
					continue
				}
				port.Port, port.EndPort = uint16(n), uint16(n)
				if pp.EndPort != 0 {
					if pp.EndPort < int32(n) || pp.EndPort > 65535 {
						c.errorf(o, pf+".endPort", "endPort %d must be between port %d and 65535", pp.EndPort, n)
						continue
					}
					port.EndPort = uint16(pp.EndPort)
				}
			default:
				// Cilium matches port names case-insensitively.
				name := strings.ToLower(pp.Port)
				if errs := validation.IsValidPortName(name); len(errs) > 0 {
					c.errorf(o, pf+".port", "invalid port %q: expected 0 (all ports), a number 1-65535 or a port name (%s)", pp.Port, strings.Join(errs, "; "))
					continue
				}
				port.Name, port.Port, port.EndPort = name, 0, 0
			}
			for _, pr := range protos {
				q := port
				q.Proto = pr
				out = append(out, q)
			}
		}
	}
	for j, ic := range icmps {
		for k, fl := range ic.Fields {
			ff := fmt.Sprintf("%s.icmps[%d].fields[%d]", f, j, k)
			proto := ir.ProtoICMP
			switch fl.Family {
			case "", "IPv4":
			case "IPv6":
				proto = ir.ProtoICMPv6
			default:
				c.errorf(o, ff+".family", "unknown family %q; accepted: IPv4, IPv6", fl.Family)
				continue
			}
			if fl.Type == nil {
				c.errorf(o, ff+".type", "type is required: an ICMP type number 0-255 or a name such as EchoRequest")
				continue
			}
			t, tok := icmpType(*fl.Type, proto)
			if !tok {
				c.errorf(o, ff+".type", "unknown ICMP type %q for %s; accepted: 0-255 or one of %s", fl.Type.String(), familyName(proto), strings.Join(icmpNames(proto), ", "))
				continue
			}
			out = append(out, ir.Port{Proto: proto, Port: uint16(t), EndPort: uint16(t), Source: srcAt(o, ff)})
		}
	}
	return out
}

// extendedProtocols are the IP protocols without ports that Cilium
// accepts in toPorts (with enable-extended-ip-protocols).
var extendedProtocols = map[string]ir.Proto{"VRRP": 112, "IGMP": 2, "GRE": 47, "IPIP": 4, "ESP": 50, "AH": 51}

func familyName(p ir.Proto) string {
	if p == ir.ProtoICMPv6 {
		return "IPv6"
	}
	return "IPv4"
}

var icmpv4Types = map[string]uint8{"EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
	"RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11, "ParameterProblem": 12, "Timestamp": 13,
	"TimestampReply": 14, "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43}

var icmpv6Types = map[string]uint8{"DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
	"EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
	"MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134, "NeighborSolicitation": 135,
	"NeighborAdvertisement": 136, "RedirectMessage": 137, "RouterRenumbering": 138, "ICMPNodeInformationQuery": 139,
	"ICMPNodeInformationResponse": 140, "InverseNeighborDiscoverySolicitation": 141, "InverseNeighborDiscoveryAdvertisement": 142,
	"HomeAgentAddressDiscoveryRequest": 144, "HomeAgentAddressDiscoveryReply": 145, "MobilePrefixSolicitation": 146,
	"MobilePrefixAdvertisement": 147, "DuplicateAddressRequestCodeSuffix": 157, "DuplicateAddressConfirmationCodeSuffix": 158,
	"ExtendedEchoRequest": 160, "ExtendedEchoReply": 161}

func icmpType(v intstr.IntOrString, proto ir.Proto) (uint8, bool) {
	if v.Type == intstr.Int {
		return uint8(v.IntVal), v.IntVal >= 0 && v.IntVal <= 255
	}
	if n, err := strconv.Atoi(v.StrVal); err == nil {
		return uint8(n), n >= 0 && n <= 255
	}
	table := icmpv4Types
	if proto == ir.ProtoICMPv6 {
		table = icmpv6Types
	}
	t, ok := table[v.StrVal]
	return t, ok
}

func icmpNames(proto ir.Proto) []string {
	table := icmpv4Types
	if proto == ir.ProtoICMPv6 {
		table = icmpv6Types
	}
	var names []string
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
