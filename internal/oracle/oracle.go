package oracle

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sluicenet/sluice/schema"
)

// Query is the first packet of a connection.
type Query struct {
	Src, Dst netip.Addr
	Proto    corev1.Protocol // TCP, UDP or SCTP
	Port     uint16
}

func (q Query) String() string {
	return fmt.Sprintf("%s -> %s %d/%s", q.Src, q.Dst, q.Port, q.Proto)
}

// Side is the verdict of one direction: the reason in words that name no
// object, and the rule that decided, if one did.
type Side struct {
	Allow  bool
	Reason string
	Rule   string
}

// Why is the reason with the rule.
func (s Side) Why() string {
	if s.Rule == "" {
		return s.Reason
	}
	return s.Reason + ": " + s.Rule
}

// Verdict is the answer for a query: allowed when both sides allow.
type Verdict struct {
	Allow           bool
	Egress, Ingress Side
}

// Metadata labels as Kubernetes and Cilium name them.
const (
	labelMetadataName   = "kubernetes.io/metadata.name"
	labelPodNamespace   = "io.kubernetes.pod.namespace"
	prefixNamespaceLbls = "io.cilium.k8s.namespace.labels."
	labelServiceAccount = "io.cilium.k8s.policy.serviceaccount"
	labelCluster        = "io.cilium.k8s.policy.cluster"
	// prefixCiliumOwned is the prefix of every label Cilium owns; pod labels
	// under it are dropped before the derived ones are added.
	prefixCiliumOwned = "io.cilium.k8s"
)

type namedPort struct {
	name  string
	proto corev1.Protocol
	port  int32
}

type pod struct {
	namespace, name string
	labels          labels.Set // the pod's own labels
	identity        labels.Set // what Cilium selectors see
	node            string
	ips             []netip.Addr
	named           []namedPort
}

func (p *pod) key() string { return p.namespace + "/" + p.name }

type node struct {
	name string
	ips  []netip.Addr
}

// peer is the other end of a connection as the subject sees it.
type peer struct {
	ip   netip.Addr
	pod  *pod
	node *node // the node whose address ip is; nil for pods and world
}

// world reports whether the peer is outside the cluster.
func (p peer) world() bool { return p.pod == nil && p.node == nil }

// selectorLabels are the labels a Cilium selector sees on the peer.
func (p peer) selectorLabels() labels.Set {
	if p.pod != nil {
		return p.pod.identity
	}
	return labels.Set{}
}

// Oracle answers queries about one input.
type Oracle struct {
	namespaces map[string]labels.Set
	nodes      map[string]*node
	pods       []*pod
	podByIP    map[netip.Addr]*pod
	nodeByIP   map[netip.Addr]*node
	netpols    []*networkingv1.NetworkPolicy
	cilium     []*ciliumRule
	refusals   []Refusal
}

// New reads a decoded input. clusterName is the value of the
// io.cilium.k8s.policy.cluster label ("default" when empty).
func New(set *schema.Set, clusterName string) *Oracle {
	if clusterName == "" {
		clusterName = "default"
	}
	o := &Oracle{namespaces: map[string]labels.Set{}, nodes: map[string]*node{}, podByIP: map[netip.Addr]*pod{}, nodeByIP: map[netip.Addr]*node{}}
	var podObjs []*schema.Object
	for _, obj := range set.Objects {
		switch v := obj.Obj.(type) {
		case *corev1.Namespace:
			o.checkLabels(obj, "metadata.labels", v.Labels)
			ls := labels.Set{}
			for k, val := range v.Labels {
				ls[k] = val
			}
			// The API server forces this label to the name.
			ls[labelMetadataName] = v.Name
			o.namespaces[v.Name] = ls
		case *corev1.Node:
			o.checkLabels(obj, "metadata.labels", v.Labels)
			n := &node{name: v.Name}
			for i, a := range v.Status.Addresses {
				if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
					continue
				}
				ip, err := netip.ParseAddr(a.Address)
				if err != nil {
					o.refuse(obj, fmt.Sprintf("status.addresses[%d].address", i), "an invalid node address")
					continue
				}
				n.ips = append(n.ips, ip)
				o.nodeByIP[ip] = n
			}
			o.nodes[v.Name] = n
		case *corev1.Pod:
			podObjs = append(podObjs, obj)
		case *networkingv1.NetworkPolicy:
			o.netpols = append(o.netpols, v)
			o.checkNetworkPolicy(obj, v)
		case *schema.CiliumNetworkPolicy:
			o.addCilium(obj, v.Namespace, v.Spec, v.Specs)
		case *schema.CiliumClusterwideNetworkPolicy:
			o.addCilium(obj, "", v.Spec, v.Specs)
		}
	}
	implied := len(o.nodes) == 0
	for _, obj := range podObjs {
		o.addPod(obj, obj.Obj.(*corev1.Pod), implied, clusterName)
	}
	sort.Slice(o.refusals, func(i, j int) bool { return o.refusals[i].String() < o.refusals[j].String() })
	return o
}

// Refusal is one reason the compile must be refused.
type Refusal struct {
	Object string // "Kind namespace/name"
	Field  string // where in the object, when known
	Why    string // what is wrong, in words that name no object
}

func (r Refusal) String() string {
	if r.Field == "" {
		return r.Object + ": " + r.Why
	}
	return r.Object + ": " + r.Field + ": " + r.Why
}

func (o *Oracle) refuse(obj *schema.Object, field, why string) {
	o.refusals = append(o.refusals, Refusal{Object: obj.Ref(), Field: field, Why: why})
}

// Refusals lists why the compile must be refused; empty when it must
// succeed.
func (o *Oracle) Refusals() []Refusal { return o.refusals }

// namespaceLabels returns the labels of a namespace; one without a
// Namespace object has only the label the API server sets.
func (o *Oracle) namespaceLabels(ns string) labels.Set {
	if ls, ok := o.namespaces[ns]; ok {
		return ls
	}
	return labels.Set{labelMetadataName: ns}
}

func (o *Oracle) addPod(obj *schema.Object, p *corev1.Pod, implied bool, clusterName string) {
	o.checkLabels(obj, "metadata.labels", p.Labels)
	switch {
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return // terminal: its address is just an address
	case p.Spec.HostNetwork:
		return // its address is its node's
	}
	var ips []netip.Addr
	addr := func(field, s string) {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			o.refuse(obj, field, "an invalid pod IP")
			return
		}
		ips = append(ips, ip)
	}
	for i, a := range p.Status.PodIPs {
		addr(fmt.Sprintf("status.podIPs[%d].ip", i), a.IP)
	}
	if len(p.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		addr("status.podIP", p.Status.PodIP)
	}
	if len(ips) == 0 {
		return // not on the network yet
	}
	pd := &pod{namespace: obj.Namespace, name: p.Name, labels: labels.Set{}, identity: labels.Set{}, node: p.Spec.NodeName, ips: ips}
	if implied {
		pd.node = "" // the one implied node holds every pod
	} else if pd.node == "" {
		o.refuse(obj, "spec.nodeName", "a pod with an address but no node, in an input with Node objects")
	}
	for k, v := range p.Labels {
		pd.labels[k] = v
		if !strings.HasPrefix(k, prefixCiliumOwned) && k != labelPodNamespace {
			pd.identity[k] = v
		}
	}
	pd.identity[labelPodNamespace] = obj.Namespace
	for k, v := range o.namespaceLabels(obj.Namespace) {
		pd.identity[prefixNamespaceLbls+k] = v
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = p.Spec.DeprecatedServiceAccount
	}
	if sa == "" {
		sa = "default" // the service account admission sets it
	}
	pd.identity[labelServiceAccount] = sa
	pd.identity[labelCluster] = clusterName
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == "" {
					continue
				}
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				pd.named = append(pd.named, namedPort{name: cp.Name, proto: proto, port: cp.ContainerPort})
			}
		}
	}
	o.pods = append(o.pods, pd)
	for _, ip := range ips {
		if prev := o.podByIP[ip]; prev != nil {
			o.refuse(obj, "status.podIP", "two live pods with one address")
		}
		o.podByIP[ip] = pd
	}
}

// peerAt describes an address.
func (o *Oracle) peerAt(ip netip.Addr) peer {
	if p := o.podByIP[ip]; p != nil {
		return peer{ip: ip, pod: p}
	}
	return peer{ip: ip, node: o.nodeByIP[ip]}
}

// Pod names the live pod at an address, "" when there is none.
func (o *Oracle) Pod(ip netip.Addr) string {
	if p := o.podByIP[ip]; p != nil {
		return p.key()
	}
	return ""
}

// Isolated reports whether the pod at ip is isolated in either direction
// (false when ip is not a pod's).
func (o *Oracle) Isolated(ip netip.Addr) bool {
	p := o.podByIP[ip]
	return p != nil && (o.isolated(p, ingress) || o.isolated(p, egress))
}

type direction int

const (
	ingress direction = iota
	egress
)

func (d direction) String() string {
	if d == egress {
		return "egress"
	}
	return "ingress"
}

// Verdict answers a query.
func (o *Oracle) Verdict(q Query) Verdict {
	src, dst := o.peerAt(q.Src), o.peerAt(q.Dst)
	if src.pod != nil && src.pod == dst.pod {
		self := Side{Allow: true, Reason: "a pod talking to itself"}
		return Verdict{Allow: true, Egress: self, Ingress: self}
	}
	v := Verdict{Egress: o.side(egress, src.pod, dst, q), Ingress: o.side(ingress, dst.pod, src, q)}
	v.Allow = v.Egress.Allow && v.Ingress.Allow
	return v
}

// side decides one direction of subject's policy against the peer.
func (o *Oracle) side(dir direction, subject *pod, other peer, q Query) Side {
	if subject == nil {
		return Side{Allow: true, Reason: "not a pod"}
	}
	// Named ports resolve on the destination pod.
	named := subject.named
	if dir == egress {
		named = nil
		if other.pod != nil {
			named = other.pod.named
		}
	}
	rules := o.ciliumSelecting(subject)
	allowReq, denyReq := requirements(rules, dir)
	for _, r := range rules {
		if ref, ok := r.first(dir, true, subject, other, q, named, denyReq); ok {
			return Side{Reason: "denied by a Cilium deny rule", Rule: ref}
		}
	}
	if dir == ingress && other.node != nil && other.node.name == subject.node {
		return Side{Allow: true, Reason: "from the pod's own node"}
	}
	if !o.isolated(subject, dir) {
		return Side{Allow: true, Reason: "not isolated"}
	}
	for _, np := range o.netpols {
		if ref, ok := o.netpolAllows(np, dir, subject, other, q, named, allowReq); ok {
			return Side{Allow: true, Reason: "allowed by a NetworkPolicy rule", Rule: ref}
		}
	}
	for _, r := range rules {
		if ref, ok := r.first(dir, false, subject, other, q, named, allowReq); ok {
			return Side{Allow: true, Reason: "allowed by a Cilium rule", Rule: ref}
		}
	}
	return Side{Reason: "isolated and no rule allows it"}
}

// isolated reports whether any policy isolates the pod in a direction.
func (o *Oracle) isolated(p *pod, dir direction) bool {
	for _, np := range o.netpols {
		if o.netpolSelects(np, p) && netpolIsolates(np, dir) {
			return true
		}
	}
	for _, r := range o.ciliumSelecting(p) {
		if r.isolates(dir) {
			return true
		}
	}
	return false
}

// portMatches reports whether a port or range (hi 0: just lo) or name of
// a protocol matches the query, resolving names on the destination's
// named ports.
func portMatches(proto corev1.Protocol, lo, hi int32, name string, q Query, named []namedPort) bool {
	if proto != q.Proto {
		return false
	}
	if name != "" {
		for _, np := range named {
			if np.name == name && np.proto == q.Proto && np.port == int32(q.Port) {
				return true
			}
		}
		return false
	}
	if hi == 0 {
		hi = lo
	}
	return int32(q.Port) >= lo && int32(q.Port) <= hi
}

// inCIDR reports whether ip is in cidr and in none of the exceptions; a
// bare address is a single-address CIDR. Unparsable CIDRs match nothing
// (the input is refused for them).
func inCIDR(ip netip.Addr, cidr string, except []string) bool {
	p, ok := parseCIDR(cidr)
	if !ok || !p.Contains(ip) {
		return false
	}
	for _, e := range except {
		if ep, ok := parseCIDR(e); ok && ep.Contains(ip) {
			return false
		}
	}
	return true
}

func parseCIDR(s string) (netip.Prefix, bool) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(ip, ip.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	return p, err == nil
}
