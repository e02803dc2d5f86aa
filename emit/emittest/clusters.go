package emittest

import (
	"fmt"
	"strings"
)

// OffPathCluster is the one-node cluster of the datapath's tests of what
// leaves its IPv4 hot path (IPv6, IPv4 fragments), in the kernel and in
// real traffic: a and e are isolated by nothing; b isolates ingress and
// accepts UDP 5353 and TCP 8080 from a and d; c isolates egress and may
// send nothing; d isolates egress and may send UDP 5353 to b.
var OffPathCluster = `apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.77.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.77.1}]}
` + offPathPods + `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a-d, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}, {podSelector: {matchLabels: {app: d}}}]
    ports: [{port: 5353, protocol: UDP}, {port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-no-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: c}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: d-to-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: d}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: b}}}]
    ports: [{port: 5353, protocol: UDP}]
`

// offPathPods are pods a..e at 10.77.0.2..6 on n1.
var offPathPods = func() string {
	var b strings.Builder
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: %s}}\n"+
			"spec: {nodeName: n1, containers: [{name: c, image: i}]}\nstatus: {podIP: 10.77.0.%d}\n", name, name, i+2)
	}
	return b.String()
}()
