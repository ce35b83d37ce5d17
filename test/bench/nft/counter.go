package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/test/netns"
)

// nf_tables netlink constants (linux/netfilter/nf_tables.h, nfnetlink.h).
const (
	nfnlSubsysNFTables = 10
	nftMsgNewObj       = 18
	nftMsgGetObj       = 19
	nfprotoNetdev      = 5
	nftaObjTable       = 1
	nftaObjName        = 2
	nftaObjType        = 3
	nftaObjData        = 4
	nftObjectCounter   = 1
	nftaCounterPackets = 2
	nlaTypeMask        = 0x3fff
)

// nftCounter reads the packets of one named counter of the bench table
// with one NFT_MSG_GETOBJ request on a netfilter netlink socket opened in
// the server namespace. The nft command would do, but it reads every set
// of the table into its cache first: minutes with 1M elements.
func nftCounter(tb *netns.Testbed, name string) (uint64, error) {
	var fd int
	err := tb.InServer(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	attr := func(typ uint16, v []byte) []byte {
		b := make([]byte, 4, 4+len(v)+3)
		binary.NativeEndian.PutUint16(b[0:], uint16(4+len(v)))
		binary.NativeEndian.PutUint16(b[2:], typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	body := []byte{nfprotoNetdev, 0, 0, 0} // nfgenmsg: family, version 0, res_id 0
	body = append(body, attr(nftaObjTable, append([]byte(nftTable), 0))...)
	body = append(body, attr(nftaObjName, append([]byte(name), 0))...)
	body = append(body, attr(nftaObjType, binary.BigEndian.AppendUint32(nil, nftObjectCounter))...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysNFTables<<8|nftMsgGetObj)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("counter %s: send: %w", name, err)
	}
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("counter %s: receive: %w", name, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, fmt.Errorf("counter %s: %w", name, err)
	}
	for _, m := range msgs {
		switch {
		case m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4:
			if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return 0, fmt.Errorf("counter %s in table netdev %s: %w", name, nftTable, unix.Errno(-e))
			}
		case m.Header.Type == nfnlSubsysNFTables<<8|nftMsgNewObj && len(m.Data) >= 4:
			if data, ok := findAttr(m.Data[4:], nftaObjData); ok {
				if p, ok := findAttr(data, nftaCounterPackets); ok && len(p) == 8 {
					return binary.BigEndian.Uint64(p), nil
				}
			}
		}
	}
	return 0, errors.New("counter " + name + ": no packets in the answer")
}

// findAttr returns the value of the first netlink attribute of type typ.
func findAttr(b []byte, typ uint16) ([]byte, bool) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		t := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if l < 4 || l > len(b) {
			return nil, false
		}
		if t == typ {
			return b[4:l], true
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return nil, false
}
