// Package cni is sluice-cni, the CNI 1.1 plugin that wires a pod into the
// datapath: a veth pair, the pod's address from the delegated IPAM plugin,
// routes, and an endpoint record for the node agent. Its layout follows
// containernetworking/plugins' ptp: one function per command, IPAM by
// ipam.ExecAdd, namespace work inside ns.Do.
//
// Addressing: inside the pod the address is a /32 on CNI_IFNAME with a
// default route through the link-local gateway 169.254.1.1, which a static
// (permanent) neighbour entry maps to the host-side veth's MAC, so no ARP
// proxying is needed on the host. On the host, a /32 route to the pod
// through its veth, named lxc + the first 11 hex digits of the sha256 of
// the container ID and interface name; the route is of global scope, so
// that the host's own connections to the pod come from the node's address
// (the datapath knows it as the host), not from the gateway address.
//
// Endpoint records live in StateDir as <container ID>-<ifname>.json,
// written atomically (temporary file and rename) under a lock file, so
// the agent can read them whether it runs now or starts later.
package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Gateway is the link-local address the pod routes through.
var Gateway = net.IPv4(169, 254, 1, 1)

// DefaultStateDir is where endpoint records go unless the config says.
const DefaultStateDir = "/var/run/sluice/cni"

// NetConf is the network configuration: the standard fields plus ours,
// each with a default.
type NetConf struct {
	types.NetConf
	// StateDir holds the endpoint records (default DefaultStateDir).
	StateDir string `json:"stateDir,omitempty"`
	// MTU of the veth pair (default 1500).
	MTU int `json:"mtu,omitempty"`
}

// Record is what the agent learns of an endpoint.
type Record struct {
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifName"`
	NetNS       string   `json:"netns"`
	HostVeth    string   `json:"hostVeth"`
	HostIfindex int      `json:"hostIfindex"`
	HostMAC     string   `json:"hostMAC"`
	PodMAC      string   `json:"podMAC"`
	IPs         []string `json:"ips"`
	Namespace   string   `json:"namespace,omitempty"`
	Pod         string   `json:"pod,omitempty"`
}

func loadConf(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "network configuration is not valid JSON", err.Error())
	}
	if conf.IPAM.Type == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "missing ipam", `the configuration needs an "ipam" section, e.g. {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}`)
	}
	if conf.StateDir == "" {
		conf.StateDir = DefaultStateDir
	}
	if conf.MTU == 0 {
		conf.MTU = 1500
	}
	return conf, nil
}

// HostVethName derives the host-side name from the container ID and
// interface name: stable, unique, within the 15-byte limit.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "lxc" + hex.EncodeToString(sum[:])[:11]
}

// k8sArgs picks K8S_POD_NAMESPACE and K8S_POD_NAME from CNI_ARGS.
func k8sArgs(args string) (namespace, pod string) {
	for _, kv := range strings.Split(args, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			namespace = v
		case "K8S_POD_NAME":
			pod = v
		}
	}
	return namespace, pod
}

// getNS opens a network namespace, refusing a path that is not one.
func getNS(path string) (ns.NetNS, error) {
	var st unix.Statfs_t
	// The spec's code for a bad CNI_NETNS is "invalid necessary
	// environment variables" (4).
	if err := unix.Statfs(path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%q is not a network namespace", path), "CNI_NETNS must be a network namespace path such as /var/run/netns/NAME or /proc/PID/ns/net")
	}
	n, err := ns.GetNS(path)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%q is not a network namespace", path), err.Error())
	}
	return n, nil
}

func checkIfName(name string) error {
	if len(name) == 0 || len(name) > unix.IFNAMSIZ-1 || strings.ContainsAny(name, "/ \t\n") || name == "." || name == ".." {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("invalid interface name %q", name), "CNI_IFNAME must be 1-15 characters without '/' or spaces")
	}
	return nil
}

// Add wires a pod.
func Add(args *skel.CmdArgs) (err error) {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkIfName(args.IfName); err != nil {
		return err
	}
	if err := os.MkdirAll(conf.StateDir, 0o755); err != nil {
		return types.NewError(types.ErrIOFailure, "cannot create the state directory "+conf.StateDir, err.Error())
	}
	netns, err := getNS(args.Netns)
	if err != nil {
		return err
	}
	defer netns.Close()

	r, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
	if err != nil {
		return fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
	}
	// Release the address, and whatever else was made, if a later step
	// fails.
	hostVeth := HostVethName(args.ContainerID, args.IfName)
	created := false // only a veth this run made is removed on failure
	defer func() {
		if err != nil {
			ipam.ExecDel(conf.IPAM.Type, args.StdinData)
			if l, lerr := netlink.LinkByName(hostVeth); lerr == nil && created {
				netlink.LinkDel(l)
			}
		}
	}()
	result, err := current.NewResultFromResult(r)
	if err != nil {
		return err
	}
	if len(result.IPs) == 0 {
		return errors.New("ipam returned no address")
	}

	hostIf, contIf, err := setupVeth(netns, args.IfName, hostVeth, conf.MTU, result, &created)
	if err != nil {
		return err
	}
	hostLink, err := netlink.LinkByName(hostVeth)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostVeth, err)
	}
	// The host end answers for the gateway address, so the pod can reach
	// it (the same /32 on every host veth, as ptp does).
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: Gateway, Mask: net.CIDRMask(32, 32)}, Scope: unix.RT_SCOPE_LINK}
	if err := netlink.AddrReplace(hostLink, gw); err != nil {
		return fmt.Errorf("gateway address on %s: %w", hostVeth, err)
	}
	for _, ipc := range result.IPs {
		bits := 32
		if ipc.Address.IP.To4() == nil {
			bits = 128
		}
		dst := &net.IPNet{IP: ipc.Address.IP, Mask: net.CIDRMask(bits, bits)}
		// Scope global, not link: the host's own traffic to the pod then
		// leaves from the node's address (its identity to the pod's
		// policy), not from the link-local gateway address on the veth.
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: hostLink.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_UNIVERSE}); err != nil {
			return fmt.Errorf("route to %s on the host: %w", dst, err)
		}
	}
	// What the datapath needs of the host side: forwarding, no reverse
	// path filter (replies of NodePort traffic come back asymmetrically).
	for _, kv := range [][2]string{{"forwarding", "1"}, {"rp_filter", "0"}} {
		path := fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/%s", hostVeth, kv[0])
		if err := os.WriteFile(path, []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", path, err)
		}
	}
	result.Interfaces = []*current.Interface{hostIf, contIf}
	for _, ipc := range result.IPs {
		ipc.Interface = current.Int(1)
	}
	result.Routes = []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: Gateway}}

	namespace, pod := k8sArgs(args.Args)
	rec := Record{ContainerID: args.ContainerID, IfName: args.IfName, NetNS: args.Netns, HostVeth: hostVeth,
		HostIfindex: hostLink.Attrs().Index, HostMAC: hostIf.Mac, PodMAC: contIf.Mac, Namespace: namespace, Pod: pod}
	for _, ipc := range result.IPs {
		rec.IPs = append(rec.IPs, ipc.Address.IP.String())
	}
	if err := WriteRecord(conf.StateDir, rec); err != nil {
		return types.NewError(types.ErrIOFailure, "cannot write the endpoint record", err.Error())
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// setupVeth creates the pair from inside the pod's namespace, addresses the
// pod end and routes it through the gateway.
func setupVeth(netns ns.NetNS, ifName, hostVeth string, mtu int, result *current.Result, created *bool) (*current.Interface, *current.Interface, error) {
	hostIf, contIf := &current.Interface{}, &current.Interface{}
	err := netns.Do(func(hostNS ns.NetNS) error {
		hv, cv, err := ip.SetupVethWithName(ifName, hostVeth, mtu, "", hostNS)
		if err != nil {
			return err
		}
		*created = true
		hostIf.Name, hostIf.Mac = hv.Name, hv.HardwareAddr.String()
		contIf.Name, contIf.Mac, contIf.Sandbox = cv.Name, cv.HardwareAddr.String(), netns.Path()
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", ifName, err)
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			netlink.LinkSetUp(lo)
		}
		for _, ipc := range result.IPs {
			bits := 32
			if ipc.Address.IP.To4() == nil {
				continue // IPv4 datapath first
			}
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: ipc.Address.IP, Mask: net.CIDRMask(bits, bits)}}
			if err := netlink.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("address %s: %w", addr.IPNet, err)
			}
			ipc.Address = *addr.IPNet
			ipc.Gateway = Gateway
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: Gateway, HardwareAddr: hv.HardwareAddr}); err != nil {
			return fmt.Errorf("neighbour %s: %w", Gateway, err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: Gateway, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to the gateway: %w", err)
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: Gateway})
	})
	return hostIf, contIf, err
}

func recordPath(dir, containerID, ifName string) string {
	return filepath.Join(dir, containerID+"-"+ifName+".json")
}

// lock takes the state directory's lock: records are read and written by
// concurrent plugin runs and by the agent.
func lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// WriteRecord writes an endpoint record atomically, under the state
// directory's lock.
func WriteRecord(dir string, rec Record) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	data, _ := json.MarshalIndent(rec, "", " ")
	tmp, err := os.CreateTemp(dir, ".record-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	tmp.Close()
	return os.Rename(tmp.Name(), recordPath(dir, rec.ContainerID, rec.IfName))
}

// RemoveRecord removes an endpoint record under the state directory's lock.
func RemoveRecord(dir, containerID, ifName string) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(recordPath(dir, containerID, ifName)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// ReadRecords returns every endpoint record of a state directory.
func ReadRecords(dir string) ([]Record, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			continue // removed meanwhile
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Del unwires a pod. A missing namespace, link or record is success.
func Del(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
		return fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
	}
	// Deleting the host end removes the pair and the host route.
	if l, err := netlink.LinkByName(HostVethName(args.ContainerID, args.IfName)); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
		}
	}
	if err := RemoveRecord(conf.StateDir, args.ContainerID, args.IfName); err != nil && !os.IsNotExist(err) {
		return types.NewError(types.ErrIOFailure, "cannot remove the endpoint record", err.Error())
	}
	return nil
}

// Check verifies that the links, addresses, routes and record are as Add
// left them.
func Check(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(recordPath(conf.StateDir, args.ContainerID, args.IfName))
	if err != nil {
		return fmt.Errorf("no endpoint record for %s/%s: %w", args.ContainerID, args.IfName, err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("endpoint record: %w", err)
	}
	host, err := netlink.LinkByName(rec.HostVeth)
	if err != nil {
		return fmt.Errorf("host veth %s is missing: %w", rec.HostVeth, err)
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("host veth %s is down", rec.HostVeth)
	}
	routes, err := netlink.RouteList(host, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, want := range rec.IPs {
		found := false
		for _, r := range routes {
			found = found || (r.Dst != nil && r.Dst.IP.String() == want)
		}
		if !found {
			return fmt.Errorf("the host has no route to %s through %s", want, rec.HostVeth)
		}
	}
	if err := ipam.ExecCheck(conf.IPAM.Type, args.StdinData); err != nil {
		return fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
	}
	netns, err := getNS(args.Netns)
	if err != nil {
		return err
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("%s is missing in the pod: %w", args.IfName, err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, want := range rec.IPs {
			found := false
			for _, a := range addrs {
				found = found || a.IP.String() == want
			}
			if !found {
				return fmt.Errorf("%s in the pod lacks address %s", args.IfName, want)
			}
		}
		routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				if r.Gw.Equal(Gateway) {
					return nil
				}
			}
		}
		return fmt.Errorf("the pod has no default route through %s", Gateway)
	})
}

// Status says whether ADDs can be served: the state directory is writable
// and the IPAM plugin is ready.
func Status(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(conf.StateDir, 0o755); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "the state directory is not writable: "+conf.StateDir, err.Error())
	}
	f, err := os.CreateTemp(conf.StateDir, ".status-")
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "the state directory is not writable: "+conf.StateDir, err.Error())
	}
	f.Close()
	os.Remove(f.Name())
	if err := ipam.ExecStatus(conf.IPAM.Type, args.StdinData); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "ipam "+conf.IPAM.Type+" is not ready", err.Error())
	}
	return nil
}

// GC removes the veths and records of attachments that are not in the
// valid list, and lets the IPAM plugin release their addresses. It touches
// nothing this plugin did not create.
func GC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a.ContainerID+"/"+a.IfName] = true
	}
	recs, err := ReadRecords(conf.StateDir)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if valid[r.ContainerID+"/"+r.IfName] {
			continue
		}
		if l, err := netlink.LinkByName(r.HostVeth); err == nil {
			netlink.LinkDel(l)
		}
		if err := RemoveRecord(conf.StateDir, r.ContainerID, r.IfName); err != nil {
			return err
		}
	}
	// The IPAM plugin gets the same valid list and releases the rest.
	return invoke.DelegateGC(context.TODO(), conf.IPAM.Type, args.StdinData, nil)
}

// Install places the plugin binary in binDir and a network configuration
// list in confDir, as a DaemonSet init container would: each file is
// written beside its destination and renamed over it, so a runtime never
// reads half a file. An existing configuration is left alone unless
// overwrite is set.
func Install(self, binDir, confDir string, conflist []byte, overwrite bool) error {
	var probe map[string]any
	if err := json.Unmarshal(conflist, &probe); err != nil {
		return fmt.Errorf("the network configuration list is not JSON: %w", err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(binDir, "sluice-cni"), bin, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(confDir, "10-sluice.conflist")
	if _, err := os.Stat(conf); err == nil && !overwrite {
		return nil
	}
	return writeAtomic(conf, conflist, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
