package ir

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Change is one difference between two clusters, for sluice diff.
type Change struct {
	Section string `json:"section"` // identities, policies, access, services
	Op      string `json:"op"`      // + added or now allowed, - removed or now denied, ~ changed
	Text    string `json:"text"`
	// Access changes carry the pair and both verdicts with their reasons.
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Ports  []string  `json:"ports,omitempty"`
	Before *Decision `json:"before,omitempty"`
	After  *Decision `json:"after,omitempty"`
}

// Diff lists what changed in identities, policies, access and services
// from old to new. Access is compared by evaluating both clusters on the
// pairs whose verdict can have changed: pods whose policies changed, and
// peers that are new or gone, against every other peer, on every port the
// rules of either cluster mention.
func Diff(old, new *Cluster) []Change {
	var out []Change
	out = append(out, diffIdentities(old, new)...)
	out = append(out, diffPolicies(old, new)...)
	out = append(out, diffAccess(old, new)...)
	out = append(out, diffServices(old, new)...)
	return out
}

// WriteDiff prints changes as text, a section at a time.
func WriteDiff(w io.Writer, changes []Change) {
	section := ""
	for _, c := range changes {
		if c.Section != section {
			section = c.Section
			fmt.Fprintf(w, "%s:\n", section)
		}
		fmt.Fprintf(w, "  %s %s\n", c.Op, c.Text)
	}
}

func labelKey(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		if v := l[k]; v != "" || !strings.HasPrefix(k, "reserved:") {
			b.WriteString("=" + v)
		}
	}
	return b.String()
}

func diffIdentities(old, new *Cluster) []Change {
	o, n := map[string]uint32{}, map[string]uint32{}
	for _, id := range old.Identities {
		o[labelKey(id.Labels)] = id.ID
	}
	for _, id := range new.Identities {
		n[labelKey(id.Labels)] = id.ID
	}
	var out []Change
	for _, k := range sortedKeys(o) {
		if _, ok := n[k]; !ok {
			out = append(out, Change{Section: "identities", Op: "-", Text: fmt.Sprintf("%d %s", o[k], k)})
		} else if n[k] != o[k] {
			out = append(out, Change{Section: "identities", Op: "~", Text: fmt.Sprintf("%d -> %d %s", o[k], n[k], k)})
		}
	}
	for _, k := range sortedKeys(n) {
		if _, ok := o[k]; !ok {
			out = append(out, Change{Section: "identities", Op: "+", Text: fmt.Sprintf("%d %s", n[k], k)})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// policyContent is a policy without positions, to tell edits from moves.
func policyContent(p *Policy) string {
	q := *p
	q.Source = Source{}
	q.Rules = nil
	for _, r := range p.Rules {
		r.Source = Source{}
		var peers []Peer
		for _, pe := range r.Peers {
			pe.Source = Source{}
			peers = append(peers, pe)
		}
		r.Peers = peers
		var ports []Port
		for _, pt := range r.Ports {
			pt.Source = Source{}
			ports = append(ports, pt)
		}
		r.Ports = ports
		q.Rules = append(q.Rules, r)
	}
	b, _ := json.Marshal(q)
	return string(b)
}

func policyKey(p *Policy) string { return p.Ref() + " " + p.Subject.String() }

func diffPolicies(old, new *Cluster) []Change {
	o, n := map[string]*Policy{}, map[string]*Policy{}
	for i := range old.Policies {
		o[policyKey(&old.Policies[i])] = &old.Policies[i]
	}
	for i := range new.Policies {
		n[policyKey(&new.Policies[i])] = &new.Policies[i]
	}
	var out []Change
	for _, k := range sortedKeys(o) {
		if np, ok := n[k]; !ok {
			out = append(out, Change{Section: "policies", Op: "-", Text: fmt.Sprintf("%s (was %s)", o[k].Ref(), o[k].Source)})
		} else if policyContent(np) != policyContent(o[k]) {
			out = append(out, Change{Section: "policies", Op: "~", Text: fmt.Sprintf("%s (%s)", np.Ref(), np.Source)})
		}
	}
	for _, k := range sortedKeys(n) {
		if _, ok := o[k]; !ok {
			out = append(out, Change{Section: "policies", Op: "+", Text: fmt.Sprintf("%s (%s)", n[k].Ref(), n[k].Source)})
		}
	}
	for _, d := range new.Dropped {
		found := false
		for _, od := range old.Dropped {
			found = found || (od.Policy == d.Policy && od.Field == d.Field)
		}
		if !found {
			out = append(out, Change{Section: "policies", Op: "~", Text: fmt.Sprintf("%s %s dropped as unenforceable: %s (%s)", d.Policy, d.Field, d.Reason, d.Source)})
		}
	}
	return out
}

// probe is a peer that access is evaluated for: one pod per group of pods
// that share identity labels and named ports, a node, or an outside
// address.
type probe struct {
	key   string // stable across both clusters
	label string // for people
	ip    netip.Addr
}

func probes(c *Cluster, ev *Evaluator) map[string]probe {
	out := map[string]probe{}
	count := map[string]int{}
	idLabels := map[uint32]string{}
	for _, id := range c.Identities {
		idLabels[id.ID] = labelKey(id.Labels)
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		if len(e.IPs) == 0 {
			continue
		}
		var named []string
		for _, np := range e.NamedPorts {
			named = append(named, fmt.Sprintf("%s=%d/%s", np.Name, np.Port, np.Proto))
		}
		k := "pod " + idLabels[e.Identity] + " " + strings.Join(named, ",")
		count[k]++
		if _, ok := out[k]; !ok {
			out[k] = probe{key: k, label: e.Key(), ip: e.IPs[0]}
		}
	}
	for k, n := range count {
		if n > 1 {
			p := out[k]
			p.label = fmt.Sprintf("%s (and %d more pods like it)", p.label, n-1)
			out[k] = p
		}
	}
	for _, n := range c.Nodes {
		if len(n.IPs) > 0 {
			out["node "+n.Name] = probe{key: "node " + n.Name, label: "node " + n.Name, ip: n.IPs[0]}
		}
	}
	return out
}

func worldProbes(cs ...*Cluster) []netip.Addr {
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	for _, c := range cs {
		for _, p := range c.Policies {
			for _, r := range p.Rules {
				for _, pe := range r.Peers {
					if pe.Kind == PeerCIDR {
						addrs = append(addrs, pe.CIDR.Addr())
						for _, ex := range pe.Except {
							addrs = append(addrs, ex.Addr())
						}
					}
				}
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

func probePorts(cs ...*Cluster) []PortProto {
	set := map[PortProto]bool{{80, ProtoTCP}: true}
	for _, c := range cs {
		for _, p := range c.Policies {
			for _, r := range p.Rules {
				for _, pt := range r.Ports {
					protos := []Proto{pt.Proto}
					if pt.Proto == ProtoAny {
						protos = []Proto{ProtoTCP, ProtoUDP}
					}
					for _, pr := range protos {
						if pt.Name != "" {
							for _, e := range c.Endpoints {
								for _, np := range e.NamedPorts {
									if np.Name == pt.Name && np.Proto == pr {
										set[PortProto{np.Port, pr}] = true
									}
								}
							}
							continue
						}
						set[PortProto{pt.Port, pr}] = true
						set[PortProto{pt.EndPort, pr}] = true
					}
				}
			}
		}
	}
	out := make([]PortProto, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PortProto) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

// selectingContent summarises the policies that apply to a pod.
func selectingContent(ev *Evaluator, ip netip.Addr) string {
	e := ev.Endpoint(ip)
	if e == nil {
		return ""
	}
	var parts []string
	for _, p := range ev.Selecting(e.Identity) {
		parts = append(parts, policyContent(p))
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

func diffAccess(old, new *Cluster) []Change {
	eo, en := NewEvaluator(old), NewEvaluator(new)
	po, pn := probes(old, eo), probes(new, en)
	ports := probePorts(old, new)
	world := worldProbes(old, new)
	// Peers that changed: present in one cluster only, or pods whose
	// policies changed.
	changed := map[string]bool{}
	keys := map[string]bool{}
	for k, p := range po {
		keys[k] = true
		q, ok := pn[k]
		if !ok || selectingContent(eo, p.ip) != selectingContent(en, q.ip) {
			changed[k] = true
		}
	}
	for k := range pn {
		if !keys[k] {
			changed[k] = true
		}
		keys[k] = true
	}
	all := sortedKeys(keys)
	for _, w := range world {
		all = append(all, "world "+w.String())
	}
	lookup := func(ps map[string]probe, k string) (probe, bool) {
		if ip, ok := strings.CutPrefix(k, "world "); ok {
			a := netip.MustParseAddr(ip)
			return probe{key: k, label: a.String(), ip: a}, true
		}
		p, ok := ps[k]
		return p, ok
	}
	type pairKey struct{ from, to, op string }
	type pairChange struct {
		ports         []string
		before, after Decision
	}
	results := map[pairKey]*pairChange{}
	var order []pairKey
	for _, from := range all {
		for _, to := range all {
			if from == to || !(changed[from] || changed[to]) {
				continue
			}
			fo, okFO := lookup(po, from)
			to0, okTO := lookup(po, to)
			fn, okFN := lookup(pn, from)
			tn, okTN := lookup(pn, to)
			for _, pp := range ports {
				var before, after Decision
				bAllow, aAllow := false, false
				if okFO && okTO {
					before = eo.Evaluate(Query{Src: fo.ip, Dst: to0.ip, Proto: pp.Proto, Port: pp.Port})
					bAllow = before.Verdict == Allow
				}
				if okFN && okTN {
					after = en.Evaluate(Query{Src: fn.ip, Dst: tn.ip, Proto: pp.Proto, Port: pp.Port})
					aAllow = after.Verdict == Allow
				}
				if bAllow == aAllow {
					continue
				}
				op := "-"
				if aAllow {
					op = "+"
				}
				pk := pairKey{from, to, op}
				pc := results[pk]
				if pc == nil {
					pc = &pairChange{before: before, after: after}
					results[pk] = pc
					order = append(order, pk)
				}
				pc.ports = append(pc.ports, PortString(pp.Proto, pp.Port))
			}
		}
	}
	var out []Change
	for _, pk := range order {
		pc := results[pk]
		fl, tl := labelOf(pn, po, pk.from), labelOf(pn, po, pk.to)
		var why string
		if pk.op == "+" {
			why = "now allowed"
			if pc.after.Ingress.Rule != nil || pc.after.Egress.Rule != nil {
				why += " by " + decidingRule(pc.after)
			} else {
				why += ": " + reasonOf(pc.after)
			}
			if pc.before.Query.Src.IsValid() {
				why += "; was denied: " + reasonOf(pc.before)
			} else {
				why += "; a peer is new"
			}
		} else {
			why = "now denied"
			if pc.after.Query.Src.IsValid() {
				why += ": " + reasonOf(pc.after)
			} else {
				why += ": a peer is gone"
			}
			if pc.before.Ingress.Rule != nil || pc.before.Egress.Rule != nil {
				why += "; was allowed by " + decidingRule(pc.before)
			}
		}
		c := Change{Section: "access", Op: pk.op, From: fl, To: tl, Ports: pc.ports,
			Text: fmt.Sprintf("%s -> %s %s: %s", fl, tl, strings.Join(pc.ports, ","), why)}
		if pc.before.Query.Src.IsValid() {
			b := pc.before
			c.Before = &b
		}
		if pc.after.Query.Src.IsValid() {
			a := pc.after
			c.After = &a
		}
		out = append(out, c)
	}
	return out
}

func labelOf(a, b map[string]probe, k string) string {
	if ip, ok := strings.CutPrefix(k, "world "); ok {
		return ip + " (world)"
	}
	if p, ok := a[k]; ok {
		return p.label
	}
	return b[k].label
}

// decidingRule names the rule behind a verdict: the deny, or the allow
// of the side that needed one.
func decidingRule(d Decision) string {
	var rules []string
	for _, s := range []Side{d.Egress, d.Ingress} {
		if s.Rule != nil && (d.Verdict == Allow || s.Verdict == Deny) {
			rules = append(rules, s.Rule.String())
		}
	}
	return strings.Join(rules, " and ")
}

func reasonOf(d Decision) string {
	for _, s := range []Side{d.Egress, d.Ingress} {
		if s.Verdict == d.Verdict && d.Verdict == Deny {
			r := s.Direction.String() + " of " + s.Endpoint + ": " + s.Reason
			if s.Rule != nil {
				r += " " + s.Rule.String()
			} else if len(s.Isolating) > 0 {
				r += " (isolated by " + strings.Join(s.Isolating, ", ") + ")"
			}
			return r
		}
	}
	return d.Ingress.Reason
}

func diffServices(old, new *Cluster) []Change {
	fe := func(c *Cluster) map[string]string {
		out := map[string]string{}
		for _, s := range c.Services {
			var addrs []string
			for _, ip := range s.ClusterIPs {
				addrs = append(addrs, ip.String())
			}
			for _, ip := range s.ExternalIPs {
				addrs = append(addrs, ip.String()+" (externalIP)")
			}
			for _, ip := range s.LoadBalancerIPs {
				addrs = append(addrs, ip.String()+" (loadBalancer)")
			}
			for _, p := range s.Ports {
				for _, a := range addrs {
					out[fmt.Sprintf("%s %s:%d/%s", s.Key(), a, p.Port, p.Proto)] = backendsOf(&s, p)
				}
				if p.NodePort != 0 {
					out[fmt.Sprintf("%s nodePort %d/%s", s.Key(), p.NodePort, p.Proto)] = backendsOf(&s, p)
				}
			}
		}
		return out
	}
	o, n := fe(old), fe(new)
	var out []Change
	for _, k := range sortedKeys(o) {
		if nb, ok := n[k]; !ok {
			out = append(out, Change{Section: "services", Op: "-", Text: k + " -> " + o[k]})
		} else if nb != o[k] {
			out = append(out, Change{Section: "services", Op: "~", Text: fmt.Sprintf("%s backends %s -> %s", k, o[k], nb)})
		}
	}
	for _, k := range sortedKeys(n) {
		if _, ok := o[k]; !ok {
			out = append(out, Change{Section: "services", Op: "+", Text: k + " -> " + n[k]})
		}
	}
	return out
}

func backendsOf(s *Service, p ServicePort) string {
	var bs []string
	for _, b := range s.Backends {
		if b.PortName == p.Name && b.Proto == p.Proto {
			state := ""
			switch {
			case !b.Ready && b.Terminating:
				state = " (terminating)"
			case !b.Ready:
				state = " (not ready)"
			}
			bs = append(bs, fmt.Sprintf("%s:%d%s", b.IP, b.Port, state))
		}
	}
	if len(bs) == 0 {
		return "(no backends)"
	}
	return "[" + strings.Join(bs, " ") + "]"
}
