package ir

import (
	"slices"
	"strings"
)

// Matches reports whether the labels satisfy every requirement.
func (s *Selector) Matches(labels map[string]string) bool {
	for i := range s.Requirements {
		if !s.Requirements[i].Matches(labels) {
			return false
		}
	}
	return true
}

// Matches evaluates one requirement as Kubernetes label selectors do: NotIn
// and DoesNotExist match label sets that lack the key.
func (r *Requirement) Matches(labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Op {
	case OpIn:
		return ok && slices.Contains(r.Values, v)
	case OpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case OpExists:
		return ok
	case OpDoesNotExist:
		return !ok
	}
	return false
}

// And returns the conjunction of s and t, normalised.
func (s Selector) And(t Selector) Selector {
	out := Selector{Requirements: make([]Requirement, 0, len(s.Requirements)+len(t.Requirements))}
	out.Requirements = append(out.Requirements, s.Requirements...)
	out.Requirements = append(out.Requirements, t.Requirements...)
	out.Normalize()
	return out
}

// Normalize sorts requirements and their values and removes duplicates, so
// that equal selectors have equal encodings.
func (s *Selector) Normalize() {
	for i := range s.Requirements {
		r := &s.Requirements[i]
		slices.Sort(r.Values)
		r.Values = slices.Compact(r.Values)
	}
	slices.SortFunc(s.Requirements, compareRequirement)
	s.Requirements = slices.CompactFunc(s.Requirements, func(a, b Requirement) bool { return compareRequirement(a, b) == 0 })
}

func compareRequirement(a, b Requirement) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if c := strings.Compare(string(a.Op), string(b.Op)); c != 0 {
		return c
	}
	return slices.Compare(a.Values, b.Values)
}

// String renders a selector in kubectl's label-selector syntax.
func (s Selector) String() string {
	if len(s.Requirements) == 0 {
		return "{}"
	}
	parts := make([]string, 0, len(s.Requirements))
	for _, r := range s.Requirements {
		switch r.Op {
		case OpIn:
			if len(r.Values) == 1 {
				parts = append(parts, r.Key+"="+r.Values[0])
			} else {
				parts = append(parts, r.Key+" in ("+strings.Join(r.Values, ",")+")")
			}
		case OpNotIn:
			parts = append(parts, r.Key+" notin ("+strings.Join(r.Values, ",")+")")
		case OpExists:
			parts = append(parts, r.Key)
		case OpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		}
	}
	return strings.Join(parts, ",")
}
