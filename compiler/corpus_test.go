package compiler

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/emit/emittest"
)

// corpusDir is the published-policy corpus beside the clone
// (../shared/testdata/policy-corpus); it is not part of the project.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../shared/testdata/policy-corpus")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("policy corpus not found at %s (it lives in ../shared beside the clone): %v", dir, err)
	}
	return dir
}

// corpusBroken are the corpus files that are broken as published (see its
// SOURCES.md), with the positioned error a user should see.
var corpusBroken = map[string]string{
	"cilium/examples/policies/kubernetes/clustermesh/cross-cluster-policy.yaml":            `:5:3: metadata.description: unknown field "description"`,
	"cilium/examples/policies/kubernetes/clusterwide/wildcard-from-endpoints.yaml":         `:3:1: description: unknown field "description"`,
	"cilium/examples/policies/l3/host/host-policy.yaml":                                    `:3:1: description: unknown field "description"`,
	"cilium/examples/policies/l7.yaml":                                                     `:3:1: description: unknown field "description"`,
	"cilium/examples/policies/cidr.yaml":                                                   `:13:5: spec.egress[0].toCIDRSet: toCIDR and toCIDRSet cannot be combined in one rule`,
	"cilium/examples/policies/l3/entities/from_nodes.yaml":                                 `:1:1: missing apiVersion; found key "apiversion": did you mean apiVersion?`,
	"cilium/examples/policies/l3/match-expressions/and-statement.yaml":                     `:11:19: spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator: unknown operator "in" (operators are case-sensitive: did you mean In?)`,
	"cilium/examples/policies/l3/match-expressions/or-statement.yaml":                      `:11:19: spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator: unknown operator "in"`,
	"cilium/examples/policies/multi_rule.yaml":                                             `:12:7: spec.ingress[0].fromEndpoints[0].role: unknown field "role"; accepted: matchExpressions, matchLabels`,
	"cilium/examples/policies/host/lock-down-ingress.yaml":                                 `:26:15: spec.ingress[1].toPorts[0].ports[5].port: invalid port "REMOVE_ME_AFTER_DOUBLE_CHECKING_PORTS"`,
	"netpol-recipes/fragments/07-allow-traffic-from-some-pods-in-another-namespace-2.yaml": "missing apiVersion and kind",
	"netpol-recipes/fragments/07-allow-traffic-from-some-pods-in-another-namespace-3.yaml": "missing apiVersion and kind",
	"netpol-recipes/fragments/08-allow-external-traffic-2.yaml":                            "missing apiVersion and kind",
	"netpol-recipes/fragments/09-allow-traffic-only-to-a-port-2.yaml":                      "missing apiVersion and kind",
	"netpol-recipes/fragments/09-allow-traffic-only-to-a-port-3.yaml":                      "missing apiVersion and kind",
	"netpol-recipes/fragments/README-1.yaml":                                               "missing apiVersion and kind",
}

// TestCorpus compiles every published policy with --drop-unenforceable:
// well-formed files compile (and their maps agree with the evaluator),
// broken ones are refused with the expected positioned error, nothing
// panics. Each file is compiled alone: several share a metadata.name.
func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	var files []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	if len(files) < 100 {
		t.Fatalf("found %d corpus files, expected more than 100", len(files))
	}
	compiled, refused, dropped := 0, 0, 0
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		t.Run(rel, func(t *testing.T) {
			set, cl, diags := Load([]string{path}, nil, Options{DropUnenforceable: true})
			want, broken := corpusBroken[rel]
			if broken {
				if len(diags) == 0 {
					t.Fatalf("compiled, want the error %q", want)
				}
				if !strings.Contains(diags[0].String(), want) {
					t.Fatalf("first error:\n  %s\nwant it to contain:\n  %s", diags[0], want)
				}
				refused++
				return
			}
			if len(diags) > 0 {
				var b strings.Builder
				diags.Format(&b, 10, set.Source)
				t.Fatalf("well-formed file refused:\n%s", b.String())
			}
			dropped += len(cl.Dropped)
			out, err := emit.Build(cl, emit.Options{})
			if err != nil {
				t.Fatalf("emit: %v", err)
			}
			bad, _, err := emittest.Check(cl, out, 5)
			if err != nil || len(bad) > 0 {
				t.Fatalf("maps disagree with the evaluator: %v\n%s", err, emittest.Summary(bad))
			}
			compiled++
		})
	}
	t.Logf("corpus: %d files compiled, %d refused as broken, %d rules dropped as unenforceable", compiled, refused, dropped)
	if refused != len(corpusBroken) {
		t.Errorf("%d broken files refused, want %d", refused, len(corpusBroken))
	}
}

// TestCorpusWithoutDrop checks that unenforceable constructs are
// positioned errors by default.
func TestCorpusWithoutDrop(t *testing.T) {
	dir := corpusDir(t)
	cases := map[string]string{
		"cilium/examples/policies/l7/http/http.yaml":             `:15:9: spec.ingress[0].toPorts[0].rules: HTTP rules (enforced by Cilium's L7 proxy) cannot be enforced`,
		"cilium/examples/policies/host/lock-down-dev-vms.yaml":   `nodeSelector: a host policy (the node's own traffic, selected by nodeSelector or reserved:host) cannot be enforced`,
		"cilium/examples/policies/getting-started/dns-port.yaml": `toFQDNs (DNS-name peers, enforced through a DNS proxy) cannot be enforced`,
	}
	for rel, want := range cases {
		_, _, diags := Load([]string{filepath.Join(dir, rel)}, nil, Options{})
		if len(diags) == 0 {
			t.Errorf("%s: compiled without --drop-unenforceable, want an error", rel)
			continue
		}
		found := false
		for _, d := range diags {
			found = found || strings.Contains(d.String(), want)
		}
		if !found {
			t.Errorf("%s: errors %v\nwant one containing %q", rel, diags, want)
		}
	}
}
