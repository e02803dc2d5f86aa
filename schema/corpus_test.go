package schema

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// corpusDir is the shared, read-only corpus of published policy manifests
// (see its SOURCES.md). It lives beside the repository, not in it.
const corpusDir = "../../shared/testdata/policy-corpus"

// corpusExpected lists the corpus files that must give diagnostics, each
// with a substring every one of their diagnostics must contain. SOURCES.md
// explains each. Everything else must decode cleanly: operator "in" and
// placeholder port names are the compiler's to reject, not ours.
var corpusExpected = map[string]string{
	"cilium/examples/policies/l3/entities/from_nodes.yaml":                         `missing apiVersion; found key "apiversion": did you mean apiVersion?`,
	"cilium/examples/policies/kubernetes/clusterwide/wildcard-from-endpoints.yaml": `description: unknown field "description"; accepted: apiVersion, kind, metadata, spec, specs, status`,
	"cilium/examples/policies/l3/host/host-policy.yaml":                            `description: unknown field "description"; accepted: apiVersion, kind, metadata, spec, specs, status`,
	"cilium/examples/policies/l7.yaml":                                             `description: unknown field "description"; accepted: apiVersion, kind, metadata, spec, specs, status`,
	"cilium/examples/policies/l7/kafka/kafka-Role.yaml":                            `description: unknown field "description"; accepted: apiVersion, kind, metadata, spec, specs, status`,
	"cilium/examples/policies/kubernetes/clustermesh/cross-cluster-policy.yaml":    `metadata.description: unknown field "description"`,
	"cilium/examples/policies/multi_rule.yaml":                                     `spec.ingress[0].fromEndpoints[0].role: unknown field "role"; accepted: matchExpressions, matchLabels`,
}

// corpusSkipped are the only kinds the corpus holds that we do not decode.
var corpusSkipped = []string{"cilium.io/v2 CiliumClusterwideEnvoyConfig", "v1 ServiceAccount"}

func corpusFiles(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("policy corpus not available at %s (it is shared test data beside the repository): %v", corpusDir, err)
	}
	var files []string
	err := filepath.WalkDir(corpusDir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !de.IsDir() && isManifestName(p) {
			rel, _ := filepath.Rel(corpusDir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestCorpus(t *testing.T) {
	files := corpusFiles(t)
	objects := map[string]int{}
	withDiags := map[string]bool{}
	fast, chunks := 0, 0
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(corpusDir, rel))
		if err != nil {
			t.Fatal(err)
		}
		// Real-world input for the fast parser's differential check.
		for _, ch := range splitDocuments(data) {
			chunks++
			if doc := fastParse(data[ch.start:ch.end], nil); doc != nil {
				fast++
				docs, err := parseYAML(data[ch.start:ch.end])
				if err != nil || len(docs) != 1 {
					t.Errorf("%s: fast path accepted a chunk yaml.v3 parses to %d documents (%v)", rel, len(docs), err)
				} else if err := sameTree(docs[0], doc, 0, 0); err != nil {
					t.Errorf("%s: fast path differs from yaml.v3: %v", rel, err)
				}
			}
		}
		objs, skipped, diags := Decode(rel, data)
		for k := range skipped {
			if !slices.Contains(corpusSkipped, k) {
				t.Errorf("%s: unexpectedly skipped %q", rel, k)
			}
		}
		for _, o := range objs {
			objects[o.Kind]++
		}
		if len(diags) > 0 {
			withDiags[rel] = true
			t.Logf("%s:\n%v", rel, diags)
		}
		want, expected := corpusExpected[rel]
		if strings.HasPrefix(rel, "netpol-recipes/fragments/") {
			want, expected = "missing apiVersion and kind", true
		}
		switch {
		case !expected && len(diags) > 0:
			t.Errorf("%s: unexpected diagnostics:\n%v", rel, diags)
		case expected && len(diags) == 0:
			t.Errorf("%s: no diagnostics, want %q", rel, want)
		}
		for _, d := range diags {
			if expected && !strings.Contains(d.String(), want) {
				t.Errorf("%s: diagnostic %q does not contain %q", rel, d, want)
			}
			if d.Pos.File != rel || d.Pos.Line < 1 || d.Pos.Col < 1 {
				t.Errorf("%s: diagnostic without a proper position: %s", rel, d)
			}
		}
	}
	for rel := range corpusExpected {
		if !slices.Contains(files, rel) {
			// kafka-Role.yaml collides with kafka-role.yaml on
			// case-insensitive file systems, so a checkout may lack it.
			t.Logf("expected file %s is not in this copy of the corpus", rel)
		}
	}
	t.Logf("%d files, %d with diagnostics; objects decoded: %v; fast path took %d of %d documents",
		len(files), len(withDiags), objects, fast, chunks)
	// Most of the corpus is valid policy: make sure it was decoded, not
	// just survived.
	if objects["CiliumNetworkPolicy"] < 50 || objects["NetworkPolicy"] < 20 || objects["CiliumClusterwideNetworkPolicy"] < 8 {
		t.Errorf("too few policies decoded: %v", objects)
	}
}

// TestCorpusLoad loads the whole corpus at once: the only diagnostics beyond
// the per-file ones are duplicates, which the corpus has on purpose (files
// that share a metadata.name).
func TestCorpusLoad(t *testing.T) {
	corpusFiles(t) // skips when absent
	set, diags := Load([]string{corpusDir}, nil)
	dups := 0
	for _, d := range diags {
		rel, _ := filepath.Rel(corpusDir, d.Pos.File)
		rel = filepath.ToSlash(rel)
		switch {
		case strings.Contains(d.Message, "already defined at"):
			dups++
		case corpusExpected[rel] != "" || strings.HasPrefix(rel, "netpol-recipes/fragments/"):
		default:
			t.Errorf("unexpected diagnostic: %s", d)
		}
	}
	if dups == 0 {
		t.Errorf("no duplicate objects reported; the corpus has several (see SOURCES.md)")
	}
	if set.Files < 100 || len(set.Objects) < 80 {
		t.Errorf("read %d files, %d objects", set.Files, len(set.Objects))
	}
}
