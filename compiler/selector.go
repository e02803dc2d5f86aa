package compiler

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/schema"
)

// labelSyntax says which label-key syntax a selector uses.
type labelSyntax int

const (
	// k8sKeys: Kubernetes label selectors; keys are qualified names.
	k8sKeys labelSyntax = iota
	// ciliumKeys: Cilium endpoint selectors; keys may carry a source
	// prefix ("k8s:", "any:", "reserved:"), "k8s:" and "any:" are dropped.
	ciliumKeys
)

// selector converts a label selector, reporting every invalid part at its
// field. ok is false when anything was invalid.
func (c *compilation) selector(obj *schema.Object, field string, matchLabels map[string]string, exprs []metav1.LabelSelectorRequirement, syntax labelSyntax) (ir.Selector, bool) {
	var sel ir.Selector
	ok := true
	keys := make([]string, 0, len(matchLabels))
	for k := range matchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := matchLabels[k]
		f := field + ".matchLabels" + schema.Key(k)
		key, kok := c.labelKey(obj, f, k, syntax)
		if !kok {
			ok = false
			continue
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			c.errorf(obj, f, "invalid label value %q: %s", v, strings.Join(errs, "; "))
			ok = false
			continue
		}
		sel.Requirements = append(sel.Requirements, ir.Requirement{Key: key, Op: ir.OpIn, Values: []string{v}})
	}
	for i, e := range exprs {
		f := fmt.Sprintf("%s.matchExpressions[%d]", field, i)
		key, kok := c.labelKey(obj, f+".key", e.Key, syntax)
		if !kok {
			ok = false
			continue
		}
		req := ir.Requirement{Key: key}
		switch op := string(e.Operator); op {
		case "In", "NotIn":
			req.Op = ir.Operator(op)
			if len(e.Values) == 0 {
				c.errorf(obj, f+".values", "operator %s needs at least one value", op)
				ok = false
				continue
			}
		case "Exists", "DoesNotExist":
			req.Op = ir.Operator(op)
			if len(e.Values) > 0 {
				c.errorf(obj, f+".values", "operator %s takes no values; remove them or use In/NotIn", op)
				ok = false
				continue
			}
		default:
			hint := ""
			for _, want := range []string{"In", "NotIn", "Exists", "DoesNotExist"} {
				if strings.EqualFold(op, want) {
					hint = fmt.Sprintf(" (operators are case-sensitive: did you mean %s?)", want)
				}
			}
			c.errorf(obj, f+".operator", "unknown operator %q%s; accepted: In, NotIn, Exists, DoesNotExist", op, hint)
			ok = false
			continue
		}
		bad := false
		for j, v := range e.Values {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				c.errorf(obj, fmt.Sprintf("%s.values[%d]", f, j), "invalid label value %q: %s", v, strings.Join(errs, "; "))
				bad = true
			}
		}
		if bad {
			ok = false
			continue
		}
		req.Values = append([]string(nil), e.Values...)
		sel.Requirements = append(sel.Requirements, req)
	}
	sel.Normalize()
	return sel, ok
}

// labelKey validates a selector key and returns it as identity labels
// spell it.
func (c *compilation) labelKey(obj *schema.Object, field, k string, syntax labelSyntax) (string, bool) {
	key := k
	if syntax == ciliumKeys {
		if src, rest, found := strings.Cut(k, ":"); found {
			switch src {
			case "k8s", "any":
				key = rest
			case "reserved":
				if !isReservedLabel(k) {
					c.errorf(obj, field, "unknown reserved label %q; accepted: %s", k, strings.Join(reservedLabels, ", "))
					return "", false
				}
				return k, true
			default:
				c.errorf(obj, field, "unsupported label source %q in key %q; accepted sources: k8s, any, reserved", src, k)
				return "", false
			}
		}
	}
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		c.errorf(obj, field, "invalid label key %q: %s", k, strings.Join(errs, "; "))
		return "", false
	}
	return key, true
}

var reservedLabels = []string{ir.LabelHealth, ir.LabelHost, ir.LabelInit, ir.LabelKubeAPIServer, ir.LabelRemoteNode, ir.LabelUnmanaged, ir.LabelWorld}

func isReservedLabel(k string) bool {
	for _, r := range reservedLabels {
		if r == k {
			return true
		}
	}
	return false
}

// namespaceSelector turns a selector over namespace labels into one over
// identity labels: each key gets Cilium's namespace-label prefix, and the
// identity must belong to some namespace (a pod), so that an empty
// namespace selector means "every pod" and never a reserved identity.
func namespaceSelector(ns ir.Selector) ir.Selector {
	out := ir.Selector{Requirements: []ir.Requirement{{Key: ir.LabelNamespace, Op: ir.OpExists}}}
	for _, r := range ns.Requirements {
		r.Key = ir.LabelNamespacePrefix + r.Key
		out.Requirements = append(out.Requirements, r)
	}
	out.Normalize()
	return out
}

// inNamespace restricts a selector to the pods of one namespace.
func inNamespace(sel ir.Selector, ns string) ir.Selector {
	return sel.And(ir.Selector{Requirements: []ir.Requirement{{Key: ir.LabelNamespace, Op: ir.OpIn, Values: []string{ns}}}})
}

// mentionsNamespace reports whether a selector constrains the namespace
// label itself (Cilium's way to select across namespaces).
func mentionsNamespace(sel ir.Selector) bool {
	for _, r := range sel.Requirements {
		if r.Key == ir.LabelNamespace {
			return true
		}
	}
	return false
}

// mentionsNamespaceLabel reports whether a selector constrains a label of
// the namespace (io.cilium.k8s.namespace.labels.*).
func mentionsNamespaceLabel(sel ir.Selector) bool {
	for _, r := range sel.Requirements {
		if strings.HasPrefix(r.Key, ir.LabelNamespacePrefix) {
			return true
		}
	}
	return false
}
