package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubeconfigErrors: compile and trace against a cluster fail with what
// failed, and write nothing. test/kube covers a real API server.
func TestKubeconfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("clusters: [\n"), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	down := filepath.Join(dir, "down")
	os.WriteFile(down, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://"+addr+"\"}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\ncurrent-context: x\n"), 0o600)
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		kubeconfig string
		want       string
	}{
		{bad, "kubeconfig " + bad + ": cannot parse"},
		{down, "list namespaces from the API server at http://" + addr + ": the API server is unreachable"},
	} {
		for _, args := range [][]string{
			{"compile", "-f", "../../examples/seed", "-o", out},
			{"trace", "-f", "../../examples/seed", "--from", "default/client", "--to", "default/backend"},
		} {
			_, errs, rc := sluice(t, "", append(args, "--kubeconfig", c.kubeconfig)...)
			if rc != 1 || !strings.Contains(errs, c.want) {
				t.Errorf("%s --kubeconfig %s: rc %d, want 1 and %q:\n%s", args[0], filepath.Base(c.kubeconfig), rc, c.want, errs)
			}
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output written after an error: %v", err)
	}
}
