// Command sluice-cni is the CNI plugin that wires pods into Sluice's
// datapath (see package loader/cni). A container runtime runs it from
// /opt/cni/bin with a network configuration on stdin.
//
//	sluice-cni install [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--conflist FILE] [--overwrite]
//
// places the binary and a network configuration list, as a DaemonSet init
// container would.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sluicenet/sluice/loader/cni"
)

func init() {
	// Namespace switches apply to one OS thread: keep main on its own.
	runtime.LockOSThread()
}

// defaultConflist is the configuration install writes when given none.
const defaultConflist = `{
  "cniVersion": "1.1.0",
  "name": "sluice",
  "plugins": [
    {
      "type": "sluice-cni",
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}]]}
    }
  ]
}
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" {
		os.Exit(install(os.Args[2:]))
	}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cni.Add, Del: cni.Del, Check: cni.Check, Status: cni.Status, GC: cni.GC},
		version.All, "sluice-cni: wires pods into the Sluice eBPF datapath")
}

func install(args []string) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "/opt/cni/bin", "where runtimes look for CNI plugins")
	confDir := fs.String("conf-dir", "/etc/cni/net.d", "where runtimes look for network configurations")
	conflist := fs.String("conflist", "", "network configuration list to install (default: sluice-cni with host-local on 10.0.0.0/24)")
	overwrite := fs.Bool("overwrite", false, "replace an existing 10-sluice.conflist")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	conf := []byte(defaultConflist)
	if *conflist != "" {
		b, err := os.ReadFile(*conflist)
		if err != nil {
			fmt.Fprintf(os.Stderr, "sluice-cni install: %v\n", err)
			return 1
		}
		conf = b
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluice-cni install: %v\n", err)
		return 1
	}
	if err := cni.Install(self, *binDir, *confDir, conf, *overwrite); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-cni install: %v\n", err)
		return 1
	}
	fmt.Printf("installed %s/sluice-cni and %s/10-sluice.conflist\n", *binDir, *confDir)
	return 0
}
