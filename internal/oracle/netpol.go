package oracle

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/schema"
)

// NetworkPolicy as the networking.k8s.io/v1 API reference defines it.

// selector converts a label selector; a nil selector matches nothing and
// an invalid one (refused at load) matches nothing.
func selector(ls *metav1.LabelSelector) labels.Selector {
	if ls == nil {
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return labels.Nothing()
	}
	return sel
}

// netpolSelects: spec.podSelector selects pods of the policy's namespace
// by their labels.
func (o *Oracle) netpolSelects(np *networkingv1.NetworkPolicy, p *pod) bool {
	return np.Namespace == p.namespace && selector(&np.Spec.PodSelector).Matches(p.labels)
}

// netpolIsolates: policyTypes, or when empty, Ingress always and Egress
// when the policy has egress rules.
func netpolIsolates(np *networkingv1.NetworkPolicy, dir direction) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return dir == ingress || len(np.Spec.Egress) > 0
	}
	want := networkingv1.PolicyTypeIngress
	if dir == egress {
		want = networkingv1.PolicyTypeEgress
	}
	for _, t := range np.Spec.PolicyTypes {
		if t == want {
			return true
		}
	}
	return false
}

// netpolAllows reports whether a rule of the policy, in a direction the
// policy isolates, allows the connection: the peer matches one of from
// (to), or the list is empty; the port matches one of ports, or the list
// is empty. Cilium's fromRequires/toRequires in force for the subject
// narrow pod peers here too: they are folded into every endpoint peer of
// the subject's allow rules, whatever policy kind holds them.
func (o *Oracle) netpolAllows(np *networkingv1.NetworkPolicy, dir direction, subject *pod, other peer, q Query, named []namedPort, req []peerMatcher) (string, bool) {
	if !o.netpolSelects(np, subject) || !netpolIsolates(np, dir) {
		return "", false
	}
	type rule struct {
		peers []networkingv1.NetworkPolicyPeer
		ports []networkingv1.NetworkPolicyPort
	}
	var rules []rule
	field := "ingress"
	if dir == ingress {
		for _, r := range np.Spec.Ingress {
			rules = append(rules, rule{r.From, r.Ports})
		}
	} else {
		field = "egress"
		for _, r := range np.Spec.Egress {
			rules = append(rules, rule{r.To, r.Ports})
		}
	}
	for i, r := range rules {
		if !netpolPortsMatch(r.ports, q, named) {
			continue
		}
		if len(r.peers) == 0 {
			return fmt.Sprintf("NetworkPolicy %s/%s %s[%d]", np.Namespace, np.Name, field, i), true
		}
		for j := range r.peers {
			if o.netpolPeerMatches(np, &r.peers[j], other, req) {
				return fmt.Sprintf("NetworkPolicy %s/%s %s[%d] peer %d", np.Namespace, np.Name, field, i, j), true
			}
		}
	}
	return "", false
}

// netpolPeerMatches: an ipBlock matches any address in cidr and not in
// except, pods included; podSelector alone selects pods of the policy's
// namespace; namespaceSelector selects every pod of the namespaces it
// matches, narrowed by podSelector when both are given.
func (o *Oracle) netpolPeerMatches(np *networkingv1.NetworkPolicy, pe *networkingv1.NetworkPolicyPeer, other peer, req []peerMatcher) bool {
	if pe.IPBlock != nil {
		return inCIDR(other.ip, pe.IPBlock.CIDR, pe.IPBlock.Except)
	}
	p := other.pod
	if p == nil {
		return false
	}
	if pe.NamespaceSelector != nil {
		if !selector(pe.NamespaceSelector).Matches(o.namespaceLabels(p.namespace)) {
			return false
		}
	} else if p.namespace != np.Namespace {
		return false
	}
	if pe.PodSelector != nil && !selector(pe.PodSelector).Matches(p.labels) {
		return false
	}
	return allMatch(req, other)
}

// netpolPortsMatch: protocol defaults to TCP; no port means every port;
// endPort makes a range; a named port resolves on the destination pod.
func netpolPortsMatch(ports []networkingv1.NetworkPolicyPort, q Query, named []namedPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if p.Port == nil {
			if proto == q.Proto {
				return true
			}
			continue
		}
		if p.Port.Type == intstr.String {
			if portMatches(proto, 0, 0, p.Port.StrVal, q, named) {
				return true
			}
			continue
		}
		var hi int32
		if p.EndPort != nil {
			hi = *p.EndPort
		}
		if portMatches(proto, p.Port.IntVal, hi, "", q, named) {
			return true
		}
	}
	return false
}

// checkNetworkPolicy refuses what the API server would reject and what
// this oracle does not model.
func (o *Oracle) checkNetworkPolicy(obj *schema.Object, np *networkingv1.NetworkPolicy) {
	sels := []*metav1.LabelSelector{&np.Spec.PodSelector}
	var peers []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Ingress {
		peers = append(peers, r.From...)
	}
	for _, r := range np.Spec.Egress {
		peers = append(peers, r.To...)
	}
	for _, pe := range peers {
		if pe.IPBlock != nil {
			p, err := netip.ParsePrefix(pe.IPBlock.CIDR)
			if err != nil || p.Masked() != p {
				o.refuse(obj, "ipBlock.cidr", "an invalid CIDR")
			}
			continue
		}
		sels = append(sels, pe.PodSelector, pe.NamespaceSelector)
	}
	for _, s := range sels {
		if s == nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(s); err != nil {
			o.refuse(obj, "", "an invalid selector")
		}
	}
}

// checkLabels refuses label keys and values the API server rejects.
func (o *Oracle) checkLabels(obj *schema.Object, field string, ls map[string]string) {
	for k, v := range ls {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			o.refuse(obj, fmt.Sprintf("%s[%q]", field, k), "an invalid label key")
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			o.refuse(obj, fmt.Sprintf("%s[%q]", field, k), "an invalid label value")
		}
	}
}
