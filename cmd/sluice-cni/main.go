// Command sluice-cni is the CNI plugin that wires pods into Sluice's
// datapath (see package loader/cni). A container runtime runs it from
// /opt/cni/bin with a network configuration on stdin.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sluicenet/sluice/loader/cni"
)

func init() {
	// Namespace switches apply to one OS thread: keep main on its own.
	runtime.LockOSThread()
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cni.Add, Del: cni.Del, Check: cni.Check, Status: cni.Status, GC: cni.GC},
		version.All, "sluice-cni: wires pods into the Sluice eBPF datapath")
}
