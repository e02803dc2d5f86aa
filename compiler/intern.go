package compiler

import (
	"strings"

	"github.com/sluicenet/sluice/ir"
)

// interner copies the strings of a cluster out of the decoded input, once
// per distinct value: the decoder's strings share the bytes of whole input
// files, and one label kept from a file would keep the whole file alive.
type interner map[string]string

func (in interner) s(p *string) {
	if v, ok := in[*p]; ok {
		*p = v
		return
	}
	v := strings.Clone(*p)
	in[v] = v
	*p = v
}

func (in interner) labels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		in.s(&k)
		in.s(&v)
		out[k] = v
	}
	return out
}

func (in interner) selector(s *ir.Selector) {
	if s == nil {
		return
	}
	for i := range s.Requirements {
		r := &s.Requirements[i]
		in.s(&r.Key)
		for j := range r.Values {
			in.s(&r.Values[j])
		}
	}
}

func (in interner) source(s *ir.Source) { in.s(&s.File) }

func (in interner) named(nps []ir.NamedPort) {
	for i := range nps {
		in.s(&nps[i].Name)
	}
}

// intern makes every string of the cluster its own.
func intern(cl *ir.Cluster) {
	in := interner{}
	for i := range cl.Nodes {
		n := &cl.Nodes[i]
		in.s(&n.Name)
		n.Labels = in.labels(n.Labels)
		in.source(&n.Source)
	}
	for i := range cl.Namespaces {
		n := &cl.Namespaces[i]
		in.s(&n.Name)
		n.Labels = in.labels(n.Labels)
		in.source(&n.Source)
	}
	for i := range cl.Identities {
		cl.Identities[i].Labels = in.labels(cl.Identities[i].Labels)
	}
	for i := range cl.Endpoints {
		e := &cl.Endpoints[i]
		in.s(&e.Namespace)
		in.s(&e.Name)
		in.s(&e.Node)
		in.s(&e.Owner)
		in.named(e.NamedPorts)
		in.source(&e.Source)
	}
	for i := range cl.Workloads {
		w := &cl.Workloads[i]
		in.s(&w.Namespace)
		in.s(&w.Kind)
		in.s(&w.Name)
		in.named(w.NamedPorts)
		in.source(&w.Source)
	}
	for i := range cl.Policies {
		p := &cl.Policies[i]
		in.s(&p.Kind)
		in.s(&p.Namespace)
		in.s(&p.Name)
		in.selector(&p.Subject)
		for _, reqs := range [][]ir.Selector{p.IngressRequires, p.EgressRequires, p.IngressDenyRequires, p.EgressDenyRequires} {
			for j := range reqs {
				in.selector(&reqs[j])
			}
		}
		in.source(&p.Source)
		for j := range p.Rules {
			r := &p.Rules[j]
			in.s(&r.Field)
			in.source(&r.Source)
			for k := range r.Peers {
				pe := &r.Peers[k]
				in.selector(pe.Selector)
				in.s(&pe.Entity)
				in.source(&pe.Source)
			}
			for k := range r.Ports {
				in.s(&r.Ports[k].Name)
				in.source(&r.Ports[k].Source)
			}
		}
	}
	for i := range cl.Services {
		s := &cl.Services[i]
		in.s(&s.Namespace)
		in.s(&s.Name)
		in.s(&s.Type)
		in.selector(s.Selector)
		in.source(&s.Source)
		for j := range s.Ports {
			in.s(&s.Ports[j].Name)
			in.s(&s.Ports[j].TargetName)
		}
		for j := range s.Backends {
			b := &s.Backends[j]
			in.s(&b.PortName)
			in.s(&b.Node)
			in.s(&b.Pod)
			in.s(&b.Zone)
		}
	}
	for i := range cl.Dropped {
		d := &cl.Dropped[i]
		in.s(&d.Policy)
		in.s(&d.Field)
		in.s(&d.Reason)
		in.source(&d.Source)
	}
}
