package schema

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The cilium.io/v2 policy types, modelled on Cilium's pkg/policy/api and
// pkg/k8s/apis/cilium.io/v2 with the same JSON names. They differ from
// Cilium's in three ways, all so that the compiler can give positioned
// errors instead of schema giving none:
//
//   - Values are not validated here (ports, protocols, CIDRs, entities,
//     selector operators): the compiler checks them and reports them with
//     Object.PosOf.
//   - Constructs an L3/L4 datapath cannot enforce (L7 rules, Envoy
//     listeners, TLS, SNI, authentication, toGroups, CIDR group selectors,
//     logging) are Opaque: present or not, content unchecked.
//   - Selectors that may be absent are pointers, so "absent" and "{}" (select
//     everything) stay distinct.

// CiliumNetworkPolicy is a namespaced cilium.io/v2 policy. Spec and Specs
// may both be set; each is a separate rule.
type CiliumNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`

	Spec  *Rule  `json:"spec,omitempty"`
	Specs []Rule `json:"specs,omitempty"`
	// Status is written by the cluster; it is accepted and ignored.
	Status *Opaque `json:"status,omitempty"`
}

// CiliumClusterwideNetworkPolicy is the cluster-scoped form of
// CiliumNetworkPolicy. Its rules may use NodeSelector (host policies).
type CiliumClusterwideNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`

	Spec   *Rule   `json:"spec,omitempty"`
	Specs  []Rule  `json:"specs,omitempty"`
	Status *Opaque `json:"status,omitempty"`
}

// Rule selects endpoints (or nodes) and lists what they may send and
// receive.
type Rule struct {
	// EndpointSelector selects the pods the rule applies to; nil when
	// absent. Exactly one of EndpointSelector and NodeSelector should be
	// set (the compiler checks).
	EndpointSelector *EndpointSelector `json:"endpointSelector,omitempty"`
	// NodeSelector selects nodes (host policy); cluster-wide policies only.
	NodeSelector *EndpointSelector `json:"nodeSelector,omitempty"`

	Ingress     []IngressRule     `json:"ingress,omitempty"`
	IngressDeny []IngressDenyRule `json:"ingressDeny,omitempty"`
	Egress      []EgressRule      `json:"egress,omitempty"`
	EgressDeny  []EgressDenyRule  `json:"egressDeny,omitempty"`

	Labels            []Label           `json:"labels,omitempty"`
	Description       string            `json:"description,omitempty"`
	EnableDefaultDeny DefaultDenyConfig `json:"enableDefaultDeny,omitzero"`
	Log               *Opaque           `json:"log,omitempty"`
}

// DefaultDenyConfig says whether a rule puts its endpoints into default
// deny for a direction; nil means Cilium's default (true when the rule has
// rules in that direction).
type DefaultDenyConfig struct {
	Ingress *bool `json:"ingress,omitempty"`
	Egress  *bool `json:"egress,omitempty"`
}

// Label is a rule label.
type Label struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Source string `json:"source,omitempty"`
}

// EndpointSelector is a label selector whose keys may carry a Cilium source
// prefix ("k8s:", "any:", "reserved:", ...). Keys are kept verbatim; the
// compiler interprets prefixes. A selector with neither field selects
// everything.
type EndpointSelector struct {
	MatchLabels      map[string]string                 `json:"matchLabels,omitempty"`
	MatchExpressions []metav1.LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelector returns s as a Kubernetes label selector (keys unchanged,
// maps and slices shared).
func (s *EndpointSelector) LabelSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: s.MatchLabels, MatchExpressions: s.MatchExpressions}
}

// IngressCommonRule holds the peer selectors shared by allow and deny
// ingress rules. An allow rule may set only one peer field (the compiler
// checks, as Cilium does); FromRequires applies to every rule.
type IngressCommonRule struct {
	FromEndpoints []EndpointSelector `json:"fromEndpoints,omitempty"`
	FromRequires  []EndpointSelector `json:"fromRequires,omitempty"`
	FromCIDR      []string           `json:"fromCIDR,omitempty"`
	FromCIDRSet   []CIDRRule         `json:"fromCIDRSet,omitempty"`
	FromEntities  []string           `json:"fromEntities,omitempty"`
	FromGroups    []Opaque           `json:"fromGroups,omitempty"`
	FromNodes     []EndpointSelector `json:"fromNodes,omitempty"`
}

// IngressRule allows traffic into the selected endpoints.
type IngressRule struct {
	IngressCommonRule `json:",inline"`

	ToPorts        []PortRule `json:"toPorts,omitempty"`
	ICMPs          []ICMPRule `json:"icmps,omitempty"`
	Authentication *Opaque    `json:"authentication,omitempty"`
	// Auth is the older spelling of Authentication, still in published
	// examples.
	Auth *Opaque `json:"auth,omitempty"`
}

// IngressDenyRule denies traffic into the selected endpoints, whatever
// allow rules say.
type IngressDenyRule struct {
	IngressCommonRule `json:",inline"`

	ToPorts []PortDenyRule `json:"toPorts,omitempty"`
	ICMPs   []ICMPRule     `json:"icmps,omitempty"`
}

// EgressCommonRule holds the peer selectors shared by allow and deny egress
// rules.
type EgressCommonRule struct {
	ToEndpoints []EndpointSelector `json:"toEndpoints,omitempty"`
	ToRequires  []EndpointSelector `json:"toRequires,omitempty"`
	ToCIDR      []string           `json:"toCIDR,omitempty"`
	ToCIDRSet   []CIDRRule         `json:"toCIDRSet,omitempty"`
	ToEntities  []string           `json:"toEntities,omitempty"`
	ToServices  []Service          `json:"toServices,omitempty"`
	ToGroups    []Opaque           `json:"toGroups,omitempty"`
	ToNodes     []EndpointSelector `json:"toNodes,omitempty"`
}

// EgressRule allows traffic out of the selected endpoints.
type EgressRule struct {
	EgressCommonRule `json:",inline"`

	ToPorts        []PortRule     `json:"toPorts,omitempty"`
	ToFQDNs        []FQDNSelector `json:"toFQDNs,omitempty"`
	ICMPs          []ICMPRule     `json:"icmps,omitempty"`
	Authentication *Opaque        `json:"authentication,omitempty"`
	Auth           *Opaque        `json:"auth,omitempty"`
}

// EgressDenyRule denies traffic out of the selected endpoints.
type EgressDenyRule struct {
	EgressCommonRule `json:",inline"`

	ToPorts []PortDenyRule `json:"toPorts,omitempty"`
	ICMPs   []ICMPRule     `json:"icmps,omitempty"`
}

// CIDRRule is a CIDR with exceptions, or a reference to CiliumCIDRGroups.
type CIDRRule struct {
	Cidr              string   `json:"cidr,omitempty"`
	CIDRGroupRef      string   `json:"cidrGroupRef,omitempty"`
	CIDRGroupSelector *Opaque  `json:"cidrGroupSelector,omitempty"`
	ExceptCIDRs       []string `json:"except,omitempty"`
}

// Service selects Kubernetes services, by name or by labels.
type Service struct {
	K8sServiceSelector *K8sServiceSelectorNamespace `json:"k8sServiceSelector,omitempty"`
	K8sService         *K8sServiceNamespace         `json:"k8sService,omitempty"`
}

// K8sServiceNamespace names a service.
type K8sServiceNamespace struct {
	ServiceName string `json:"serviceName,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
}

// K8sServiceSelectorNamespace selects services by label.
type K8sServiceSelectorNamespace struct {
	Selector  EndpointSelector `json:"selector"`
	Namespace string           `json:"namespace,omitempty"`
}

// FQDNSelector matches DNS names (enforced by Cilium's DNS proxy).
type FQDNSelector struct {
	MatchName    string `json:"matchName,omitempty"`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// PortRule lists ports, with optional L7 and proxy settings.
type PortRule struct {
	Ports          []PortProtocol `json:"ports,omitempty"`
	TerminatingTLS *Opaque        `json:"terminatingTLS,omitempty"`
	OriginatingTLS *Opaque        `json:"originatingTLS,omitempty"`
	ServerNames    *Opaque        `json:"serverNames,omitempty"`
	Listener       *Opaque        `json:"listener,omitempty"`
	Rules          *L7Rules       `json:"rules,omitempty"`
}

// PortDenyRule lists ports of a deny rule; deny rules have no L7 part.
type PortDenyRule struct {
	Ports []PortProtocol `json:"ports,omitempty"`
}

// PortProtocol is a port (or range up to EndPort) and protocol.
type PortProtocol struct {
	// Port is a number, a named port or "0" (all ports); an unquoted
	// integer is accepted and stored in decimal.
	Port     string `json:"port,omitempty" schema:"intstring"`
	EndPort  int32  `json:"endPort,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// L7Rules are proxy-enforced rules, one protocol per port rule. Their
// content is not checked.
type L7Rules struct {
	HTTP    *Opaque `json:"http,omitempty"`
	Kafka   *Opaque `json:"kafka,omitempty"`
	DNS     *Opaque `json:"dns,omitempty"`
	L7Proto *Opaque `json:"l7proto,omitempty"`
	L7      *Opaque `json:"l7,omitempty"`
}

// ICMPRule lists ICMP types.
type ICMPRule struct {
	Fields []ICMPField `json:"fields,omitempty"`
}

// ICMPField is an ICMP type (number or name) of a family (IPv4 when empty,
// or IPv6).
type ICMPField struct {
	Family string              `json:"family,omitempty"`
	Type   *intstr.IntOrString `json:"type,omitempty"`
}
