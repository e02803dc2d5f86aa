package lab

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Serve is a pod's server: on every port given (PORT/TCP, PORT/UDP) of
// ip, a TCP connection is greeted with the pod's name, then each line is
// echoed prefixed with it; a datagram is answered with the name and the
// datagram. It returns only on a listening error.
func Serve(pod, ip string, ports []string) error {
	errs := make(chan error, len(ports))
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
						errs <- err
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
						errs <- err
						return
					}
					pc.WriteTo(append([]byte(pod+" "), buf[:n]...), from)
				}
			}()
		default:
			return fmt.Errorf("port %q: protocol %s is not served (TCP, UDP)", p, proto)
		}
	}
	return <-errs
}
