package emit

import (
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/sluicenet/sluice/ir"
)

type svcEntry struct {
	key  ServiceKey
	val  ServiceValue
	what string // for the dump: service and frontend kind, or backend
}

type frontend struct {
	svc   *ir.Service
	port  ir.ServicePort
	addr  netip.Addr
	dport uint16
	flags uint8
	kind  string
}

// lb is the load-balancing state: shared tables plus what each node
// lists for its Local-policy services.
type lb struct {
	services  []svcEntry
	backends  []backendEntry
	revnat    []revnatEntry
	local     map[string][]svcEntry
	maglev    []maglevEntry // by revnat
	frontends int
}

// maglevEntry is an external frontend's Maglev table, in backend ids.
type maglevEntry struct {
	revnat uint16
	what   string
	names  []string // the backends, as Maglev hashes them
	ids    []uint32 // their backend ids
	table  []uint32
}

type backendEntry struct {
	id   uint32
	val  BackendValue
	what string
}

type revnatEntry struct {
	idx uint16
	val RevNatValue
}

type beKey struct {
	ip    netip.Addr
	port  uint16
	proto ir.Proto
}

func (p *plan) buildLB() (*lb, error) {
	out := &lb{local: map[string][]svcEntry{}}
	// Backend ids: every distinct address:port/proto, in sorted order.
	seen := map[beKey]*ir.Backend{}
	var keys []beKey
	for i := range p.c.Services {
		for j := range p.c.Services[i].Backends {
			b := &p.c.Services[i].Backends[j]
			if !b.IP.Is4() {
				continue
			}
			k := beKey{b.IP, b.Port, b.Proto}
			if seen[k] == nil {
				seen[k] = b
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if c := a.ip.Compare(b.ip); c != 0 {
			return c < 0
		}
		if a.port != b.port {
			return a.port < b.port
		}
		return a.proto < b.proto
	})
	ids := map[beKey]uint32{}
	for i, k := range keys {
		ids[k] = uint32(i + 1)
		b := seen[k]
		node := NodeNone
		if idx, ok := p.nodeIdx[b.Node]; ok {
			node = idx
		}
		out.backends = append(out.backends, backendEntry{id: uint32(i + 1), val: BackendValue{Addr: k.ip, Port: k.port, Proto: uint8(k.proto), Node: node}, what: b.Pod})
	}

	var fes []frontend
	for i := range p.c.Services {
		s := &p.c.Services[i]
		if s.Headless || s.Type == "ExternalName" {
			continue
		}
		for _, sp := range s.Ports {
			add := func(addr netip.Addr, port uint16, flags uint8, kind string) {
				if addr.Is4() {
					fes = append(fes, frontend{svc: s, port: sp, addr: addr, dport: port, flags: flags, kind: kind})
				}
			}
			for _, ip := range s.ClusterIPs {
				add(ip, sp.Port, SvcFlagClusterIP, "ClusterIP")
			}
			for _, ip := range s.ExternalIPs {
				add(ip, sp.Port, SvcFlagExternalIP, "ExternalIP")
			}
			for _, ip := range s.LoadBalancerIPs {
				add(ip, sp.Port, SvcFlagLoadBalancer, "LoadBalancer")
			}
			if sp.NodePort != 0 {
				add(netip.IPv4Unspecified(), sp.NodePort, SvcFlagNodePort, "NodePort")
			}
		}
	}
	sort.SliceStable(fes, func(i, j int) bool {
		a, b := fes[i], fes[j]
		if c := a.addr.Compare(b.addr); c != 0 {
			return c < 0
		}
		if a.dport != b.dport {
			return a.dport < b.dport
		}
		return a.port.Proto < b.port.Proto
	})
	var errs []string
	for i := 1; i < len(fes); i++ {
		a, b := fes[i-1], fes[i]
		if a.addr == b.addr && a.dport == b.dport && a.port.Proto == b.port.Proto {
			errs = append(errs, fmt.Sprintf("%s: frontend %s:%d/%s of Service %s is also a frontend of Service %s (%s); a frontend must belong to one service",
				b.svc.Source, b.addr, b.dport, b.port.Proto, b.svc.Key(), a.svc.Key(), a.svc.Source))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	if len(fes) > 0xffff {
		return nil, fmt.Errorf("%d service frontends: more than the 65535 that a 16-bit reverse-NAT index holds", len(fes))
	}
	out.frontends = len(fes)
	for i, fe := range fes {
		rev := uint16(i + 1)
		out.revnat = append(out.revnat, revnatEntry{idx: rev, val: RevNatValue{Addr: fe.addr, Port: fe.dport}})
		active := fe.svc.ActiveBackends(fe.port, "")
		flags := fe.flags
		if fe.svc.AffinityTimeout > 0 {
			flags |= SvcFlagAffinity
		}
		external := fe.flags&(SvcFlagExternalIP|SvcFlagLoadBalancer|SvcFlagNodePort) != 0
		localScope := (external && fe.svc.ExternalTrafficLocal) || (!external && fe.svc.InternalTrafficLocal)
		if localScope {
			if external {
				flags |= SvcFlagLocalExternal
			} else {
				flags |= SvcFlagLocalInternal
			}
		}
		what := fmt.Sprintf("%s %s", fe.svc.Key(), fe.kind)
		// External frontends (NodePort, ExternalIPs, LoadBalancer) reached
		// by packets rather than sockets pick backends by Maglev, so that
		// every node picks the same one for a flow. With a Local external
		// policy each node has its own backends: no table.
		if external && !localScope && len(active) > 0 {
			names := make([]string, len(active))
			backendIDs := make([]uint32, len(active))
			for i, b := range active {
				names[i] = fmt.Sprintf("%s:%d/%s", b.IP, b.Port, b.Proto)
				backendIDs[i] = ids[beKey{b.IP, b.Port, b.Proto}]
			}
			out.maglev = append(out.maglev, maglevEntry{revnat: rev, what: fmt.Sprintf("%s:%d/%s %s", fe.addr, fe.dport, fe.port.Proto, what),
				names: names, ids: backendIDs})
		}
		out.services = append(out.services, master(fe, ScopeAll, rev, flags, p.reject, active, what))
		for slot, b := range active {
			out.services = append(out.services, svcEntry{key: ServiceKey{Addr: fe.addr, Port: fe.dport, Slot: uint16(slot + 1), Proto: uint8(fe.port.Proto)},
				val: ServiceValue{Backend: ids[beKey{b.IP, b.Port, b.Proto}], RevNat: rev}, what: b.Pod})
		}
		if localScope {
			reject := p.reject
			for _, node := range p.nodes {
				loc := fe.svc.ActiveBackends(fe.port, node)
				p := &out.local
				(*p)[node] = append((*p)[node], master(fe, ScopeLocal, rev, flags, reject, loc, what+" (local)"))
				for slot, b := range loc {
					(*p)[node] = append((*p)[node], svcEntry{key: ServiceKey{Addr: fe.addr, Port: fe.dport, Slot: uint16(slot + 1), Proto: uint8(fe.port.Proto), Scope: ScopeLocal},
						val: ServiceValue{Backend: ids[beKey{b.IP, b.Port, b.Proto}], RevNat: rev}, what: b.Pod})
				}
			}
		}
	}
	// The tables are independent: fill them in parallel.
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range out.maglev {
		e := &out.maglev[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			idx := MaglevTable(e.names, p.maglevM)
			e.table = make([]uint32, len(idx))
			for j, k := range idx {
				e.table[j] = e.ids[k]
			}
		}()
	}
	wg.Wait()
	return out, nil
}

func master(fe frontend, scope uint8, rev uint16, flags uint8, reject bool, active []*ir.Backend, what string) svcEntry {
	v := ServiceValue{Count: uint16(len(active)), RevNat: rev, Flags: flags}
	if reject {
		v.Flags2 |= SvcFlag2Reject
	}
	if flags&SvcFlagAffinity != 0 {
		v.Backend = fe.svc.AffinityTimeout
	}
	if len(active) == 0 {
		v.Flags2 |= SvcFlag2NoBackends
	}
	return svcEntry{key: ServiceKey{Addr: fe.addr, Port: fe.dport, Proto: uint8(fe.port.Proto), Scope: scope}, val: v, what: what}
}
