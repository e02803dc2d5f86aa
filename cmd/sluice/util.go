package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/sluicenet/sluice/ir"
)

func writeFile(path string, data []byte) error {
	return os.WriteFile(path, data, 0o644)
}

// parsePort parses "80/TCP", "53/udp", "8/ICMP" (an ICMP type) or "80"
// (TCP).
func parsePort(s string) (ir.PortProto, error) {
	num, proto, found := strings.Cut(s, "/")
	pp := ir.PortProto{Proto: ir.ProtoTCP}
	if found {
		p, ok := ir.ParseProto(strings.ToUpper(proto))
		if !ok || p == ir.ProtoAny {
			return pp, fmt.Errorf("port %q: unknown protocol %q; accepted: TCP, UDP, SCTP, ICMP", s, proto)
		}
		pp.Proto = p
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > 65535 {
		return pp, fmt.Errorf("port %q: expected PORT/PROTO such as 80/TCP, with PORT 0-65535", s)
	}
	if (pp.Proto == ir.ProtoICMP || pp.Proto == ir.ProtoICMPv6) && n > 255 {
		return pp, fmt.Errorf("port %q: an ICMP type is 0-255", s)
	}
	pp.Port = uint16(n)
	return pp, nil
}

// resolvePeer turns NS/POD, node:NAME or an IP into an address.
func resolvePeer(ev *ir.Evaluator, s string) (netip.Addr, error) {
	cl := ev.Cluster()
	if name, ok := strings.CutPrefix(s, "node:"); ok {
		n := ev.Node(name)
		if n == nil {
			var names []string
			for _, n := range cl.Nodes {
				names = append(names, n.Name)
			}
			return netip.Addr{}, fmt.Errorf("no node %q; nodes: %s", name, strings.Join(names, ", "))
		}
		if len(n.IPs) == 0 {
			return netip.Addr{}, fmt.Errorf("node %q has no address (status.addresses)", name)
		}
		return n.IPs[0], nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip, nil
	}
	if ns, name, ok := strings.Cut(s, "/"); ok {
		for i := range cl.Endpoints {
			e := &cl.Endpoints[i]
			if e.Namespace == ns && e.Name == name {
				for _, ip := range e.IPs {
					if ip.Is4() {
						return ip, nil
					}
				}
				return e.IPs[0], nil
			}
		}
		for _, w := range cl.Workloads {
			if w.Kind == "Pod" && w.Namespace == ns && w.Name == name {
				return netip.Addr{}, fmt.Errorf("pod %s has no address (status.podIP) or uses the host network", s)
			}
		}
		return netip.Addr{}, fmt.Errorf("no pod %s in the input", s)
	}
	return netip.Addr{}, fmt.Errorf("peer %q: expected NAMESPACE/POD, node:NAME or an IP address", s)
}

// resolveDestination is resolvePeer, plus svc:NAMESPACE/NAME for a
// service's ClusterIP. A service has its own prefix because NAMESPACE/NAME
// already means a pod, and pods and services share names.
func resolveDestination(ev *ir.Evaluator, s string) (netip.Addr, error) {
	key, ok := strings.CutPrefix(s, "svc:")
	if !ok {
		ip, err := resolvePeer(ev, s)
		if err != nil && strings.Contains(s, "/") && !strings.HasPrefix(s, "node:") && serviceByKey(ev, s) != nil {
			err = fmt.Errorf("%w; for the Service %s, write svc:%s", err, s, s)
		}
		return ip, err
	}
	svc := serviceByKey(ev, key)
	if svc == nil {
		return netip.Addr{}, fmt.Errorf("no service %s in the input", key)
	}
	for _, ip := range svc.ClusterIPs {
		if ip.Is4() {
			return ip, nil
		}
	}
	switch {
	case svc.Type == "ExternalName":
		return netip.Addr{}, fmt.Errorf("service %s is an ExternalName: DNS answers for it, and no datapath frontend exists", key)
	case svc.Headless:
		return netip.Addr{}, fmt.Errorf("service %s is headless: its clients reach the pods directly; trace a pod", key)
	}
	return netip.Addr{}, fmt.Errorf("service %s has no IPv4 ClusterIP (spec.clusterIP); give its address", key)
}

func serviceByKey(ev *ir.Evaluator, key string) *ir.Service {
	for i := range ev.Cluster().Services {
		if s := &ev.Cluster().Services[i]; s.Key() == key {
			return s
		}
	}
	return nil
}
