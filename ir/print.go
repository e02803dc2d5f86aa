package ir

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Describe names a peer for people: "ns/pod", "node NAME (host)", "world".
func (p PeerInfo) Describe() string {
	switch {
	case p.Endpoint != "":
		return p.Endpoint
	case p.Node != "":
		role := "remote-node"
		if p.Identity == IdentityHost {
			role = "host"
		}
		return "node " + p.Node + " (" + role + ")"
	case p.Identity == IdentityKubeAPIServer:
		return "kube-apiserver"
	}
	return "world"
}

// PortString renders a port and protocol as "80/TCP" ("type 8/ICMP" for
// ICMP).
func PortString(proto Proto, port uint16) string {
	if proto == ProtoICMP || proto == ProtoICMPv6 {
		return fmt.Sprintf("type %d/%s", port, proto)
	}
	if !proto.HasPorts() {
		return proto.String()
	}
	return fmt.Sprintf("%d/%s", port, proto)
}

// WriteDecision prints a verdict and why, for sluice trace.
func WriteDecision(w io.Writer, d Decision) {
	verdict := "ALLOW"
	if d.Verdict == Deny {
		verdict = "DENY"
	}
	fmt.Fprintf(w, "%s  %s (%s) -> %s (%s)  %s\n", verdict, d.From.Describe(), d.Query.Src, d.To.Describe(), d.Query.Dst, PortString(d.Query.Proto, d.Query.Port))
	writeSide(w, d.Egress, "egress of the source")
	writeSide(w, d.Ingress, "ingress of the destination")
	if d.Verdict == Allow {
		fmt.Fprintln(w, "replies: allowed (the connection is tracked; replies and related packets pass)")
	} else {
		fmt.Fprintln(w, "replies: none (the connection is not established)")
	}
}

func writeSide(w io.Writer, s Side, title string) {
	who := s.Endpoint
	if who == "" {
		who = "-"
	}
	fmt.Fprintf(w, "  %s %s: %s\n", title, who, s.Verdict)
	if len(s.Isolating) > 0 {
		fmt.Fprintf(w, "    isolated by: %s\n", strings.Join(s.Isolating, ", "))
	}
	reason := s.Reason
	if s.Rule != nil {
		reason += ": " + s.Rule.String()
	}
	fmt.Fprintf(w, "    %s\n", reason)
	for i, m := range s.Matched {
		if i == 0 {
			continue
		}
		fmt.Fprintf(w, "    also allowed by: %s\n", m.String())
	}
}

func (r RuleRef) String() string {
	return fmt.Sprintf("%s %s (%s)", r.Policy, r.Field, r.Source)
}

// MatrixEntry is one cell of a reachability matrix.
type MatrixEntry struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Port    uint16 `json:"port"`
	Proto   Proto  `json:"proto"`
	Verdict Action `json:"verdict"`
}

// PortProto is a port to probe.
type PortProto struct {
	Port  uint16
	Proto Proto
}

// Matrix evaluates every ordered pair of pods with an address (the
// diagonal included) on every port, in sorted order.
func (ev *Evaluator) Matrix(ports []PortProto) []MatrixEntry {
	var pods []*Endpoint
	for i := range ev.c.Endpoints {
		if len(ev.c.Endpoints[i].IPs) > 0 {
			pods = append(pods, &ev.c.Endpoints[i])
		}
	}
	var out []MatrixEntry
	for _, from := range pods {
		for _, to := range pods {
			for _, pp := range ports {
				d := ev.Evaluate(Query{Src: from.IPs[0], Dst: to.IPs[0], Proto: pp.Proto, Port: pp.Port})
				out = append(out, MatrixEntry{From: from.Key(), To: to.Key(), Port: pp.Port, Proto: pp.Proto, Verdict: d.Verdict})
			}
		}
	}
	return out
}

// WriteMatrixTSV prints one line per entry:
// from<TAB>to<TAB>port<TAB>PROTO<TAB>allow|deny.
func WriteMatrixTSV(w io.Writer, m []MatrixEntry) {
	for _, e := range m {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", e.From, e.To, e.Port, e.Proto, e.Verdict)
	}
}

// WriteMatrixTable draws one reachability grid per port, as the
// Kubernetes network policy e2e tests print them: rows are sources,
// columns destinations, "." allowed and "X" denied.
func WriteMatrixTable(w io.Writer, m []MatrixEntry) {
	type pk struct {
		port  uint16
		proto Proto
	}
	var order []pk
	cells := map[pk]map[[2]string]Action{}
	var names []string
	seen := map[string]bool{}
	for _, e := range m {
		k := pk{e.Port, e.Proto}
		if cells[k] == nil {
			cells[k] = map[[2]string]Action{}
			order = append(order, k)
		}
		cells[k][[2]string{e.From, e.To}] = e.Verdict
		for _, n := range []string{e.From, e.To} {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for i, k := range order {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n", PortString(k.proto, k.port))
		fmt.Fprintln(w, "-\t"+strings.Join(names, "\t"))
		for _, from := range names {
			row := []string{from}
			for _, to := range names {
				mark := "?"
				if v, ok := cells[k][[2]string{from, to}]; ok {
					mark = "X"
					if v == Allow {
						mark = "."
					}
				}
				row = append(row, mark)
			}
			fmt.Fprintln(w, strings.Join(row, "\t"))
		}
	}
}
