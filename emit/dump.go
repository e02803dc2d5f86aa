package emit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sluicenet/sluice/ir"
)

// The dumps are sorted text, one entry a line, in the spirit of the
// cilium CLI (cilium bpf ipcache list, cilium bpf lb list, cilium bpf
// policy get), so that git diff of two artifacts reads as a review.

func table(write func(w *tabwriter.Writer)) []byte {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	write(w)
	w.Flush()
	return b.Bytes()
}

func flagNames(f uint8) string {
	var out []string
	for _, x := range []struct {
		bit  uint8
		name string
	}{{FlagEndpoint, "endpoint"}, {FlagNode, "node"}, {FlagPodCIDR, "podcidr"}, {FlagAPIServer, "kube-apiserver"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	if len(out) == 0 {
		return "<none>"
	}
	return strings.Join(out, ",")
}

func (p *plan) nodeName(idx uint16) string {
	if int(idx) < len(p.nodes) {
		return p.nodes[idx]
	}
	return "-"
}

func (p *plan) dumpIPCache() []byte {
	b := make([]byte, 0, 120*len(p.ipcache)+128)
	cols := []int{20, 18, 11, 14, 32, 28}
	for i, h := range []string{"IP PREFIX/ADDRESS", "IDENTITY", "REGION", "NODE", "TUNNELENDPOINT", "FLAGS"} {
		b = pad(b, h, cols[i])
	}
	b = append(b, "SOURCE\n"...)
	for _, e := range p.ipcache {
		start := len(b)
		b = e.prefix.AppendTo(b)
		b = padTo(b, start, cols[0])
		start = len(b)
		b = strconv.AppendUint(append(b, "identity="...), uint64(e.val.Identity), 10)
		b = padTo(b, start, cols[1])
		start = len(b)
		b = strconv.AppendUint(append(b, "region="...), uint64(e.val.Region), 10)
		b = padTo(b, start, cols[2])
		start = len(b)
		b = append(append(b, "node="...), p.nodeName(e.val.Node)...)
		b = padTo(b, start, cols[3])
		start = len(b)
		b = append(b, "tunnelendpoint="...)
		if e.val.Tunnel.IsValid() {
			b = e.val.Tunnel.AppendTo(b)
		} else {
			b = append(b, "0.0.0.0"...)
		}
		b = padTo(b, start, cols[4])
		start = len(b)
		b = append(append(b, "flags="...), flagNames(e.val.Flags)...)
		b = padTo(b, start, cols[5])
		b = append(b, e.what...)
		b = append(b, '\n')
	}
	return b
}

func (p *plan) dumpRegions() []byte {
	var b bytes.Buffer
	for i, r := range p.regions {
		fmt.Fprintf(&b, "region %d: %s\n", i, r)
	}
	return b.Bytes()
}

func labelsString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if l[k] == "" && strings.HasPrefix(k, "reserved:") {
			parts = append(parts, k)
			continue
		}
		parts = append(parts, "k8s:"+k+"="+l[k])
	}
	return strings.Join(parts, " ")
}

func (p *plan) dumpIdentities() []byte {
	var b bytes.Buffer
	fmt.Fprintln(&b, "ID\tLABELS")
	for _, id := range p.c.Identities {
		fmt.Fprintf(&b, "%d\t%s\n", id.ID, labelsString(id.Labels))
	}
	return b.Bytes()
}

func (p *plan) dumpRules() []byte {
	return table(func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "RULE\tACTION\tDIRECTION\tPOLICY\tFIELD\tSOURCE")
		fmt.Fprintln(w, "0\tallow\tingress\t(implicit)\ttraffic from the pod's own node\t-")
		for i, ri := range p.rules {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, ri.rule.Action, ri.rule.Direction, ri.policy.Ref(), ri.rule.Field, ri.rule.Source)
		}
	})
}

// RuleSummary is one rule of rules.json, the machine-readable rules.txt:
// the datapath counts drops by rule number, and the agent names them with
// this.
type RuleSummary struct {
	ID        uint32 `json:"id"`
	Action    string `json:"action"`
	Direction string `json:"direction"`
	Policy    string `json:"policy"`
	Field     string `json:"field"`
	Source    string `json:"source"`
}

func (p *plan) rulesJSON() []byte {
	rules := []RuleSummary{{ID: 0, Action: "allow", Direction: "ingress", Policy: "(implicit)", Field: "traffic from the pod's own node", Source: "-"}}
	for i, ri := range p.rules {
		rules = append(rules, RuleSummary{ID: uint32(i + 1), Action: ri.rule.Action.String(), Direction: ri.rule.Direction.String(),
			Policy: ri.policy.Ref(), Field: ri.rule.Field, Source: ri.rule.Source.String()})
	}
	b, _ := json.MarshalIndent(rules, "", " ")
	return append(b, '\n')
}

func protoName(p uint8) string { return ir.Proto(p).String() }

// padTo pads the cell that began at start to width, or by two spaces
// when it is wider.
func padTo(b []byte, start, width int) []byte {
	if len(b)-start >= width {
		return append(b, ' ', ' ')
	}
	for len(b)-start < width {
		b = append(b, ' ')
	}
	return b
}

// appendAddrPort appends "addr:port/PROTO".
func appendAddrPort(b []byte, a netip.Addr, port uint16, proto uint8) []byte {
	b = a.AppendTo(b)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(port), 10)
	b = append(b, '/')
	return append(b, protoName(proto)...)
}

// dumpServices prints frontends and their backend slots like cilium bpf
// lb list. It is large (a line per slot), so it is built with appends.
func dumpServices(es []svcEntry, backends []backendEntry) []byte {
	byID := make(map[uint32]*backendEntry, len(backends))
	for i := range backends {
		byID[backends[i].id] = &backends[i]
	}
	const col1, col2 = 26, 38
	b := make([]byte, 0, 80*len(es)+128)
	b = pad(b, "SERVICE ADDRESS", col1)
	b = pad(b, "BACKEND ADDRESS (REVNAT_ID) (SLOT)", col2)
	b = append(b, "INFO\n"...)
	var last, fe []byte
	for _, e := range es {
		fe = appendAddrPort(fe[:0], e.key.Addr, e.key.Port, e.key.Proto)
		if e.key.Scope == ScopeLocal {
			fe = append(fe, " (local)"...)
		}
		start := len(b)
		if !bytes.Equal(fe, last) {
			b = append(b, fe...)
		}
		last = append(last[:0], fe...)
		b = padTo(b, start, col1)
		start = len(b)
		if e.key.Slot == 0 {
			b = append(b, "0.0.0.0:0 ("...)
			b = strconv.AppendUint(b, uint64(e.val.RevNat), 10)
			b = append(b, ") (0)"...)
			b = padTo(b, start, col2)
			b = append(b, '[')
			b = append(b, e.what...)
			b = append(b, svcFlags(e.val)...)
			b = append(b, "]\n"...)
			continue
		}
		if be := byID[e.val.Backend]; be != nil {
			b = appendAddrPort(b, be.val.Addr, be.val.Port, be.val.Proto)
		} else {
			b = append(b, '?')
		}
		b = append(b, " ("...)
		b = strconv.AppendUint(b, uint64(e.val.RevNat), 10)
		b = append(b, ") ("...)
		b = strconv.AppendUint(b, uint64(e.key.Slot), 10)
		b = append(b, ')')
		b = padTo(b, start, col2)
		b = append(b, e.what...)
		b = append(b, '\n')
	}
	return b
}

func svcFlags(v ServiceValue) string {
	var out []string
	if v.Flags&SvcFlagAffinity != 0 {
		out = append(out, fmt.Sprintf("sessionAffinity=%ds", v.Backend))
	}
	if v.Flags&SvcFlagLocalExternal != 0 {
		out = append(out, "externalTrafficPolicy=Local")
	}
	if v.Flags&SvcFlagLocalInternal != 0 {
		out = append(out, "internalTrafficPolicy=Local")
	}
	if v.Flags2&SvcFlag2NoBackends != 0 {
		if v.Flags2&SvcFlag2Reject != 0 {
			out = append(out, "no backends: reject")
		} else {
			out = append(out, "no backends: drop")
		}
	}
	out = append(out, fmt.Sprintf("backends=%d", v.Count))
	return ", " + strings.Join(out, ", ")
}

// dumpMaglev summarises each Maglev table: its frontend, size, and how
// many entries each backend holds.
func dumpMaglev(lbs *lb, m int) []byte {
	return table(func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "# Maglev tables of %d entries, one per external frontend (NodePort, ExternalIP, LoadBalancer)\n", m)
		fmt.Fprintln(w, "REVNAT\tFRONTEND\tBACKENDS\tENTRIES PER BACKEND (ID=COUNT)")
		for _, e := range lbs.maglev {
			counts := map[uint32]int{}
			for _, id := range e.table {
				counts[id]++
			}
			ids := make([]uint32, 0, len(counts))
			for id := range counts {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			var parts []string
			for _, id := range ids {
				parts = append(parts, fmt.Sprintf("%d=%d", id, counts[id]))
			}
			fmt.Fprintf(w, "%d\t%s\t%d\t%s\n", e.revnat, e.what, len(ids), strings.Join(parts, " "))
		}
	})
}

func dumpBackends(bs []backendEntry, nodes []string) []byte {
	b := make([]byte, 0, 64*len(bs)+64)
	b = append(b, "ID\tADDRESS\tNODE\tPOD\n"...)
	for _, be := range bs {
		b = strconv.AppendUint(b, uint64(be.id), 10)
		b = append(b, '\t')
		b = appendAddrPort(b, be.val.Addr, be.val.Port, be.val.Proto)
		b = append(b, '\t')
		if int(be.val.Node) < len(nodes) {
			b = append(b, nodes[be.val.Node]...)
		} else {
			b = append(b, '-')
		}
		b = append(b, '\t')
		if be.what == "" {
			b = append(b, '-')
		} else {
			b = append(b, be.what...)
		}
		b = append(b, '\n')
	}
	return b
}

func dumpRevNat(rs []revnatEntry) []byte {
	var b bytes.Buffer
	fmt.Fprintln(&b, "ID\tFRONTEND")
	for _, r := range rs {
		fmt.Fprintf(&b, "%d\t%s:%d\n", r.idx, r.val.Addr, r.val.Port)
	}
	return b.Bytes()
}

// dumpClasses lists each class's selectors, then its members compactly:
// world regions, nodes, and workload identities by number (their labels
// are in identities.txt).
func (np *nodePlan) dumpClasses() []byte {
	p := np.p
	var b []byte
	b = fmt.Appendf(b, "# node %s: %d classes; keys not listed are class 0 (no selector of this node matches them)\n", np.node, len(np.classes))
	for _, c := range np.classes {
		b = fmt.Appendf(b, "class %d:", c.id)
		for _, a := range c.sig {
			if a == ownNodeAlt {
				b = append(b, " [own node]"...)
				continue
			}
			b = append(b, " ["...)
			b = append(b, peerKey(&p.alts[a])...)
			b = append(b, ']')
		}
		for _, n := range c.named {
			b = fmt.Appendf(b, " port %s=%d/%s", n.Name, n.Port, n.Proto)
		}
		var ids, other []byte
		for _, k := range c.keys {
			key := p.keys[k].key
			switch {
			case key.PeerNode == np.idx:
				other = append(other, " host"...)
			case key.PeerNode != NodeNone:
				other = append(other, " node:"...)
				other = append(other, p.nodeName(key.PeerNode)...)
			case key.Identity == ir.IdentityWorld:
				other = fmt.Appendf(other, " world/region%d", key.Region)
			case key.Identity < ir.MinWorkloadIdentity:
				other = fmt.Appendf(other, " reserved:%d/region%d", key.Identity, key.Region)
			default:
				ids = strconv.AppendUint(append(ids, ' '), uint64(key.Identity), 10)
				if key.Region != 0 {
					ids = fmt.Appendf(ids, "/region%d", key.Region)
				}
			}
		}
		if len(other) > 0 {
			b = append(b, "\n  peers:"...)
			b = append(b, other...)
		}
		if len(ids) > 0 {
			b = append(b, "\n  identities:"...)
			b = append(b, ids...)
		}
		b = append(b, '\n')
	}
	return b
}

// portString renders a policy key's protocol and port prefix.
func portString(k PolicyKey) string {
	if k.Bits <= policyFixedBits {
		return "ANY"
	}
	proto := protoName(k.Proto)
	pbits := k.Bits - policyFixedBits - 8
	if pbits == 0 {
		return "ANY/" + proto
	}
	lo := uint32(k.Port)
	hi := lo + (uint32(1) << (16 - pbits)) - 1
	if lo == hi {
		return fmt.Sprintf("%d/%s", lo, proto)
	}
	return fmt.Sprintf("%d-%d/%s", lo, hi, proto)
}

// pad appends s and spaces up to width (at least two).
func pad(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := len(s); n < width || n < len(s)+2; n++ {
		b = append(b, ' ')
	}
	return b
}

// ruleText renders a rule reference once per rule.
func (p *plan) ruleText(id uint32) string {
	p.ruleOnce.Do(func() {
		p.ruleStr = make([]string, len(p.rules)+1)
		p.ruleStr[0] = "0 (own node)"
		for i, ri := range p.rules {
			p.ruleStr[i+1] = strconv.Itoa(i+1) + " " + ri.policy.Ref() + " " + ri.rule.Field
		}
	})
	return p.ruleStr[id]
}

// dumpPolicy prints each policy number's entries, like cilium bpf policy
// get. It is the largest dump, so it is built with appends, not fmt.
func (np *nodePlan) dumpPolicy() []byte {
	p := np.p
	b := make([]byte, 0, 96*len(np.policy)+256*len(np.groups))
	i := 0
	for _, g := range np.groups {
		b = append(b, "POLICY "...)
		b = strconv.AppendUint(b, uint64(g.id), 10)
		if g.shared {
			b = append(b, " (shared layer)"...)
		} else if in := np.inlineEntries(g); in != nil {
			b = append(b, " (inline: "...)
			b = strconv.AppendInt(b, int64(len(in)), 10)
			b = append(b, " entries compiled into the program)"...)
		} else {
			b = append(b, " (map lookup)"...)
		}
		b = append(b, "  endpoints:"...)
		for _, e := range g.endpoints {
			b = append(b, ' ')
			b = append(b, e.Key()...)
		}
		b = append(b, "\n  policies:"...)
		for _, pol := range g.policies {
			b = append(b, ' ')
			b = append(b, pol.Ref()...)
		}
		b = append(b, "\n  ingress: "...)
		b = append(b, enforcement(g.enforced[0])...)
		b = append(b, "; egress: "...)
		b = append(b, enforcement(g.enforced[1])...)
		// The rules this policy's entries cite, once, then the entries by
		// rule number.
		for ; i < len(np.policy) && np.policy[i].key.Policy < g.id; i++ {
		}
		start := i
		var cited []uint32
		seen := map[uint32]bool{}
		for j := start; j < len(np.policy) && np.policy[j].key.Policy == g.id; j++ {
			if r := np.policy[j].val.Rule; !seen[r] && np.policy[j].val.Action != ActionNone {
				seen[r] = true
				cited = append(cited, r)
			}
		}
		sort.Slice(cited, func(x, y int) bool { return cited[x] < cited[y] })
		for _, r := range cited {
			b = append(b, "\n  rule "...)
			b = append(b, p.ruleText(r)...)
		}
		b = append(b, "\n  VERDICT  DIRECTION  CLASS       PORT/PROTO          RULE\n"...)
		for ; i < len(np.policy) && np.policy[i].key.Policy == g.id; i++ {
			e := np.policy[i]
			b = append(b, "  "...)
			switch e.val.Action {
			case ActionDeny:
				b = pad(b, "Deny", 9)
			case ActionAllow:
				b = pad(b, "Allow", 9)
			default:
				b = pad(b, "Default", 9)
			}
			if e.key.Dir == DirEgress {
				b = pad(b, "Egress", 11)
			} else {
				b = pad(b, "Ingress", 11)
			}
			if e.key.Class == ClassAny {
				b = pad(b, "any", 12)
			} else {
				b = pad(b, strconv.FormatUint(uint64(e.key.Class), 10), 12)
			}
			b = pad(b, portString(e.key), 20)
			if e.val.Action == ActionNone {
				b = append(b, "-"...)
			} else {
				b = strconv.AppendUint(b, uint64(e.val.Rule), 10)
			}
			b = append(b, '\n')
		}
		b = append(b, '\n')
	}
	return b
}

func enforcement(on bool) string {
	if on {
		return "enforced (default deny)"
	}
	return "not enforced (default allow)"
}

func (np *nodePlan) dumpEndpoints() []byte {
	return table(func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "ADDRESS\tIDENTITY\tPOLICY\tSHARED\tINGRESS\tEGRESS\tIPV6\tPOD")
		type row struct {
			ip   netip.Addr
			line string
		}
		var rows []row
		for e, ids := range np.epLayers {
			enf := np.epEnforced[e]
			shared := "-"
			if ids[1] != 0 {
				shared = strconv.FormatUint(uint64(ids[1]), 10)
			}
			for _, ip := range e.IPs {
				if ip.Is4() {
					ipv6 := "-"
					if np.flags(e)&EndpointIPv6Dropped != 0 {
						ipv6 = "dropped"
					}
					rows = append(rows, row{ip, fmt.Sprintf("%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s", ip, e.Identity, ids[0], shared, onOff(enf[0]), onOff(enf[1]), ipv6, e.Key())})
				}
			}
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].ip.Less(rows[j].ip) })
		for _, r := range rows {
			fmt.Fprintln(w, r.line)
		}
	})
}

func onOff(b bool) string {
	if b {
		return "enforced"
	}
	return "-"
}

// NodeSummary is node.json: what the agent and sluice trace --datapath
// need to know about a node's artifact beyond the maps.
type NodeSummary struct {
	Node    string         `json:"node"`
	Index   uint16         `json:"index"`
	Nodes   []string       `json:"nodes"` // node index → name
	Groups  []GroupSummary `json:"policies"`
	Classes int            `json:"classes"` // how many; their keys are the classes map
	// ExactIPCache says that the datapath looks peers up in ipcache_exact
	// first (the ipcache is large enough for it to pay).
	ExactIPCache bool `json:"exactIPCache,omitempty"`
	// MaglevTableSize is the entries of each Maglev table (the external
	// device's program is generated with it).
	MaglevTableSize int `json:"maglevTableSize,omitempty"`
	// NodeIP is the node's address (its first InternalIP), the one flows
	// to other nodes' backends are SNAT-ed to.
	NodeIP netip.Addr `json:"nodeIP,omitzero"`
}

// GroupSummary is one policy number and its endpoints.
type GroupSummary struct {
	Policy uint32 `json:"policy"`
	Shared bool   `json:"shared,omitempty"`
	// Inline, when set, is the cost model's choice for this own-layer
	// policy: the entries compiled into its endpoints' programs, in test
	// order, instead of a policy map lookup.
	Inline []InlineEntry `json:"inline,omitempty"`
	// Lookup is "inline" or "map": how this policy's own layer is looked up.
	Lookup    string   `json:"lookup"`
	Endpoints []string `json:"endpoints"`
	// Policies select these endpoints; their isolation is what a default
	// deny of this group enforces.
	Policies []string `json:"selectedBy,omitempty"`
	Ingress  bool     `json:"ingressEnforced"`
	Egress   bool     `json:"egressEnforced"`
}

func (np *nodePlan) summary() NodeSummary {
	s := NodeSummary{Node: np.node, Index: np.idx, Nodes: np.p.nodes}
	for _, g := range np.groups {
		gs := GroupSummary{Policy: g.id, Shared: g.shared, Ingress: g.enforced[0], Egress: g.enforced[1]}
		gs.Lookup = "map"
		if !g.shared && np.inlineEntries(g) != nil {
			gs.Lookup = "inline"
		}
		for _, e := range g.endpoints {
			gs.Endpoints = append(gs.Endpoints, e.Key())
		}
		for _, pol := range g.policies {
			gs.Policies = append(gs.Policies, pol.Ref())
		}
		s.Groups = append(s.Groups, gs)
	}
	s.Classes = len(np.classes)
	s.ExactIPCache = np.p.exactIPCache()
	s.MaglevTableSize = np.p.maglevM
	s.NodeIP = np.p.tunnel[np.node]
	return s
}
