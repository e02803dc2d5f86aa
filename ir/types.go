package ir

import (
	"fmt"
	"net/netip"
)

// Source is the manifest position an IR element came from.
type Source struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
}

func (s Source) String() string {
	if s.File == "" {
		return "<builtin>"
	}
	return fmt.Sprintf("%s:%d:%d", s.File, s.Line, s.Col)
}

// Reserved identities, numbered as Cilium numbers them.
const (
	IdentityUnknown       uint32 = 0
	IdentityHost          uint32 = 1
	IdentityWorld         uint32 = 2
	IdentityUnmanaged     uint32 = 3
	IdentityHealth        uint32 = 4
	IdentityInit          uint32 = 5
	IdentityRemoteNode    uint32 = 6
	IdentityKubeAPIServer uint32 = 7

	// MinWorkloadIdentity is the first identity given to workloads.
	MinWorkloadIdentity uint32 = 256
	// MaxWorkloadIdentity is the last one: identities are 24-bit, as in
	// Cilium, so that a hash of the labels rarely collides.
	MaxWorkloadIdentity uint32 = 1<<24 - 1
)

// Reserved label keys carried by reserved identities. Pod label keys can
// never contain ':', so these cannot be forged by a workload.
const (
	LabelHost          = "reserved:host"
	LabelWorld         = "reserved:world"
	LabelUnmanaged     = "reserved:unmanaged"
	LabelHealth        = "reserved:health"
	LabelInit          = "reserved:init"
	LabelRemoteNode    = "reserved:remote-node"
	LabelKubeAPIServer = "reserved:kube-apiserver"
)

// Security labels that the compiler adds to every workload identity, as
// Cilium names them.
const (
	LabelNamespace       = "io.kubernetes.pod.namespace"
	LabelNamespacePrefix = "io.cilium.k8s.namespace.labels."
	LabelServiceAccount  = "io.cilium.k8s.policy.serviceaccount"
	LabelCluster         = "io.cilium.k8s.policy.cluster"
)

// Cluster is everything the compiler resolved. All slices are sorted by the
// key named on their element type.
type Cluster struct {
	Name       string      `json:"name"`
	Nodes      []Node      `json:"nodes"`      // by Name
	Namespaces []Namespace `json:"namespaces"` // by Name
	Identities []Identity  `json:"identities"` // by ID
	Endpoints  []Endpoint  `json:"endpoints"`  // by Namespace, Name
	Workloads  []Workload  `json:"workloads"`  // by Namespace, Kind, Name
	Policies   []Policy    `json:"policies"`   // by Kind, Namespace, Name
	Services   []Service   `json:"services"`   // by Namespace, Name
	Dropped    []Dropped   `json:"dropped,omitempty"`
	// Collisions lists identity hash collisions, resolved by probing.
	Collisions []string `json:"collisions,omitempty"`
	// APIServerIPs are the addresses the kube-apiserver entity selects: the
	// backends of default/kubernetes and those given to the compiler.
	APIServerIPs []netip.Addr `json:"apiserverIPs,omitempty"`
	// Warnings are what the compiler accepted but a user should know, by
	// Source.
	Warnings []Warning `json:"warnings,omitempty"`
}

// Warning is something the compiler accepted and changed or cannot
// enforce in full, at the manifest position that caused it.
type Warning struct {
	Source  Source `json:"source"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (w Warning) String() string {
	if w.Field == "" {
		return w.Source.String() + ": " + w.Message
	}
	return w.Source.String() + ": " + w.Field + ": " + w.Message
}

// Node is a Kubernetes Node, or the single implied node of a cluster whose
// manifests hold no Node objects.
type Node struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	IPs      []netip.Addr      `json:"ips"` // status.addresses InternalIP then ExternalIP, in manifest order
	PodCIDRs []netip.Prefix    `json:"podCIDRs,omitempty"`
	Implied  bool              `json:"implied,omitempty"`
	Source   Source            `json:"source"`
}

// Namespace holds the labels that namespace selectors see.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Source Source            `json:"source"`
}

// Identity is a security identity: a number for a set of labels.
type Identity struct {
	ID       uint32            `json:"id"`
	Labels   map[string]string `json:"labels"`
	Reserved bool              `json:"reserved,omitempty"`
}

// NamedPort is a container port with a name, the target of named ports in
// policies and services.
type NamedPort struct {
	Name  string `json:"name"`
	Proto Proto  `json:"proto"`
	Port  uint16 `json:"port"`
}

// Endpoint is a pod with an address on the pod network.
type Endpoint struct {
	Namespace  string       `json:"namespace"`
	Name       string       `json:"name"`
	Node       string       `json:"node"`
	IPs        []netip.Addr `json:"ips"`
	Identity   uint32       `json:"identity"`
	NamedPorts []NamedPort  `json:"namedPorts,omitempty"` // by Name, Proto
	// Owner is the workload template ("Deployment/web") the pod came from,
	// when the manifests say so.
	Owner  string `json:"owner,omitempty"`
	Source Source `json:"source"`
}

// Key is "namespace/name".
func (e *Endpoint) Key() string { return e.Namespace + "/" + e.Name }

// Workload is a pod template (Deployment, StatefulSet, ...) or a Pod
// without an address: the identity that a pod created from it gets. The
// agent looks a new pod up among the endpoints by namespace/name, then
// here, by name and then by owner template.
type Workload struct {
	Namespace  string      `json:"namespace"`
	Kind       string      `json:"kind"`
	Name       string      `json:"name"`
	Identity   uint32      `json:"identity"`
	NamedPorts []NamedPort `json:"namedPorts,omitempty"`
	Source     Source      `json:"source"`
}

// Operator of a label requirement.
type Operator string

const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Requirement is one term of a selector.
type Requirement struct {
	Key    string   `json:"key"`
	Op     Operator `json:"op"`
	Values []string `json:"values,omitempty"` // sorted
}

// Selector is a conjunction of requirements over labels, sorted by Key, Op.
// The empty selector matches every label set.
type Selector struct {
	Requirements []Requirement `json:"requirements,omitempty"`
}

// Direction of traffic relative to the policy's subject.
type Direction uint8

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// MarshalText makes directions readable in JSON.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses "ingress" or "egress".
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ingress":
		*d = Ingress
	case "egress":
		*d = Egress
	default:
		return fmt.Errorf("unknown direction %q", b)
	}
	return nil
}

// Action of a rule.
type Action uint8

const (
	Allow Action = iota
	Deny
)

func (a Action) String() string {
	if a == Deny {
		return "deny"
	}
	return "allow"
}

// MarshalText makes actions readable in JSON.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses "allow" or "deny".
func (a *Action) UnmarshalText(b []byte) error {
	switch string(b) {
	case "allow":
		*a = Allow
	case "deny":
		*a = Deny
	default:
		return fmt.Errorf("unknown action %q", b)
	}
	return nil
}

// PeerKind says which field of a Peer is set.
type PeerKind string

const (
	PeerEndpoints PeerKind = "endpoints" // Selector over identity labels
	PeerNodes     PeerKind = "nodes"     // Selector over node labels
	PeerCIDR      PeerKind = "cidr"      // CIDR minus Except
	PeerEntity    PeerKind = "entity"    // Entity
)

// Entities understood in fromEntities/toEntities.
var Entities = []string{"all", "cluster", "health", "host", "init", "kube-apiserver", "remote-node", "unmanaged", "world", EntityWorldIPv4, EntityWorldIPv6}

// The world entities of one address family: in a dual-stack cluster Cilium
// splits world into these two; world-ipv6 never selects an IPv4 address.
const (
	EntityWorldIPv4 = "world-ipv4"
	EntityWorldIPv6 = "world-ipv6"
)

// Peer is one alternative of a rule's peer list.
type Peer struct {
	Kind     PeerKind       `json:"kind"`
	Selector *Selector      `json:"selector,omitempty"`
	CIDR     netip.Prefix   `json:"cidr,omitzero"`
	Except   []netip.Prefix `json:"except,omitempty"`
	// InCluster says whether a CIDR peer also matches the addresses of
	// pods and nodes. Kubernetes ipBlock does; Cilium CIDR rules select
	// only addresses outside the cluster, as Cilium documents.
	InCluster bool   `json:"inCluster,omitempty"`
	Entity    string `json:"entity,omitempty"`
	Source    Source `json:"source"`
}

// Proto is an IP protocol number; 0 means any protocol.
type Proto uint8

const (
	ProtoAny    Proto = 0
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
	ProtoSCTP   Proto = 132
)

var protoNames = map[Proto]string{ProtoAny: "ANY", ProtoICMP: "ICMP", ProtoTCP: "TCP", ProtoUDP: "UDP", ProtoICMPv6: "ICMPv6", ProtoSCTP: "SCTP",
	2: "IGMP", 4: "IPIP", 47: "GRE", 50: "ESP", 51: "AH", 112: "VRRP"}

func (p Proto) String() string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// ParseProto parses a protocol name as Kubernetes and Cilium spell them.
func ParseProto(s string) (Proto, bool) {
	for p, n := range protoNames {
		if n == s {
			return p, true
		}
	}
	return 0, false
}

// MarshalText makes protocols readable in JSON.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses a protocol name or proto-N.
func (p *Proto) UnmarshalText(b []byte) error {
	if v, ok := ParseProto(string(b)); ok {
		*p = v
		return nil
	}
	var n uint8
	if _, err := fmt.Sscanf(string(b), "proto-%d", &n); err != nil {
		return fmt.Errorf("unknown protocol %q", b)
	}
	*p = Proto(n)
	return nil
}

// HasPorts says whether the protocol has ports (or, for ICMP, types that
// Sluice keeps in the port field).
func (p Proto) HasPorts() bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6:
		return true
	}
	return false
}

// Port is one alternative of a rule's port list. Port..EndPort is an
// inclusive range (0..65535 for all ports); for ICMP it holds the ICMP type.
// A named port has Name set and is resolved on the destination pod.
type Port struct {
	Proto   Proto  `json:"proto"`
	Port    uint16 `json:"port"`
	EndPort uint16 `json:"endPort"`
	Name    string `json:"name,omitempty"`
	Source  Source `json:"source"`
}

// Rule is one ingress or egress rule of a policy. It matches a packet when
// some peer matches (or Peers is empty) and some port matches (or Ports is
// empty).
type Rule struct {
	Direction Direction `json:"direction"`
	Action    Action    `json:"action"`
	// Field is the rule's path in its manifest, e.g. spec.ingress[1].
	Field  string `json:"field"`
	Peers  []Peer `json:"peers,omitempty"`
	Ports  []Port `json:"ports,omitempty"`
	Source Source `json:"source"`
}

// Policy is a NetworkPolicy, CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy, resolved.
type Policy struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Subject selects the pods the policy applies to, over identity labels
	// (a namespaced policy's subject includes its namespace).
	Subject Selector `json:"subject"`
	// IsolateIngress/IsolateEgress: a pod that this policy selects allows
	// only what some policy's rules allow in that direction.
	IsolateIngress bool `json:"isolateIngress"`
	IsolateEgress  bool `json:"isolateEgress"`
	// Requires (Cilium fromRequires/toRequires) are ANDed into every
	// endpoint-selector peer (not entities, not CIDRs) of every allow rule,
	// of any policy, in that direction for the pods this policy selects.
	IngressRequires []Selector `json:"ingressRequires,omitempty"`
	EgressRequires  []Selector `json:"egressRequires,omitempty"`
	// Deny rules carry their own requirements, folded only into deny rules
	// (Cilium keeps the two apart).
	IngressDenyRequires []Selector `json:"ingressDenyRequires,omitempty"`
	EgressDenyRequires  []Selector `json:"egressDenyRequires,omitempty"`
	Rules               []Rule     `json:"rules"`
	Source              Source     `json:"source"`
}

// Ref names the policy as "Kind namespace/name".
func (p *Policy) Ref() string {
	if p.Namespace == "" {
		return p.Kind + " " + p.Name
	}
	return p.Kind + " " + p.Namespace + "/" + p.Name
}

// Dropped records a rule that --drop-unenforceable lowered to nothing.
type Dropped struct {
	Policy string `json:"policy"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
	Source Source `json:"source"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string `json:"name,omitempty"`
	Proto    Proto  `json:"proto"`
	Port     uint16 `json:"port"`
	NodePort uint16 `json:"nodePort,omitempty"`
	// TargetPort is a number, or TargetName a container port name that
	// each backend pod resolves.
	TargetPort uint16 `json:"targetPort,omitempty"`
	TargetName string `json:"targetName,omitempty"`
}

// Backend is one address:port serving one service port.
type Backend struct {
	PortName    string     `json:"portName,omitempty"` // the ServicePort it serves
	IP          netip.Addr `json:"ip"`
	Port        uint16     `json:"port"`
	Proto       Proto      `json:"proto"`
	Node        string     `json:"node,omitempty"`
	Pod         string     `json:"pod,omitempty"` // namespace/name
	Ready       bool       `json:"ready"`
	Serving     bool       `json:"serving"`
	Terminating bool       `json:"terminating"`
	Weight      uint16     `json:"weight,omitempty"`
	Zone        string     `json:"zone,omitempty"`
}

// Service is a Kubernetes Service with its frontends and backends.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"` // ClusterIP, NodePort, LoadBalancer, ExternalName
	Headless  bool   `json:"headless,omitempty"`
	// Selector is the service's pod selector over identity labels (with
	// its namespace), nil for a service without one.
	Selector        *Selector     `json:"selector,omitempty"`
	ClusterIPs      []netip.Addr  `json:"clusterIPs,omitempty"`
	ExternalIPs     []netip.Addr  `json:"externalIPs,omitempty"`
	LoadBalancerIPs []netip.Addr  `json:"loadBalancerIPs,omitempty"`
	Ports           []ServicePort `json:"ports"`
	// AffinityTimeout is the ClientIP session affinity timeout in seconds;
	// 0 means no affinity.
	AffinityTimeout      uint32    `json:"affinityTimeout,omitempty"`
	ExternalTrafficLocal bool      `json:"externalTrafficLocal,omitempty"`
	InternalTrafficLocal bool      `json:"internalTrafficLocal,omitempty"`
	BackendsFrom         string    `json:"backendsFrom"`       // EndpointSlice, Endpoints, selector or none
	Backends             []Backend `json:"backends,omitempty"` // by PortName, IP, Port
	Source               Source    `json:"source"`
}

// Key is "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }
