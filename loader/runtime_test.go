package loader

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/ir"
)

const runtimeCluster = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.77.0.2}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d8f7c9b4-abcde
  namespace: default
  labels: {app: web, pod-template-hash: 5d8f7c9b4}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f7c9b4, uid: u1}]
spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.77.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: agent-from-web, namespace: default}
spec:
  podSelector: {matchLabels: {app: agent}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 9100}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 8080}]
  - to: [{ipBlock: {cidr: 10.77.0.0/28, except: [10.77.0.8/29]}}]
    ports: [{port: 5000, protocol: UDP}]
  - to: [{podSelector: {matchLabels: {app: agent}}}]
    ports: [{port: 9100}]
---
`

// Pods created after the compile: a second web replica (at an address in
// another CIDR region than the first), a DaemonSet pod, and a pod of no
// known workload.
var runtimeNewPods = []struct{ name, ip, labels, owner string }{
	{"web-5d8f7c9b4-zzzzz", "10.77.0.9", "{app: web, pod-template-hash: 5d8f7c9b4}", "{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f7c9b4, uid: u1}"},
	{"agent-xk2p9", "10.77.0.5", "{app: agent, controller-revision-hash: 6c5d}", "{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u2}"},
	{"lonely", "10.77.0.6", "{app: lonely}", ""},
}

func runtimePodsYAML() string {
	var b strings.Builder
	for _, p := range runtimeNewPods {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: default\n  labels: %s\n", p.name, p.labels)
		if p.owner != "" {
			fmt.Fprintf(&b, "  ownerReferences: [%s]\n", p.owner)
		}
		fmt.Fprintf(&b, "spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}\nstatus: {podIP: %s}\n---\n", p.ip)
	}
	return b.String()
}

// A pod the artifact does not list, enforced by the agent as a pod of its
// workload, gets in the kernel exactly the verdicts the evaluator gives
// for the cluster compiled with that pod — both ways, and across swaps
// (incremental and full). A pod of no workload gets the init identity.
// Once a compile lists the pods, their runtime entries go.
func TestRuntimePods(t *testing.T) {
	requireBPF(t)
	t.Run("no nodes", func(t *testing.T) { testRuntimePods(t, func(y string) string { return y }) })
	// With a Node and its pod CIDR, the runtime class keys come from the
	// regions inside the pod CIDR (the except splits it).
	t.Run("node with a pod CIDR", func(t *testing.T) {
		testRuntimePods(t, func(y string) string {
			return `apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.77.0.0/24, podCIDRs: [10.77.0.0/24]}
status: {addresses: [{type: InternalIP, address: 192.168.77.1}]}
---
` + strings.ReplaceAll(y, "spec: {containers:", "spec: {nodeName: n1, containers:")
		})
	})
}

func testRuntimePods(t *testing.T, variant func(string) string) {
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	pods := map[netip.Addr]PodRef{}
	for _, p := range runtimeNewPods {
		pods[netip.MustParseAddr(p.ip)] = PodRef{Namespace: "default", Name: p.name}
	}
	withPods, _ := compileYAML(t, variant(runtimeCluster+runtimePodsYAML()))
	ports := []ir.PortProto{{Port: 8080, Proto: ir.ProtoTCP}, {Port: 9100, Proto: ir.ProtoTCP}, {Port: 5000, Proto: ir.ProtoUDP}}
	check := func(what string, round int) {
		t.Helper()
		ev := ir.NewEvaluator(withPods)
		tr := &Tracer{ev: ev, nodes: map[string]*Datapath{withPods.Endpoints[0].Node: sw.gen}, sport: uint16(30000 + 2000*round)}
		n := 0
		for _, e := range ev.Matrix(ports) {
			if strings.HasSuffix(e.From, "/lonely") || strings.HasSuffix(e.To, "/lonely") {
				continue // its labels are not its identity until a compile lists it
			}
			kv, err := tr.Trace(ir.Query{Src: endpointAddr(withPods, e.From), Dst: endpointAddr(withPods, e.To), Proto: e.Proto, Port: e.Port})
			if err != nil {
				t.Fatal(err)
			}
			if kv.Verdict != e.Verdict {
				t.Errorf("%s: %s -> %s %s: kernel %s, evaluator (pod compiled in) %s", what, e.From, e.To, ir.PortString(e.Proto, e.Port), kv.Verdict, e.Verdict)
			}
			n++
		}
		if n < 48 {
			t.Fatalf("%s: only %d pairs compared", what, n)
		}
	}
	wantResolution := func(what string) {
		t.Helper()
		got := fmt.Sprint(sw.RuntimePods)
		want := fmt.Sprintf("[{{default agent-xk2p9} DaemonSet/agent %d} {{default lonely}  %d} {{default web-5d8f7c9b4-zzzzz} Deployment/web %d}]",
			identityOf(withPods, "default/agent-xk2p9"), ir.IdentityInit, identityOf(withPods, "default/web-5d8f7c9b4-zzzzz"))
		if got != want {
			t.Errorf("%s: runtime pods %s, want %s", what, got, want)
		}
	}

	// Generation 1 does not list the new pods; the agent adds them.
	_, out := compileYAML(t, variant(runtimeCluster))
	a1, _ := FromBuild(out.Artifacts[0])
	if err := sw.Swap(a1); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.SetRuntimePods(pods); err != nil {
		t.Fatal(err)
	}
	wantResolution("after SetRuntimePods")
	check("generation 1", 0)

	// Generations 2 and 3 (the third rewrites the first incrementally)
	// still do not list them: their entries follow every swap.
	_, out = compileYAML(t, variant(runtimeCluster+swapAllow))
	a2, _ := FromBuild(out.Artifacts[0])
	for round, a := range []*Artifact{a2, a1} {
		if err := sw.Swap(a); err != nil {
			t.Fatal(err)
		}
		wantResolution(fmt.Sprintf("swap %d", round+2))
		if round == 1 && !sw.LastSwap.Incremental {
			t.Errorf("swap 3 was not incremental: %s", sw.LastSwap.Fallback)
		}
		if round == 1 {
			check("generation 3", 1)
		}
	}

	// A compile that lists them: no runtime entries left; the maps are
	// their images. Then the pods go away entirely.
	_, out = compileYAML(t, variant(runtimeCluster+runtimePodsYAML()))
	a4, _ := FromBuild(out.Artifacts[0])
	if err := sw.Swap(a4); err != nil {
		t.Fatal(err)
	}
	if len(sw.RuntimePods) != 0 || len(sw.gen.runtimeWritten) != 0 {
		t.Errorf("listed pods still have runtime entries: %v", sw.RuntimePods)
	}
	checkMapsEqualImages(t, "generation 4", sw.gen)
	if err := sw.Swap(a1); err != nil { // incremental over generation 3, which held runtime entries
		t.Fatal(err)
	}
	if _, err := sw.SetRuntimePods(nil); err != nil {
		t.Fatal(err)
	}
	checkMapsEqualImages(t, "generation 5, the pods gone", sw.gen)
}

func identityOf(cl *ir.Cluster, key string) uint32 {
	for _, e := range cl.Endpoints {
		if e.Key() == key {
			return e.Identity
		}
	}
	return 0
}
