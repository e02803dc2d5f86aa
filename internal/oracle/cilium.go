package oracle

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/schema"
)

// The CiliumNetworkPolicy subset, after Cilium's documentation and its
// pkg/policy (rule validation, ParseToCiliumRule's namespace scoping,
// fromRequires folding, entities).

// ciliumRule is one rule (spec, or an item of specs) of a
// CiliumNetworkPolicy (namespace set) or CiliumClusterwideNetworkPolicy
// (namespace "").
type ciliumRule struct {
	ref       string
	namespace string
	r         *schema.Rule
	valid     bool
}

func (o *Oracle) addCilium(obj *schema.Object, namespace string, spec *schema.Rule, specs []schema.Rule) {
	if spec == nil && len(specs) == 0 {
		o.refuse(obj, "", "a Cilium policy without spec or specs")
		return
	}
	add := func(field string, r *schema.Rule) {
		cr := &ciliumRule{ref: obj.Ref() + " " + field, namespace: namespace, r: r}
		cr.valid = o.checkCiliumRule(obj, cr)
		o.cilium = append(o.cilium, cr)
	}
	if spec != nil {
		add("spec", spec)
	}
	for i := range specs {
		add(fmt.Sprintf("specs[%d]", i), &specs[i])
	}
}

// checkCiliumRule refuses what Cilium rejects (Rule.Validate), host
// policies (not enforced by Sluice yet), and what the oracle does not
// model.
func (o *Oracle) checkCiliumRule(obj *schema.Object, cr *ciliumRule) bool {
	r := cr.r
	ok := true
	field := strings.TrimPrefix(cr.ref, obj.Ref()+" ")
	bad := func(sub, why string) {
		f := field
		if sub != "" {
			f += "." + sub
		}
		o.refuse(obj, f, why)
		ok = false
	}
	switch {
	case r.NodeSelector != nil:
		bad("nodeSelector", "a host policy (nodeSelector)")
	case r.EndpointSelector == nil:
		bad("", "a rule without endpointSelector")
	case hasKey(r.EndpointSelector, "reserved:host"):
		bad("endpointSelector", "a host policy (endpointSelector on reserved:host)")
	}
	if len(r.Ingress)+len(r.IngressDeny)+len(r.Egress)+len(r.EgressDeny) == 0 {
		bad("", "a rule without ingress, ingressDeny, egress or egressDeny")
	}
	if r.EndpointSelector != nil {
		if _, err := ciliumSelector(r.EndpointSelector, false); err != nil {
			bad("endpointSelector", "a selector the oracle does not model: "+err.Error())
		}
	}
	checkCommon := func(sub string, l3 map[string]int, sels [][]schema.EndpointSelector, ports []schema.PortProtocol) {
		var kinds []string
		for k, n := range l3 {
			if n > 0 {
				kinds = append(kinds, k)
			}
		}
		sort.Strings(kinds)
		if len(kinds) > 1 {
			bad(sub, "a rule that combines "+strings.Join(kinds, " and ")+" (Cilium rejects it)")
		}
		for _, ss := range sels {
			for i := range ss {
				if _, err := ciliumSelector(&ss[i], false); err != nil {
					bad(sub, "a selector the oracle does not model: "+err.Error())
				}
			}
		}
		for _, pp := range ports {
			if _, _, _, _, err := ciliumPort(pp); err != nil {
				bad(sub, "a port the oracle does not model: "+err.Error())
			}
		}
	}
	for i := range r.Ingress {
		in := &r.Ingress[i]
		checkCommon(fmt.Sprintf("ingress[%d]", i), ingressL3(&in.IngressCommonRule), [][]schema.EndpointSelector{in.FromEndpoints, in.FromRequires}, allowPorts(in.ToPorts))
	}
	for i := range r.IngressDeny {
		in := &r.IngressDeny[i]
		checkCommon(fmt.Sprintf("ingressDeny[%d]", i), ingressL3(&in.IngressCommonRule), [][]schema.EndpointSelector{in.FromEndpoints, in.FromRequires}, denyPorts(in.ToPorts))
	}
	for i := range r.Egress {
		eg := &r.Egress[i]
		checkCommon(fmt.Sprintf("egress[%d]", i), egressL3(&eg.EgressCommonRule), [][]schema.EndpointSelector{eg.ToEndpoints, eg.ToRequires}, allowPorts(eg.ToPorts))
	}
	for i := range r.EgressDeny {
		eg := &r.EgressDeny[i]
		checkCommon(fmt.Sprintf("egressDeny[%d]", i), egressL3(&eg.EgressCommonRule), [][]schema.EndpointSelector{eg.ToEndpoints, eg.ToRequires}, denyPorts(eg.ToPorts))
	}
	return ok
}

// The L3 peer kinds of a rule that Cilium's validation counts; two
// non-empty ones in one rule are rejected.
func ingressL3(c *schema.IngressCommonRule) map[string]int {
	return map[string]int{"fromEndpoints": len(c.FromEndpoints), "fromCIDR": len(c.FromCIDR), "fromCIDRSet": len(c.FromCIDRSet),
		"fromEntities": len(c.FromEntities), "fromNodes": len(c.FromNodes), "fromGroups": len(c.FromGroups)}
}

func egressL3(c *schema.EgressCommonRule) map[string]int {
	return map[string]int{"toEndpoints": len(c.ToEndpoints), "toCIDR": len(c.ToCIDR), "toCIDRSet": len(c.ToCIDRSet),
		"toEntities": len(c.ToEntities), "toNodes": len(c.ToNodes), "toGroups": len(c.ToGroups), "toServices": len(c.ToServices)}
}

func allowPorts(prs []schema.PortRule) []schema.PortProtocol {
	var out []schema.PortProtocol
	for _, pr := range prs {
		out = append(out, pr.Ports...)
	}
	return out
}

func denyPorts(prs []schema.PortDenyRule) []schema.PortProtocol {
	var out []schema.PortProtocol
	for _, pr := range prs {
		out = append(out, pr.Ports...)
	}
	return out
}

// ciliumKey strips the k8s: or any: source of a selector key; other
// sources are refused (reserved: ones are not modelled in peer
// selectors).
func ciliumKey(k string) (string, error) {
	src, rest, found := strings.Cut(k, ":")
	if !found {
		return k, nil
	}
	switch src {
	case "k8s", "any":
		return rest, nil
	}
	return "", fmt.Errorf("label source %q of key %q is not modelled", src, k)
}

// ciliumSelector converts an endpoint selector over identity labels;
// ownNamespace leaves out a matchLabels entry on the namespace key, in
// any spelling (k8s:, any: or none): Cilium documents that a namespaced
// policy's endpointSelector "always applies in namespace of the policy
// resource, removing illegal namespace match" (ParseToCiliumRule's
// warning). Its code overwrites only the k8s: spelling, which would let
// another spelling select nothing, a policy silently without effect;
// Sluice follows the documented behaviour. matchExpressions entries stay
// and are ANDed.
func ciliumSelector(es *schema.EndpointSelector, ownNamespace bool) (labels.Selector, error) {
	ls := &metav1.LabelSelector{}
	for k, v := range es.MatchLabels {
		if key, _ := ciliumKey(k); ownNamespace && key == labelPodNamespace {
			continue
		}
		key, err := ciliumKey(k)
		if err != nil {
			return nil, err
		}
		// As a requirement, so that k8s:x and x stay two (Cilium ANDs
		// them).
		ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
	}
	for _, e := range es.MatchExpressions {
		key, err := ciliumKey(e.Key)
		if err != nil {
			return nil, err
		}
		e.Key = key
		ls.MatchExpressions = append(ls.MatchExpressions, e)
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// selectorKeys are the keys a selector names, sources stripped.
func selectorKeys(es *schema.EndpointSelector) []string {
	var keys []string
	for k := range es.MatchLabels {
		key, _ := ciliumKey(k)
		keys = append(keys, key)
	}
	for _, e := range es.MatchExpressions {
		key, _ := ciliumKey(e.Key)
		keys = append(keys, key)
	}
	return keys
}

func hasKey(es *schema.EndpointSelector, key string) bool {
	if _, ok := es.MatchLabels[key]; ok {
		return true
	}
	for _, e := range es.MatchExpressions {
		if e.Key == key {
			return true
		}
	}
	return false
}

// selects: the endpointSelector of a namespaced policy always applies in
// the policy's namespace (ParseToCiliumRule sets
// k8s:io.kubernetes.pod.namespace to it); a clusterwide one applies as
// written.
func (cr *ciliumRule) selects(p *pod) bool {
	if !cr.valid {
		return false
	}
	if cr.namespace != "" && p.namespace != cr.namespace {
		return false
	}
	sel, err := ciliumSelector(cr.r.EndpointSelector, cr.namespace != "")
	return err == nil && sel.Matches(p.identity)
}

func (o *Oracle) ciliumSelecting(p *pod) []*ciliumRule {
	var out []*ciliumRule
	for _, cr := range o.cilium {
		if cr.selects(p) {
			out = append(out, cr)
		}
	}
	return out
}

// isolates: a rule puts its endpoints in default deny for a direction in
// which it has rules, unless enableDefaultDeny turns that off; it never
// isolates a direction it has no rules for.
func (cr *ciliumRule) isolates(dir direction) bool {
	r := cr.r
	has, dd := len(r.Ingress)+len(r.IngressDeny) > 0, r.EnableDefaultDeny.Ingress
	if dir == egress {
		has, dd = len(r.Egress)+len(r.EgressDeny) > 0, r.EnableDefaultDeny.Egress
	}
	return has && (dd == nil || *dd)
}

// peerMatcher is a scoped endpoint selector.
type peerMatcher func(peer) bool

func allMatch(ms []peerMatcher, p peer) bool {
	for _, m := range ms {
		if !m(p) {
			return false
		}
	}
	return true
}

// scoped turns a fromEndpoints/toEndpoints/fromRequires/toRequires
// selector into a matcher as Cilium's getEndpointSelector scopes it: a
// selector that names the pod's namespace label is taken as written; so
// is, in a namespaced policy, one that names a namespace label
// (io.cilium.k8s.namespace.labels.*), which spans namespaces. Either may
// then match peers that are not pods, which have none of those labels.
// Otherwise a namespaced policy's selector is limited to its namespace,
// and a clusterwide policy's to pods of any namespace.
func (cr *ciliumRule) scoped(es *schema.EndpointSelector) peerMatcher {
	sel, err := ciliumSelector(es, false)
	if err != nil {
		return func(peer) bool { return false }
	}
	asWritten := false
	for _, k := range selectorKeys(es) {
		asWritten = asWritten || k == labelPodNamespace || cr.namespace != "" && strings.HasPrefix(k, prefixNamespaceLbls)
	}
	ns := cr.namespace
	return func(p peer) bool {
		if !asWritten && (p.pod == nil || ns != "" && p.pod.namespace != ns) {
			return false
		}
		return sel.Matches(p.selectorLabels())
	}
}

// requirements collects the fromRequires (toRequires) of every rule
// selecting the subject, for allow and for deny rules: each narrows every
// endpoint peer of the subject's rules of that kind.
func requirements(rules []*ciliumRule, dir direction) (allow, deny []peerMatcher) {
	collect := func(cr *ciliumRule, isDeny bool, out []peerMatcher) []peerMatcher {
		for _, rv := range cr.rulesOf(dir, isDeny) {
			for i := range rv.requires {
				out = append(out, cr.scoped(&rv.requires[i]))
			}
		}
		return out
	}
	for _, cr := range rules {
		allow, deny = collect(cr, false, allow), collect(cr, true, deny)
	}
	return allow, deny
}

// l3 is the peer part of a rule, whichever direction.
type l3 struct {
	endpoints []schema.EndpointSelector
	cidrs     []string
	cidrSets  []schema.CIDRRule
	entities  []string
}

// absent reports whether the rule names no L3 peer field at all; one
// given as an empty list (fromEndpoints: []) is present and selects
// nothing (cilium/cilium#29608).
func (l *l3) absent() bool {
	return l.endpoints == nil && l.cidrs == nil && l.cidrSets == nil && l.entities == nil
}

// matches: a rule without any L3 peer field matches every peer when it
// has ports (L4-only), and nothing when it has none (`{}`); requirements
// narrow endpoint peers only.
func (cr *ciliumRule) matches(l *l3, hasPorts bool, subject *pod, other peer, req []peerMatcher) bool {
	if l.absent() {
		return hasPorts
	}
	for i := range l.endpoints {
		if cr.scoped(&l.endpoints[i])(other) && allMatch(req, other) {
			return true
		}
	}
	for _, c := range l.cidrs {
		if cidrPeer(other, c, nil) {
			return true
		}
	}
	for _, cs := range l.cidrSets {
		if cidrPeer(other, cs.Cidr, cs.ExceptCIDRs) {
			return true
		}
	}
	for _, e := range l.entities {
		if entityMatches(e, subject, other) {
			return true
		}
	}
	return false
}

// cidrPeer: Cilium CIDR rules select addresses outside the cluster only,
// never a pod's or a node's.
func cidrPeer(p peer, cidr string, except []string) bool {
	return p.world() && inCIDR(p.ip, cidr, except)
}

// entityMatches follows Cilium's entity definitions for the peers an
// input without a kube-apiserver Service has.
func entityMatches(entity string, subject *pod, p peer) bool {
	switch entity {
	case "all":
		return true
	case "world":
		return p.world()
	case "world-ipv4":
		return p.world() && p.ip.Is4()
	case "world-ipv6":
		return p.world() && p.ip.Is6()
	case "cluster":
		return !p.world()
	case "host":
		return p.node != nil && p.node.name == subject.node
	case "remote-node":
		return p.node != nil && p.node.name != subject.node
	}
	return false
}

// ciliumPort parses a toPorts entry: the protocols it covers ("" and ANY:
// TCP, UDP and SCTP), the port range (0: every port) or a port name
// (matched case-insensitively).
func ciliumPort(pp schema.PortProtocol) (protos []corev1.Protocol, lo, hi int32, name string, err error) {
	switch pp.Protocol {
	case "", "ANY":
		protos = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	case "TCP", "UDP", "SCTP":
		protos = []corev1.Protocol{corev1.Protocol(pp.Protocol)}
	default:
		return nil, 0, 0, "", fmt.Errorf("protocol %q is not modelled", pp.Protocol)
	}
	if pp.Port == "" {
		return nil, 0, 0, "", fmt.Errorf("port must be specified")
	}
	if n, perr := strconv.Atoi(pp.Port); perr == nil {
		if n < 0 || n > 65535 || pp.EndPort != 0 && (n == 0 || pp.EndPort < int32(n) || pp.EndPort > 65535) {
			return nil, 0, 0, "", fmt.Errorf("port %s endPort %d is not modelled", pp.Port, pp.EndPort)
		}
		lo, hi = int32(n), int32(n)
		if n == 0 {
			lo, hi = 0, 65535
		} else if pp.EndPort != 0 {
			hi = pp.EndPort
		}
		return protos, lo, hi, "", nil
	}
	name = strings.ToLower(pp.Port)
	if errs := validation.IsValidPortName(name); len(errs) > 0 {
		return nil, 0, 0, "", fmt.Errorf("invalid port %q", pp.Port)
	}
	return protos, 0, 0, name, nil
}

func ciliumPortsMatch(ports []schema.PortProtocol, q Query, named []namedPort) bool {
	for _, pp := range ports {
		protos, lo, hi, name, err := ciliumPort(pp)
		if err != nil {
			continue
		}
		for _, proto := range protos {
			if portMatches(proto, lo, hi, name, q, named) {
				return true
			}
		}
	}
	return false
}

// ruleView is one allow or deny rule of a direction, whichever its type.
type ruleView struct {
	field    string
	peers    l3
	requires []schema.EndpointSelector
	hasPorts bool
	ports    []schema.PortProtocol
}

// rulesOf lists a rule's allow (or deny) rules of a direction.
func (cr *ciliumRule) rulesOf(dir direction, deny bool) []ruleView {
	r := cr.r
	var out []ruleView
	in := func(field string, c *schema.IngressCommonRule, n int, ports []schema.PortProtocol) {
		out = append(out, ruleView{field, l3{c.FromEndpoints, c.FromCIDR, c.FromCIDRSet, c.FromEntities}, c.FromRequires, n > 0, ports})
	}
	eg := func(field string, c *schema.EgressCommonRule, n int, ports []schema.PortProtocol) {
		out = append(out, ruleView{field, l3{c.ToEndpoints, c.ToCIDR, c.ToCIDRSet, c.ToEntities}, c.ToRequires, n > 0, ports})
	}
	switch {
	case dir == ingress && !deny:
		for i := range r.Ingress {
			in(fmt.Sprintf("ingress[%d]", i), &r.Ingress[i].IngressCommonRule, len(r.Ingress[i].ToPorts), allowPorts(r.Ingress[i].ToPorts))
		}
	case dir == ingress:
		for i := range r.IngressDeny {
			in(fmt.Sprintf("ingressDeny[%d]", i), &r.IngressDeny[i].IngressCommonRule, len(r.IngressDeny[i].ToPorts), denyPorts(r.IngressDeny[i].ToPorts))
		}
	case !deny:
		for i := range r.Egress {
			eg(fmt.Sprintf("egress[%d]", i), &r.Egress[i].EgressCommonRule, len(r.Egress[i].ToPorts), allowPorts(r.Egress[i].ToPorts))
		}
	default:
		for i := range r.EgressDeny {
			eg(fmt.Sprintf("egressDeny[%d]", i), &r.EgressDeny[i].EgressCommonRule, len(r.EgressDeny[i].ToPorts), denyPorts(r.EgressDeny[i].ToPorts))
		}
	}
	return out
}

// first reports the first allow (or deny) rule of a direction that
// matches: its ports (none: every port) and its peers.
func (cr *ciliumRule) first(dir direction, deny bool, subject *pod, other peer, q Query, named []namedPort, req []peerMatcher) (string, bool) {
	for _, rv := range cr.rulesOf(dir, deny) {
		if rv.hasPorts && !ciliumPortsMatch(rv.ports, q, named) {
			continue
		}
		if cr.matches(&rv.peers, rv.hasPorts, subject, other, req) {
			return cr.ref + "." + rv.field, true
		}
	}
	return "", false
}
