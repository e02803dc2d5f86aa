package loader

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/bpf"
)

// SockBenchCase is one artifact for the connect latency table: a node
// whose client pod (BenchClientIP) reaches a server pod (BenchServerIP,
// port 8080) directly and through Services ClusterIPs (Frontend, port 80).
type SockBenchCase struct {
	Services int
	Artifact *Artifact
	Frontend string // a ClusterIP of the artifact, ADDR:PORT
}

// Addresses of the connect latency bench.
const (
	BenchClientIP = "10.78.0.1"
	BenchServerIP = "10.78.0.2"
)

// SockBenchResult is the connect latency of one case.
type SockBenchResult struct {
	Services          int
	Direct, ClusterIP time.Duration // per connect, median of the runs
}

// BenchSockConnect measures TCP connect() latency from a client network
// namespace, in a cgroup with the socket load balancer, to a server pod
// directly and through a ClusterIP, alternating the two in each of runs
// rounds of n connects. self is a binary that turns into SockClient when
// SockClientEnv is set.
func BenchSockConnect(self string, cases []SockBenchCase, runs, n int) ([]SockBenchResult, error) {
	var rnd [3]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	client, server := "slbc-"+id, "slbs-"+id
	ip := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	defer exec.Command("ip", "netns", "del", client).Run()
	defer exec.Command("ip", "netns", "del", server).Run()
	for _, step := range [][]string{
		{"netns", "add", client}, {"netns", "add", server},
		{"-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", server},
		{"-n", client, "addr", "add", BenchClientIP + "/24", "dev", "eth0"},
		{"-n", server, "addr", "add", BenchServerIP + "/24", "dev", "eth0"},
		{"-n", client, "link", "set", "eth0", "up"}, {"-n", server, "link", "set", "eth0", "up"},
		{"-n", client, "link", "set", "lo", "up"}, {"-n", server, "link", "set", "lo", "up"},
	} {
		if err := ip(step...); err != nil {
			return nil, err
		}
	}
	var ln net.Listener
	if err := InNetNS("/var/run/netns/"+server, func() (err error) {
		ln, err = net.Listen("tcp", BenchServerIP+":8080")
		return err
	}); err != nil {
		return nil, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cg, err := benchCgroup(id)
	if err != nil {
		return nil, err
	}
	defer os.Remove(cg)

	var out []SockBenchResult
	for _, tc := range cases {
		res, err := benchSockCase(self, cg, client, tc, runs, n)
		if err != nil {
			return nil, fmt.Errorf("%d services: %w", tc.Services, err)
		}
		out = append(out, res)
	}
	return out, nil
}

func benchSockCase(self, cg, netns string, tc SockBenchCase, runs, n int) (SockBenchResult, error) {
	res := SockBenchResult{Services: tc.Services}
	sw, err := NewSwitch("")
	if err != nil {
		return res, err
	}
	defer sw.Close()
	if err := sw.Swap(tc.Artifact); err != nil {
		return res, err
	}
	if err := sw.AttachCgroup(cg); err != nil {
		return res, err
	}
	defer sw.DetachCgroup()
	client, err := StartSockClient(self, netns, cg)
	if err != nil {
		return res, err
	}
	defer client.Close()
	measure := func(target string) (time.Duration, error) {
		line, err := client.Do(fmt.Sprintf("latency %s %d", target, n))
		if err != nil {
			return 0, err
		}
		var ns int64
		if _, err := fmt.Sscanf(line, "latency %d", &ns); err != nil {
			return 0, fmt.Errorf("the client, connecting to %s: %s", target, strings.TrimSpace(line))
		}
		return time.Duration(ns), nil
	}
	// A warm-up round of each, then alternate.
	var direct, viaSvc []time.Duration
	for i := -1; i < runs; i++ {
		d, err := measure(BenchServerIP + ":8080")
		if err != nil {
			return res, err
		}
		s, err := measure(tc.Frontend)
		if err != nil {
			return res, err
		}
		if i >= 0 {
			direct, viaSvc = append(direct, d), append(viaSvc, s)
		}
	}
	slices.Sort(direct)
	slices.Sort(viaSvc)
	res.Direct, res.ClusterIP = direct[len(direct)/2], viaSvc[len(viaSvc)/2]
	return res, nil
}

// benchCgroup makes a cgroup for the bench under the cgroup v2 mount.
func benchCgroup(id string) (string, error) {
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			dir := filepath.Join(f[1], "sluice-bench-"+id)
			return dir, os.Mkdir(dir, 0o755)
		}
	}
	return "", fmt.Errorf("no cgroup v2 mount")
}

// PrintSockBench prints the connect latency table.
func PrintSockBench(w io.Writer, rows []SockBenchResult) {
	fmt.Fprintln(w, "TCP connect() latency, socket load balancing (median of rounds; direct = to the pod IP in the same run):")
	fmt.Fprintf(w, "  %10s %12s %14s %10s\n", "services", "direct", "via ClusterIP", "ratio")
	for _, r := range rows {
		fmt.Fprintf(w, "  %10d %12s %14s %9.2f×\n", r.Services, r.Direct.Round(10*time.Nanosecond), r.ClusterIP.Round(10*time.Nanosecond),
			float64(r.ClusterIP)/float64(r.Direct))
	}
}

// BenchNodePort measures the external device's ingress program with
// BPF_PROG_TEST_RUN against the floor, in one run: a packet to no
// frontend (what most of a node's traffic pays), and the packets of an
// established NodePort flow (DNAT from the NAT table, checksums fixed).
func BenchNodePort(w io.Writer, a *Artifact, client netip.Addr, node netip.AddrPort, repeat int) error {
	dp, err := LoadArtifact(a)
	if err != nil {
		return err
	}
	defer dp.Close()
	prog := dp.Programs[netdevIngress]
	if prog == nil {
		return fmt.Errorf("the artifact has no external device program")
	}
	floorProg, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Dual BSD/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return err
	}
	defer floorProg.Close()
	nodePort := bpf.Packet(client, node.Addr(), 6, 40000, node.Port(), 0x10)
	other := bpf.Packet(client, node.Addr(), 6, 40000, 22, 0x10)
	if _, err := prog.Run(&ebpf.RunOptions{Data: nodePort}); err != nil { // the flow's first packet
		return err
	}
	fmt.Fprintf(w, "external device (NodePort), BPF_PROG_TEST_RUN, %d repeats, hot caches:\n", repeat)
	fmt.Fprintf(w, "  %-36s %10s %8s\n", "path", "ns/packet", "x floor")
	var floor time.Duration
	for _, row := range []struct {
		name string
		prog *ebpf.Program
		pkt  []byte
	}{{"floor", floorProg, nodePort}, {"not a frontend (passes)", prog, other}, {"NodePort, established flow (DNAT)", prog, nodePort}} {
		_, d, err := row.prog.Benchmark(row.pkt, repeat, nil)
		if err != nil {
			return err
		}
		if floor == 0 {
			floor = d
		}
		fmt.Fprintf(w, "  %-36s %10.1f %8.2f\n", row.name, float64(d.Nanoseconds()), float64(d)/float64(floor))
	}
	return nil
}
