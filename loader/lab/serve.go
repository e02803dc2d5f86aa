package lab

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/sluicenet/sluice/loader"
)

// Server is what one pod (or node) serves: on every port (PORT/TCP,
// PORT/UDP) of IP, in the network namespace at Netns ("" for the current
// one).
type Server struct {
	Name  string   `json:"name"`
	Netns string   `json:"netns"`
	IP    string   `json:"ip"`
	Ports []string `json:"ports"`
}

// Serve runs servers, each listening in its own network namespace: one
// process serves a whole node's pods. A TCP connection is greeted with the
// server's name, then each line is echoed prefixed with it; a datagram is
// answered with the name and the datagram. It returns only on an error.
func Serve(servers []Server) error {
	errs := make(chan error, 1)
	for _, sv := range servers {
		listen := func() error { return serveOne(sv.Name, sv.IP, sv.Ports, errs) }
		var err error
		if sv.Netns != "" {
			err = loader.InNetNS(sv.Netns, listen)
		} else {
			err = listen()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sv.Name, err)
		}
	}
	return <-errs
}

// serveOne opens one server's listeners (in the calling thread's network
// namespace) and serves them in the background.
func serveOne(pod, ip string, ports []string, errs chan<- error) error {
	for _, p := range ports {
		num, proto, ok := strings.Cut(p, "/")
		port, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("port %q: want PORT/PROTO", p)
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		switch strings.ToUpper(proto) {
		case "TCP":
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
					go func() {
						defer c.Close()
						fmt.Fprintf(c, "%s\n", pod)
						r := bufio.NewReader(c)
						for {
							line, err := r.ReadString('\n')
							if err != nil {
								return
							}
							fmt.Fprintf(c, "%s %s", pod, line)
						}
					}()
				}
			}()
		case "UDP":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
					pc.WriteTo(append([]byte(pod+" "), buf[:n]...), from)
				}
			}()
		default:
			return fmt.Errorf("port %q: protocol %s is not served (TCP, UDP)", p, proto)
		}
	}
	return nil
}
