package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testdata/services: two nodes (n1 192.168.50.1, n2 192.168.50.2), the
// client on n1, and services whose backends sit on both nodes.
const svcManifests = "testdata/services"

// serviceTraceJSON is the part of trace -o json for a service frontend
// that the tests read.
type serviceTraceJSON struct {
	Verdict string
	Service struct {
		Name       string
		Translated bool
		Path, Node string
		Reason     string
		NoBackends string
		Backends   []struct {
			Pod, IP    string
			Port       int
			SeenSource string
			SNAT       bool
			LBDrop     string
			Decision   struct {
				Verdict string
				Egress  sideJSON
				Ingress sideJSON
			}
			Kernel *struct{ Verdict, Egress, Ingress, Reply string }
		}
	}
}

type sideJSON struct {
	Endpoint  string
	Isolating []string
	Verdict   string
	Reason    string
	Rule      *struct{ Policy, Field string }
}

func traceServiceJSON(t *testing.T, args ...string) serviceTraceJSON {
	t.Helper()
	stdout, errs, rc := sluice(t, "", append([]string{"trace", "-f", svcManifests, "-o", "json"}, args...)...)
	if rc != 0 {
		t.Fatalf("trace %v: rc %d\n%s", args, rc, errs)
	}
	var res serviceTraceJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("trace %v: %v\n%s", args, err, stdout)
	}
	return res
}

// backendsByPod indexes a result's backends, failing unless they are
// exactly want.
func backendsByPod(t *testing.T, res serviceTraceJSON, want ...string) map[string]int {
	t.Helper()
	idx := map[string]int{}
	var got []string
	for i, b := range res.Service.Backends {
		idx[b.Pod] = i
		got = append(got, b.Pod)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%s: backends differ (-want +got):\n%s", res.Service.Name, diff)
	}
	return idx
}

// A ClusterIP whose two backends both deny the client is a DENY, with
// each backend's own reason; before, the ClusterIP was world and allowed.
func TestTraceServiceEveryBackendDenies(t *testing.T) {
	for _, to := range []string{"10.96.0.20", "svc:shop/web"} {
		res := traceServiceJSON(t, "--from", "shop/client", "--to", to, "--port", "80/TCP")
		if res.Verdict != "deny" || !res.Service.Translated || res.Service.Path != "socket" || res.Service.Node != "n1" {
			t.Fatalf("client -> %s: %+v", to, res)
		}
		idx := backendsByPod(t, res, "shop/web-a", "shop/web-b")
		a, b := res.Service.Backends[idx["shop/web-a"]], res.Service.Backends[idx["shop/web-b"]]
		// The named targetPort "http" resolves on each pod.
		if a.Port != 8080 || b.Port != 9090 {
			t.Errorf("targetPort http: web-a %d (want 8080), web-b %d (want 9090)", a.Port, b.Port)
		}
		if a.Decision.Verdict != "deny" || a.Decision.Ingress.Reason != "isolated and no rule allows it" ||
			!cmp.Equal(a.Decision.Ingress.Isolating, []string{"NetworkPolicy shop/web-from-frontend"}) {
			t.Errorf("web-a: %+v", a.Decision)
		}
		if b.Decision.Verdict != "deny" || b.Decision.Ingress.Rule == nil ||
			b.Decision.Ingress.Rule.Policy != "CiliumNetworkPolicy shop/web-b-no-client" || b.Decision.Ingress.Rule.Field != "spec.ingressDeny[0]" {
			t.Errorf("web-b: %+v", b.Decision)
		}
	}
	// The text (golden file every-backend-denies) leads with the verdict.
	stdout, _, _ := sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "10.96.0.20", "--port", "80/TCP")
	if want := "DENY  shop/client (10.1.1.10) -> Service shop/web (ClusterIP 10.96.0.20)  80/TCP\n  every backend denies it\n"; !strings.HasPrefix(stdout, want) {
		t.Errorf("text output does not start with %q:\n%s", want, stdout)
	}
}

// One backend allows, the other denies: mixed, naming both.
func TestTraceServiceMixed(t *testing.T) {
	res := traceServiceJSON(t, "--from", "shop/client", "--to", "10.96.0.30", "--port", "80/TCP")
	idx := backendsByPod(t, res, "shop/api-a", "shop/api-b")
	a, b := res.Service.Backends[idx["shop/api-a"]], res.Service.Backends[idx["shop/api-b"]]
	if res.Verdict != "mixed" || a.Decision.Verdict != "allow" || b.Decision.Verdict != "deny" {
		t.Fatalf("client -> api: %s; api-a %s, api-b %s", res.Verdict, a.Decision.Verdict, b.Decision.Verdict)
	}
	if a.Decision.Ingress.Rule == nil || a.Decision.Ingress.Rule.Policy != "NetworkPolicy shop/api-a-from-client" {
		t.Errorf("api-a: %+v", a.Decision.Ingress)
	}
	stdout, _, _ := sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "10.96.0.30", "--port", "80/TCP")
	if !strings.Contains(stdout, "MIXED ") || !strings.Contains(stdout, "allowed at shop/api-a, denied at shop/api-b") {
		t.Errorf("text output:\n%s", stdout)
	}
}

// A NodePort on a node address, from outside: the local backend sees the
// client, the other node's backend sees the node (SNAT), and so a
// world-only policy lets one in and not the other.
func TestTraceServiceNodePort(t *testing.T) {
	res := traceServiceJSON(t, "--from", "203.0.113.7", "--to", "192.168.50.1", "--port", "30080/TCP")
	if res.Verdict != "mixed" || res.Service.Path != "device" || res.Service.Node != "n1" {
		t.Fatalf("world -> n1:30080: %+v", res)
	}
	idx := backendsByPod(t, res, "shop/site-a", "shop/site-b")
	a, b := res.Service.Backends[idx["shop/site-a"]], res.Service.Backends[idx["shop/site-b"]]
	if a.SNAT || a.SeenSource != "203.0.113.7" || a.Decision.Verdict != "allow" {
		t.Errorf("site-a on the receiving node: %+v", a)
	}
	if !b.SNAT || b.SeenSource != "192.168.50.1" || b.Decision.Verdict != "deny" || b.Decision.Ingress.Reason != "isolated and no rule allows it" {
		t.Errorf("site-b on the other node: %+v", b)
	}
	// node:NAME names the same address.
	if res2 := traceServiceJSON(t, "--from", "203.0.113.7", "--to", "node:n1", "--port", "30080/TCP"); !cmp.Equal(res, res2) {
		t.Errorf("node:n1 and 192.168.50.1 differ:\n%s", cmp.Diff(res, res2))
	}
	// An ExternalIP that is a node's address arrives at that node.
	res = traceServiceJSON(t, "--from", "203.0.113.7", "--to", "192.168.50.2", "--port", "80/TCP")
	idx = backendsByPod(t, res, "shop/site-a", "shop/site-b")
	if res.Service.Node != "n2" || res.Service.Path != "device" || !res.Service.Backends[idx["shop/site-a"]].SNAT || res.Service.Backends[idx["shop/site-b"]].SNAT {
		t.Errorf("world -> ExternalIP 192.168.50.2: %+v", res)
	}
	// A pod reaching another node's NodePort: its egress sees the node
	// address (edge may send only to nodes), each backend's ingress the
	// source as it arrives.
	res = traceServiceJSON(t, "--from", "shop/edge", "--to", "192.168.50.2", "--port", "30080/TCP")
	idx = backendsByPod(t, res, "shop/site-a", "shop/site-b")
	a, b = res.Service.Backends[idx["shop/site-a"]], res.Service.Backends[idx["shop/site-b"]]
	if res.Verdict != "mixed" || res.Service.Node != "n2" || !a.SNAT || a.SeenSource != "192.168.50.2" || a.Decision.Verdict != "deny" ||
		b.SNAT || b.SeenSource != "10.1.1.11" || b.Decision.Verdict != "allow" {
		t.Errorf("edge -> n2:30080: %+v", res)
	}
	for _, be := range res.Service.Backends {
		if eg := be.Decision.Egress; eg.Verdict != "allow" || eg.Rule == nil || eg.Rule.Policy != "CiliumNetworkPolicy shop/edge-to-nodes" {
			t.Errorf("edge's egress towards %s: %+v", be.Pod, eg)
		}
	}
	// Its own node's NodePort is not translated: it reaches the node.
	stdout, errs, rc := sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "192.168.50.1", "--port", "30080/TCP", "-o", "json")
	var plain struct {
		Verdict string
		To      struct{ Node string }
		Service struct {
			Translated bool
			Reason     string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &plain); err != nil || rc != 0 {
		t.Fatalf("client -> n1:30080: rc %d, %v\n%s", rc, err, errs)
	}
	if plain.Service.Translated || plain.To.Node != "n1" || !strings.Contains(plain.Service.Reason, "does not translate NodePorts") {
		t.Errorf("client -> its own node's NodePort: %+v", plain)
	}
}

// A frontend without backends does what --no-backends compiled.
func TestTraceServiceNoBackends(t *testing.T) {
	for _, c := range []struct{ mode, want, reason string }{
		{"", "reject", "ECONNREFUSED"},
		{"drop", "drop", "times out"},
	} {
		args := []string{"--from", "shop/client", "--to", "10.96.0.40", "--port", "80/TCP"}
		if c.mode != "" {
			args = append(args, "--no-backends", c.mode)
		}
		res := traceServiceJSON(t, args...)
		if res.Verdict != c.want || res.Service.NoBackends != c.want || len(res.Service.Backends) != 0 || !strings.Contains(res.Service.Reason, c.reason) {
			t.Errorf("--no-backends %q: %+v", c.mode, res)
		}
	}
	// From outside, the device answers a SYN with a reset.
	res := traceServiceJSON(t, "--from", "203.0.113.7", "--to", "10.96.0.40", "--port", "80/TCP", "--via", "n2")
	if res.Verdict != "reject" || res.Service.Path != "device" || !strings.Contains(res.Service.Reason, "reset") {
		t.Errorf("world -> empty via n2: %+v", res)
	}
	if _, errs, rc := sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "10.96.0.40", "--no-backends", "refuse"); rc != 2 || !strings.Contains(errs, "accepted are reject and drop") {
		t.Errorf("--no-backends refuse: rc %d, %s", rc, errs)
	}
}

// Which backends: not ready ones are skipped, serving terminating ones
// are the fallback, and internalTrafficPolicy Local keeps the client's
// node's.
func TestTraceServiceBackendChoice(t *testing.T) {
	res := traceServiceJSON(t, "--from", "shop/client", "--to", "10.96.0.60", "--port", "80/TCP")
	backendsByPod(t, res, "shop/jobs-b")
	if res.Verdict != "allow" || !strings.Contains(res.Service.Reason, "KEP-1669") {
		t.Errorf("jobs: %+v", res)
	}
	res = traceServiceJSON(t, "--from", "shop/client", "--to", "svc:shop/local", "--port", "80/TCP")
	backendsByPod(t, res, "shop/web-a")
	res = traceServiceJSON(t, "--from", "node:n2", "--to", "svc:shop/local", "--port", "80/TCP")
	backendsByPod(t, res, "shop/web-b")
}

// A port that is not the service's is not translated: the connection
// goes to the ClusterIP as a plain address, which is world.
func TestTraceServiceOtherPort(t *testing.T) {
	stdout, errs, rc := sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "10.96.0.20", "--port", "81/TCP", "-o", "json")
	var res struct {
		Verdict string
		To      struct{ Identity int }
		Egress  sideJSON
		Service *struct {
			Name       string
			Translated bool
			Reason     string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || rc != 0 {
		t.Fatalf("rc %d, %v\n%s", rc, err, errs)
	}
	if res.Service == nil || res.Service.Translated || res.Service.Name != "shop/web" || res.To.Identity != 2 || res.Verdict != "allow" ||
		!strings.Contains(res.Service.Reason, "81/TCP is none of its ports (80/TCP http)") {
		t.Errorf("client -> 10.96.0.20:81: %+v", res)
	}
	// SCTP is not translated at the socket; the device cannot rewrite its
	// port, so from outside it is dropped at every backend.
	stdout, _, _ = sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "10.96.0.80", "--port", "5000/SCTP")
	if !strings.Contains(stdout, "translates TCP and UDP only") {
		t.Errorf("client -> sig 5000/SCTP:\n%s", stdout)
	}
	sctp := traceServiceJSON(t, "--from", "203.0.113.7", "--to", "192.168.50.2", "--port", "30500/SCTP")
	if sctp.Verdict != "drop" || len(sctp.Service.Backends) != 2 || sctp.Service.Backends[0].LBDrop == "" || sctp.Service.Backends[1].LBDrop == "" {
		t.Errorf("world -> sig NodePort SCTP: %+v", sctp)
	}
	// A query to a pod keeps its JSON: no service object.
	stdout, _, _ = sluice(t, "", "trace", "-f", svcManifests, "--from", "shop/client", "--to", "shop/web-a", "--port", "8080/TCP", "-o", "json")
	var pod map[string]any
	if err := json.Unmarshal([]byte(stdout), &pod); err != nil {
		t.Fatal(err)
	}
	if _, ok := pod["service"]; ok || pod["verdict"] != "deny" {
		t.Errorf("pod query: %v", pod)
	}
}

// Usage errors: the receiving node of an outside client is needed with
// several nodes, and must be the one that receives it.
func TestTraceServiceUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "203.0.113.7", "--to", "10.96.0.50", "--port", "80/TCP"}, "name the node that receives it (nodes: n1, n2)"},
		{[]string{"--from", "203.0.113.7", "--to", "10.96.0.50", "--port", "80/TCP", "--via", "n9"}, `no node "n9"`},
		{[]string{"--from", "shop/client", "--to", "10.96.0.20", "--via", "n2"}, "is received by node n1, not n2"},
		{[]string{"--from", "203.0.113.7", "--to", "192.168.50.1", "--port", "30080/TCP", "--via", "n2"}, "is received by node n1, not n2"},
		{[]string{"--from", "shop/client", "--to", "shop/web-a", "--via", "n1"}, "is no service frontend"},
		{[]string{"--from", "shop/client", "--to", "shop/web"}, "write svc:shop/web"},
		{[]string{"--from", "shop/client", "--to", "svc:shop/nope"}, "no service shop/nope"},
		{[]string{"--matrix", "--via", "n1"}, "not --matrix"},
		{[]string{"--from", "svc:shop/web", "--to", "shop/client"}, "a service is no client"},
	} {
		if _, errs, rc := sluice(t, "", append([]string{"trace", "-f", svcManifests}, c.args...)...); rc != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: rc %d, want 2 and %q in:\n%s", c.args, rc, c.want, errs)
		}
	}
	// With --via, the outside client's ClusterIP is traced on that node.
	res := traceServiceJSON(t, "--from", "203.0.113.7", "--to", "10.96.0.50", "--port", "80/TCP", "--via", "node:n2")
	idx := backendsByPod(t, res, "shop/site-a", "shop/site-b")
	if res.Service.Node != "n2" || !res.Service.Backends[idx["shop/site-a"]].SNAT || res.Service.Backends[idx["shop/site-b"]].SNAT {
		t.Errorf("world -> site ClusterIP via n2: %+v", res)
	}
}

// The text of each case, as golden files; go test -update (make
// update-golden) rewrites them.
func TestGoldenTraceServices(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"every-backend-denies", []string{"--from", "shop/client", "--to", "svc:shop/web", "--port", "80/TCP"}},
		{"mixed", []string{"--from", "shop/client", "--to", "10.96.0.30", "--port", "80/TCP"}},
		{"nodeport-world", []string{"--from", "203.0.113.7", "--to", "192.168.50.1", "--port", "30080/TCP"}},
		{"nodeport-other-node", []string{"--from", "shop/edge", "--to", "192.168.50.2", "--port", "30080/TCP"}},
		{"nodeport-own-node", []string{"--from", "shop/client", "--to", "192.168.50.1", "--port", "30080/TCP"}},
		{"no-backends", []string{"--from", "shop/client", "--to", "10.96.0.40", "--port", "80/TCP"}},
		{"no-backends-drop", []string{"--from", "shop/client", "--to", "10.96.0.40", "--port", "80/TCP", "--no-backends", "drop"}},
		{"terminating-fallback", []string{"--from", "shop/client", "--to", "svc:shop/jobs", "--port", "80/TCP"}},
		{"internal-local", []string{"--from", "shop/client", "--to", "svc:shop/local", "--port", "80/TCP"}},
		{"other-port", []string{"--from", "shop/client", "--to", "10.96.0.20", "--port", "81/TCP"}},
		{"clusterip-from-outside", []string{"--from", "203.0.113.7", "--to", "10.96.0.50", "--port", "80/TCP", "--via", "n2"}},
		{"sctp-nodeport", []string{"--from", "203.0.113.7", "--to", "192.168.50.2", "--port", "30500/SCTP"}},
	}
	dir := filepath.Join("testdata", "golden", "trace-services")
	if *update {
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, errs, rc := sluice(t, "", append([]string{"trace", "-f", svcManifests}, c.args...)...)
			if rc != 0 {
				t.Fatalf("rc %d\n%s", rc, errs)
			}
			path := filepath.Join(dir, c.name+".txt")
			if *update {
				if err := os.WriteFile(path, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v; run go test ./cmd/sluice -run Golden -update", err)
			}
			if diff := cmp.Diff(string(want), stdout); diff != "" {
				t.Errorf("%s differs from the golden file (-want +got); run go test ./cmd/sluice -run Golden -update after a deliberate change:\n%s", path, diff)
			}
		})
	}
}

// trace --datapath runs each backend's translated connection through the
// kernel, and it agrees with the evaluator on every backend.
func TestTraceServiceDatapath(t *testing.T) {
	requireRoot(t, "trace --datapath")
	for _, args := range [][]string{
		{"--from", "shop/client", "--to", "10.96.0.20", "--port", "80/TCP"},
		{"--from", "shop/client", "--to", "10.96.0.30", "--port", "80/TCP"},
		{"--from", "203.0.113.7", "--to", "192.168.50.1", "--port", "30080/TCP"},
		{"--from", "shop/edge", "--to", "192.168.50.2", "--port", "30080/TCP"},
		{"--from", "203.0.113.7", "--to", "192.168.50.2", "--port", "30500/SCTP"},
	} {
		// Status 0: the kernel agreed on every backend.
		res := traceServiceJSON(t, append(args, "--datapath")...)
		if len(res.Service.Backends) == 0 {
			t.Fatalf("%v: no backends", args)
		}
		for _, b := range res.Service.Backends {
			if b.Kernel == nil || b.Kernel.Verdict != b.Decision.Verdict {
				t.Errorf("%v: backend %s: kernel %+v, evaluator %s", args, b.Pod, b.Kernel, b.Decision.Verdict)
			}
			// The kernel sees the SNAT too: site-b drops n1's address
			// where site-a lets the world in.
			if args[3] == "192.168.50.1" {
				want := map[string]string{"shop/site-a": "pass", "shop/site-b": "drop"}[b.Pod]
				if b.Kernel == nil || b.Kernel.Ingress != want || b.Kernel.Egress != "-" {
					t.Errorf("backend %s: kernel %+v, want ingress %s", b.Pod, b.Kernel, want)
				}
			}
		}
	}
	stdout, errs, rc := sluice(t, "", "trace", "-f", svcManifests, "--datapath", "--from", "shop/client", "--to", "10.96.0.30", "--port", "80/TCP")
	if rc != 0 || strings.Count(stdout, "agrees with the evaluator") != 2 {
		t.Errorf("rc %d\n%s%s", rc, stdout, errs)
	}
}
