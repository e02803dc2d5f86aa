// Command sluice-agent is the node daemon: it keeps the node's datapath in
// step with its compiled artifact and with the endpoints sluice-cni
// records. The work is in package loader; this is flags and signals.
// SIGTERM leaves the datapath serving from its pins; the next agent adopts
// it.
//
//	sluice-agent --node NAME --artifacts DIR [--cni-state DIR] [--bpffs DIR] [--listen ADDR]
//	sluice-agent --uninstall [--bpffs DIR]
//	sluice-agent status [--listen ADDR]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicenet/sluice/loader"
	"github.com/sluicenet/sluice/loader/cni"
)

const defaultListen = "127.0.0.1:9964"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "status" {
		os.Exit(status(os.Args[2:]))
	}
	fs := flag.NewFlagSet("sluice-agent", flag.ExitOnError)
	node := fs.String("node", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	artifacts := fs.String("artifacts", "", "the compile output directory to follow")
	state := fs.String("cni-state", cni.DefaultStateDir, "sluice-cni's endpoint records")
	listen := fs.String("listen", defaultListen, "address for /metrics and /healthz")
	pins := fs.String("bpffs", "/sys/fs/bpf/sluice", "directory on a bpf filesystem for the pinned maps and links that outlive the agent")
	uninstall := fs.Bool("uninstall", false, "remove every attachment and pin the agent made, and exit")
	rescan := fs.Duration("rescan", 10*time.Second, "period of a full rescan, for volumes that miss change events")
	fullSwaps := fs.Bool("full-swaps", false, "build every generation from scratch, never by rewriting the previous one entry by entry")
	device := fs.String("device", "", "the node's external network `device`, where NodePort, ExternalIP and LoadBalancer traffic from outside is load-balanced")
	cgroup := fs.String("cgroup", "", "cgroup v2 `directory` whose sockets reach services through socket load balancing (the cgroup root, e.g. /sys/fs/cgroup, to replace kube-proxy); none: detach it")
	fs.Parse(os.Args[1:])
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if *uninstall {
		agent, err := loader.NewAgent(loader.AgentConfig{PinDir: *pins, Log: log})
		if err == nil {
			err = agent.Uninstall()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sluice-agent --uninstall:", err)
			os.Exit(1)
		}
		log.Info("uninstalled", "bpffs", *pins)
		return
	}
	if *node == "" || *artifacts == "" {
		fmt.Fprintln(os.Stderr, "sluice-agent: --node and --artifacts are required")
		os.Exit(2)
	}
	agent, err := loader.NewAgent(loader.AgentConfig{Node: *node, Artifacts: *artifacts, CNIState: *state, PinDir: *pins, Rescan: *rescan, FullSwaps: *fullSwaps, Cgroup: *cgroup, Device: *device, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-agent:", err)
		os.Exit(1)
	}
	defer agent.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-agent:", err)
		os.Exit(1)
	}
	go http.Serve(ln, agent)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Info("started", "node", *node, "artifacts", *artifacts, "cni-state", *state, "listen", ln.Addr().String())
	if err := agent.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "sluice-agent:", err)
		os.Exit(1)
	}
}

// status prints the agent's metrics for a person.
func status(args []string) int {
	fs := flag.NewFlagSet("sluice-agent status", flag.ExitOnError)
	listen := fs.String("listen", defaultListen, "the agent's address")
	fs.Parse(args)
	c := http.Client{Timeout: 3 * time.Second}
	health, err := c.Get("http://" + *listen + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-agent status: no agent answers at", *listen+":", err)
		return 1
	}
	h, _ := io.ReadAll(health.Body)
	health.Body.Close()
	fmt.Printf("health: %s", h)
	m, err := c.Get("http://" + *listen + "/metrics")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-agent status:", err)
		return 1
	}
	defer m.Body.Close()
	// The samples without the HELP and TYPE comments.
	sc := bufio.NewScanner(m.Body)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") {
			fmt.Println(line)
		}
	}
	if health.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
