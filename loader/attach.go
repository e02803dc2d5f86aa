package loader

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
)

// AttachEndpoint attaches an endpoint's policy programs ("ns/name") to its
// host-side veth with TCX: from-container on the veth's ingress (packets
// leaving the pod), to-container on its egress (packets entering it),
// after linking the veth to addr, the pod's IPv4 address, in the
// generation's endpoint_links (see Switch.Attach). The caller closes the
// links to detach.
func (d *Datapath) AttachEndpoint(endpoint string, ifindex int, addr netip.Addr) ([]link.Link, error) {
	if err := d.LinkEndpoint(ifindex, addr); err != nil {
		return nil, err
	}
	var links []link.Link
	for _, a := range []struct {
		dir    bpf.Direction
		attach ebpf.AttachType
	}{{bpf.FromContainer, ebpf.AttachTCXIngress}, {bpf.ToContainer, ebpf.AttachTCXEgress}} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: d.ProgramFor(endpoint, a.dir), Attach: a.attach})
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return nil, fmt.Errorf("attach %s to ifindex %d: %w", a.dir, ifindex, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// LinkEndpoint gives an interface an endpoint's IPv4 address in this
// datapath's endpoint_links, as a Switch does for the node's: the
// programs then enforce the IPv6 frames they see on it as that
// endpoint's (for a Datapath without a Switch, and BPF_PROG_TEST_RUN,
// whose packets cross ifindex 1).
func (d *Datapath) LinkEndpoint(ifindex int, addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("link ifindex %d: %s is not an IPv4 address", ifindex, addr)
	}
	a := addr.As4()
	if err := d.Maps[bpf.MapEndpointLinks].Put(uint32(ifindex), a[:]); err != nil {
		return fmt.Errorf("link ifindex %d to %s: %w", ifindex, addr, err)
	}
	return nil
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
