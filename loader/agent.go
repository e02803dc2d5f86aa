package loader

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/loader/cni"
)

// AgentConfig says where a node agent finds its inputs.
type AgentConfig struct {
	Node      string // the node's name: its artifact is ARTIFACTS/NODE
	Artifacts string // a compile output directory, replaced atomically by sluice compile
	CNIState  string // the endpoint records written by sluice-cni
	// PinDir, on a bpf filesystem, holds the pinned maps and links that
	// keep the datapath serving while no agent runs; "" pins nothing.
	PinDir string
	// Rescan is the period of a full rescan, for volumes whose changes
	// inotify misses (network and projected volumes). Default 10s.
	Rescan time.Duration
	// FullSwaps builds every generation from scratch (see Switch.FullSwaps).
	FullSwaps bool
	// Cgroup is the cgroup v2 directory whose sockets the socket load
	// balancer serves (the root, to replace kube-proxy); "none" detaches
	// it; "" leaves it as it is (adopted, or not attached).
	Cgroup string
	// Device is the node's external network device, where NodePort,
	// ExternalIP and LoadBalancer traffic from outside is load-balanced;
	// "" for none.
	Device string
	Log    *slog.Logger
}

// Agent keeps a node's datapath in step with its artifact and its
// endpoints: it swaps in each new generation (see Switch) and attaches
// and detaches endpoints as sluice-cni records come and go.
type Agent struct {
	cfg AgentConfig
	sw  *Switch

	mu        sync.Mutex
	serving   [32]byte          // sha256 of the serving manifest
	last      *Artifact         // the serving artifact: the next read reuses its verified files
	refused   [32]byte          // the last manifest refused, not retried until it changes
	swaps     map[string]uint64 // by kind: full, incremental
	lastSwap  time.Duration
	failures  map[string]uint64 // by reason
	lastError string
	// unenforced lists the pods the serving generation does not list and
	// no workload of its runtime table accounts for (init identity);
	// runtimeByWorkload those it enforces as pods of a workload.
	unenforced, runtimeByWorkload []string
}

// NewAgent creates the node's switch. Nothing is loaded until Sync or Run.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Rescan == 0 {
		cfg.Rescan = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	sw, err := NewSwitch(cfg.PinDir)
	if err != nil {
		return nil, err
	}
	sw.FullSwaps = cfg.FullSwaps
	if sw.serving { // only an adoption serves before the first swap
		cfg.Log.Info("adopted the pinned datapath", "pins", cfg.PinDir, "endpoints", len(sw.endpoints))
	}
	return &Agent{cfg: cfg, sw: sw, failures: map[string]uint64{}, swaps: map[string]uint64{}}, nil
}

// Close lets go of the datapath; what is pinned keeps serving.
func (a *Agent) Close() { a.sw.Close() }

// Uninstall removes everything the agent attached and pinned.
func (a *Agent) Uninstall() error { return a.sw.Uninstall() }

// Sync brings the datapath up to date: the node's artifact, then its
// endpoints. It returns the first error, after doing what it could.
func (a *Agent) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	errArt := a.syncArtifact()
	errEp := a.syncEndpoints()
	return errors.Join(errArt, errEp, a.syncCgroup())
}

// syncCgroup attaches the socket load balancer once a generation serves.
func (a *Agent) syncCgroup() error {
	switch {
	case a.cfg.Cgroup == "" || !a.sw.serving:
		return nil
	case a.cfg.Cgroup == "none":
		if a.sw.sock != nil {
			a.cfg.Log.Info("socket load balancing detached")
		}
		return a.sw.DetachCgroup()
	}
	had := a.sw.sock != nil
	if err := a.sw.AttachCgroup(a.cfg.Cgroup); err != nil {
		a.cfg.Log.Error("socket load balancing not attached", "cgroup", a.cfg.Cgroup, "err", err)
		return err
	}
	if !had {
		a.cfg.Log.Info("socket load balancing attached", "cgroup", a.cfg.Cgroup)
	}
	return nil
}

func (a *Agent) fail(reason string, err error) error {
	a.failures[reason]++
	a.lastError = err.Error()
	a.cfg.Log.Error("swap refused; the serving generation stays", "reason", reason, "err", err)
	return err
}

func (a *Agent) syncArtifact() error {
	dir := filepath.Join(a.cfg.Artifacts, a.cfg.Node)
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing compiled for this node yet
	}
	if err != nil {
		return a.fail("read", err)
	}
	sum := sha256.Sum256(manifest)
	if sum == a.serving || sum == a.refused {
		return nil
	}
	start := time.Now()
	art, err := ReadDatapathAfter(dir, a.last)
	if err != nil {
		// The writer replaces the whole output at once, so a checksum
		// mismatch is a bad artifact, not a half-written one.
		a.refused = sum
		return a.fail("verify", err)
	}
	if err := a.sw.Swap(art); err != nil {
		reason, artifactAtFault := swapRefusal(err)
		if artifactAtFault {
			a.refused = sum
		}
		return a.fail(reason, err)
	}
	a.serving, a.refused, a.last = sum, [32]byte{}, art
	info := a.sw.LastSwap
	kind := "full"
	if info.Incremental {
		kind = "incremental"
	}
	a.swaps[kind]++
	a.lastSwap = time.Since(start)
	attrs := []any{"dir", dir, "generation", a.sw.Generation, "took", a.lastSwap, "kind", kind,
		"programs_loaded", info.ProgramsLoaded, "programs_kept", info.ProgramsKept, "entries_written", info.MapWrites, "entries_deleted", info.MapDeletes}
	if info.Fallback != "" {
		attrs = append(attrs, "not_incremental_because", info.Fallback)
	}
	a.cfg.Log.Info("generation swapped in", attrs...)
	return nil
}

// swapRefusal names why a swap failed, and says whether the artifact is at
// fault (wait for a new one) or the node (memory, privilege: retry at the
// next rescan).
func swapRefusal(err error) (reason string, artifactAtFault bool) {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return "verifier", true
	case errors.Is(err, ErrPrivilege), errors.Is(err, unix.ENOMEM):
		return "load", false
	default:
		return "load", true
	}
}

// endpointName is how a record names its endpoint in the artifact.
func endpointName(r cni.Record) string {
	if r.Namespace != "" && r.Pod != "" {
		return r.Namespace + "/" + r.Pod
	}
	return "container/" + r.ContainerID
}

func (a *Agent) syncEndpoints() error {
	if !a.sw.serving {
		return nil // endpoints attach once a generation serves
	}
	recs, err := cni.ReadRecords(a.cfg.CNIState)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("endpoint records: %w", err)
	}
	want := map[string]int{}
	linkTo := map[string]netip.Addr{} // the pod's IPv4 address, its endpoints key
	pods := map[netip.Addr]PodRef{}
	for _, r := range recs {
		name := endpointName(r)
		want[name] = r.HostIfindex
		for _, ip := range r.IPs {
			if addr, err := netip.ParseAddr(ip); err == nil {
				pods[addr] = PodRef{Namespace: r.Namespace, Name: r.Pod}
				if _, ok := linkTo[name]; !ok && addr.Is4() {
					linkTo[name] = addr
				}
			}
		}
	}
	var errs []error
	if a.cfg.Device != "" {
		// A missing device is reported; the pods are attached all the same.
		if ifc, err := net.InterfaceByName(a.cfg.Device); err != nil {
			errs = append(errs, fmt.Errorf("external device: %w", err))
			a.cfg.Log.Error("external device not found", "device", a.cfg.Device, "err", err)
		} else {
			want[devicePrefix+a.cfg.Device] = ifc.Index
		}
	}
	// Entries first, so that a pod's programs find it when they attach.
	runtimePods, err := a.sw.SetRuntimePods(pods)
	if err != nil {
		errs = append(errs, err)
		a.cfg.Log.Error("runtime endpoint entries not written", "err", err)
	}
	a.noteRuntime(runtimePods)
	for _, name := range a.sw.endpointNames() {
		if _, ok := want[name]; !ok {
			a.sw.Detach(name)
			a.cfg.Log.Info("endpoint detached", "endpoint", name)
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if a.sw.attachedAs(name, want[name], linkTo[name]) {
			continue
		}
		if err := a.sw.Attach(name, want[name], linkTo[name]); err != nil {
			errs = append(errs, err)
			a.cfg.Log.Error("endpoint not attached", "endpoint", name, "err", err)
			continue
		}
		a.cfg.Log.Info("endpoint attached", "endpoint", name, "ifindex", want[name])
	}
	return errors.Join(errs...)
}

// noteRuntime logs how the pods the artifact does not list are enforced,
// when that changes.
func (a *Agent) noteRuntime(pods []RuntimePod) {
	var init, byWorkload []string
	for _, p := range pods {
		name := p.Pod.Namespace + "/" + p.Pod.Name
		if p.Workload == "" {
			init = append(init, name)
		} else {
			byWorkload = append(byWorkload, name+" as "+p.Workload)
		}
	}
	if !slices.Equal(byWorkload, a.runtimeByWorkload) && len(byWorkload) > 0 {
		a.cfg.Log.Info("pods the artifact does not list, enforced with their workload's identity and policy", "endpoints", byWorkload)
	}
	if !slices.Equal(init, a.unenforced) && len(init) > 0 {
		a.cfg.Log.Warn("pods of no workload the artifact knows: reserved init identity, no policy of their own until a compile includes them", "endpoints", init)
	}
	a.runtimeByWorkload, a.unenforced = byWorkload, init
}

// Run syncs, then again on every change to the artifact or CNI state
// directories (and every Rescan), until ctx ends. It leaves the datapath
// as it is when it returns.
func (a *Agent) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	// sluice compile replaces the output directory itself (a rename), so
	// watch its parent as well as the directory.
	for _, d := range []string{filepath.Dir(filepath.Clean(a.cfg.Artifacts)), a.cfg.Artifacts, a.cfg.CNIState} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	a.Sync()
	rescan := time.NewTicker(a.cfg.Rescan)
	defer rescan.Stop()
	// Events come in bursts (a rename, then files); a short quiet period
	// folds a burst into one sync.
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if filepath.Clean(ev.Name) == filepath.Clean(a.cfg.Artifacts) {
				w.Remove(a.cfg.Artifacts)
				w.Add(a.cfg.Artifacts) // the new directory under the old name
			}
			debounce = time.After(2 * time.Millisecond)
		case err := <-w.Errors:
			a.cfg.Log.Warn("watch", "err", err)
		case <-debounce:
			debounce = nil
			a.Sync()
		case <-rescan.C:
			a.Sync()
		}
	}
}

// ServeHTTP answers /metrics (Prometheus text format) and /healthz (200
// once a generation serves).
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.URL.Path {
	case "/healthz":
		if !a.sw.serving {
			http.Error(w, "no generation serving: "+a.lastError, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	case "/metrics":
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, a.metrics())
	default:
		http.NotFound(w, r)
	}
}

func (a *Agent) metrics() string {
	var b strings.Builder
	metric := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("sluice_generation", "Generations swapped in since the agent started.", "gauge")
	fmt.Fprintf(&b, "sluice_generation %d\n", a.sw.Generation)
	metric("sluice_swaps_total", "Swaps that took effect, by kind: incremental (the idle half's generation rewritten entry by entry) or full.", "counter")
	for _, kind := range []string{"full", "incremental"} {
		fmt.Fprintf(&b, "sluice_swaps_total{kind=%q} %d\n", kind, a.swaps[kind])
	}
	metric("sluice_swap_seconds", "Duration of the last swap, from reading the artifact to the flip.", "gauge")
	fmt.Fprintf(&b, "sluice_swap_seconds %g\n", a.lastSwap.Seconds())
	metric("sluice_swap_failures_total", "Swaps refused, by reason.", "counter")
	reasons := make([]string, 0, len(a.failures))
	for r := range a.failures {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(&b, "sluice_swap_failures_total{reason=%q} %d\n", r, a.failures[r])
	}
	metric("sluice_socket_lb", "1 when the socket load balancer is attached to a cgroup.", "gauge")
	fmt.Fprintf(&b, "sluice_socket_lb %d\n", map[bool]int{true: 1}[a.sw.sock != nil])
	pods, devices := 0, 0
	for name := range a.sw.endpoints {
		if isDevice(name) {
			devices++
		} else {
			pods++
		}
	}
	metric("sluice_external_devices", "External devices with the packet-level load balancer attached.", "gauge")
	fmt.Fprintf(&b, "sluice_external_devices %d\n", devices)
	metric("sluice_endpoints", "Endpoints attached.", "gauge")
	fmt.Fprintf(&b, "sluice_endpoints %d\n", pods)
	metric("sluice_endpoints_runtime", "Pods the serving artifact does not list (created after the compile), enforced as pods of a workload of its runtime table.", "gauge")
	fmt.Fprintf(&b, "sluice_endpoints_runtime %d\n", len(a.runtimeByWorkload))
	metric("sluice_endpoints_unenforced", "Pods the serving artifact does not list and no workload accounts for: reserved init identity, no policy of their own.", "gauge")
	fmt.Fprintf(&b, "sluice_endpoints_unenforced %d\n", len(a.unenforced))
	if drops, err := a.sw.Drops(); err == nil {
		metric("sluice_drops_total", "Packets dropped by the datapath, by reason.", "counter")
		for r, n := range drops {
			fmt.Fprintf(&b, "sluice_drops_total{reason=%q} %d\n", bpf.DropReasonNames[r], n)
		}
	}
	if byRule, err := a.sw.RuleDrops(); err == nil {
		metric("sluice_policy_drops_total", "Packets dropped by policy, by what decided it: a deny rule (its policy, field and manifest position) or the default deny of endpoints the listed policies isolate; since the agent started.", "counter")
		lines := make([]string, 0, len(byRule))
		for k, n := range byRule {
			lines = append(lines, fmt.Sprintf("sluice_policy_drops_total{verdict=%q,direction=%q,policy=%q,rule=%q,source=%q} %d\n", k.Verdict, k.Direction, k.Policy, k.Rule, k.Source, n))
		}
		sort.Strings(lines)
		for _, l := range lines {
			b.WriteString(l)
		}
	}
	return b.String()
}
