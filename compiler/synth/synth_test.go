package synth

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// testParams are the sizes the structural tests run at: the benchmark shape
// scaled down, and odd shapes that stress the budget arithmetic.
func testParams() map[string]Params {
	return map[string]Params{
		"full/100":  Full().Scale(0.01),
		"full/50":   Full().Scale(0.02),
		"minimum":   Full().Scale(0),
		"odd":       {Seed: 7, Nodes: 3, Namespaces: 5, Pods: 40, Services: 9, Endpoints: 70, NetworkPolicies: 13, CiliumPolicies: 4},
		"few-pods":  {Seed: 3, Nodes: 12, Namespaces: 40, Pods: 30, Services: 25, Endpoints: 60, NetworkPolicies: 100, CiliumPolicies: 60},
		"many-svcs": {Seed: 4, Nodes: 5, Namespaces: 8, Pods: 200, Services: 300, Endpoints: 900, NetworkPolicies: 3, CiliumPolicies: 0},
		// More pods per node than a /22 holds.
		"dense-nodes": {Seed: 5, Nodes: 2, Namespaces: 4, Pods: 3000, Services: 50, Endpoints: 3600, NetworkPolicies: 10, CiliumPolicies: 10},
		// Most namespaces empty.
		"empty-namespaces": {Seed: 6, Nodes: 5, Namespaces: 400, Pods: 100, Services: 20, Endpoints: 50, NetworkPolicies: 10, CiliumPolicies: 100},
	}
}

func generate(t *testing.T, p Params) (string, Stats) {
	t.Helper()
	dir := t.TempDir()
	st, err := Generate(p, dir)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", p, err)
	}
	return dir, st
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func TestDeterministic(t *testing.T) {
	p := Full().Scale(0.01)
	dirA, stA := generate(t, p)
	dirB, stB := generate(t, p)
	a, b := readDir(t, dirA), readDir(t, dirB)
	if d := cmp.Diff(stA, stB); d != "" {
		t.Errorf("stats differ (-first +second):\n%s", d)
	}
	if d := cmp.Diff(slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))); d != "" {
		t.Fatalf("file sets differ (-first +second):\n%s", d)
	}
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("%s differs between two generations with the same params", name)
		}
	}

	// Regenerating into a used directory replaces what was there.
	if _, err := Generate(Full().Scale(0.005), dirA); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(p, dirA); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(a, readDir(t, dirA)); d != "" {
		t.Errorf("regeneration into a used directory differs")
	}

	// Another seed is another cluster.
	q := p
	q.Seed++
	dirC, _ := generate(t, q)
	if c := readDir(t, dirC); bytes.Equal(c["nodes.yaml"], a["nodes.yaml"]) {
		t.Errorf("seed %d and %d give the same nodes.yaml", p.Seed, q.Seed)
	}
}

func TestScale(t *testing.T) {
	got := Full().Scale(0.01)
	want := Params{Seed: 1, Nodes: 2, Namespaces: 10, Pods: 500, Services: 100, Endpoints: 1000, NetworkPolicies: 50, CiliumPolicies: 10}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Full().Scale(0.01) (-want +got):\n%s", d)
	}
	got = Full().Scale(0)
	want = Params{Seed: 1, Nodes: minNodes, Namespaces: minNamespaces, Pods: minPods, Services: minServices, Endpoints: minEndpoints, NetworkPolicies: 1, CiliumPolicies: 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Full().Scale(0) (-want +got):\n%s", d)
	}
	if got := Full().Scale(1); got != Full() {
		t.Errorf("Full().Scale(1) = %+v, want Full()", got)
	}
}

func TestInvalidParams(t *testing.T) {
	p := Full().Scale(0.01)
	p.Nodes = 1
	p.Services = -1
	_, err := Generate(p, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "Nodes = 1, want 2..") || !strings.Contains(err.Error(), "Services = -1") {
		t.Errorf("Generate with Nodes 1, Services -1: err = %v, want both fields named", err)
	}
}

// cluster is what a test reads back from generated files, through the typed
// Kubernetes objects.
type parsed struct {
	nodes        []corev1.Node
	namespaces   []corev1.Namespace
	pods         []corev1.Pod
	services     []corev1.Service
	slices       []discoveryv1.EndpointSlice
	deployments  []appsv1.Deployment
	statefulSets []appsv1.StatefulSet
	daemonSets   []appsv1.DaemonSet
	netpols      []networkingv1.NetworkPolicy
	cnps, ccnps  []map[string]any
}

// load parses every document of every file strictly into its typed object
// and checks that each file holds what its name says.
func load(t *testing.T, dir string) *parsed {
	t.Helper()
	var c parsed
	for name, b := range readDir(t, dir) {
		s := string(b)
		if s == "" {
			continue // a namespace with nothing in it
		}
		if !strings.HasPrefix(s, "---\n") {
			t.Fatalf("%s does not start with a document separator", name)
		}
		for i, doc := range strings.Split(s, "---\n")[1:] {
			where := fmt.Sprintf("%s document %d", name, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			strict := func(into any) {
				t.Helper()
				if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
					t.Fatalf("%s (%s): %v\n%s", where, tm.Kind, err, doc)
				}
			}
			var ns string
			switch tm.Kind {
			case "Node":
				var o corev1.Node
				strict(&o)
				c.nodes = append(c.nodes, o)
			case "Namespace":
				var o corev1.Namespace
				strict(&o)
				c.namespaces = append(c.namespaces, o)
			case "Pod":
				var o corev1.Pod
				strict(&o)
				c.pods = append(c.pods, o)
				ns = o.Namespace
			case "Service":
				var o corev1.Service
				strict(&o)
				c.services = append(c.services, o)
				ns = o.Namespace
			case "EndpointSlice":
				var o discoveryv1.EndpointSlice
				strict(&o)
				c.slices = append(c.slices, o)
				ns = o.Namespace
			case "Deployment":
				var o appsv1.Deployment
				strict(&o)
				c.deployments = append(c.deployments, o)
				ns = o.Namespace
			case "StatefulSet":
				var o appsv1.StatefulSet
				strict(&o)
				c.statefulSets = append(c.statefulSets, o)
				ns = o.Namespace
			case "DaemonSet":
				var o appsv1.DaemonSet
				strict(&o)
				c.daemonSets = append(c.daemonSets, o)
				ns = o.Namespace
			case "NetworkPolicy":
				var o networkingv1.NetworkPolicy
				strict(&o)
				c.netpols = append(c.netpols, o)
				ns = o.Namespace
			case "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy":
				var o map[string]any
				strict(&o)
				if tm.APIVersion != "cilium.io/v2" {
					t.Errorf("%s: apiVersion %q", where, tm.APIVersion)
				}
				md, _ := o["metadata"].(map[string]any)
				ns, _ = md["namespace"].(string)
				if tm.Kind == "CiliumNetworkPolicy" {
					c.cnps = append(c.cnps, o)
				} else {
					c.ccnps = append(c.ccnps, o)
				}
			default:
				t.Fatalf("%s: unexpected kind %q", where, tm.Kind)
			}
			var wantFile string
			switch {
			case tm.Kind == "Node":
				wantFile = "nodes.yaml"
			case ns == "":
				wantFile = "cluster.yaml"
			default:
				wantFile = "ns-" + ns + ".yaml"
			}
			if name != wantFile {
				t.Errorf("%s: %s in namespace %q belongs in %s", where, tm.Kind, ns, wantFile)
			}
		}
	}
	// Files are read in map order; sort for stable messages.
	slices.SortFunc(c.pods, func(a, b corev1.Pod) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	return &c
}

// TestClusters generates each test shape and checks what was written: counts,
// addresses, and Services against their EndpointSlices.
func TestClusters(t *testing.T) {
	for name, p := range testParams() {
		t.Run(name, func(t *testing.T) {
			dir, st := generate(t, p)
			c := load(t, dir)
			checkCounts(t, p, st, dir, c)
			checkAddresses(t, c)
			checkEndpoints(t, c)
		})
	}
}

func checkCounts(t *testing.T, p Params, st Stats, dir string, c *parsed) {
	t.Helper()
	endpoints := 0
	for _, s := range c.slices {
		endpoints += len(s.Endpoints)
	}
	files := readDir(t, dir)
	var bytes int64
	for _, b := range files {
		bytes += int64(len(b))
	}
	written := Stats{
		Files:                            len(files),
		Bytes:                            bytes,
		Nodes:                            len(c.nodes),
		Namespaces:                       len(c.namespaces),
		Deployments:                      len(c.deployments),
		StatefulSets:                     len(c.statefulSets),
		DaemonSets:                       len(c.daemonSets),
		Pods:                             len(c.pods),
		Services:                         len(c.services),
		EndpointSlices:                   len(c.slices),
		Endpoints:                        endpoints,
		NetworkPolicies:                  len(c.netpols),
		CiliumNetworkPolicies:            len(c.cnps),
		CiliumClusterwideNetworkPolicies: len(c.ccnps),
	}
	if d := cmp.Diff(written, st); d != "" {
		t.Errorf("Stats do not describe the files (-files +stats):\n%s", d)
	}
	if st.Files != st.Namespaces+2 {
		t.Errorf("%d files for %d namespaces, want one per namespace plus nodes.yaml and cluster.yaml", st.Files, st.Namespaces)
	}

	want := map[string]int{
		"Nodes": p.Nodes, "Namespaces": p.Namespaces, "Pods": p.Pods, "Services": p.Services,
		"NetworkPolicies": p.NetworkPolicies, "CiliumPolicies": p.CiliumPolicies,
	}
	got := map[string]int{
		"Nodes": st.Nodes, "Namespaces": st.Namespaces, "Pods": st.Pods, "Services": st.Services,
		"NetworkPolicies": st.NetworkPolicies, "CiliumPolicies": st.CiliumPolicies(),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("counts (-params +written):\n%s", d)
	}
	// Endpoints are exact when the shape allows; allow 2% else.
	if d := abs(st.Endpoints - p.Endpoints); d*50 > p.Endpoints {
		t.Errorf("endpoints = %d, want %d (±2%%)", st.Endpoints, p.Endpoints)
	} else if d != 0 {
		t.Logf("endpoints = %d, want %d", st.Endpoints, p.Endpoints)
	}
}

func TestFullShapeEndpointsExact(t *testing.T) {
	for _, f := range []float64{0.01, 0.02, 0.05} {
		p := Full().Scale(f)
		c, err := build(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := c.stats(); st.Endpoints != p.Endpoints {
			t.Errorf("Scale(%v): endpoints = %d, want exactly %d", f, st.Endpoints, p.Endpoints)
		}
	}
}

func checkAddresses(t *testing.T, c *parsed) {
	t.Helper()
	podNet := netip.MustParsePrefix("10.0.0.0/9")
	svcNet := netip.MustParsePrefix("10.96.0.0/12")
	nodeNet := netip.MustParsePrefix("10.255.0.0/16")

	type nodeInfo struct {
		ip   string
		cidr netip.Prefix
	}
	nodes := map[string]nodeInfo{}
	var cidrs []netip.Prefix
	nodeIPs := map[string]bool{}
	for _, n := range c.nodes {
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || cidr.Masked() != cidr {
			t.Fatalf("node %s: podCIDR %q", n.Name, n.Spec.PodCIDR)
		}
		if !slices.Equal(n.Spec.PodCIDRs, []string{n.Spec.PodCIDR}) {
			t.Errorf("node %s: podCIDRs %v, want [%s]", n.Name, n.Spec.PodCIDRs, n.Spec.PodCIDR)
		}
		if cidr.Bits() > 22 || !podNet.Contains(cidr.Addr()) || svcNet.Overlaps(cidr) {
			t.Errorf("node %s: podCIDR %s: want a /22 or larger in %s outside %s", n.Name, cidr, podNet, svcNet)
		}
		for _, o := range cidrs {
			if o.Overlaps(cidr) {
				t.Errorf("node %s: podCIDR %s overlaps %s", n.Name, cidr, o)
			}
		}
		cidrs = append(cidrs, cidr)
		var internal string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		ip, err := netip.ParseAddr(internal)
		if err != nil || !nodeNet.Contains(ip) || nodeIPs[internal] {
			t.Errorf("node %s: InternalIP %q, want unique in %s", n.Name, internal, nodeNet)
		}
		nodeIPs[internal] = true
		if n.Labels["topology.kubernetes.io/zone"] == "" || n.Labels["kubernetes.io/hostname"] != n.Name {
			t.Errorf("node %s: labels %v", n.Name, n.Labels)
		}
		nodes[n.Name] = nodeInfo{internal, cidr}
	}

	podIPs := map[string]string{}
	perNode := map[string]int{}
	for _, p := range c.pods {
		id := p.Namespace + "/" + p.Name
		n, ok := nodes[p.Spec.NodeName]
		if !ok {
			t.Errorf("pod %s: on unknown node %q", id, p.Spec.NodeName)
			continue
		}
		perNode[p.Spec.NodeName]++
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !n.cidr.Contains(ip) || ip == n.cidr.Addr() {
			t.Errorf("pod %s: podIP %q not a host address of %s's podCIDR %s", id, p.Status.PodIP, p.Spec.NodeName, n.cidr)
		}
		if len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
			t.Errorf("pod %s: podIPs %v, want [%s]", id, p.Status.PodIPs, p.Status.PodIP)
		}
		if p.Status.HostIP != n.ip {
			t.Errorf("pod %s: hostIP %s, want node %s's %s", id, p.Status.HostIP, p.Spec.NodeName, n.ip)
		}
		if other, dup := podIPs[p.Status.PodIP]; dup {
			t.Errorf("pod %s: podIP %s also used by %s", id, p.Status.PodIP, other)
		}
		podIPs[p.Status.PodIP] = id
	}
	for name, n := range nodes {
		if perNode[name] > 1<<(32-n.cidr.Bits())-3 {
			t.Errorf("node %s: %d pods do not fit %s", name, perNode[name], n.cidr)
		}
	}

	clusterIPs := map[string]string{}
	nodePorts := map[int32]string{}
	for _, s := range c.services {
		id := s.Namespace + "/" + s.Name
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || !svcNet.Contains(ip) {
			t.Errorf("service %s: clusterIP %q not in %s", id, s.Spec.ClusterIP, svcNet)
		}
		if other, dup := clusterIPs[s.Spec.ClusterIP]; dup {
			t.Errorf("service %s: clusterIP %s also used by %s", id, s.Spec.ClusterIP, other)
		}
		clusterIPs[s.Spec.ClusterIP] = id
		for _, sp := range s.Spec.Ports {
			if (sp.NodePort != 0) != (s.Spec.Type == corev1.ServiceTypeNodePort) {
				t.Errorf("service %s: type %s with nodePort %d", id, s.Spec.Type, sp.NodePort)
			}
			if sp.NodePort == 0 {
				continue
			}
			if sp.NodePort < 30000 || sp.NodePort > 32767 {
				t.Errorf("service %s: nodePort %d out of range", id, sp.NodePort)
			}
			if other, dup := nodePorts[sp.NodePort]; dup {
				t.Errorf("service %s: nodePort %d also used by %s", id, sp.NodePort, other)
			}
			nodePorts[sp.NodePort] = id
		}
	}
}

// checkEndpoints checks that EndpointSlices hold exactly what the Service
// selects, as the EndpointSlice controller would write them.
func checkEndpoints(t *testing.T, c *parsed) {
	t.Helper()
	podsByNS := map[string][]corev1.Pod{}
	for _, p := range c.pods {
		podsByNS[p.Namespace] = append(podsByNS[p.Namespace], p)
	}
	slicesBySvc := map[string][]discoveryv1.EndpointSlice{}
	for _, s := range c.slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		slicesBySvc[s.Namespace+"/"+svc] = append(slicesBySvc[s.Namespace+"/"+svc], s)
	}
	controlPlane := map[string]bool{}
	for _, n := range c.nodes {
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					controlPlane[a.Address] = true
				}
			}
		}
	}

	for _, s := range c.services {
		id := s.Namespace + "/" + s.Name
		sl := slicesBySvc[id]
		if len(sl) == 0 {
			t.Errorf("service %s: no EndpointSlice", id)
			continue
		}
		delete(slicesBySvc, id)
		got := map[string]string{} // pod name -> address
		for _, es := range sl {
			if es.AddressType != discoveryv1.AddressTypeIPv4 {
				t.Errorf("slice %s/%s: addressType %s", es.Namespace, es.Name, es.AddressType)
			}
			if len(es.Endpoints) > 100 {
				t.Errorf("slice %s/%s: %d endpoints, want at most 100", es.Namespace, es.Name, len(es.Endpoints))
			}
			if len(es.Ports) != len(s.Spec.Ports) {
				t.Errorf("slice %s/%s: %d ports, service has %d", es.Namespace, es.Name, len(es.Ports), len(s.Spec.Ports))
			}
			for _, e := range es.Endpoints {
				if len(e.Addresses) != 1 || e.Conditions.Ready == nil {
					t.Errorf("slice %s/%s: endpoint %+v", es.Namespace, es.Name, e)
					continue
				}
				if s.Spec.Selector == nil {
					if !controlPlane[e.Addresses[0]] {
						t.Errorf("service %s: endpoint %s is not a control-plane node", id, e.Addresses[0])
					}
					continue
				}
				if e.TargetRef == nil || e.TargetRef.Kind != "Pod" || e.NodeName == nil {
					t.Errorf("slice %s/%s: endpoint without pod reference: %+v", es.Namespace, es.Name, e)
					continue
				}
				got[e.TargetRef.Name] = e.Addresses[0]
			}
		}
		if s.Spec.Selector == nil {
			if s.Name != "kubernetes" {
				t.Errorf("service %s: no selector", id)
			}
			continue
		}

		sel := labels.SelectorFromSet(s.Spec.Selector)
		want := map[string]string{}
		for _, p := range podsByNS[s.Namespace] {
			if !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			want[p.Name] = p.Status.PodIP
			// Every service port resolves on the pod.
			for _, sp := range s.Spec.Ports {
				if resolve(p, sp) == 0 {
					t.Errorf("service %s port %s: targetPort %s not on pod %s", id, sp.Name, sp.TargetPort.String(), p.Name)
				}
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("service %s: endpoints (-selected pods +slices):\n%s", id, d)
		}
		// Slice ports are the resolved container ports.
		for _, es := range sl {
			for i, port := range es.Ports {
				if i >= len(s.Spec.Ports) || port.Name == nil || *port.Name != s.Spec.Ports[i].Name {
					t.Errorf("slice %s/%s port %d: name does not match service", es.Namespace, es.Name, i)
					continue
				}
				for _, e := range es.Endpoints {
					for _, p := range podsByNS[s.Namespace] {
						if p.Name == e.TargetRef.Name {
							if r := resolve(p, s.Spec.Ports[i]); port.Port == nil || *port.Port != r {
								t.Errorf("slice %s/%s port %s: %v, pod %s serves %d", es.Namespace, es.Name, *port.Name, port.Port, p.Name, r)
							}
						}
					}
				}
			}
		}
	}
	for id := range slicesBySvc {
		t.Errorf("EndpointSlices for %s, which is not a Service", id)
	}
}

// resolve returns the container port a service port reaches on p, or 0.
func resolve(p corev1.Pod, sp corev1.ServicePort) int32 {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Protocol != sp.Protocol {
				continue
			}
			if sp.TargetPort.Type == intstr.String && cp.Name == sp.TargetPort.StrVal ||
				sp.TargetPort.Type == intstr.Int && cp.ContainerPort == sp.TargetPort.IntVal {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

// TestObjects checks names, labels, selectors and owner references against
// the Kubernetes validation rules and against each other.
func TestObjects(t *testing.T) {
	dir, _ := generate(t, Full().Scale(0.02))
	c := load(t, dir)

	errs := func(what string, e []string) {
		t.Helper()
		if len(e) > 0 {
			t.Errorf("%s: %s", what, strings.Join(e, "; "))
		}
	}
	checkLabels := func(what string, ls map[string]string) {
		t.Helper()
		for k, v := range ls {
			errs(what+" label key "+k, validation.IsQualifiedName(k))
			errs(what+" label "+k+" value "+v, validation.IsValidLabelValue(v))
		}
	}
	selector := func(what string, s *metav1.LabelSelector) {
		t.Helper()
		if s == nil {
			return
		}
		if _, err := metav1.LabelSelectorAsSelector(s); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}

	teams := map[string]bool{}
	nsLabels := map[string]map[string]string{}
	for _, ns := range c.namespaces {
		errs("namespace "+ns.Name, validation.IsDNS1123Label(ns.Name))
		checkLabels("namespace "+ns.Name, ns.Labels)
		if ns.Labels["kubernetes.io/metadata.name"] != ns.Name {
			t.Errorf("namespace %s: labels %v", ns.Name, ns.Labels)
		}
		if ns.Name != "kube-system" && ns.Name != "default" && (ns.Labels["team"] == "" || ns.Labels["env"] == "" || ns.Labels["tier"] == "") {
			t.Errorf("namespace %s: want team, env and tier labels, have %v", ns.Name, ns.Labels)
		}
		teams[ns.Labels["team"]] = true
		nsLabels[ns.Name] = ns.Labels
	}
	for _, want := range []string{"kube-system", "default"} {
		if nsLabels[want] == nil {
			t.Errorf("no %s namespace", want)
		}
	}

	owners := map[string]string{} // kind/ns/name -> uid
	for _, d := range c.deployments {
		errs("deployment "+d.Name, validation.IsDNS1123Subdomain(d.Name))
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("deployment %s/%s: selector %v does not match its template %v", d.Namespace, d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		}
	}
	for _, s := range c.statefulSets {
		owners["StatefulSet/"+s.Namespace+"/"+s.Name] = string(s.UID)
	}
	for _, d := range c.daemonSets {
		owners["DaemonSet/"+d.Namespace+"/"+d.Name] = string(d.UID)
	}
	for _, p := range c.pods {
		id := p.Namespace + "/" + p.Name
		errs("pod "+id, validation.IsDNS1123Subdomain(p.Name))
		checkLabels("pod "+id, p.Labels)
		if len(p.OwnerReferences) != 1 {
			t.Errorf("pod %s: %d owner references", id, len(p.OwnerReferences))
			continue
		}
		o := p.OwnerReferences[0]
		switch o.Kind {
		case "ReplicaSet":
			if !strings.HasPrefix(o.Name, "") || p.Labels["pod-template-hash"] == "" || !strings.HasSuffix(o.Name, "-"+p.Labels["pod-template-hash"]) {
				t.Errorf("pod %s: owner %s and pod-template-hash %q disagree", id, o.Name, p.Labels["pod-template-hash"])
			}
		default:
			if owners[o.Kind+"/"+p.Namespace+"/"+o.Name] != string(o.UID) {
				t.Errorf("pod %s: owner %s/%s uid %s is not a generated workload", id, o.Kind, o.Name, o.UID)
			}
		}
		if p.Namespace != "kube-system" {
			for _, k := range []string{"app", "tier", "role", "version"} {
				if p.Labels[k] == "" {
					t.Errorf("pod %s: no %s label in %v", id, k, p.Labels)
				}
			}
		}
	}
	for _, s := range c.services {
		errs("service "+s.Name, validation.IsDNS1035Label(s.Name))
		checkLabels("service "+s.Name, s.Labels)
		for _, sp := range s.Spec.Ports {
			errs("service "+s.Name+" port name", validation.IsValidPortName(sp.Name))
			if sp.TargetPort.Type == intstr.String {
				errs("service "+s.Name+" targetPort", validation.IsValidPortName(sp.TargetPort.StrVal))
			}
		}
	}

	kinds := map[string]int{}
	for _, np := range c.netpols {
		id := "networkpolicy " + np.Namespace + "/" + np.Name
		errs(id, validation.IsDNS1123Subdomain(np.Name))
		selector(id+" podSelector", &np.Spec.PodSelector)
		peers := func(ps []networkingv1.NetworkPolicyPeer) {
			for _, p := range ps {
				selector(id+" peer podSelector", p.PodSelector)
				selector(id+" peer namespaceSelector", p.NamespaceSelector)
				switch {
				case p.IPBlock != nil:
					kinds["ipBlock"]++
					if len(p.IPBlock.Except) > 0 {
						kinds["ipBlock except"]++
					}
					if _, err := netip.ParsePrefix(p.IPBlock.CIDR); err != nil {
						t.Errorf("%s: %v", id, err)
					}
				case p.PodSelector != nil && p.NamespaceSelector != nil:
					kinds["namespace+pod"]++
				case p.NamespaceSelector != nil:
					kinds["namespace"]++
					for k, v := range p.NamespaceSelector.MatchLabels {
						if k == "team" && !teams[v] {
							t.Errorf("%s: selects team %q, which no namespace has", id, v)
						}
					}
				case p.PodSelector != nil:
					kinds["pod"]++
				}
			}
		}
		ports := func(ps []networkingv1.NetworkPolicyPort) {
			for _, p := range ps {
				switch {
				case p.Port == nil:
				case p.EndPort != nil:
					kinds["endPort"]++
				case p.Port.Type == intstr.String:
					kinds["named port"]++
					errs(id+" port", validation.IsValidPortName(p.Port.StrVal))
				default:
					kinds["numbered port"]++
				}
			}
		}
		for _, r := range np.Spec.Ingress {
			peers(r.From)
			ports(r.Ports)
		}
		for _, r := range np.Spec.Egress {
			peers(r.To)
			ports(r.Ports)
		}
		if len(np.Spec.PolicyTypes) == 0 {
			kinds["defaulted policyTypes"]++
		}
		if len(np.Spec.Egress) > 0 {
			kinds["egress"]++
		}
	}
	for _, k := range []string{"ipBlock", "ipBlock except", "namespace+pod", "namespace", "pod", "endPort", "named port", "numbered port", "defaulted policyTypes", "egress"} {
		if kinds[k] == 0 {
			t.Errorf("no NetworkPolicy uses %s", k)
		}
	}

	// Cilium: only L3/L4 keys, and every construct of the mix present.
	allowed := map[string]bool{
		"apiVersion": true, "kind": true, "metadata": true, "name": true, "namespace": true,
		"spec": true, "description": true, "endpointSelector": true, "matchLabels": true, "matchExpressions": true,
		"key": true, "operator": true, "values": true,
		"ingress": true, "egress": true, "ingressDeny": true, "egressDeny": true,
		"fromEndpoints": true, "toEndpoints": true, "fromEntities": true, "toEntities": true,
		"fromCIDRSet": true, "toCIDRSet": true, "cidr": true, "except": true,
		"toPorts": true, "ports": true, "port": true, "endPort": true, "protocol": true,
	}
	seen := map[string]int{}
	var walk func(v any, inLabels bool)
	walk = func(v any, inLabels bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if inLabels {
					seen["label "+k]++
					continue
				}
				if !allowed[k] {
					t.Errorf("cilium policy key %q is not an L3/L4 construct this generator may use", k)
				}
				seen[k]++
				walk(x, k == "matchLabels" || k == "metadata")
			}
		case []any:
			for _, x := range v {
				walk(x, false)
				if s, ok := x.(string); ok {
					seen["value "+s]++
				}
			}
		}
	}
	for _, p := range append(slices.Clone(c.cnps), c.ccnps...) {
		walk(p, false)
	}
	for _, k := range []string{"fromEndpoints", "toEndpoints", "fromEntities", "toCIDRSet", "fromCIDRSet", "except",
		"ingressDeny", "egressDeny", "endPort", "label k8s:io.kubernetes.pod.namespace", "label app",
		"value world", "value cluster", "value host", "value remote-node", "matchExpressions"} {
		if seen[k] == 0 {
			t.Errorf("no Cilium policy uses %s", k)
		}
	}
	protos := map[string]bool{}
	for _, p := range c.cnps {
		collectProtocols(p, protos)
	}
	for _, want := range []string{"TCP", "UDP", "ANY"} {
		if !protos[want] {
			t.Errorf("no CiliumNetworkPolicy port uses protocol %s", want)
		}
	}
}

func collectProtocols(v any, into map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "protocol" {
				into[s] = true
			}
			collectProtocols(x, into)
		}
	case []any:
		for _, x := range v {
			collectProtocols(x, into)
		}
	}
}

// TestFullSize generates the full-size cluster and checks its counts (how
// long it takes is reported, not asserted: timing belongs in make bench).
func TestFullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("full-size generation skipped in -short mode")
	}
	start := time.Now()
	_, st := generate(t, Full())
	d := time.Since(start)
	t.Logf("full size: %v, %d files, %.1f MB, %d pods, %d endpoints", d.Round(time.Millisecond), st.Files, float64(st.Bytes)/1e6, st.Pods, st.Endpoints)
	if st.Pods != Full().Pods || st.Endpoints != Full().Endpoints {
		t.Errorf("full size: %d pods, %d endpoints; want %d, %d", st.Pods, st.Endpoints, Full().Pods, Full().Endpoints)
	}
	if st.EndpointSlices <= st.Services {
		t.Errorf("full size: %d EndpointSlices for %d Services; want some Services spread over several slices", st.EndpointSlices, st.Services)
	}
}

func BenchmarkGenerateFull(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		if _, err := Generate(Full(), dir); err != nil {
			b.Fatal(err)
		}
	}
}
