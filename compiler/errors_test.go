package compiler

import (
	"strings"
	"testing"

	"github.com/sluicenet/sluice/schema"
)

// TestErrors checks the exact file:line:col, field and message of the
// errors a user can cause, and that all of them are reported at once.
func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // every diagnostic, in order
	}{
		{"invalid CIDR and except outside", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/33
    - ipBlock:
        cidr: 10.0.0.0/16
        except: [10.1.0.0/24]
`, []string{
			`<stdin>:9:15: spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR "10.0.0.0/33": expected an address with a prefix length, such as 10.0.0.0/16 or 2001:db8::/64`,
			`<stdin>:12:18: spec.ingress[0].from[1].ipBlock.except[0]: except 10.1.0.0/24 must be a strict subset of cidr 10.0.0.0/16`,
		}},
		{"ports out of range, unknown protocol, bad endPort", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: 70000
    - port: 80
      protocol: tcp
    - port: 90
      endPort: 80
`, []string{
			`<stdin>:8:13: spec.ingress[0].ports[0].port: port 70000 out of range; accepted: 1-65535 or a port name`,
			`<stdin>:10:17: spec.ingress[0].ports[1].protocol: unknown protocol "tcp" (protocols are case-sensitive: did you mean TCP?); accepted: TCP, UDP, SCTP`,
			`<stdin>:12:16: spec.ingress[0].ports[2].endPort: endPort 80 must be between port 90 and 65535`,
		}},
		{"malformed selectors", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector:
    matchLabels: {"bad key!": v}
    matchExpressions:
    - {key: app, operator: In}
    - {key: app, operator: Exists, values: [a]}
`, []string{
			`<stdin>:6:31: spec.podSelector.matchLabels["bad key!"]: invalid label key "bad key!"`,
			`<stdin>:8:7: spec.podSelector.matchExpressions[0].values: operator In needs at least one value`,
			`<stdin>:9:44: spec.podSelector.matchExpressions[1].values: operator Exists takes no values; remove them or use In/NotIn`,
		}},
		{"unknown entity and unenforceable L7", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEntities: [wrld]
  - toPorts:
    - ports: [{port: "80"}]
      rules:
        http: [{method: GET}]
`, []string{
			`<stdin>:7:20: spec.ingress[0].fromEntities[0]: unknown entity "wrld"; accepted: all, cluster, health, host, init, kube-apiserver, remote-node, unmanaged, world`,
			`<stdin>:11:9: spec.ingress[1].toPorts[0].rules: HTTP rules (enforced by Cilium's L7 proxy) cannot be enforced by Sluice's L3/L4 datapath; remove it, or compile with --drop-unenforceable to drop the whole rule spec.ingress[1] (it then allows nothing, never just its L4 part)`,
		}},
		{"service errors", `apiVersion: v1
kind: Service
metadata: {name: s, namespace: x}
spec:
  clusterIP: 10.96.0.300
  ports:
  - {port: 0}
  - {port: 80, protocol: ICMP}
`, []string{
			`<stdin>:5:14: spec.clusterIP: invalid IP address "10.96.0.300"; expected an IPv4 or IPv6 address such as 10.96.0.10`,
			`<stdin>:7:12: spec.ports[0].port: port 0 out of range; accepted: 1-65535`,
			`<stdin>:8:26: spec.ports[1].protocol: unknown protocol "ICMP"; accepted: TCP, UDP, SCTP`,
		}},
		{"pod on an unknown node", `apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: x}
spec:
  nodeName: n9
  containers: [{name: c, image: i}]
status: {podIP: 10.0.0.1}
`, []string{
			`<stdin>:9:13: spec.nodeName: node "n9" is not among the 1 Node objects of the input; add the Node or fix the name`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := schema.Load([]string{"-"}, strings.NewReader(tc.yaml))
			if len(diags) > 0 {
				t.Fatalf("decode: %v", diags.Err())
			}
			_, diags = Compile(set, Options{})
			var got []string
			for _, d := range diags {
				got = append(got, d.String())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("error %d:\n got: %s\nwant: %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}
