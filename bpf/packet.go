package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Packet crafts an Ethernet + IPv4 packet for BPF_PROG_TEST_RUN: a TCP
// segment with the given flags, a UDP or SCTP datagram, an ICMP message
// of type port (an echo with identifier sport), or a bare IP header for
// other protocols.
func Packet(src, dst netip.Addr, proto uint8, sport, port uint16, tcpFlags byte) []byte {
	b := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)-14))
	ip[8] = 64
	ip[9] = proto
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	putL4(ip[20:], proto, sport, port, tcpFlags)
	return b
}

// Packet6 crafts an Ethernet + IPv6 packet, with the same L4 headers as
// Packet (ICMPv6, protocol 58, like ICMP).
func Packet6(src, dst netip.Addr, proto uint8, sport, port uint16, tcpFlags byte) []byte {
	b := make([]byte, 14+40+20)
	binary.BigEndian.PutUint16(b[12:], 0x86dd)
	ip := b[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(b)-14-40))
	ip[6] = proto
	ip[7] = 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	putL4(ip[40:], proto, sport, port, tcpFlags)
	return b
}

func putL4(l4 []byte, proto uint8, sport, port uint16, tcpFlags byte) {
	switch proto {
	case 6, 17, 132:
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], port)
		if proto == 6 {
			l4[12] = 5 << 4
			l4[13] = tcpFlags
		}
	case 1, 58:
		l4[0] = byte(port)
		binary.BigEndian.PutUint16(l4[4:], sport)
	}
}
