package compiler

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// Label keys that only the objects owning them may set. A pod's own label
// under one of these would let it choose its namespace, its namespace's
// labels, its service account or its cluster as policy sees them; Cilium
// strips them from pod labels (k8s.SanitizePodLabels), and so do we.
const (
	// ciliumK8sPrefix covers io.cilium.k8s.namespace.labels.*,
	// io.cilium.k8s.policy.serviceaccount and io.cilium.k8s.policy.cluster;
	// like Cilium's k8sconst.LabelPrefix it has no trailing dot, so
	// io.cilium.k8sfoo is Cilium's too.
	ciliumK8sPrefix = "io.cilium.k8s"
)

// reservedPodLabel reports whether a pod label key is one the compiler
// derives from other objects, so a pod may not set it.
func reservedPodLabel(k string) bool {
	return k == ir.LabelNamespace || strings.HasPrefix(k, ciliumK8sPrefix)
}

// perPodLabels are per-pod or per-revision labels that carry no security
// meaning unless a selector uses them: left out of identities, one
// workload keeps one identity across its pods and rollouts (Cilium's
// default label filter drops them too). A key that any selector of the
// input uses is kept (see selectorKeys), or a policy on it would select
// nothing.
var perPodLabels = map[string]bool{
	"pod-template-hash":                        true,
	"controller-revision-hash":                 true,
	"pod-template-generation":                  true,
	"statefulset.kubernetes.io/pod-name":       true,
	"apps.kubernetes.io/pod-index":             true,
	"controller-uid":                           true,
	"batch.kubernetes.io/controller-uid":       true,
	"batch.kubernetes.io/job-completion-index": true,
}

// validateLabels checks an object's labels as the API server does, at
// field (e.g. metadata.labels). It returns false when any is invalid.
func (c *compilation) validateLabels(o *schema.Object, field string, labels map[string]string) bool {
	ok := true
	for _, k := range sortedKeys(labels) {
		f := field + schema.Key(k)
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			c.errorf(o, f, "invalid label key %q: %s", k, strings.Join(errs, "; "))
			ok = false
			continue
		}
		if errs := validation.IsValidLabelValue(labels[k]); len(errs) > 0 {
			c.errorf(o, f, "invalid label value %q: %s", labels[k], strings.Join(errs, "; "))
			ok = false
		}
	}
	return ok
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// selectorKeys collects every label key that a pod selector of the input
// uses: policy subjects and peers, fromRequires/toRequires, and the
// selectors of Services (which toServices peers stand for). Keys are
// returned as identity labels spell them (without Cilium's k8s: or any:
// source prefix).
func selectorKeys(byKind map[string][]*schema.Object) map[string]bool {
	keys := map[string]bool{}
	addLS := func(s *metav1.LabelSelector) {
		if s == nil {
			return
		}
		for k := range s.MatchLabels {
			keys[k] = true
		}
		for _, e := range s.MatchExpressions {
			keys[e.Key] = true
		}
	}
	addES := func(sels ...schema.EndpointSelector) {
		for i := range sels {
			for k := range sels[i].MatchLabels {
				keys[ciliumKey(k)] = true
			}
			for _, e := range sels[i].MatchExpressions {
				keys[ciliumKey(e.Key)] = true
			}
		}
	}
	for _, o := range byKind["NetworkPolicy"] {
		np := o.Obj.(*networkingv1.NetworkPolicy)
		addLS(&np.Spec.PodSelector)
		for _, r := range np.Spec.Ingress {
			for _, pe := range r.From {
				addLS(pe.PodSelector)
			}
		}
		for _, r := range np.Spec.Egress {
			for _, pe := range r.To {
				addLS(pe.PodSelector)
			}
		}
	}
	for _, kind := range []string{"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"} {
		for _, o := range byKind[kind] {
			for _, cr := range ciliumRules(o) {
				r := cr.rule
				if r.EndpointSelector != nil {
					addES(*r.EndpointSelector)
				}
				for _, in := range r.Ingress {
					addES(in.FromEndpoints...)
					addES(in.FromRequires...)
				}
				for _, in := range r.IngressDeny {
					addES(in.FromEndpoints...)
					addES(in.FromRequires...)
				}
				for _, eg := range r.Egress {
					addES(eg.ToEndpoints...)
					addES(eg.ToRequires...)
				}
				for _, eg := range r.EgressDeny {
					addES(eg.ToEndpoints...)
					addES(eg.ToRequires...)
				}
			}
		}
	}
	for _, o := range byKind["Service"] {
		for k := range o.Obj.(*corev1.Service).Spec.Selector {
			keys[k] = true
		}
	}
	return keys
}

// ciliumKey drops the k8s: or any: source prefix of an endpoint selector
// key.
func ciliumKey(k string) string {
	if src, rest, ok := strings.Cut(k, ":"); ok && (src == "k8s" || src == "any") {
		return rest
	}
	return k
}

// ciliumRule is one rule of a Cilium policy and its field (spec or
// specs[i]).
type ciliumRule struct {
	field string
	rule  *schema.Rule
}

// ciliumRules returns the rules of a CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy: spec, then specs.
func ciliumRules(o *schema.Object) []ciliumRule {
	var spec *schema.Rule
	var specs []schema.Rule
	switch p := o.Obj.(type) {
	case *schema.CiliumNetworkPolicy:
		spec, specs = p.Spec, p.Specs
	case *schema.CiliumClusterwideNetworkPolicy:
		spec, specs = p.Spec, p.Specs
	}
	var out []ciliumRule
	if spec != nil {
		out = append(out, ciliumRule{"spec", spec})
	}
	for i := range specs {
		out = append(out, ciliumRule{fmt.Sprintf("specs[%d]", i), &specs[i]})
	}
	return out
}

// warnf records a warning at an object's field: something the compile
// accepts that the user should know about.
func (c *compilation) warnf(o *schema.Object, field, format string, args ...any) {
	c.warnings = append(c.warnings, ir.Warning{Source: srcAt(o, field), Field: field, Message: fmt.Sprintf(format, args...)})
}

// nsNameLabel is the label the API server puts on every namespace, set to
// its name.
const nsNameLabel = "kubernetes.io/metadata.name"

func lessSource(a, b ir.Source) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Col < b.Col
}
