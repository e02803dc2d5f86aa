package synth

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Stats counts what Generate wrote.
type Stats struct {
	Files int
	Bytes int64

	Nodes                            int
	Namespaces                       int
	Deployments                      int
	StatefulSets                     int
	DaemonSets                       int
	Pods                             int
	Services                         int
	EndpointSlices                   int
	Endpoints                        int // addresses over all EndpointSlices
	NetworkPolicies                  int
	CiliumNetworkPolicies            int
	CiliumClusterwideNetworkPolicies int
}

// CiliumPolicies is namespaced plus clusterwide Cilium policies.
func (s Stats) CiliumPolicies() int {
	return s.CiliumNetworkPolicies + s.CiliumClusterwideNetworkPolicies
}

// String renders the counts one per line, for people.
func (s Stats) String() string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "%-34s %v\n", k, v) }
	row("files", s.Files)
	row("bytes", fmt.Sprintf("%d (%.1f MB)", s.Bytes, float64(s.Bytes)/1e6))
	row("Node", s.Nodes)
	row("Namespace", s.Namespaces)
	row("Deployment", s.Deployments)
	row("StatefulSet", s.StatefulSets)
	row("DaemonSet", s.DaemonSets)
	row("Pod", s.Pods)
	row("Service", s.Services)
	row("EndpointSlice", s.EndpointSlices)
	row("  endpoints", s.Endpoints)
	row("NetworkPolicy", s.NetworkPolicies)
	row("CiliumNetworkPolicy", s.CiliumNetworkPolicies)
	row("CiliumClusterwideNetworkPolicy", s.CiliumClusterwideNetworkPolicies)
	return b.String()
}

// Generate writes the cluster described by p into dir, creating dir if
// needed. Files a previous Generate wrote there (nodes.yaml, cluster.yaml,
// ns-*.yaml) are replaced or removed; other files are left alone.
func Generate(p Params, dir string) (Stats, error) {
	c, err := build(p)
	if err != nil {
		return Stats{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Stats{}, fmt.Errorf("synth: %w", err)
	}
	if err := removeGenerated(dir); err != nil {
		return Stats{}, err
	}

	type job struct {
		name string
		fill func(*docWriter)
	}
	jobs := []job{
		{"nodes.yaml", c.writeNodes},
		{"cluster.yaml", c.writeCluster},
	}
	for _, ns := range c.namespaces {
		jobs = append(jobs, job{"ns-" + ns.name + ".yaml", func(w *docWriter) { c.writeNamespace(w, ns) }})
	}

	sizes := make([]int64, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				sizes[i], errs[i] = writeFile(filepath.Join(dir, jobs[i].name), jobs[i].fill)
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Stats{}, err
	}

	st := c.stats()
	st.Files = len(jobs)
	for _, n := range sizes {
		st.Bytes += n
	}
	return st, nil
}

func removeGenerated(dir string) error {
	for _, pat := range []string{"nodes.yaml", "cluster.yaml", "ns-*.yaml"} {
		old, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("synth: remove stale output: %w", err)
			}
		}
	}
	return nil
}

func (c *cluster) stats() Stats {
	st := Stats{Nodes: len(c.nodes), Namespaces: len(c.namespaces), CiliumClusterwideNetworkPolicies: len(c.ccnps)}
	for _, ns := range c.namespaces {
		for _, w := range ns.workloads {
			switch w.kind {
			case "Deployment":
				st.Deployments++
			case "StatefulSet":
				st.StatefulSets++
			case "DaemonSet":
				st.DaemonSets++
			}
		}
		st.Pods += len(ns.pods)
		st.Services += len(ns.services)
		for _, s := range ns.services {
			st.EndpointSlices += len(s.slices)
			if s.name == "kubernetes" && ns.name == "default" {
				st.Endpoints += len(c.nodes) - len(c.workers)
				continue
			}
			for _, sl := range s.slices {
				st.Endpoints += len(sl.endpoints)
			}
		}
		st.NetworkPolicies += len(ns.netpols)
		st.CiliumNetworkPolicies += len(ns.cnps)
	}
	return st
}

// docWriter encodes documents into a buffer and hands full buffers to a
// bufio.Writer.
type docWriter struct {
	e   encoder
	w   *bufio.Writer
	n   int64
	err error
}

func (d *docWriter) doc(o obj) {
	d.e.doc(o)
	if len(d.e.b) >= 64<<10 {
		d.flush()
	}
}

func (d *docWriter) flush() {
	if d.err == nil {
		_, d.err = d.w.Write(d.e.b)
	}
	d.n += int64(len(d.e.b))
	d.e.b = d.e.b[:0]
}

func writeFile(path string, fill func(*docWriter)) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("synth: %w", err)
	}
	d := &docWriter{w: bufio.NewWriterSize(f, 256<<10), e: encoder{b: make([]byte, 0, 80<<10)}}
	fill(d)
	d.flush()
	if d.err == nil {
		d.err = d.w.Flush()
	}
	if cerr := f.Close(); d.err == nil {
		d.err = cerr
	}
	if d.err != nil {
		return 0, fmt.Errorf("synth: write %s: %w", path, d.err)
	}
	return d.n, nil
}

// ---- object trees ----

func (c *cluster) writeNodes(w *docWriter) {
	for _, n := range c.nodes {
		role := "node-role.kubernetes.io/worker"
		if n.controlPlane {
			role = "node-role.kubernetes.io/control-plane"
		}
		spec := obj{{"podCIDR", n.cidr.String()}, {"podCIDRs", strs(n.cidr.String())}}
		if n.controlPlane {
			spec = append(spec, kv{"taints", list{obj{{"effect", "NoSchedule"}, {"key", "node-role.kubernetes.io/control-plane"}}}})
		}
		w.doc(obj{
			{"apiVersion", "v1"},
			{"kind", "Node"},
			{"metadata", obj{
				{"labels", pairs(
					"kubernetes.io/arch", "amd64",
					"kubernetes.io/hostname", n.name,
					"kubernetes.io/os", "linux",
					role, "",
					"topology.kubernetes.io/region", region,
					"topology.kubernetes.io/zone", n.zone,
				)},
				{"name", n.name},
				{"uid", n.uid},
			}},
			{"spec", spec},
			{"status", obj{{"addresses", list{
				obj{{"address", n.ip.String()}, {"type", "InternalIP"}},
				obj{{"address", n.name}, {"type", "Hostname"}},
			}}}},
		})
	}
}

func (c *cluster) writeCluster(w *docWriter) {
	for _, ns := range c.namespaces {
		labels := []string{labelNSName, ns.name}
		if ns.team != "" {
			labels = append(labels, "team", ns.team, "env", ns.env)
		}
		if ns.tier != "" {
			labels = append(labels, "tier", ns.tier)
		}
		w.doc(obj{
			{"apiVersion", "v1"},
			{"kind", "Namespace"},
			{"metadata", obj{{"labels", pairs(labels...)}, {"name", ns.name}, {"uid", ns.uid}}},
			{"spec", obj{{"finalizers", strs("kubernetes")}}},
		})
	}
	for _, p := range c.ccnps {
		w.doc(p)
	}
}

func (c *cluster) writeNamespace(w *docWriter, ns *namespace) {
	for _, wl := range ns.workloads {
		w.doc(workloadObj(ns, wl))
	}
	for _, p := range ns.pods {
		w.doc(podObj(ns, p))
	}
	for _, s := range ns.services {
		w.doc(serviceObj(ns, s))
	}
	for _, s := range ns.services {
		for _, sl := range s.slices {
			w.doc(c.sliceObj(ns, s, sl))
		}
	}
	for _, p := range ns.netpols {
		w.doc(p)
	}
	for _, p := range ns.cnps {
		w.doc(p)
	}
}

var tolerateAll = list{obj{{"operator", "Exists"}}}

func workloadObj(ns *namespace, w *workload) obj {
	labels := pairs("app", w.app.name, "tier", w.app.arch.tier)
	if w.app.arch == archCoreDNS {
		labels = pairs("k8s-app", "kube-dns")
	}
	podSpec := obj{{"containers", w.containers}}
	if w.kind == "DaemonSet" {
		podSpec = append(podSpec, kv{"tolerations", tolerateAll})
	}
	spec := obj{
		{"selector", obj{{"matchLabels", w.selector}}},
		{"template", obj{{"metadata", obj{{"labels", w.templateLabels}}}, {"spec", podSpec}}},
	}
	switch w.kind {
	case "Deployment":
		spec = append(obj{{"replicas", w.replicas}}, spec...)
	case "StatefulSet":
		spec = append(obj{{"replicas", w.replicas}}, spec...)
		spec = append(spec, kv{"serviceName", w.app.name + "-headless"})
	}
	return obj{
		{"apiVersion", "apps/v1"},
		{"kind", w.kind},
		{"metadata", obj{{"labels", labels}, {"name", w.name}, {"namespace", ns.name}, {"uid", w.uid}}},
		{"spec", spec},
	}
}

func podObj(ns *namespace, p *pod) obj {
	w := p.w
	labels := w.podLabels
	owner := obj{{"apiVersion", "apps/v1"}, {"blockOwnerDeletion", true}, {"controller", true}, {"kind", w.kind}, {"name", w.name}, {"uid", w.uid}}
	switch w.kind {
	case "Deployment":
		owner = obj{{"apiVersion", "apps/v1"}, {"blockOwnerDeletion", true}, {"controller", true},
			{"kind", "ReplicaSet"}, {"name", w.name + "-" + w.hash}, {"uid", w.rsUID}}
	case "StatefulSet":
		idx := strconv.Itoa(p.index)
		labels = slices.Clone(w.templateLabels)
		labels = append(labels,
			kv{"apps.kubernetes.io/pod-index", idx},
			kv{"controller-revision-hash", w.hash},
			kv{"statefulset.kubernetes.io/pod-name", p.name})
		slices.SortFunc(labels, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	}
	meta := obj{
		{"labels", labels},
		{"name", p.name},
		{"namespace", ns.name},
		{"ownerReferences", list{owner}},
		{"uid", p.uid},
	}
	ready := "True"
	switch p.state {
	case podNotReady:
		ready = "False"
	case podTerminating:
		ready = "False"
		meta = append(obj{{"deletionGracePeriodSeconds", 30}, {"deletionTimestamp", deletionTime}}, meta...)
	}
	spec := obj{{"containers", w.containers}, {"nodeName", p.node.name}}
	if w.kind == "DaemonSet" {
		spec = append(spec, kv{"tolerations", tolerateAll})
	}
	ip := p.ip.String()
	hostIP := p.node.ip.String()
	return obj{
		{"apiVersion", "v1"},
		{"kind", "Pod"},
		{"metadata", meta},
		{"spec", spec},
		{"status", obj{
			{"conditions", list{obj{{"status", ready}, {"type", "Ready"}}}},
			{"hostIP", hostIP},
			{"phase", "Running"},
			{"podIP", ip},
			{"podIPs", list{obj{{"ip", ip}}}},
		}},
	}
}

func serviceObj(ns *namespace, s *service) obj {
	ports := make(list, len(s.ports))
	for i, p := range s.ports {
		var target any = p.targetN
		if p.target != "" {
			target = p.target
		}
		o := obj{{"name", p.name}}
		if p.nodePort != 0 {
			o = append(o, kv{"nodePort", p.nodePort})
		}
		o = append(o, kv{"port", p.port}, kv{"protocol", p.proto}, kv{"targetPort", target})
		ports[i] = o
	}
	typ := "ClusterIP"
	if s.nodePort {
		typ = "NodePort"
	}
	spec := obj{{"clusterIP", s.clusterIP}, {"clusterIPs", strs(s.clusterIP)}, {"ports", ports}}
	if s.selector != nil {
		spec = append(spec, kv{"selector", s.selector})
	}
	spec = append(spec, kv{"type", typ})
	return obj{
		{"apiVersion", "v1"},
		{"kind", "Service"},
		{"metadata", obj{{"labels", s.labels}, {"name", s.name}, {"namespace", ns.name}, {"uid", s.uid}}},
		{"spec", spec},
	}
}

var (
	condReady       = obj{{"ready", true}, {"serving", true}, {"terminating", false}}
	condNotReady    = obj{{"ready", false}, {"serving", false}, {"terminating", false}}
	condTerminating = obj{{"ready", false}, {"serving", true}, {"terminating", true}}
)

func (c *cluster) sliceObj(ns *namespace, s *service, sl *slice) obj {
	ports := make(list, len(s.ports))
	for i, p := range s.ports {
		ports[i] = obj{{"name", p.name}, {"port", p.backend}, {"protocol", p.proto}}
	}
	var eps list
	meta := obj{
		{"generateName", s.name + "-"},
		{"labels", pairs(
			"endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io",
			"kubernetes.io/service-name", s.name,
		)},
		{"name", sl.name},
		{"namespace", ns.name},
		{"ownerReferences", list{obj{{"apiVersion", "v1"}, {"blockOwnerDeletion", true}, {"controller", true},
			{"kind", "Service"}, {"name", s.name}, {"uid", s.uid}}}},
	}
	if s.name == "kubernetes" && ns.name == "default" {
		// Written by the API server itself: control-plane node addresses.
		meta = obj{{"labels", pairs("kubernetes.io/service-name", s.name)}, {"name", sl.name}, {"namespace", ns.name}}
		for _, n := range c.nodes {
			if n.controlPlane {
				eps = append(eps, obj{{"addresses", strs(n.ip.String())}, {"conditions", obj{{"ready", true}}}})
			}
		}
	}
	for _, p := range sl.endpoints {
		cond := condReady
		switch p.state {
		case podNotReady:
			cond = condNotReady
		case podTerminating:
			cond = condTerminating
		}
		eps = append(eps, obj{
			{"addresses", strs(p.ip.String())},
			{"conditions", cond},
			{"nodeName", p.node.name},
			{"targetRef", obj{{"kind", "Pod"}, {"name", p.name}, {"namespace", ns.name}, {"uid", p.uid}}},
			{"zone", p.node.zone},
		})
	}
	o := obj{{"addressType", "IPv4"}, {"apiVersion", "discovery.k8s.io/v1"}}
	if len(eps) > 0 {
		o = append(o, kv{"endpoints", eps})
	}
	o = append(o, kv{"kind", "EndpointSlice"}, kv{"metadata", meta}, kv{"ports", ports})
	return o
}
