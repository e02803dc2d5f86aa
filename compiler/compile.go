package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// ImpliedNode names the single node of a cluster whose manifests hold no
// Node objects: it holds every pod.
const ImpliedNode = "cluster"

// Options tune a compilation.
type Options struct {
	// ClusterName is the value of the io.cilium.k8s.policy.cluster label.
	ClusterName string
	// DropUnenforceable lowers rules that the datapath cannot enforce to
	// nothing instead of failing.
	DropUnenforceable bool
	// APIServerIPs are addresses of the kube-apiserver, for the
	// kube-apiserver entity, besides the backends of default/kubernetes.
	APIServerIPs []netip.Addr
}

// compilation carries the state of one Compile call.
type compilation struct {
	opts  Options
	diags schema.Diagnostics

	namespaces map[string]*ir.Namespace
	nodes      []ir.Node
	nodeNames  map[string]bool
	implied    bool

	// pods and templates, before identities are allocated.
	pods      []*pod
	templates []*pod
	idOf      map[string]uint32 // canonical label string → identity
	// services, for toServices: the objects and their backend addresses.
	serviceObjs []*schema.Object
	backendIPs  map[string][]netip.Addr
	idents      []ir.Identity
	collide     []string
	// selectorKeys are the label keys some pod selector uses: per-pod
	// labels among them stay in identities.
	selectorKeys map[string]bool
	warnings     []ir.Warning
}

// pod is a Pod or a workload template.
type pod struct {
	obj        *schema.Object
	kind, name string
	namespace  string
	labels     map[string]string // raw pod labels (services select on these)
	secLabels  map[string]string // identity labels
	canon      string
	node       string
	ips        []netip.Addr
	hostNet    bool
	named      []ir.NamedPort
	owner      string
	ready      bool
	terminate  bool
	identity   uint32
}

func (c *compilation) errorf(obj *schema.Object, field, format string, args ...any) {
	c.diags = append(c.diags, obj.Errorf(field, format, args...))
}

// Compile resolves the objects of a set into a cluster. When any
// diagnostic is returned the cluster must not be used.
func Compile(set *schema.Set, opts Options) (*ir.Cluster, schema.Diagnostics) {
	if opts.ClusterName == "" {
		opts.ClusterName = "default"
	}
	c := &compilation{opts: opts, namespaces: map[string]*ir.Namespace{}, nodeNames: map[string]bool{}, idOf: map[string]uint32{}}
	byKind := map[string][]*schema.Object{}
	for _, o := range set.Objects {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	for _, o := range byKind["Namespace"] {
		c.namespace(o)
	}
	for _, o := range byKind["Node"] {
		c.node(o)
	}
	c.selectorKeys = selectorKeys(byKind)
	if len(c.nodes) == 0 {
		c.implied = true
		c.nodes = append(c.nodes, ir.Node{Name: ImpliedNode, Implied: true})
		c.nodeNames[ImpliedNode] = true
	}
	for _, o := range byKind["Pod"] {
		c.podObject(o)
	}
	for _, kind := range []string{"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"} {
		for _, o := range byKind[kind] {
			c.template(o)
		}
	}
	// Namespaces referenced but not declared exist implicitly, with the
	// label the API server puts on every namespace.
	for _, p := range append(append([]*pod(nil), c.pods...), c.templates...) {
		c.ensureNamespace(p.namespace)
	}
	for _, kind := range []string{"NetworkPolicy", "CiliumNetworkPolicy", "Service"} {
		for _, o := range byKind[kind] {
			c.ensureNamespace(o.Namespace)
		}
	}
	c.allocateIdentities()

	cl := &ir.Cluster{Name: opts.ClusterName, Nodes: c.nodes, Collisions: c.collide, APIServerIPs: apiserverIPs(opts.APIServerIPs)}
	for _, ns := range c.namespaces {
		cl.Namespaces = append(cl.Namespaces, *ns)
	}
	sort.Slice(cl.Namespaces, func(i, j int) bool { return cl.Namespaces[i].Name < cl.Namespaces[j].Name })
	sort.Slice(cl.Nodes, func(i, j int) bool { return cl.Nodes[i].Name < cl.Nodes[j].Name })
	cl.Identities = c.idents
	c.endpoints(cl)
	c.services(cl, byKind)
	c.serviceObjs = byKind["Service"]
	c.backendIPs = map[string][]netip.Addr{}
	for _, s := range cl.Services {
		for _, b := range s.Backends {
			ips := c.backendIPs[s.Key()]
			if !slices.Contains(ips, b.IP) {
				c.backendIPs[s.Key()] = append(ips, b.IP)
			}
		}
	}

	for _, o := range byKind["NetworkPolicy"] {
		if p, ok := c.networkPolicy(o); ok {
			cl.Policies = append(cl.Policies, p)
		}
	}
	for _, kind := range []string{"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"} {
		for _, o := range byKind[kind] {
			ps, dropped := c.ciliumPolicy(o)
			cl.Policies = append(cl.Policies, ps...)
			cl.Dropped = append(cl.Dropped, dropped...)
		}
	}
	sort.SliceStable(cl.Policies, func(i, j int) bool {
		a, b := &cl.Policies[i], &cl.Policies[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	sort.SliceStable(cl.Dropped, func(i, j int) bool {
		a, b := cl.Dropped[i], cl.Dropped[j]
		if a.Policy != b.Policy {
			return a.Policy < b.Policy
		}
		return a.Field < b.Field
	})
	c.checkAPIServerEntity(cl)
	if len(c.diags) > 0 {
		c.diags.Sort()
		return nil, c.diags
	}
	sort.Slice(c.warnings, func(i, j int) bool {
		a, b := c.warnings[i], c.warnings[j]
		if a.Source != b.Source {
			return lessSource(a.Source, b.Source)
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Message < b.Message
	})
	cl.Warnings = c.warnings
	intern(cl)
	return cl, nil
}

func (c *compilation) ensureNamespace(name string) {
	if name == "" || c.namespaces[name] != nil {
		return
	}
	c.namespaces[name] = &ir.Namespace{Name: name, Labels: map[string]string{nsNameLabel: name}}
}

func (c *compilation) namespace(o *schema.Object) {
	ns := o.Obj.(*corev1.Namespace)
	c.validateLabels(o, "metadata.labels", ns.Labels)
	labels := map[string]string{}
	for k, v := range ns.Labels {
		labels[k] = v
	}
	// The API server sets this label on every namespace, to its name,
	// whatever the manifest says.
	if v, ok := ns.Labels[nsNameLabel]; ok && v != ns.Name {
		c.warnf(o, "metadata.labels"+schema.Key(nsNameLabel), "label %s=%s is not the namespace's name; the API server sets it to %q, and so does Sluice", nsNameLabel, v, ns.Name)
	}
	labels[nsNameLabel] = ns.Name
	c.namespaces[ns.Name] = &ir.Namespace{Name: ns.Name, Labels: labels, Source: src(o)}
}

func (c *compilation) node(o *schema.Object) {
	n := o.Obj.(*corev1.Node)
	c.validateLabels(o, "metadata.labels", n.Labels)
	node := ir.Node{Name: n.Name, Source: src(o)}
	if len(n.Labels) > 0 {
		node.Labels = map[string]string{}
		for k, v := range n.Labels {
			node.Labels[k] = v
		}
	}
	// InternalIP first: it is the address other nodes route pods through.
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for i, a := range n.Status.Addresses {
			if a.Type != typ {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				c.errorf(o, fmt.Sprintf("status.addresses[%d].address", i), "invalid IP address %q for type %s; expected an IPv4 or IPv6 address such as 192.168.1.10", a.Address, a.Type)
				continue
			}
			if !slices.Contains(node.IPs, ip) {
				node.IPs = append(node.IPs, ip)
			}
		}
	}
	cidrs := n.Spec.PodCIDRs
	field := "spec.podCIDRs[%d]"
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs, field = []string{n.Spec.PodCIDR}, "spec.podCIDR"
	}
	for i, s := range cidrs {
		f := field
		if strings.Contains(f, "%d") {
			f = fmt.Sprintf(f, i)
		}
		p, ok := c.prefix(o, f, s)
		if ok {
			node.PodCIDRs = append(node.PodCIDRs, p)
		}
	}
	c.nodeNames[n.Name] = true
	c.nodes = append(c.nodes, node)
}

// prefix parses a CIDR, reporting errors at field.
func (c *compilation) prefix(o *schema.Object, field, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		// A bare address is a /32 (or /128) in Cilium's CIDR rules; in
		// Kubernetes fields a prefix length is required.
		c.errorf(o, field, "invalid CIDR %q: expected an address with a prefix length, such as 10.0.0.0/16 or 2001:db8::/64", s)
		return netip.Prefix{}, false
	}
	if p.Masked() != p {
		c.errorf(o, field, "CIDR %q has host bits set; did you mean %s?", s, p.Masked())
		return netip.Prefix{}, false
	}
	return p, true
}

func src(o *schema.Object) ir.Source {
	return ir.Source{File: o.Pos.File, Line: o.Pos.Line, Col: o.Pos.Col}
}

func srcAt(o *schema.Object, field string) ir.Source {
	p := o.PosOf(field)
	return ir.Source{File: p.File, Line: p.Line, Col: p.Col}
}

// newPod makes a pod of a Pod or a workload template: meta are its labels
// at metaField, spec its pod spec at specField.
func (c *compilation) newPod(o *schema.Object, kind, name, namespace string, meta map[string]string, metaField string, spec *corev1.PodSpec, specField string) *pod {
	p := &pod{obj: o, kind: kind, name: name, namespace: namespace, labels: map[string]string{}, ready: true}
	c.validateLabels(o, metaField, meta)
	for k, v := range meta {
		p.labels[k] = v
	}
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = spec.DeprecatedServiceAccount
	}
	if sa == "" {
		sa = "default"
	}
	p.hostNet = spec.HostNetwork
	p.named = c.namedPorts(o, specField, spec)
	p.secLabels = map[string]string{}
	for _, k := range sortedKeys(meta) {
		switch {
		case reservedPodLabel(k):
			c.warnf(o, metaField+schema.Key(k), "label %s is reserved: policy takes it from the pod's namespace, its namespace's labels, its service account or the cluster, never from the pod; the pod's own value %q is ignored", k, meta[k])
		case perPodLabels[k] && !c.selectorKeys[k]:
		default:
			p.secLabels[k] = meta[k]
		}
	}
	p.secLabels[ir.LabelNamespace] = namespace
	p.secLabels[ir.LabelServiceAccount] = sa
	p.secLabels[ir.LabelCluster] = c.opts.ClusterName
	return p
}

// namedPorts collects container ports with names; a name used twice with
// different numbers is an error, since a named port must resolve to one
// port.
func (c *compilation) namedPorts(o *schema.Object, specField string, spec *corev1.PodSpec) []ir.NamedPort {
	var out []ir.NamedPort
	seen := map[string]ir.NamedPort{}
	add := func(field string, cps []corev1.ContainerPort) {
		for j, cp := range cps {
			if cp.Name == "" {
				continue
			}
			if errs := validation.IsValidPortName(cp.Name); len(errs) > 0 {
				c.errorf(o, fmt.Sprintf("%s.ports[%d].name", field, j), "invalid port name %q: %s", cp.Name, strings.Join(errs, "; "))
				continue
			}
			proto, ok := c.k8sProto(o, fmt.Sprintf("%s.ports[%d].protocol", field, j), string(cp.Protocol))
			if !ok {
				continue
			}
			if cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				c.errorf(o, fmt.Sprintf("%s.ports[%d].containerPort", field, j), "port %d out of range; accepted: 1-65535", cp.ContainerPort)
				continue
			}
			np := ir.NamedPort{Name: cp.Name, Proto: proto, Port: uint16(cp.ContainerPort)}
			key := cp.Name + "/" + proto.String()
			if prev, ok := seen[key]; ok {
				if prev.Port != np.Port {
					c.errorf(o, fmt.Sprintf("%s.ports[%d].name", field, j), "port name %q is used for ports %d and %d; a named port must name one port", cp.Name, prev.Port, np.Port)
				}
				continue
			}
			seen[key] = np
			out = append(out, np)
		}
	}
	for i := range spec.InitContainers {
		add(fmt.Sprintf("%s.initContainers[%d]", specField, i), spec.InitContainers[i].Ports)
	}
	for i := range spec.Containers {
		add(fmt.Sprintf("%s.containers[%d]", specField, i), spec.Containers[i].Ports)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Proto < out[j].Proto
	})
	return out
}

// k8sProto parses a Kubernetes protocol field: TCP (the default), UDP or
// SCTP.
func (c *compilation) k8sProto(o *schema.Object, field, s string) (ir.Proto, bool) {
	switch s {
	case "", "TCP":
		return ir.ProtoTCP, true
	case "UDP":
		return ir.ProtoUDP, true
	case "SCTP":
		return ir.ProtoSCTP, true
	}
	hint := ""
	if up := strings.ToUpper(s); up == "TCP" || up == "UDP" || up == "SCTP" {
		hint = fmt.Sprintf(" (protocols are case-sensitive: did you mean %s?)", up)
	}
	c.errorf(o, field, "unknown protocol %q%s; accepted: TCP, UDP, SCTP", s, hint)
	return 0, false
}

func (c *compilation) podObject(o *schema.Object) {
	po := o.Obj.(*corev1.Pod)
	if po.Status.Phase == corev1.PodSucceeded || po.Status.Phase == corev1.PodFailed {
		// A terminal pod has released its IP: whatever gets the address
		// next must not inherit its identity. It is no endpoint, no
		// backend and no workload.
		return
	}
	p := c.newPod(o, "Pod", po.Name, o.Namespace, po.Labels, "metadata.labels", &po.Spec, "spec")
	p.node = po.Spec.NodeName
	if c.implied {
		p.node = ImpliedNode
	} else if p.node != "" && !c.nodeNames[p.node] {
		c.errorf(o, "spec.nodeName", "node %q is not among the %d Node objects of the input; add the Node or fix the name", p.node, len(c.nodes))
	}
	for _, ref := range po.OwnerReferences {
		if ref.Controller != nil && *ref.Controller || len(po.OwnerReferences) == 1 {
			p.owner = ref.Kind + "/" + ref.Name
			break
		}
	}
	ips := po.Status.PodIPs
	if len(ips) == 0 && po.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: po.Status.PodIP}}
	}
	for i, a := range ips {
		field := fmt.Sprintf("status.podIPs[%d].ip", i)
		if len(po.Status.PodIPs) == 0 {
			field = "status.podIP"
		}
		ip, err := netip.ParseAddr(a.IP)
		if err != nil {
			c.errorf(o, field, "invalid IP address %q; expected an IPv4 or IPv6 address such as 10.0.1.5", a.IP)
			continue
		}
		p.ips = append(p.ips, ip)
	}
	if len(p.ips) > 0 && p.node == "" {
		// A pod gets its address on its node. Without one it would be
		// enforced nowhere and known to no node's ipcache.
		c.errorf(o, "spec.nodeName", "the pod has an IP (%s) but no spec.nodeName; a pod gets its IP on its node: set spec.nodeName to one of the %d Node objects, or remove status.podIP and status.podIPs", p.ips[0], len(c.nodes))
	}
	for _, cond := range po.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionFalse {
			p.ready = false
		}
	}
	if po.DeletionTimestamp != nil {
		p.terminate, p.ready = true, false
	}
	c.pods = append(c.pods, p)
}

func (c *compilation) template(o *schema.Object) {
	var meta map[string]string
	var spec *corev1.PodSpec
	switch w := o.Obj.(type) {
	case *appsv1.Deployment:
		meta, spec = w.Spec.Template.Labels, &w.Spec.Template.Spec
	case *appsv1.ReplicaSet:
		meta, spec = w.Spec.Template.Labels, &w.Spec.Template.Spec
	case *appsv1.StatefulSet:
		meta, spec = w.Spec.Template.Labels, &w.Spec.Template.Spec
	case *appsv1.DaemonSet:
		meta, spec = w.Spec.Template.Labels, &w.Spec.Template.Spec
	case *batchv1.Job:
		meta, spec = w.Spec.Template.Labels, &w.Spec.Template.Spec
	default:
		return
	}
	c.templates = append(c.templates, c.newPod(o, o.Kind, o.Name, o.Namespace, meta, "spec.template.metadata.labels", spec, "spec.template.spec"))
}

// addNamespaceLabels completes a pod's identity labels with its
// namespace's labels.
func (c *compilation) addNamespaceLabels(p *pod) {
	if ns := c.namespaces[p.namespace]; ns != nil {
		for k, v := range ns.Labels {
			p.secLabels[ir.LabelNamespacePrefix+k] = v
		}
	}
	keys := make([]string, 0, len(p.secLabels))
	for k := range p.secLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(p.secLabels[k])
		b.WriteByte(0)
	}
	p.canon = b.String()
}

// allocateIdentities numbers every distinct label set. See the package
// documentation for why this is stable.
func (c *compilation) allocateIdentities() {
	labelsOf := map[string]map[string]string{}
	all := append(append([]*pod(nil), c.pods...), c.templates...)
	for _, p := range all {
		c.addNamespaceLabels(p)
		labelsOf[p.canon] = p.secLabels
	}
	canons := make([]string, 0, len(labelsOf))
	for k := range labelsOf {
		canons = append(canons, k)
	}
	sort.Strings(canons)
	taken := map[uint32]string{}
	span := uint64(ir.MaxWorkloadIdentity - ir.MinWorkloadIdentity + 1)
	for _, canon := range canons {
		id := ir.MinWorkloadIdentity + uint32(fnv64(canon)%span)
		for taken[id] != "" {
			c.collide = append(c.collide, fmt.Sprintf("identity %d of {%s} collides with {%s}; probing", id, printable(taken[id]), printable(canon)))
			id++
			if id > ir.MaxWorkloadIdentity {
				id = ir.MinWorkloadIdentity
			}
		}
		taken[id] = canon
		c.idOf[canon] = id
	}
	for _, p := range all {
		p.identity = c.idOf[p.canon]
	}
	c.idents = append(c.idents, reservedIdentities()...)
	for _, canon := range canons {
		c.idents = append(c.idents, ir.Identity{ID: c.idOf[canon], Labels: labelsOf[canon]})
	}
	sort.Slice(c.idents, func(i, j int) bool { return c.idents[i].ID < c.idents[j].ID })
}

func printable(canon string) string {
	return strings.ReplaceAll(strings.TrimSuffix(canon, "\x00"), "\x00", ",")
}

func reservedIdentities() []ir.Identity {
	r := func(id uint32, label string) ir.Identity {
		return ir.Identity{ID: id, Labels: map[string]string{label: ""}, Reserved: true}
	}
	return []ir.Identity{
		r(ir.IdentityHost, ir.LabelHost),
		r(ir.IdentityWorld, ir.LabelWorld),
		r(ir.IdentityUnmanaged, ir.LabelUnmanaged),
		r(ir.IdentityHealth, ir.LabelHealth),
		r(ir.IdentityInit, ir.LabelInit),
		r(ir.IdentityRemoteNode, ir.LabelRemoteNode),
		r(ir.IdentityKubeAPIServer, ir.LabelKubeAPIServer),
	}
}

// fnv64 is FNV-1a: fixed, documented and independent of the Go release, so
// identities do not change with the toolchain.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// endpoints turns pods with addresses into endpoints, and every pod and
// template into the workload table.
func (c *compilation) endpoints(cl *ir.Cluster) {
	seenIP := map[netip.Addr]*pod{}
	var firstV6 *pod
	v6 := 0
	for _, p := range c.pods {
		if p.hostNet || len(p.ips) == 0 {
			// A pod without an address is a workload only (the agent finds
			// the pods with addresses among the endpoints).
			cl.Workloads = append(cl.Workloads, ir.Workload{Namespace: p.namespace, Kind: p.kind, Name: p.name, Identity: p.identity, NamedPorts: p.named, Source: src(p.obj)})
			continue
		}
		for _, ip := range p.ips {
			if ip.Is6() {
				if v6++; firstV6 == nil || lessSource(src(p.obj), src(firstV6.obj)) {
					firstV6 = p
				}
			}
			if prev := seenIP[ip]; prev != nil {
				c.errorf(p.obj, "status.podIP", "pod IP %s is also the IP of Pod %s/%s (%s); pod IPs must be unique", ip, prev.namespace, prev.name, prev.obj.Pos)
			}
			seenIP[ip] = p
		}
		cl.Endpoints = append(cl.Endpoints, ir.Endpoint{Namespace: p.namespace, Name: p.name, Node: p.node, IPs: p.ips, Identity: p.identity, NamedPorts: p.named, Owner: p.owner, Source: src(p.obj)})
	}
	if firstV6 != nil {
		c.warnf(firstV6.obj, "status.podIPs", "%d pod IPv6 address(es) (the first here): IPv6 is not enforced yet; IPv6 to and from a pod that a policy isolates or applies a deny rule to is dropped, so is all IPv6 of a pod without an IPv4 address, and IPv6 addresses are not in the ipcache", v6)
	}
	for _, p := range c.templates {
		cl.Workloads = append(cl.Workloads, ir.Workload{Namespace: p.namespace, Kind: p.kind, Name: p.name, Identity: p.identity, NamedPorts: p.named, Source: src(p.obj)})
	}
	sort.Slice(cl.Endpoints, func(i, j int) bool {
		a, b := &cl.Endpoints[i], &cl.Endpoints[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	sort.Slice(cl.Workloads, func(i, j int) bool {
		a, b := cl.Workloads[i], cl.Workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
}

// Load reads and compiles manifests: the front half of sluice compile,
// trace and diff. The set is returned even on error, for Format's source
// lines.
func Load(paths []string, stdin io.Reader, opts Options) (*schema.Set, *ir.Cluster, schema.Diagnostics) {
	set, diags := schema.Load(paths, stdin)
	if len(diags) > 0 {
		return set, nil, diags
	}
	cl, diags := Compile(set, opts)
	return set, cl, diags
}

// Digest is the sha256 of the inputs that produced objects: the sorted
// file names with the sha256 of their contents. It does not depend on the
// order the inputs were given in.
func Digest(set *schema.Set) string {
	files := map[string]bool{}
	for _, o := range set.Objects {
		files[o.Pos.File] = true
	}
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, f := range names {
		sum := sha256.Sum256(set.Source(f))
		fmt.Fprintf(h, "%s\x00%x\n", f, sum)
	}
	return hex.EncodeToString(h.Sum(nil))
}
