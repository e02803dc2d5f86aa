package loader

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
)

// LinkEndpoint gives an interface an endpoint's IPv4 address in this
// datapath's endpoint_links, as a Switch does for the node's: the
// programs then enforce the IPv6 frames they see on it as that
// endpoint's (for a Datapath without a Switch, run with BPF_PROG_TEST_RUN,
// whose packets cross ifindex 1). Programs are attached to interfaces
// only through a Switch, whose dispatchers also verify the pods' source
// addresses (see Switch.Attach).
func (d *Datapath) LinkEndpoint(ifindex int, addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("link ifindex %d: %s is not an IPv4 address", ifindex, addr)
	}
	return setEndpointLink(d.Maps[bpf.MapEndpointLinks], ifindex, addr)
}

// InNetNS runs fn on an OS thread switched into the network namespace at
// path (such as /var/run/netns/NAME), and switches back. Sockets and links
// that fn creates belong to that namespace.
func InNetNS(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: never let it run anything
		// else (it dies with the goroutine, left locked).
		return fmt.Errorf("return from %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
