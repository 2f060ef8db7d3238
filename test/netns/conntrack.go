//go:build linux

package netns

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ctDeleteMsg is IPCTNL_MSG_CT_DELETE (linux/netfilter/nfnetlink_conntrack.h). Sent without a
// tuple, it deletes every entry of the family: what `conntrack -F` does.
const ctDeleteMsg = 2

// FlushConntrack empties the node's conntrack table, IPv4 and IPv6, as `conntrack -F` does, over
// ctnetlink from a thread inside the node's namespace. Tests that change rules call it before
// probing: otherwise a probe reusing the source port of a flow allowed earlier (UDP especially)
// matches that flow's entry and passes as established whatever the new rules say.
func (n *Node) FlushConntrack() error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
			return err
		}
		kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
		for i, family := range []byte{unix.AF_INET, unix.AF_INET6} {
			// nlmsghdr (16 bytes) + nfgenmsg {family, version, res_id}.
			msg := make([]byte, unix.NLMSG_HDRLEN+4)
			binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
			binary.NativeEndian.PutUint16(msg[4:6], unix.NFNL_SUBSYS_CTNETLINK<<8|ctDeleteMsg)
			binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
			binary.NativeEndian.PutUint32(msg[8:12], uint32(i+1))
			msg[unix.NLMSG_HDRLEN] = family
			msg[unix.NLMSG_HDRLEN+1] = unix.NFNETLINK_V0
			if err := unix.Sendto(fd, msg, 0, kernel); err != nil {
				return fmt.Errorf("netlink send: %w", err)
			}
			ack := make([]byte, 4096)
			nr, _, err := unix.Recvfrom(fd, ack, 0)
			if err != nil {
				return fmt.Errorf("netlink receive: %w", err)
			}
			if nr < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(ack[4:6]) != unix.NLMSG_ERROR {
				return fmt.Errorf("unexpected ctnetlink answer (%d bytes)", nr)
			}
			if code := int32(binary.NativeEndian.Uint32(ack[unix.NLMSG_HDRLEN:])); code != 0 {
				return fmt.Errorf("conntrack flush (family %d): %w", family, syscall.Errno(-code))
			}
		}
		return nil
	})
}
