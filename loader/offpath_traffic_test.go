package loader

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit/emittest"
)

// ipv6 gives every pod of the net fd00:77::N (N its IPv4 address's last
// byte) behind the node, which routes between them, and a TCP echo
// server on [fd00:77::N]:8080.
func (pn *podNet) ipv6() {
	t := pn.t
	t.Helper()
	ipCmd(t, "netns", "exec", pn.node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	for name := range pn.pods {
		host, v6 := "sl"+name+pn.id, pn.addr6(name).String()
		ns := "sl" + name + "-" + pn.id
		ipCmd(t, "-n", pn.node, "-6", "addr", "add", "fe80::1/64", "dev", host, "nodad")
		ipCmd(t, "-n", ns, "-6", "addr", "add", v6+"/128", "dev", "eth0", "nodad")
		ipCmd(t, "-n", ns, "-6", "route", "add", "fd00:77::/64", "via", "fe80::1", "dev", "eth0")
		ipCmd(t, "-n", pn.node, "-6", "route", "add", v6+"/128", "dev", host)
		var ln net.Listener
		if err := InNetNS(pn.podNS(name), func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(v6, "8080"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveEcho(ln, name)
	}
}

func (pn *podNet) addr6(name string) netip.Addr {
	a := pn.addr(name).As4()
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x77, 15: a[3]})
}

// exchange dials to:port from a pod, says hello, and says whether the
// echo came back.
func (pn *podNet) exchange(from, to netip.Addr, fromPod string, port int) error {
	var c net.Conn
	err := InNetNS(pn.podNS(fromPod), func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(to, uint16(port)).String(), 400*time.Millisecond)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(c, "hello\n")
	c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasSuffix(line, " hello\n") {
		return fmt.Errorf("echo %q", line)
	}
	return nil
}

// Real traffic through the Switch's programs on each pod's veth: IPv6
// between pods nothing isolates works; IPv6 to or from a pod isolated in
// either direction does not, while its allowed IPv4 does; a UDP datagram
// larger than the veth's MTU (4000 bytes over 1500, so fragmented) goes
// through where policy allows its port, in both directions, and its
// fragmented reply comes back.
func TestOffPathTrafficThroughTCX(t *testing.T) {
	requireBPF(t)
	requireIP(t)
	_, out := compileYAML(t, emittest.OffPathCluster)
	art, err := FromBuild(out.Artifacts[0])
	if err != nil {
		t.Fatal(err)
	}
	pn := newPodNet(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3", "c": "10.77.0.4", "d": "10.77.0.5", "e": "10.77.0.6"})
	pn.ipv6()
	sw, err := NewSwitch("")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Swap(art); err != nil {
		t.Fatal(err)
	}
	for name := range pn.pods {
		idx := pn.ifindex(name)
		if err := InNetNS(pn.nsPath(pn.node), func() error { return sw.Attach("default/"+name, idx, pn.addr(name)) }); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("ipv6", func(t *testing.T) {
		for _, c := range []struct {
			from, to string
			ok       bool
		}{
			{"a", "e", true}, {"e", "a", true},
			{"a", "b", false}, // b isolates ingress
			{"b", "a", false}, // ... and so loses IPv6 egress too
			{"c", "a", false}, // c isolates egress
			{"a", "c", false}, // ... and so loses IPv6 ingress too
		} {
			err := pn.exchange(pn.addr6(c.from), pn.addr6(c.to), c.from, 8080)
			if c.ok && err != nil {
				t.Errorf("IPv6 %s -> %s:8080 (neither isolated): %v", c.from, c.to, err)
			}
			if !c.ok && err == nil {
				t.Errorf("IPv6 %s -> %s:8080 went through, with an isolated pod on the path", c.from, c.to)
			}
		}
		if err := pn.exchange(pn.addr("a"), pn.addr("b"), "a", 8080); err != nil {
			t.Errorf("IPv4 a -> b:8080, allowed: %v", err)
		}
		if drops, err := sw.Drops(); err != nil || drops[bpf.DropIPv6] == 0 {
			t.Errorf("no IPv6 drops counted: %v %v", drops, err)
		}
	})
	t.Run("fragments", func(t *testing.T) {
		var srv *net.UDPConn
		if err := InNetNS(pn.podNS("b"), func() (err error) {
			srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("10.77.0.3"), Port: 5353})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := srv.ReadFromUDP(buf)
				if err != nil {
					return
				}
				srv.WriteToUDP(buf[:n], from)
			}
		}()
		payload := bytes.Repeat([]byte("0123456789abcdef"), 250) // 4000 bytes
		for _, c := range []struct {
			from string
			port int
			ok   bool
		}{
			{"a", 5353, true}, // b's ingress allows it
			{"d", 5353, true}, // d's egress and b's ingress allow it
			{"e", 5353, false},
			{"a", 5354, false},
		} {
			var got []byte
			err := InNetNS(pn.podNS(c.from), func() error {
				conn, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP("10.77.0.3"), Port: c.port})
				if err != nil {
					return err
				}
				defer conn.Close()
				tries := 1 // what policy denies is not retried: it stays lost
				if c.ok {
					tries = 3 // a datagram may be lost while ARP resolves
				}
				for try := 0; try < tries && got == nil; try++ {
					if _, err := conn.Write(payload); err != nil {
						return err
					}
					conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					buf := make([]byte, 65536)
					if n, err := conn.Read(buf); err == nil {
						got = buf[:n]
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case c.ok && !bytes.Equal(got, payload):
				t.Errorf("%s -> b UDP %d, 4000 bytes: %d bytes came back, want the datagram whole", c.from, c.port, len(got))
			case !c.ok && got != nil:
				t.Errorf("%s -> b UDP %d, 4000 bytes: came back although policy denies it", c.from, c.port)
			}
		}
		if drops, err := sw.Drops(); err != nil || drops[bpf.DropFragNotFound] != 0 {
			t.Errorf("fragments dropped for want of their first: %v %v", drops, err)
		}
	})
	t.Run("spoofed sources", func(t *testing.T) { testSpoofedSources(t, pn, sw) })
}

// udpInbox listens on addr:port in a pod and hands over what arrives.
func udpInbox(t *testing.T, pn *podNet, pod string, addr netip.Addr, port int) (*net.UDPConn, <-chan string) {
	t.Helper()
	var conn *net.UDPConn
	if err := InNetNS(pn.podNS(pod), func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port))))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return conn, got
}

// sendUDP sends one datagram from a pod, from src:sport, which the pod
// holds as a secondary address when it is not its own.
func (pn *podNet) sendUDP(pod string, src netip.Addr, sport int, dst netip.AddrPort, msg string) error {
	if src != pn.addr(pod) {
		ipCmd(pn.t, "-n", "sl"+pod+"-"+pn.id, "addr", "replace", src.String()+"/32", "dev", "eth0")
	}
	return InNetNS(pn.podNS(pod), func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(sport))), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	})
}

func arrives(got <-chan string, msg string, within time.Duration) bool {
	deadline := time.After(within)
	for {
		select {
		case m := <-got:
			if m == msg {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// A pod's datagrams from addresses that are not its own do not arrive:
// c (whose egress is isolated) sending from an address that is no
// endpoint, or from a's (whose egress is not), to e (which nothing
// isolates); nor can c copy a connection b opened to e into b, whose
// ingress admits only a and d. The node would deliver each of them (no
// reverse-path filter) and the programs alone would pass them, by a's
// policy, no endpoint's, or conntrack; the dispatcher drops them as
// invalid_source.
func testSpoofedSources(t *testing.T, pn *podNet, sw *Switch) {
	a, b, e := pn.addr("a"), pn.addr("b"), pn.addr("e")
	eConn, atE := udpInbox(t, pn, "e", e, 7000)
	before, err := sw.Drops()
	if err != nil {
		t.Fatal(err)
	}
	// A genuine sender first: the path delivers (retried while ARP
	// resolves).
	ok := false
	for try := 0; try < 3 && !ok; try++ {
		if err := pn.sendUDP("a", a, 7100, netip.AddrPortFrom(e, 7000), "from a"); err != nil {
			t.Fatal(err)
		}
		ok = arrives(atE, "from a", 300*time.Millisecond)
	}
	if !ok {
		t.Fatal("a -> e UDP 7000 did not arrive; nothing isolates either")
	}
	spoofed := 0
	for _, src := range []netip.Addr{netip.MustParseAddr("10.77.0.99"), a} {
		msg := "from c as " + src.String()
		if err := pn.sendUDP("c", src, 7100, netip.AddrPortFrom(e, 7000), msg); err != nil {
			t.Fatal(err)
		}
		spoofed++
		if arrives(atE, msg, 300*time.Millisecond) {
			t.Errorf("c -> e UDP 7000 from %s arrived", src)
		}
	}
	// b opens a flow to e; e answers it, which b's ingress admits only as
	// a reply.
	bConn, atB := udpInbox(t, pn, "b", b, 6000)
	ok = false
	for try := 0; try < 3 && !ok; try++ {
		if _, err := bConn.WriteToUDPAddrPort([]byte("from b"), netip.AddrPortFrom(e, 7000)); err != nil {
			t.Fatal(err)
		}
		ok = arrives(atE, "from b", 300*time.Millisecond)
	}
	if !ok {
		t.Fatal("b -> e UDP 7000 did not arrive")
	}
	if _, err := eConn.WriteToUDPAddrPort([]byte("reply from e"), netip.AddrPortFrom(b, 6000)); err != nil {
		t.Fatal(err)
	}
	if !arrives(atB, "reply from e", time.Second) {
		t.Fatal("e's reply to b's flow did not arrive")
	}
	if err := pn.sendUDP("c", e, 7000, netip.AddrPortFrom(b, 6000), "from c as e"); err != nil {
		t.Fatal(err)
	}
	spoofed++
	if arrives(atB, "from c as e", 300*time.Millisecond) {
		t.Error("c, sending from e's address and port, got into b's flow with e")
	}
	after, err := sw.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if n := after[bpf.DropSpoofed] - before[bpf.DropSpoofed]; n != uint64(spoofed) {
		t.Errorf("%d drops counted as %s, want the %d spoofed datagrams", n, bpf.DropReasonNames[bpf.DropSpoofed], spoofed)
	}
}
