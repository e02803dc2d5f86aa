package compiler

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// defaultAffinityTimeout is Kubernetes' default ClientIP affinity, 3 hours.
const defaultAffinityTimeout = 10800

// services resolves every Service: frontends from its spec and status,
// backends from EndpointSlices, else legacy Endpoints, else the pods its
// selector matches.
func (c *compilation) services(cl *ir.Cluster, byKind map[string][]*schema.Object) {
	slices := map[string][]*schema.Object{} // namespace/service → slices
	for _, o := range byKind["EndpointSlice"] {
		es := o.Obj.(*discoveryv1.EndpointSlice)
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue // not managed for a Service: nothing refers to it
		}
		slices[o.Namespace+"/"+name] = append(slices[o.Namespace+"/"+name], o)
	}
	endpoints := map[string]*schema.Object{}
	for _, o := range byKind["Endpoints"] {
		endpoints[o.Namespace+"/"+o.Name] = o
	}
	podsByNS := map[string][]*pod{}
	podByIP := map[netip.Addr]*pod{}
	for _, p := range c.pods {
		podsByNS[p.namespace] = append(podsByNS[p.namespace], p)
		for _, ip := range p.ips {
			podByIP[ip] = p
		}
	}
	for _, o := range byKind["Service"] {
		if _, other := o.Obj.(*corev1.Service).Labels[ServiceProxyNameLabel]; other {
			// Served by another proxy: kube-proxy, and Sluice, leave it
			// alone (toServices still resolves it: that is policy).
			continue
		}
		s, ok := c.service(o)
		if !ok {
			continue
		}
		key := o.Namespace + "/" + o.Name
		switch {
		case s.Type == "ExternalName":
			s.BackendsFrom = "none"
		case len(slices[key]) > 0:
			s.BackendsFrom = "EndpointSlice"
			for _, so := range slices[key] {
				c.sliceBackends(&s, so, podByIP)
			}
		case endpoints[key] != nil:
			s.BackendsFrom = "Endpoints"
			c.endpointsBackends(&s, endpoints[key], podByIP)
		case s.Selector != nil:
			s.BackendsFrom = "selector"
			c.selectorBackends(&s, o, podsByNS[o.Namespace])
		default:
			s.BackendsFrom = "none"
		}
		sort.Slice(s.Backends, func(i, j int) bool {
			a, b := s.Backends[i], s.Backends[j]
			if a.PortName != b.PortName {
				return a.PortName < b.PortName
			}
			if c := a.IP.Compare(b.IP); c != 0 {
				return c < 0
			}
			if a.Port != b.Port {
				return a.Port < b.Port
			}
			return a.Proto < b.Proto
		})
		cl.Services = append(cl.Services, s)
	}
	sort.Slice(cl.Services, func(i, j int) bool { return cl.Services[i].Key() < cl.Services[j].Key() })
}

func (c *compilation) service(o *schema.Object) (ir.Service, bool) {
	svc := o.Obj.(*corev1.Service)
	before := len(c.diags)
	s := ir.Service{Namespace: o.Namespace, Name: o.Name, Type: string(svc.Spec.Type), Source: src(o)}
	if s.Type == "" {
		s.Type = "ClusterIP"
	}
	switch s.Type {
	case "ClusterIP", "NodePort", "LoadBalancer", "ExternalName":
	default:
		c.errorf(o, "spec.type", "unknown service type %q; accepted: ClusterIP, NodePort, LoadBalancer, ExternalName", s.Type)
	}
	if len(svc.Spec.Selector) > 0 {
		sel := ir.Selector{}
		for k, v := range svc.Spec.Selector {
			sel.Requirements = append(sel.Requirements, ir.Requirement{Key: k, Op: ir.OpIn, Values: []string{v}})
		}
		sel = inNamespace(sel, o.Namespace)
		s.Selector = &sel
	}
	ips := svc.Spec.ClusterIPs
	field := "spec.clusterIPs[%d]"
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips, field = []string{svc.Spec.ClusterIP}, "spec.clusterIP"
	}
	for i, a := range ips {
		if a == corev1.ClusterIPNone {
			s.Headless = true
			continue
		}
		if ip, ok := c.addr(o, indexed(field, i), a); ok {
			s.ClusterIPs = append(s.ClusterIPs, ip)
		}
	}
	for i, a := range svc.Spec.ExternalIPs {
		if ip, ok := c.addr(o, fmt.Sprintf("spec.externalIPs[%d]", i), a); ok {
			s.ExternalIPs = append(s.ExternalIPs, ip)
		}
	}
	if s.Type == "LoadBalancer" {
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" {
				continue // a hostname: resolved by DNS, not by us
			}
			if ip, ok := c.addr(o, fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), ing.IP); ok {
				s.LoadBalancerIPs = append(s.LoadBalancerIPs, ip)
			}
		}
	}
	names := map[string]bool{}
	for i, sp := range svc.Spec.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		proto, ok := c.k8sProto(o, f+".protocol", string(sp.Protocol))
		if !ok {
			continue
		}
		if sp.Port < 1 || sp.Port > 65535 {
			c.errorf(o, f+".port", "port %d out of range; accepted: 1-65535", sp.Port)
			continue
		}
		if names[sp.Name] {
			c.errorf(o, f+".name", "port name %q is used twice; every port of a multi-port service needs a unique name", sp.Name)
			continue
		}
		names[sp.Name] = true
		p := ir.ServicePort{Name: sp.Name, Proto: proto, Port: uint16(sp.Port)}
		if sp.NodePort != 0 {
			if s.Type != "NodePort" && s.Type != "LoadBalancer" {
				c.errorf(o, f+".nodePort", "nodePort is only valid for type NodePort or LoadBalancer, not %s", s.Type)
				continue
			}
			if sp.NodePort < 1 || sp.NodePort > 65535 {
				c.errorf(o, f+".nodePort", "nodePort %d out of range; accepted: 1-65535 (the default node port range is 30000-32767)", sp.NodePort)
				continue
			}
			p.NodePort = uint16(sp.NodePort)
		}
		switch {
		case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
			if !c.portName(o, f+".targetPort", sp.TargetPort.StrVal) {
				continue
			}
			p.TargetName = sp.TargetPort.StrVal
		case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
			if sp.TargetPort.IntVal < 1 || sp.TargetPort.IntVal > 65535 {
				c.errorf(o, f+".targetPort", "targetPort %d out of range; accepted: 1-65535 or a port name", sp.TargetPort.IntVal)
				continue
			}
			p.TargetPort = uint16(sp.TargetPort.IntVal)
		default:
			p.TargetPort = p.Port // Kubernetes defaults targetPort to port
		}
		s.Ports = append(s.Ports, p)
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		s.AffinityTimeout = defaultAffinityTimeout
		if cfg := svc.Spec.SessionAffinityConfig; cfg != nil && cfg.ClientIP != nil && cfg.ClientIP.TimeoutSeconds != nil {
			t := *cfg.ClientIP.TimeoutSeconds
			if t < 1 || t > 86400 {
				c.errorf(o, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "timeout %d out of range; accepted: 1-86400 seconds", t)
			} else {
				s.AffinityTimeout = uint32(t)
			}
		}
	} else if svc.Spec.SessionAffinity != "" && svc.Spec.SessionAffinity != corev1.ServiceAffinityNone {
		c.errorf(o, "spec.sessionAffinity", "unknown session affinity %q; accepted: None, ClientIP", svc.Spec.SessionAffinity)
	}
	s.ExternalTrafficLocal = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	if p := svc.Spec.InternalTrafficPolicy; p != nil {
		s.InternalTrafficLocal = *p == corev1.ServiceInternalTrafficPolicyLocal
	}
	return s, len(c.diags) == before
}

func indexed(field string, i int) string {
	if field == "spec.clusterIP" {
		return field
	}
	return fmt.Sprintf(field, i)
}

func (c *compilation) addr(o *schema.Object, field, s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		c.errorf(o, field, "invalid IP address %q; expected an IPv4 or IPv6 address such as 10.96.0.10", s)
		return netip.Addr{}, false
	}
	return ip, true
}

// portFor finds the service port that a named endpoint port serves.
func portFor(s *ir.Service, name string) *ir.ServicePort {
	for i := range s.Ports {
		if s.Ports[i].Name == name {
			return &s.Ports[i]
		}
	}
	return nil
}

func (c *compilation) nodeOf(name string, ip netip.Addr, podByIP map[netip.Addr]*pod) string {
	if c.implied {
		return ImpliedNode
	}
	if name != "" {
		return name
	}
	if p := podByIP[ip]; p != nil {
		return p.node
	}
	for _, n := range c.nodes {
		for _, nip := range n.IPs {
			if nip == ip {
				return n.Name
			}
		}
	}
	return ""
}

func (c *compilation) sliceBackends(s *ir.Service, o *schema.Object, podByIP map[netip.Addr]*pod) {
	es := o.Obj.(*discoveryv1.EndpointSlice)
	switch es.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	case discoveryv1.AddressTypeFQDN:
		return // resolved by DNS, not a datapath backend
	default:
		c.errorf(o, "addressType", "unknown address type %q; accepted: IPv4, IPv6, FQDN", es.AddressType)
		return
	}
	for i, ep := range es.Endpoints {
		ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
		serving := ready
		if ep.Conditions.Serving != nil {
			serving = *ep.Conditions.Serving
		}
		terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
		zone := ""
		if ep.Zone != nil {
			zone = *ep.Zone
		}
		podName := ""
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
			ns := ep.TargetRef.Namespace
			if ns == "" {
				ns = o.Namespace
			}
			podName = ns + "/" + ep.TargetRef.Name
		}
		for j, a := range ep.Addresses {
			ip, ok := c.addr(o, fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), a)
			if !ok {
				continue
			}
			node := ""
			if ep.NodeName != nil {
				node = *ep.NodeName
			}
			for k, port := range es.Ports {
				name := ""
				if port.Name != nil {
					name = *port.Name
				}
				sp := portFor(s, name)
				if sp == nil {
					continue // a port the service does not expose
				}
				proto := ir.ProtoTCP
				if port.Protocol != nil {
					var ok bool
					if proto, ok = c.k8sProto(o, fmt.Sprintf("ports[%d].protocol", k), string(*port.Protocol)); !ok {
						continue
					}
				}
				if port.Port == nil || *port.Port < 1 || *port.Port > 65535 {
					c.errorf(o, fmt.Sprintf("ports[%d].port", k), "endpoint port must be set and within 1-65535")
					continue
				}
				s.Backends = append(s.Backends, ir.Backend{PortName: name, IP: ip, Port: uint16(*port.Port), Proto: proto,
					Node: c.nodeOf(node, ip, podByIP), Pod: podName, Ready: ready, Serving: serving, Terminating: terminating, Zone: zone})
			}
		}
	}
}

func (c *compilation) endpointsBackends(s *ir.Service, o *schema.Object, podByIP map[netip.Addr]*pod) {
	eps := o.Obj.(*corev1.Endpoints)
	for i, sub := range eps.Subsets {
		add := func(field string, addrs []corev1.EndpointAddress, ready bool) {
			for j, a := range addrs {
				ip, ok := c.addr(o, fmt.Sprintf("subsets[%d].%s[%d].ip", i, field, j), a.IP)
				if !ok {
					continue
				}
				node := ""
				if a.NodeName != nil {
					node = *a.NodeName
				}
				podName := ""
				if a.TargetRef != nil && a.TargetRef.Kind == "Pod" {
					podName = o.Namespace + "/" + a.TargetRef.Name
				}
				for k, port := range sub.Ports {
					sp := portFor(s, port.Name)
					if sp == nil {
						continue
					}
					proto, ok := c.k8sProto(o, fmt.Sprintf("subsets[%d].ports[%d].protocol", i, k), string(port.Protocol))
					if !ok {
						continue
					}
					if port.Port < 1 || port.Port > 65535 {
						c.errorf(o, fmt.Sprintf("subsets[%d].ports[%d].port", i, k), "port %d out of range; accepted: 1-65535", port.Port)
						continue
					}
					s.Backends = append(s.Backends, ir.Backend{PortName: port.Name, IP: ip, Port: uint16(port.Port), Proto: proto,
						Node: c.nodeOf(node, ip, podByIP), Pod: podName, Ready: ready, Serving: ready})
				}
			}
		}
		add("addresses", sub.Addresses, true)
		add("notReadyAddresses", sub.NotReadyAddresses, false)
	}
}

// selectorBackends derives backends from the pods a selector matches, as
// the EndpointSlice controller would, so that a repository of plain
// manifests compiles. Pod labels (not identity labels) are matched.
func (c *compilation) selectorBackends(s *ir.Service, o *schema.Object, pods []*pod) {
	svc := o.Obj.(*corev1.Service)
	for _, p := range pods {
		if len(p.ips) == 0 {
			continue
		}
		match := true
		for k, v := range svc.Spec.Selector {
			if p.labels[k] != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		for _, sp := range s.Ports {
			port := sp.TargetPort
			if sp.TargetName != "" {
				port = 0
				for _, np := range p.named {
					if np.Name == sp.TargetName && np.Proto == sp.Proto {
						port = np.Port
					}
				}
				if port == 0 {
					continue // the pod lacks the named port: not a backend
				}
			}
			for _, ip := range p.ips {
				s.Backends = append(s.Backends, ir.Backend{PortName: sp.Name, IP: ip, Port: port, Proto: sp.Proto, Node: p.node,
					Pod: p.namespace + "/" + p.name, Ready: p.ready, Serving: p.ready || p.terminate, Terminating: p.terminate})
			}
		}
	}
}

// ServiceProxyNameLabel marks a Service that another proxy serves: it gets
// no frontend, as kube-proxy leaves it alone.
const ServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name"
