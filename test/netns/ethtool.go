package netns

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EthtoolStats reads an interface's driver statistics, what `ethtool -S`
// prints, through the SIOCETHTOOL ioctl on a socket of the interface's
// namespace: once opened it can be read from any thread. A veth's are the
// kernel's own counts, independent of any XDP program: per receive queue
// xdp_packets (frames its XDP program ran on) and xdp_drops (XDP_DROP), per
// transmit queue xdp_xmit and xdp_xmit_errors (XDP frames redirected out of
// it that its peer's ring took, and those it had no room for).
type EthtoolStats struct {
	fd    int
	name  string
	names []string // the statistics' names, in the driver's order
	buf   []byte   // struct ethtool_stats: cmd, n_stats, then n_stats u64
}

// ethSSStats is ETH_SS_STATS, the string set of the driver's statistics.
const ethSSStats = 1

// ethtoolIfreq is struct ifreq with ifr_data, the pointer SIOCETHTOOL takes.
type ethtoolIfreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// OpenEthtoolStats opens the statistics of the interface ifname; call it
// inside the interface's namespace (e.g. in InServer).
func OpenEthtoolStats(ifname string) (*EthtoolStats, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("interface name %q: longer than %d bytes", ifname, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	s := &EthtoolStats{fd: fd, name: ifname}
	// struct ethtool_sset_info asking for ETH_SS_STATS: cmd, reserved,
	// sset_mask, then one u32 per set asked for.
	info := make([]byte, 20)
	binary.NativeEndian.PutUint32(info[0:], unix.ETHTOOL_GSSET_INFO)
	binary.NativeEndian.PutUint64(info[8:], 1<<ethSSStats)
	if err := s.ioctl(info); err != nil {
		s.Close()
		return nil, fmt.Errorf("ethtool %s: count of statistics: %w", ifname, err)
	}
	if binary.NativeEndian.Uint64(info[8:]) == 0 {
		s.Close()
		return nil, fmt.Errorf("ethtool %s: the driver has no statistics", ifname)
	}
	n := int(binary.NativeEndian.Uint32(info[16:]))
	// struct ethtool_gstrings: cmd, string_set, len, then len names of
	// ETH_GSTRING_LEN (32) bytes.
	const nameLen = 32
	strs := make([]byte, 12+n*nameLen)
	binary.NativeEndian.PutUint32(strs[0:], unix.ETHTOOL_GSTRINGS)
	binary.NativeEndian.PutUint32(strs[4:], ethSSStats)
	binary.NativeEndian.PutUint32(strs[8:], uint32(n))
	if err := s.ioctl(strs); err != nil {
		s.Close()
		return nil, fmt.Errorf("ethtool %s: names of statistics: %w", ifname, err)
	}
	for i := range n {
		b := strs[12+i*nameLen : 12+(i+1)*nameLen]
		if z := bytes.IndexByte(b, 0); z >= 0 {
			b = b[:z]
		}
		s.names = append(s.names, string(b))
	}
	s.buf = make([]byte, 8+8*n)
	return s, nil
}

// ioctl runs SIOCETHTOOL with data as the command's structure.
func (s *EthtoolStats) ioctl(data []byte) error {
	var ifr ethtoolIfreq
	copy(ifr.name[:], s.name)
	ifr.data = unsafe.Pointer(&data[0])
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return errno
	}
	return nil
}

// Read returns every statistic by name.
func (s *EthtoolStats) Read() (map[string]uint64, error) {
	clear(s.buf)
	binary.NativeEndian.PutUint32(s.buf[0:], unix.ETHTOOL_GSTATS)
	binary.NativeEndian.PutUint32(s.buf[4:], uint32(len(s.names)))
	if err := s.ioctl(s.buf); err != nil {
		return nil, fmt.Errorf("ethtool %s: statistics: %w", s.name, err)
	}
	out := make(map[string]uint64, len(s.names))
	for i, name := range s.names {
		out[name] += binary.NativeEndian.Uint64(s.buf[8+8*i:])
	}
	return out, nil
}

// Close closes the socket.
func (s *EthtoolStats) Close() error { return unix.Close(s.fd) }

// QueueSum is the sum over every queue of direction dir ("rx" or "tx") of
// the per-queue statistic stat, e.g. QueueSum(m, "tx", "xdp_xmit") adds
// tx_queue_0_xdp_xmit, tx_queue_1_xdp_xmit...
func QueueSum(m map[string]uint64, dir, stat string) uint64 {
	var sum uint64
	for name, v := range m {
		rest, ok := strings.CutPrefix(name, dir+"_queue_")
		if !ok {
			continue
		}
		q, s, ok := strings.Cut(rest, "_")
		if _, err := strconv.Atoi(q); ok && err == nil && s == stat {
			sum += v
		}
	}
	return sum
}

// ClientEthtool opens the statistics of the client veth.
func (tb *Testbed) ClientEthtool() (s *EthtoolStats, err error) {
	err = tb.InClient(func() error { s, err = OpenEthtoolStats(tb.ClientIf); return err })
	return s, err
}

// ServerEthtool opens the statistics of the server veth.
func (tb *Testbed) ServerEthtool() (s *EthtoolStats, err error) {
	err = tb.InServer(func() error { s, err = OpenEthtoolStats(tb.ServerIf); return err })
	return s, err
}
