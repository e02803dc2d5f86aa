package lab

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/sluicenet/sluice/ir"
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
	mu      sync.Mutex
	// Timeout bounds each probe: a dropped connection is told from an
	// allowed one by it (default 300 ms; the lab's links are local).
	Timeout time.Duration
}

type client struct {
	*loader.SockClientProc
	// sport is the next source port: each probe of a client gets a new
	// one, below the kernel's ephemeral range, so that no probe matches
	// the conntrack entry an earlier one left (UDP flows live a minute).
	sport int
}

const (
	probePortFirst = 20000
	probePortLast  = 32767
)

// Prober returns a prober; Close stops its clients.
func (l *Lab) Prober() *Prober {
	return &Prober{l: l, clients: map[string]*client{}, Timeout: 300 * time.Millisecond}
}

// Close stops the clients.
func (p *Prober) Close() {
	for _, c := range p.clients {
		c.SockClientProc.Close()
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

// Probe connects from a pod ("namespace/name"), a node ("node:NAME") or
// "world" to a pod, a node, or an address, on port/proto: TCP a connect
// (and the server's greeting), UDP a datagram and its answer, within
// Timeout.
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
	for _, n := range p.l.st.Nodes {
		if "node:"+n.Name == to {
			addr = n.IP
		}
	}
	if c.sport < probePortFirst || c.sport > probePortLast {
		c.sport = probePortFirst
	}
	line, err := c.Do(fmt.Sprintf("probe %s %s:%d %d %d", strings.ToLower(proto), addr, port, p.Timeout.Milliseconds(), c.sport))
	c.sport++
	if err != nil {
		return Result{}, fmt.Errorf("the probe client of %s: %w", from, err)
	}
	res := Result{Detail: line}
	switch {
	case strings.HasPrefix(line, "ok "):
		res.Reached, res.AnsweredBy = true, strings.TrimPrefix(line, "ok ")
	case line == "refused":
		res.Reached, res.Refused = true, true
	}
	return res, nil
}

// Do sends one command to a source's client (see loader.SockClient) and
// returns its answer: for what probes do not cover, such as holding a
// connection open across a change.
func (p *Prober) Do(from, cmd string) (string, error) {
	c, err := p.client(from)
	if err != nil {
		return "", err
	}
	return c.Do(cmd)
}

// Matrix probes every ordered pair of the lab's pods (the diagonal
// included, as sluice trace --matrix) on every port, the sources in
// parallel, and returns what the kernel did in trace --matrix's form.
func (p *Prober) Matrix(ports []ir.PortProto) ([]ir.MatrixEntry, error) {
	return p.MatrixOf(p.l.st.Pods, ports)
}

// MatrixOf is Matrix among some of the lab's pods.
func (p *Prober) MatrixOf(pods []Pod, ports []ir.PortProto) ([]ir.MatrixEntry, error) {
	rows := make([][]ir.MatrixEntry, len(pods))
	errs := make([]error, len(pods))
	for i := range pods {
		if _, err := p.client(pods[i].Key); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	for i, from := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, to := range pods {
				for _, pp := range ports {
					res, err := p.Probe(from.Key, to.Key, pp.Port, pp.Proto.String())
					if err != nil {
						errs[i] = err
						return
					}
					v := ir.Deny
					if res.Reached {
						v = ir.Allow
					}
					rows[i] = append(rows[i], ir.MatrixEntry{From: from.Key, To: to.Key, Port: pp.Port, Proto: pp.Proto, Verdict: v})
				}
			}
		}()
	}
	wg.Wait()
	var out []ir.MatrixEntry
	for i := range rows {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, rows[i]...)
	}
	return out, nil
}

func (p *Prober) client(from string) (*client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[from]; ok {
		return c, nil
	}
	netns, cgroup := "", ""
	if from == "world" {
		netns = p.l.st.World
	}
	for _, n := range p.l.st.Nodes {
		if "node:"+n.Name == from {
			netns, cgroup = n.Netns, n.Cgroup
		}
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
		return nil, fmt.Errorf("no pod or node %q in the lab (give namespace/name, node:NAME or world)", from)
	}
	proc, err := loader.StartSockClient(p.l.binary("sluice"), netns, cgroup)
	if err != nil {
		return nil, err
	}
	// Start anywhere in the range: probes of another sluice lab probe run
	// a moment ago came from the start of it.
	c := &client{SockClientProc: proc, sport: probePortFirst + rand.IntN(probePortLast-probePortFirst)}
	p.clients[from] = c
	return c, nil
}
