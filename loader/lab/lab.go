package lab

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
	"github.com/sluicenet/sluice/schema"
	"golang.org/x/sys/unix"
)

// Config says what lab to build.
type Config struct {
	Name      string   // [a-z0-9], at most 8 characters; default "sluice"
	Manifests []string // files and directories, as sluice compile takes them
	Root      string   // where labs keep their state; default /run/sluice-lab
	// BinDir holds sluice, sluice-agent, sluice-cni and the CNI static and
	// host-local IPAM plugins (make build puts them in bin/).
	BinDir string
	Log    io.Writer // progress; nil for none
}

// DefaultRoot is where labs keep their state.
const DefaultRoot = "/run/sluice-lab"

// WorldIP is the address of the namespace that stands for the outside.
const WorldIP = "198.51.100.1"

// NodePort is the TCP port each node's own server answers on (a
// kubelet's), for probes to a node.
const NodePort = "10250"

// Node is a node of the lab.
type Node struct {
	Name   string `json:"name"`
	Netns  string `json:"netns"`
	IP     string `json:"ip"` // its first IPv4 address: the fabric's
	Cgroup string `json:"cgroup"`
}

// Pod is a pod of the lab.
type Pod struct {
	Key   string   `json:"key"` // namespace/name
	Netns string   `json:"netns"`
	IP    string   `json:"ip"`
	Node  string   `json:"node"`
	Ports []string `json:"ports"` // PORT/PROTO its server answers on
}

// state is lab.json: everything the lab created, recorded as it was.
type state struct {
	Name    string   `json:"name"`
	Dir     string   `json:"dir"`
	Netns   []string `json:"netns"`
	Mounts  []string `json:"mounts"`
	Cgroups []string `json:"cgroups"`
	Nodes   []Node   `json:"nodes"`
	Pods    []Pod    `json:"pods"`
	World   string   `json:"world"`
	Ready   bool     `json:"ready"`
	ID      string   `json:"id"` // random, to name what lives outside the lab's namespaces
}

// Lab is a lab that exists (or part of one).
type Lab struct {
	st  state
	cfg Config
}

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

func (c *Config) defaults() error {
	if c.Name == "" {
		c.Name = "sluice"
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("lab name %q: accepted are 1 to 8 lower-case letters and digits", c.Name)
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Open finds an existing lab.
func Open(root, name string) (*Lab, error) {
	cfg := Config{Name: name, Root: root}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(cfg.Root, cfg.Name, "lab.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab %q (no %s)", cfg.Name, filepath.Join(cfg.Root, cfg.Name))
	}
	if err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg}
	if err := json.Unmarshal(data, &l.st); err != nil {
		return nil, fmt.Errorf("%s/lab.json: %w", l.st.Dir, err)
	}
	return l, nil
}

func (l *Lab) save() error {
	data, _ := json.MarshalIndent(l.st, "", " ")
	tmp := filepath.Join(l.st.Dir, "lab.json.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.st.Dir, "lab.json"))
}

// SetLog sends the lab's progress to w.
func (l *Lab) SetLog(w io.Writer) { l.cfg.Log = w }

// Nodes and Pods describe the lab.
func (l *Lab) Nodes() []Node { return l.st.Nodes }

// Pods are the lab's pods, by key.
func (l *Lab) Pods() []Pod { return l.st.Pods }

// Up builds the lab the manifests describe, compiles them and waits until
// every node's agent serves the compiled generation with its pods
// attached. A lab of that name that exists, whole or half-removed, is an
// error that says how to remove it. On failure Up removes what it made.
func Up(cfg Config) (_ *Lab, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sluice lab needs root: it makes network namespaces, loads BPF and mounts cgroups")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("sluice lab needs iproute2 (ip)")
	}
	dir := filepath.Join(cfg.Root, cfg.Name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("lab %q exists (or was half-removed): remove it with sluice lab down --name %s", cfg.Name, cfg.Name)
	}
	for _, bin := range []string{"sluice", "sluice-agent", "sluice-cni", "static", "host-local"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("%s is missing from %s (make build puts it there)", bin, cfg.BinDir)
		}
	}
	set, cl, diags := compiler.Load(cfg.Manifests, nil, compiler.Options{})
	if len(diags) > 0 {
		return nil, diags.Err()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	l := &Lab{cfg: cfg, st: state{Name: cfg.Name, Dir: dir, ID: hex.EncodeToString(rnd[:])}}
	defer func() {
		if err != nil {
			l.Down()
		}
	}()
	if err := l.save(); err != nil {
		return nil, err
	}
	out, err := emit.Build(cl, emit.Options{NodeFiles: loader.Listings, Shared: loader.SharedListings()})
	if err != nil {
		return nil, err
	}
	if err := loader.WriteArtifacts(filepath.Join(dir, "out"), out.Artifacts, nil); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "compiled %d nodes into %s\n", len(out.Artifacts), filepath.Join(dir, "out"))
	if err := l.mounts(); err != nil {
		return nil, err
	}
	if err := l.fabric(cl); err != nil {
		return nil, err
	}
	if err := l.pods(set.Objects, cl); err != nil {
		return nil, err
	}
	if err := l.agents(); err != nil {
		return nil, err
	}
	l.st.Ready = true
	return l, l.save()
}

func (l *Lab) ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *Lab) netns(name string) error {
	l.st.Netns = append(l.st.Netns, name)
	if err := l.save(); err != nil {
		return err
	}
	return l.ip("netns", "add", name)
}

func (l *Lab) sysctl(netns string, kv ...string) error {
	return l.ip(append([]string{"netns", "exec", netns, "sysctl", "-qw"}, kv...)...)
}

// prefix starts the names of the lab's namespaces: the lab's name and
// its random id, so that no two labs share one (Down deletes what its
// lab.json lists, which may be recorded before it exists).
func (l *Lab) prefix() string { return "sl-" + l.st.Name + "-" + l.st.ID[:4] + "-" }

// mounts gives the lab a bpf filesystem for its agents' pins and a cgroup
// v2 mount for its nodes' cgroups, both under its state directory.
func (l *Lab) mounts() error {
	for _, m := range []struct{ dir, fstype string }{{"bpffs", "bpf"}, {"cgroup", "cgroup2"}} {
		dir := filepath.Join(l.st.Dir, m.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		l.st.Mounts = append(l.st.Mounts, dir)
		if err := l.save(); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.fstype, dir, err)
		}
	}
	return nil
}

// fabric makes the bridge, the world, the nodes and their routes.
func (l *Lab) fabric(cl *ir.Cluster) error {
	pre := l.prefix()
	fab := pre + "fab"
	if err := l.netns(fab); err != nil {
		return err
	}
	if err := l.ip("-n", fab, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := l.ip("-n", fab, "link", "set", "br0", "up"); err != nil {
		return err
	}
	port := 0
	join := func(ns, ifname string) error {
		port++
		p := fmt.Sprintf("p%d", port)
		for _, args := range [][]string{
			{"-n", fab, "link", "add", p, "type", "veth", "peer", "name", ifname, "netns", ns},
			{"-n", fab, "link", "set", p, "master", "br0"},
			{"-n", fab, "link", "set", p, "up"},
			{"-n", ns, "link", "set", ifname, "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := l.ip(args...); err != nil {
				return err
			}
		}
		return nil
	}
	l.st.World = pre + "world"
	if err := l.netns(l.st.World); err != nil {
		return err
	}
	if err := join(l.st.World, "eth0"); err != nil {
		return err
	}
	if err := l.ip("-n", l.st.World, "addr", "add", WorldIP+"/32", "dev", "eth0"); err != nil {
		return err
	}
	nodes := cl.Nodes
	for i, n := range nodes {
		var ip netip.Addr
		for _, a := range n.IPs {
			if a.Is4() {
				ip = a
				break
			}
		}
		hasIP := ip.IsValid()
		if !hasIP { // the implied node, or a node without an address
			ip = netip.AddrFrom4([4]byte{192, 168, 250, byte(i + 1)})
		}
		node := Node{Name: n.Name, Netns: fmt.Sprintf("%sn%d", pre, i), IP: ip.String(), Cgroup: filepath.Join(l.st.Dir, "cgroup", "sluice-lab-"+l.st.Name+"-"+n.Name+"-"+l.st.ID)}
		l.st.Nodes = append(l.st.Nodes, node)
		if err := l.netns(node.Netns); err != nil {
			return err
		}
		if err := join(node.Netns, "ext0"); err != nil {
			return err
		}
		if err := l.sysctl(node.Netns, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"); err != nil {
			return err
		}
		for _, a := range n.IPs {
			if a.Is4() {
				if err := l.ip("-n", node.Netns, "addr", "add", a.String()+"/32", "dev", "ext0"); err != nil {
					return err
				}
			}
		}
		if !hasIP {
			if err := l.ip("-n", node.Netns, "addr", "add", ip.String()+"/32", "dev", "ext0"); err != nil {
				return err
			}
		}
		// The lab's cgroup mount is the host's cgroup v2 hierarchy: the
		// name (with the lab's random id) keeps the lab's cgroups apart from
		// everyone else's, another lab of the same name under another root
		// included, so that Down never removes one it did not make.
		l.st.Cgroups = append(l.st.Cgroups, node.Cgroup)
		if err := l.save(); err != nil {
			return err
		}
		if err := os.Mkdir(node.Cgroup, 0o755); err != nil {
			return fmt.Errorf("cgroup of node %s: %w", node.Name, err)
		}
	}
	// Everyone on the fabric reaches everyone else's address on-link.
	hosts := []string{l.st.World}
	addrs := []string{WorldIP}
	for _, n := range l.st.Nodes {
		hosts, addrs = append(hosts, n.Netns), append(addrs, n.IP)
	}
	for i, h := range hosts {
		dev := "ext0"
		if h == l.st.World {
			dev = "eth0"
		}
		for j, a := range addrs {
			if i != j {
				if err := l.ip("-n", h, "route", "add", a+"/32", "dev", dev); err != nil {
					return err
				}
			}
		}
	}
	// The world reaches services' external addresses through the first node.
	if len(l.st.Nodes) > 0 {
		seen := map[netip.Addr]bool{}
		for _, s := range cl.Services {
			for _, a := range append(append([]netip.Addr{}, s.ExternalIPs...), s.LoadBalancerIPs...) {
				if a.Is4() && !seen[a] {
					seen[a] = true
					if err := l.ip("-n", l.st.World, "route", "add", a.String()+"/32", "via", l.st.Nodes[0].IP, "dev", "eth0", "onlink"); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// pods wires every pod with an address into its node's namespace with
// sluice-cni, starts its server, and routes it from the other nodes.
func (l *Lab) pods(objs []*schema.Object, cl *ir.Cluster) error {
	specs := map[string]*corev1.Pod{}
	for _, o := range objs {
		if p, ok := o.Obj.(*corev1.Pod); ok {
			specs[o.Namespace+"/"+o.Name] = p
		}
	}
	nodeOf := map[string]Node{}
	servers := map[string][]Server{} // by node: one process serves its pods
	for _, n := range l.st.Nodes {
		nodeOf[n.Name] = n
		// The node's own server (a kubelet's port), for probes to the node.
		servers[n.Name] = append(servers[n.Name], Server{Name: "node:" + n.Name, IP: n.IP, Ports: []string{NodePort + "/TCP"}})
	}
	for i, e := range cl.Endpoints {
		var ip netip.Addr
		for _, a := range e.IPs {
			if a.Is4() {
				ip = a
				break
			}
		}
		node, ok := nodeOf[e.Node]
		if !ip.IsValid() || !ok {
			continue
		}
		pod := Pod{Key: e.Key(), Netns: fmt.Sprintf("%sp%d", l.prefix(), i), IP: ip.String(), Node: node.Name, Ports: podPorts(specs[e.Key()])}
		l.st.Pods = append(l.st.Pods, pod)
		if err := l.netns(pod.Netns); err != nil {
			return err
		}
		static := fmt.Sprintf(`{"type": "static", "addresses": [{"address": "%s/32"}]}`, pod.IP)
		if _, err := l.cniAdd(node, pod, e.Namespace, e.Name, i, static); err != nil {
			return err
		}
		servers[node.Name] = append(servers[node.Name], Server{Name: pod.Key, Netns: "/var/run/netns/" + pod.Netns, IP: pod.IP, Ports: pod.Ports})
	}
	// Pods without an address in the manifests get one from host-local
	// IPAM in their node's pod CIDR; the agent enforces them as pods of
	// their workload (the artifact's runtime table).
	next := 0
	for _, o := range objs {
		pod, ok := o.Obj.(*corev1.Pod)
		if !ok || pod.Spec.HostNetwork || hasIPv4(pod) {
			continue
		}
		node, ok := nodeOf[pod.Spec.NodeName]
		if !ok {
			if len(l.st.Nodes) == 0 {
				break
			}
			node = l.st.Nodes[next%len(l.st.Nodes)]
			next++
		}
		var subnet string
		for _, n := range cl.Nodes {
			if n.Name == node.Name && len(n.PodCIDRs) > 0 && n.PodCIDRs[0].Addr().Is4() {
				subnet = n.PodCIDRs[0].String()
			}
		}
		if subnet == "" {
			subnet = fmt.Sprintf("10.251.%d.0/24", nodeIndex(l.st.Nodes, node.Name))
		}
		i := len(l.st.Pods) + 1000
		p := Pod{Key: o.Namespace + "/" + o.Name, Netns: fmt.Sprintf("%sp%d", l.prefix(), i), Node: node.Name, Ports: podPorts(pod)}
		if err := l.netns(p.Netns); err != nil {
			return err
		}
		ipam := fmt.Sprintf(`{"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}`, filepath.Join(l.st.Dir, "ipam"), subnet)
		ip, err := l.cniAdd(node, p, o.Namespace, o.Name, i, ipam)
		if err != nil {
			return err
		}
		p.IP = ip
		l.st.Pods = append(l.st.Pods, p)
		servers[node.Name] = append(servers[node.Name], Server{Name: p.Key, Netns: "/var/run/netns/" + p.Netns, IP: p.IP, Ports: p.Ports})
	}

	// One server process per node, in the node's namespace and cgroup,
	// listening in each of its pods' namespaces.
	for _, n := range l.st.Nodes {
		spec, _ := json.Marshal(servers[n.Name])
		file := filepath.Join(l.st.Dir, "serve-"+n.Name+".json")
		if err := os.WriteFile(file, spec, 0o644); err != nil {
			return err
		}
		if err := l.spawn(n.Netns, n.Cgroup, "serve-"+n.Name, filepath.Join(l.cfg.BinDir, "sluice"), "lab", "serve", "--spec", file); err != nil {
			return err
		}
	}

	// Native routing: the other nodes' pod CIDRs, or pods, via their
	// node; the world reaches every node's pods the same way.
	for _, other := range cl.Nodes {
		via := nodeOf[other.Name].IP
		var dests []string
		for _, pc := range other.PodCIDRs {
			if pc.Addr().Is4() {
				dests = append(dests, pc.String())
			}
		}
		if len(dests) == 0 {
			for _, p := range l.st.Pods {
				if p.Node == other.Name {
					dests = append(dests, p.IP+"/32")
				}
			}
		}
		for _, n := range l.st.Nodes {
			for _, d := range dests {
				if n.Name == other.Name {
					continue
				}
				if err := l.ip("-n", n.Netns, "route", "add", d, "via", via, "dev", "ext0", "onlink"); err != nil {
					return err
				}
			}
		}
		for _, d := range dests {
			if err := l.ip("-n", l.st.World, "route", "add", d, "via", via, "dev", "eth0", "onlink"); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(l.cfg.Log, "wired %d pods on %d nodes with sluice-cni\n", len(l.st.Pods), len(l.st.Nodes))
	return l.save()
}

// podPorts are the ports a pod's server answers on: its containers'
// ports, or 80/TCP when it declares none.
func podPorts(p *corev1.Pod) []string {
	seen := map[string]bool{}
	var out []string
	if p != nil {
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, cp := range c.Ports {
				proto := string(cp.Protocol)
				if proto == "" {
					proto = "TCP"
				}
				if proto == "SCTP" { // no SCTP sockets on the machines we test on
					continue
				}
				s := fmt.Sprintf("%d/%s", cp.ContainerPort, proto)
				if !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			}
		}
	}
	if len(out) == 0 {
		out = []string{"80/TCP"}
	}
	sort.Strings(out)
	return out
}

// cniAdd runs sluice-cni ADD the way a container runtime does, with the
// given IPAM section, and returns the pod's address from its result.
func (l *Lab) cniAdd(node Node, pod Pod, namespace, name string, i int, ipam string) (string, error) {
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "lab", "type": "sluice-cni", "stateDir": %q, "ipam": %s}`,
		filepath.Join(l.st.Dir, "cni", node.Name), ipam)
	cmd := exec.Command("ip", "netns", "exec", node.Netns, filepath.Join(l.cfg.BinDir, "sluice-cni"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", fmt.Sprintf("CNI_CONTAINERID=lab-%s-%d", l.st.Name, i),
		"CNI_NETNS=/var/run/netns/"+pod.Netns, "CNI_IFNAME=eth0", "CNI_PATH="+l.cfg.BinDir,
		fmt.Sprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s", namespace, name))
	cmd.Stdin = strings.NewReader(conf)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("sluice-cni ADD %s: %v: %s%s", pod.Key, err, strings.TrimSpace(string(out)), strings.TrimSpace(stderr.String()))
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return "", fmt.Errorf("sluice-cni ADD %s: no address in its result: %s", pod.Key, out)
	}
	ip, _, _ := strings.Cut(res.IPs[0].Address, "/")
	return ip, nil
}

func hasIPv4(p *corev1.Pod) bool {
	for _, ip := range append([]corev1.PodIP{{IP: p.Status.PodIP}}, p.Status.PodIPs...) {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
			return true
		}
	}
	return false
}

func nodeIndex(nodes []Node, name string) int {
	for i, n := range nodes {
		if n.Name == name {
			return i
		}
	}
	return 0
}

// spawn starts a process in a network namespace and a cgroup, in a
// session of its own (it outlives sluice lab up), logging to the lab's
// logs directory.
func (l *Lab) spawn(netns, cgroup, logName string, argv ...string) error {
	logs := filepath.Join(l.st.Dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(logs, logName+".log"))
	if err != nil {
		return err
	}
	defer f.Close()
	cg, err := os.Open(cgroup)
	if err != nil {
		return err
	}
	defer cg.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		return err
	}
	// Down kills it through its cgroup, never by a pid reused since.
	return cmd.Process.Release()
}

// agents starts one sluice-agent per node and waits until each serves
// the compiled generation with its pods attached.
func (l *Lab) agents() error {
	for _, n := range l.st.Nodes {
		pins := filepath.Join(l.st.Dir, "bpffs", n.Name)
		if err := l.spawn(n.Netns, n.Cgroup, "agent-"+n.Name, filepath.Join(l.cfg.BinDir, "sluice-agent"),
			"--node", n.Name, "--artifacts", filepath.Join(l.st.Dir, "out"), "--cni-state", filepath.Join(l.st.Dir, "cni", n.Name),
			"--bpffs", pins, "--listen", "127.0.0.1:9964", "--rescan", "1s", "--cgroup", n.Cgroup, "--device", "ext0"); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range l.st.Nodes {
		want := 0
		for _, p := range l.st.Pods {
			if p.Node == n.Name {
				want++
			}
		}
		for {
			m, err := l.Metrics(n.Name)
			if err == nil && strings.Contains(m, "sluice_socket_lb 1\n") && strings.Contains(m, fmt.Sprintf("sluice_endpoints %d\n", want)) &&
				strings.Contains(m, "sluice_external_devices 1\n") {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(l.st.Dir, "logs", "agent-"+n.Name+".log"))
				return fmt.Errorf("the agent of node %s is not serving after 30s (%v); its log:\n%s", n.Name, err, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fmt.Fprintf(l.cfg.Log, "%d agents serving\n", len(l.st.Nodes))
	return nil
}

// binary is one of the lab's binaries: the configured directory's, else
// (a lab opened by name) the directory of the running sluice.
func (l *Lab) binary(name string) string {
	dir := l.cfg.BinDir
	if dir == "" {
		if self, err := os.Executable(); err == nil {
			dir = filepath.Dir(self)
		}
	}
	return filepath.Join(dir, name)
}

// Metrics returns a node agent's /metrics.
func (l *Lab) Metrics(node string) (string, error) {
	for _, n := range l.st.Nodes {
		if n.Name != node {
			continue
		}
		var body string
		err := loader.InNetNS("/var/run/netns/"+n.Netns, func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:9964", time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprint(c, "GET /metrics HTTP/1.0\r\n\r\n")
			b, err := io.ReadAll(bufio.NewReader(c))
			body = string(b)
			return err
		})
		return body, err
	}
	return "", fmt.Errorf("no node %q in the lab", node)
}

// Down removes everything the lab created, whole or half-made: its
// processes, namespaces, cgroups, mounts and state directory.
func (l *Lab) Down() error {
	var errs []error
	// Every process the lab started is in one of its cgroups: kill them
	// there (never by a pid that may have been reused since).
	for _, cg := range l.st.Cgroups {
		os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0o644)
	}
	for i := len(l.st.Netns) - 1; i >= 0; i-- {
		if err := exec.Command("ip", "netns", "del", l.st.Netns[i]).Run(); err != nil {
			if _, statErr := os.Stat("/var/run/netns/" + l.st.Netns[i]); statErr == nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %v", l.st.Netns[i], err))
			}
		}
	}
	for _, cg := range l.st.Cgroups {
		for try := 0; ; try++ {
			err := os.Remove(cg)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if try == 50 {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", cg, err))
				break
			}
			os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0o644)
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := len(l.st.Mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(l.st.Mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", l.st.Mounts[i], err))
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(l.st.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Apply recompiles the lab from manifests and waits until every node's
// agent serves the new generation (nodes whose artifact did not change
// have nothing to swap). The pods must be the lab's: adding or removing
// pods, or moving them, needs a new lab.
func (l *Lab) Apply(manifests []string) error {
	_, cl, diags := compiler.Load(manifests, nil, compiler.Options{})
	if len(diags) > 0 {
		return diags.Err()
	}
	have := map[string]Pod{}
	for _, p := range l.st.Pods {
		have[p.Key] = p
	}
	n := 0
	for _, e := range cl.Endpoints {
		if len(e.IPs) == 0 || !e.IPs[0].Is4() {
			continue
		}
		p, ok := have[e.Key()]
		if !ok || p.IP != e.IPs[0].String() || p.Node != e.Node {
			return fmt.Errorf("pod %s is not in the lab as the manifests place it: pods cannot change under lab apply; lab down and up again", e.Key())
		}
		n++
	}
	if n != len(l.st.Pods) {
		return fmt.Errorf("the manifests have %d of the lab's %d pods: pods cannot change under lab apply; lab down and up again", n, len(l.st.Pods))
	}
	out, err := emit.Build(cl, emit.Options{NodeFiles: loader.Listings, Shared: loader.SharedListings()})
	if err != nil {
		return err
	}
	outDir := filepath.Join(l.st.Dir, "out")
	before := map[string]int{}
	changed := map[string]bool{}
	for _, a := range out.Artifacts {
		old, _ := os.ReadFile(filepath.Join(outDir, a.Node, "manifest.json"))
		for _, f := range a.Files {
			if f.Name == "manifest.json" && string(f.Data) != string(old) {
				changed[a.Node] = true
			}
		}
		before[a.Node] = l.generation(a.Node)
	}
	if err := loader.WriteArtifacts(outDir, out.Artifacts, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for node := range changed {
		for l.generation(node) <= before[node] {
			if time.Now().After(deadline) {
				m, _ := l.Metrics(node)
				return fmt.Errorf("the agent of node %s did not swap in the new generation within 20s; its metrics:\n%s", node, m)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Fprintf(l.cfg.Log, "applied: %d of %d nodes swapped\n", len(changed), len(out.Artifacts))
	return nil
}

// generation is a node agent's sluice_generation, -1 when unknown.
func (l *Lab) generation(node string) int {
	m, err := l.Metrics(node)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "sluice_generation "); ok {
			var g int
			fmt.Sscan(v, &g)
			return g
		}
	}
	return -1
}
