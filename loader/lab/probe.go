package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/sluicenet/sluice/loader"
)

// Prober runs probes through the kernel from the lab's pods and from the
// world: each source gets a client process (loader.SockClient, the sluice
// binary) in its network namespace and, for a pod, its node's cgroup, so
// that connections to services go through the socket load balancer as a
// pod's would.
type Prober struct {
	l       *Lab
	clients map[string]*client
}

type client struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// Prober returns a prober; Close stops its clients.
func (l *Lab) Prober() *Prober { return &Prober{l: l, clients: map[string]*client{}} }

// Close stops the clients.
func (p *Prober) Close() {
	for _, c := range p.clients {
		c.in.Close()
		c.cmd.Wait()
	}
}

// Result is what a probe found: whether the connection got through, and
// which server answered.
type Result struct {
	// Reached: a server answered, or the destination refused the
	// connection (a reset: nothing listens on that port, but the network
	// let the connection through, which is what policy decides).
	Reached    bool
	AnsweredBy string // the pod whose server answered
	Refused    bool
	Detail     string // the client's report
}

// Probe connects from a pod ("namespace/name") or "world" to a pod, or an
// address, on port/proto (TCP: a connect with a 1 s timeout; UDP: a
// request and its answer, 2 s).
func (p *Prober) Probe(from, to string, port uint16, proto string) (Result, error) {
	c, err := p.client(from)
	if err != nil {
		return Result{}, err
	}
	addr := to
	for _, pod := range p.l.st.Pods {
		if pod.Key == to {
			addr = pod.IP
		}
	}
	target := fmt.Sprintf("%s:%d", addr, port)
	cmd := "dial " + target + " 1"
	if strings.EqualFold(proto, "UDP") {
		cmd = "udpconn " + target
	}
	fmt.Fprintln(c.in, cmd)
	line, err := c.out.ReadString('\n')
	if err != nil {
		return Result{}, fmt.Errorf("the probe client of %s: %w", from, err)
	}
	line = strings.TrimSpace(line)
	res := Result{Detail: line}
	switch {
	case strings.HasPrefix(line, "ok "):
		name, _, _ := strings.Cut(strings.Fields(line)[1], "=")
		res.Reached, res.AnsweredBy = true, name
	case strings.Contains(line, "connection refused"):
		res.Reached, res.Refused = true, true
	case strings.HasPrefix(line, "udpconn "):
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "name="); ok {
				res.Reached, res.AnsweredBy = true, v
			}
		}
	}
	return res, nil
}

func (p *Prober) client(from string) (*client, error) {
	if c, ok := p.clients[from]; ok {
		return c, nil
	}
	netns, cgroup := "", ""
	if from == "world" {
		netns = p.l.st.World
	}
	for _, pod := range p.l.st.Pods {
		if pod.Key == from {
			netns = pod.Netns
			for _, n := range p.l.st.Nodes {
				if n.Name == pod.Node {
					cgroup = n.Cgroup
				}
			}
		}
	}
	if netns == "" {
		return nil, fmt.Errorf("no pod %q in the lab (give namespace/name, or world)", from)
	}
	cmd := exec.Command("ip", "netns", "exec", netns, p.l.binary("sluice"))
	cmd.Env = append(os.Environ(), loader.SockClientEnv+"=1")
	cmd.Stderr = os.Stderr
	if cgroup != "" {
		f, err := os.Open(cgroup)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &client{cmd: cmd, in: in, out: bufio.NewReader(out)}
	p.clients[from] = c
	return c, nil
}
