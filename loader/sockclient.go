package loader

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SockClientEnv set in the environment makes a binary that calls
// SockClient at start (the loader tests, sluice-bench) a socket client:
// the socket load balancer acts on the sockets of processes in a cgroup,
// so probes through it run as a child process started in that cgroup and
// a pod's network namespace.
const SockClientEnv = "SLUICE_SOCK_CLIENT"

// SockClient reads commands, one per line, and answers each with a line:
//
//	dial ADDR:PORT N      TCP connects; "ok NAME=COUNT... peers=ADDR,..." (getpeername)
//	hold ADDR:PORT NAME   connect until NAME answers (others may fail), keep that connection; "held NAME"
//	echo                  a line on the held connection; "echoed NAME"
//	udp ADDR:PORT         unconnected sendto, recvfrom; "udp src=ADDR name=NAME"
//	udpconn ADDR:PORT     connected UDP; "udpconn peer=ADDR name=NAME"
//	refuse ADDR:PORT      a TCP connect expected to fail (1 s); "failed ERRNO MILLISECONDS"
//	udpsend ADDR:PORT     an unconnected sendto expected to fail; "failed ERRNO"
//	latency ADDR:PORT N   N connect+close; "latency NANOSECONDS-PER-CONNECT"
//	probe tcp|udp ADDR:PORT MS [SPORT]  connect and read the greeting, or a datagram and its
//	                      answer, from source port SPORT if given; "ok NAME", "refused" or "timeout"
func SockClient(in io.Reader, out io.Writer) int {
	var held net.Conn
	var heldR *bufio.Reader
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		fmt.Fprintln(out, sockCommand(f, &held, &heldR))
	}
	return 0
}

func sockCommand(f []string, held *net.Conn, heldR **bufio.Reader) string {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "dial":
		n, _ := strconv.Atoi(arg(2))
		names, peers := map[string]int{}, map[string]bool{}
		for range n {
			c, err := net.DialTimeout("tcp", arg(1), time.Second)
			if err != nil {
				return "err " + err.Error()
			}
			peers[peerOf(c)] = true
			name, err := echoName(c, bufio.NewReader(c))
			c.Close()
			if err != nil {
				return "err " + err.Error()
			}
			names[name]++
		}
		var parts []string
		for name, k := range names {
			parts = append(parts, fmt.Sprintf("%s=%d", name, k))
		}
		sort.Strings(parts)
		var ps []string
		for p := range peers {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		return "ok " + strings.Join(parts, " ") + " peers=" + strings.Join(ps, ",")
	case "hold":
		for range 100 {
			c, err := net.DialTimeout("tcp", arg(1), 300*time.Millisecond)
			if err != nil {
				continue // another backend, which may not admit us
			}
			r := bufio.NewReader(c)
			if name, err := echoName(c, r); err == nil && name == arg(2) {
				*held, *heldR = c, r
				return "held " + name
			}
			c.Close()
		}
		return "err no connection reached " + arg(2)
	case "echo":
		if *held == nil {
			return "err nothing held"
		}
		name, err := echoName(*held, *heldR)
		if err != nil {
			return "err " + err.Error()
		}
		return "echoed " + name
	case "udp", "udpconn":
		var c net.Conn
		var pc net.PacketConn
		var err error
		if f[0] == "udp" {
			pc, err = net.ListenPacket("udp4", ":0")
		} else {
			c, err = net.Dial("udp4", arg(1))
		}
		if err != nil {
			return "err " + err.Error()
		}
		buf := make([]byte, 256)
		var n int
		var src string
		if pc != nil {
			defer pc.Close()
			to, _ := net.ResolveUDPAddr("udp4", arg(1))
			if _, err := pc.WriteTo([]byte("ping\n"), to); err != nil {
				return "err " + err.Error()
			}
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			var from net.Addr
			if n, from, err = pc.ReadFrom(buf); err != nil {
				return "err " + err.Error()
			}
			src = from.String()
			return fmt.Sprintf("udp src=%s name=%s", src, strings.Fields(string(buf[:n]))[0])
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return "err " + err.Error()
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err = c.Read(buf); err != nil {
			return "err " + err.Error()
		}
		return fmt.Sprintf("udpconn peer=%s name=%s", peerOf(c), strings.Fields(string(buf[:n]))[0])
	case "probe":
		// "probe tcp ADDR:PORT MS" connects (and reads the server's
		// greeting), "probe udp ADDR:PORT MS" sends a datagram and waits for
		// the answer; either answers "ok NAME", "refused" or "timeout".
		ms, _ := strconv.Atoi(arg(3))
		timeout := time.Duration(max(ms, 1)) * time.Millisecond
		network, ok := map[string]string{"tcp": "tcp4", "udp": "udp4"}[strings.ToLower(arg(1))]
		if !ok {
			return "err probe: tcp or udp"
		}
		// A source port of the caller's choosing, never used before,
		// keeps a probe from matching the conntrack entry of an earlier
		// one (a UDP flow lives on for a minute).
		d := net.Dialer{Timeout: timeout}
		if sport, err := strconv.Atoi(arg(4)); err == nil && sport > 0 {
			if network == "udp4" {
				d.LocalAddr = &net.UDPAddr{Port: sport}
			} else {
				d.LocalAddr = &net.TCPAddr{Port: sport}
			}
		}
		c, err := d.Dial(network, arg(2))
		if err != nil {
			return probeFailure(err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // closed with a reset: no TIME_WAIT holds the port
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if network == "udp4" {
			if _, err := c.Write([]byte("probe\n")); err != nil {
				return probeFailure(err)
			}
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return probeFailure(err)
		}
		return "ok " + strings.Fields(line)[0]
	case "refuse":
		start := time.Now()
		c, err := net.DialTimeout("tcp", arg(1), time.Second)
		if err == nil {
			c.Close()
			return "err connected"
		}
		return fmt.Sprintf("failed %s %d", errnoName(err), time.Since(start).Milliseconds())
	case "udpsend":
		pc, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return "err " + err.Error()
		}
		defer pc.Close()
		to, _ := net.ResolveUDPAddr("udp4", arg(1))
		if _, err := pc.WriteTo([]byte("ping\n"), to); err != nil {
			return "failed " + errnoName(err)
		}
		return "err sent"
	case "latency":
		n, _ := strconv.Atoi(arg(2))
		addr, err := netip.ParseAddrPort(arg(1))
		if err != nil {
			return "err " + err.Error()
		}
		sa := &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
		var total time.Duration
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				return "err " + err.Error()
			}
			start := time.Now()
			err = unix.Connect(fd, sa)
			total += time.Since(start)
			// Close with a reset: no TIME_WAIT, so that many rounds do not
			// use up the ephemeral ports.
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(fd)
			if err != nil {
				return "err " + err.Error()
			}
		}
		return fmt.Sprintf("latency %d", total.Nanoseconds()/int64(max(n, 1)))
	}
	return "err unknown command " + f[0]
}

// probeFailure names why a probe got no answer.
func probeFailure(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "err " + err.Error()
}

// peerOf asks the kernel (getpeername) for a connected socket's peer.
func peerOf(c net.Conn) string {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return "?"
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return "?"
	}
	peer := "?"
	raw.Control(func(fd uintptr) {
		if sa, err := unix.Getpeername(int(fd)); err == nil {
			if in4, ok := sa.(*unix.SockaddrInet4); ok {
				peer = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)).String()
			}
		}
	})
	return peer
}

func echoName(c net.Conn, r *bufio.Reader) (string, error) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.Fields(line)[0], nil
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// SockClientProc is a SockClient child process: binary (one that calls
// SockClient when SockClientEnv is set) run in a network namespace and,
// when cgroup is given, a cgroup — where the socket load balancer acts on
// its sockets.
type SockClientProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// StartSockClient starts binary as a socket client in the named network
// namespace (ip netns exec) and the cgroup directory ("" for the caller's).
func StartSockClient(binary, netns, cgroup string) (*SockClientProc, error) {
	cmd := exec.Command("ip", "netns", "exec", netns, binary)
	cmd.Env = append(os.Environ(), SockClientEnv+"=1")
	cmd.Stderr = os.Stderr
	if cgroup != "" {
		f, err := os.Open(cgroup)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &SockClientProc{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

// Do sends one command (see SockClient) and returns its answer.
func (c *SockClientProc) Do(command string) (string, error) {
	if _, err := fmt.Fprintln(c.in, command); err != nil {
		return "", err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("the socket client: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// Close ends the client (its input closed, it exits) and waits for it,
// killing it after 5 s.
func (c *SockClientProc) Close() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}
