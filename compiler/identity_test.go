package compiler

import (
	"fmt"
	"testing"

	"github.com/sluicenet/sluice/compiler/compilertest"
	"github.com/sluicenet/sluice/ir"
)

func identitiesByLabels(cl *ir.Cluster) map[string]uint32 {
	out := map[string]uint32{}
	for _, id := range cl.Identities {
		out[fmt.Sprint(id.Labels)] = id.ID
	}
	return out
}

// Adding or removing an unrelated workload renumbers no other identity.
func TestIdentityStability(t *testing.T) {
	base := compileYAML(t, compilertest.Fixture())
	more := compileYAML(t, compilertest.Fixture(), `apiVersion: v1
kind: Namespace
metadata: {name: w, labels: {team: new}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: extra, namespace: w}
spec:
  selector: {matchLabels: {app: extra}}
  template:
    metadata: {labels: {app: extra}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: extra-1, namespace: x, labels: {app: extra, pod: d}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.1.0.99}`)
	b, m := identitiesByLabels(base), identitiesByLabels(more)
	if len(m) != len(b)+2 {
		t.Fatalf("identities: %d before, %d after adding two workloads", len(b), len(m))
	}
	for labels, id := range b {
		if m[labels] != id {
			t.Errorf("identity of %s changed from %d to %d", labels, id, m[labels])
		}
	}
	// The identity is a function of the labels alone.
	again := compileYAML(t, compilertest.Fixture())
	for labels, id := range identitiesByLabels(again) {
		if b[labels] != id {
			t.Errorf("recompiling changed the identity of %s", labels)
		}
	}
	for _, id := range base.Identities {
		if !id.Reserved && (id.ID < ir.MinWorkloadIdentity || id.ID > ir.MaxWorkloadIdentity) {
			t.Errorf("workload identity %d outside [%d, %d]", id.ID, ir.MinWorkloadIdentity, ir.MaxWorkloadIdentity)
		}
	}
}

// Collisions are resolved by probing, deterministically, and reported.
func TestIdentityCollision(t *testing.T) {
	c := &compilation{idOf: map[string]uint32{}, opts: Options{ClusterName: "default"}}
	// Find two label sets whose hashes collide in the identity space.
	span := uint64(ir.MaxWorkloadIdentity - ir.MinWorkloadIdentity + 1)
	seen := map[uint64]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		s := fmt.Sprintf("app=%d\x00", i)
		h := fnv64(s) % span
		if prev, ok := seen[h]; ok {
			a, b = prev, s
		}
		seen[h] = s
	}
	for _, canon := range []string{a, b} {
		c.pods = append(c.pods, &pod{secLabels: map[string]string{"app": canon[4 : len(canon)-1]}})
	}
	c.allocateIdentities()
	if len(c.collide) != 1 {
		t.Fatalf("collisions reported: %v, want one", c.collide)
	}
	if c.pods[0].identity == c.pods[1].identity {
		t.Fatalf("colliding label sets got the same identity %d", c.pods[0].identity)
	}
}
