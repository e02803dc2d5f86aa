package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// ServiceProxyNameLabel marks a Service served by another proxy: the
// compiler gives it no frontend (toServices still resolves it), on the
// snapshot path as from files.
const ServiceProxyNameLabel = compiler.ServiceProxyNameLabel

// SourcePrefix starts the name of every snapshot object's source:
// kube:pod/NAMESPACE/NAME, kube:node/NAME, ...
const SourcePrefix = "kube:"

// Load is the front half of sluice compile and trace with --kubeconfig:
// it reads the intent manifests at paths (as schema.Load does), lists the
// cluster the kubeconfig names, and combines the two (Combine). The error
// is about the cluster (config, connection, credentials, permissions);
// diagnostics are about manifests, with the set for their source lines.
func Load(ctx context.Context, kubeconfig string, paths []string, stdin io.Reader) (*schema.Set, []ir.Warning, schema.Diagnostics, error) {
	cfg, err := Config(kubeconfig)
	if err != nil {
		return nil, nil, nil, err
	}
	intent, diags := schema.Load(paths, stdin)
	if len(diags) > 0 {
		return intent, nil, diags, nil
	}
	snap, err := List(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	set, warnings, diags := Combine(intent, snap)
	return set, warnings, diags, nil
}

// runtimeKinds come only from the cluster when there is one: the
// intent's copies, if any, are left out.
var runtimeKinds = map[string]bool{"Pod": true, "Node": true, "EndpointSlice": true, "Endpoints": true}

// Combine makes one set of the intent and the cluster's runtime state,
// for compiler.Compile (see the package doc for the rules). Warnings name
// the intent objects left out or overridden; diagnostics are the
// snapshot's decoding problems, at positions in its kube: sources.
func Combine(intent *schema.Set, snap *Snapshot) (*schema.Set, []ir.Warning, schema.Diagnostics) {
	var warnings []ir.Warning
	warn := func(o *schema.Object, field, format string, args ...any) {
		p := o.PosOf(field)
		warnings = append(warnings, ir.Warning{Source: ir.Source{File: p.File, Line: p.Line, Col: p.Col}, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	services := map[string]*corev1.Service{}
	for i := range snap.Services {
		s := &snap.Services[i]
		services[s.Namespace+"/"+s.Name] = s
	}
	namespaces := map[string]*corev1.Namespace{}
	for i := range snap.Namespaces {
		namespaces[snap.Namespaces[i].Name] = &snap.Namespaces[i]
	}

	left := map[string][]*schema.Object{} // runtime kinds of the intent, left out
	keep := func(o *schema.Object) bool {
		switch {
		case runtimeKinds[o.Kind]:
			left[o.Kind] = append(left[o.Kind], o)
			return false
		case o.Kind == "Service":
			live := services[o.Namespace+"/"+o.Name]
			if live == nil {
				warn(o, "", "Service %s/%s is not in the cluster at %s: compiled from the repository, without the allocations (clusterIP, nodePorts) the API server would make", o.Namespace, o.Name, snap.Server)
				return true
			}
			if _, other := live.Labels[ServiceProxyNameLabel]; !other {
				diffService(o, live, warn)
			}
			return false
		case o.Kind == "Namespace":
			if live := namespaces[o.Name]; live != nil {
				diffLabels(o, "Namespace", live.Labels, warn)
				return false
			}
		}
		return true
	}
	srcs, bad := snapshotSources(snap)
	set, diags := intent.Extend(keep, srcs)
	diags = append(diags, bad...)
	for _, kind := range slices.Sorted(maps.Keys(left)) {
		objs := left[kind]
		warn(objs[0], "", "%d %s object(s) of the repository left out: with a live cluster, %ss come from the API server (%s)", len(objs), kind, kind, snap.Server)
	}
	slices.SortFunc(warnings, func(a, b ir.Warning) int {
		return cmp.Or(strings.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line), cmp.Compare(a.Source.Col, b.Source.Col), strings.Compare(a.Message, b.Message))
	})
	return set, warnings, diags
}

type warnFunc func(o *schema.Object, field, format string, args ...any)

// diffLabels warns about every label of the intent object the live one
// lacks or has with another value: policies select on the live labels.
func diffLabels(o *schema.Object, kind string, live map[string]string, warn warnFunc) {
	labels := o.Obj.(interface{ GetLabels() map[string]string }).GetLabels()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		want := labels[k]
		got, ok := live[k]
		switch {
		case !ok:
			warn(o, "metadata.labels"+schema.Key(k), "the cluster's %s has no label %s; the cluster's labels are compiled, as policies select on them", kind, k)
		case got != want:
			warn(o, "metadata.labels"+schema.Key(k), "the cluster's %s has %s=%q, the repository %q; the cluster's labels are compiled, as policies select on them", kind, k, got, want)
		}
	}
}

// diffService warns where the cluster's Service differs from the
// repository's in what routing uses; the cluster's is compiled.
func diffService(o *schema.Object, live *corev1.Service, warn warnFunc) {
	repo := o.Obj.(*corev1.Service)
	diffLabels(o, "Service", live.Labels, warn)
	const compiled = "; the cluster's Service is compiled, as it is what kube-proxy and Sluice serve"
	if !maps.Equal(repo.Spec.Selector, live.Spec.Selector) {
		warn(o, "spec.selector", "the cluster's selector is %s, the repository's %s%s", showMap(live.Spec.Selector), showMap(repo.Spec.Selector), compiled)
	}
	if t, lt := cmp.Or(repo.Spec.Type, corev1.ServiceTypeClusterIP), cmp.Or(live.Spec.Type, corev1.ServiceTypeClusterIP); t != lt {
		warn(o, "spec.type", "the cluster's type is %s, the repository's %s%s", lt, t, compiled)
	}
	if ip := repo.Spec.ClusterIP; ip != "" && ip != live.Spec.ClusterIP {
		warn(o, "spec.clusterIP", "the cluster's clusterIP is %s, the repository's %s%s", live.Spec.ClusterIP, ip, compiled)
	}
	livePorts := map[string]corev1.ServicePort{}
	for _, p := range live.Spec.Ports {
		livePorts[p.Name] = p
	}
	for i, p := range repo.Spec.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		lp, ok := livePorts[p.Name]
		if !ok {
			warn(o, field, "the cluster's Service has no port %s%s", showPort(p, true), compiled)
			continue
		}
		delete(livePorts, p.Name)
		// A nodePort the repository leaves out is the API server's to
		// allocate: compare it only when the repository sets one.
		if want, got := showPort(p, p.NodePort != 0), showPort(lp, p.NodePort != 0); want != got {
			warn(o, field, "the cluster's port is %s, the repository's %s%s", showPort(lp, lp.NodePort != 0), want, compiled)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(livePorts)) {
		p := livePorts[name]
		warn(o, "spec.ports", "the cluster's Service also has port %s%s", showPort(p, p.NodePort != 0), compiled)
	}
}

// showPort formats a service port with the defaults the API server
// fills in (TCP, targetPort = port), so that equal ports print equally.
func showPort(p corev1.ServicePort, nodePort bool) string {
	target := p.TargetPort
	if target.Type == intstr.Int && target.IntVal == 0 || target.Type == intstr.String && target.StrVal == "" {
		target = intstr.FromInt32(p.Port)
	}
	s := fmt.Sprintf("%d/%s->%s", p.Port, cmp.Or(p.Protocol, corev1.ProtocolTCP), target.String())
	if p.Name != "" {
		s = p.Name + " " + s
	}
	if nodePort {
		s += fmt.Sprintf(" nodePort %d", p.NodePort)
	}
	return s
}

func showMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// snapshotSources encodes every object of the snapshot as a source of its
// own, named kube:KIND/NAMESPACE/NAME, as indented JSON: one field a line,
// so a diagnostic points at the field, and its excerpt shows it. uid and
// resourceVersion are left out, so that the compile depends on the state,
// not on its history.
func snapshotSources(snap *Snapshot) ([]schema.Source, schema.Diagnostics) {
	var srcs []schema.Source
	var diags schema.Diagnostics
	// meta and tm belong to a copy of the object (sortedCopy).
	add := func(kind, apiVersion string, meta *metav1.ObjectMeta, obj any, tm *metav1.TypeMeta) {
		*tm = metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
		meta.UID, meta.ResourceVersion = "", ""
		name := SourcePrefix + strings.ToLower(kind) + "/" + meta.Name
		if meta.Namespace != "" {
			name = SourcePrefix + strings.ToLower(kind) + "/" + meta.Namespace + "/" + meta.Name
		}
		data, err := json.MarshalIndent(obj, "", "  ")
		if err != nil { // a timestamp past year 9999, say
			diags = append(diags, schema.Diagnostic{Pos: schema.Pos{File: name}, Message: "cannot encode the object the API server returned: " + err.Error()})
			return
		}
		srcs = append(srcs, schema.Source{Name: name, Data: append(data, '\n')})
	}
	for _, n := range sortedCopy(snap.Namespaces, func(o *corev1.Namespace) *metav1.ObjectMeta { return &o.ObjectMeta }) {
		add("Namespace", "v1", &n.ObjectMeta, n, &n.TypeMeta)
	}
	for _, n := range sortedCopy(snap.Nodes, func(o *corev1.Node) *metav1.ObjectMeta { return &o.ObjectMeta }) {
		add("Node", "v1", &n.ObjectMeta, n, &n.TypeMeta)
	}
	for _, p := range sortedCopy(snap.Pods, func(o *corev1.Pod) *metav1.ObjectMeta { return &o.ObjectMeta }) {
		add("Pod", "v1", &p.ObjectMeta, p, &p.TypeMeta)
	}
	for _, s := range sortedCopy(snap.Services, func(o *corev1.Service) *metav1.ObjectMeta { return &o.ObjectMeta }) {
		add("Service", "v1", &s.ObjectMeta, s, &s.TypeMeta)
	}
	for _, e := range sortedCopy(snap.EndpointSlices, func(o *discoveryv1.EndpointSlice) *metav1.ObjectMeta { return &o.ObjectMeta }) {
		add("EndpointSlice", "discovery.k8s.io/v1", &e.ObjectMeta, e, &e.TypeMeta)
	}
	return srcs, diags
}

// sortedCopy returns pointers to copies of the objects in namespace and
// name order, whatever order the API server listed them in.
func sortedCopy[T any](objs []T, meta func(*T) *metav1.ObjectMeta) []*T {
	out := make([]*T, len(objs))
	for i := range objs {
		c := objs[i]
		out[i] = &c
	}
	slices.SortFunc(out, func(a, b *T) int {
		ma, mb := meta(a), meta(b)
		return cmp.Or(strings.Compare(ma.Namespace, mb.Namespace), strings.Compare(ma.Name, mb.Name))
	})
	return out
}
