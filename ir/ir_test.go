package ir

import (
	"net/netip"
	"testing"
)

func TestRequirementOperators(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	cases := []struct {
		r    Requirement
		want bool
	}{
		{Requirement{Key: "app", Op: OpIn, Values: []string{"web", "api"}}, true},
		{Requirement{Key: "app", Op: OpIn, Values: []string{"api"}}, false},
		{Requirement{Key: "app", Op: OpNotIn, Values: []string{"api"}}, true},
		{Requirement{Key: "missing", Op: OpNotIn, Values: []string{"x"}}, true}, // NotIn matches absent keys
		{Requirement{Key: "app", Op: OpNotIn, Values: []string{"web"}}, false},
		{Requirement{Key: "tier", Op: OpExists}, true},
		{Requirement{Key: "missing", Op: OpExists}, false},
		{Requirement{Key: "missing", Op: OpDoesNotExist}, true},
		{Requirement{Key: "app", Op: OpDoesNotExist}, false},
	}
	for _, c := range cases {
		if got := c.r.Matches(labels); got != c.want {
			t.Errorf("%+v on %v: got %v, want %v", c.r, labels, got, c.want)
		}
	}
	var empty Selector
	if !empty.Matches(nil) || !empty.Matches(labels) {
		t.Error("the empty selector must match everything")
	}
	sel := Selector{Requirements: []Requirement{{Key: "b", Op: OpIn, Values: []string{"2", "1", "1"}}, {Key: "a", Op: OpExists}}}
	sel.Normalize()
	if got := sel.String(); got != "a,b in (1,2)" {
		t.Errorf("normalised selector %q", got)
	}
}

func TestPortMatches(t *testing.T) {
	named := []NamedPort{{Name: "http", Proto: ProtoTCP, Port: 8080}}
	cases := []struct {
		p     Port
		proto Proto
		port  uint16
		want  bool
	}{
		{Port{Proto: ProtoTCP, Port: 80, EndPort: 80}, ProtoTCP, 80, true},
		{Port{Proto: ProtoTCP, Port: 80, EndPort: 80}, ProtoUDP, 80, false},
		{Port{Proto: ProtoTCP, Port: 80, EndPort: 90}, ProtoTCP, 90, true},
		{Port{Proto: ProtoTCP, Port: 80, EndPort: 90}, ProtoTCP, 91, false},
		{Port{Proto: ProtoTCP, Name: "http"}, ProtoTCP, 8080, true},
		{Port{Proto: ProtoTCP, Name: "http"}, ProtoTCP, 80, false},
		{Port{Proto: ProtoUDP, Name: "http"}, ProtoUDP, 8080, false}, // the name is TCP
		{Port{Proto: ProtoAny, Port: 0, EndPort: 65535}, ProtoICMP, 8, true},
		{Port{Proto: ProtoAny, Port: 53, EndPort: 53}, ProtoICMP, 53, false}, // ANY with a port is not ICMP
		{Port{Proto: ProtoICMP, Port: 8, EndPort: 8}, ProtoICMP, 8, true},
	}
	for _, c := range cases {
		if got := PortMatches(&c.p, c.proto, c.port, named); got != c.want {
			t.Errorf("%+v vs %s: got %v, want %v", c.p, PortString(c.proto, c.port), got, c.want)
		}
	}
}

func TestEntities(t *testing.T) {
	world := map[string]string{LabelWorld: ""}
	host := map[string]string{LabelHost: ""}
	remoteAPI := map[string]string{LabelRemoteNode: "", LabelKubeAPIServer: ""}
	pod := map[string]string{"app": "x"}
	cases := []struct {
		entity string
		labels map[string]string
		pod    bool
		want   bool
	}{
		{"world", world, false, true}, {"world", pod, true, false},
		{"cluster", pod, true, true}, {"cluster", world, false, false}, {"cluster", host, false, true}, {"cluster", remoteAPI, false, true},
		{"host", host, false, true}, {"host", remoteAPI, false, false},
		{"remote-node", remoteAPI, false, true}, {"kube-apiserver", remoteAPI, false, true},
		{"all", world, false, true}, {"all", pod, true, true},
		{"init", pod, true, false}, {"ingress", world, false, false},
	}
	for _, c := range cases {
		if got := EntityMatches(c.entity, c.labels, c.pod); got != c.want {
			t.Errorf("entity %s on %v: got %v, want %v", c.entity, c.labels, got, c.want)
		}
	}
}

func TestCIDRExcept(t *testing.T) {
	pe := Peer{Kind: PeerCIDR, CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	for ip, want := range map[string]bool{"10.0.0.1": true, "10.1.2.3": false, "10.255.255.255": true, "11.0.0.0": false} {
		if got := CIDRMatches(&pe, netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s: got %v, want %v", ip, got, want)
		}
	}
}
