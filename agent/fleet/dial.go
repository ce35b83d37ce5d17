package fleet

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How a dead link to the server is found: by the kernel, not by NATS
// pings, so that a busy host or server (a late PONG) never looks like a
// partition. An idle connection sends a TCP keepalive after linkIdle
// without receiving, then every linkProbe, and is closed after linkProbes
// unanswered; data unacknowledged for linkUserTimeout closes it too
// (TCP_USER_TIMEOUT). Both are answered by the peer's kernel however busy
// its process is. The client then reconnects, dialling with dialTimeout.
const (
	linkIdle        = 2 * time.Second
	linkProbe       = time.Second
	linkProbes      = 3
	linkUserTimeout = 5 * time.Second
	dialTimeout     = 3 * time.Second
)

// dialer is the net.Dialer of the client's connections.
func dialer() *net.Dialer {
	return &net.Dialer{
		Timeout: dialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: linkIdle, Interval: linkProbe,
			Count: linkProbes},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT,
					int(linkUserTimeout.Milliseconds()))
			})
			if err == nil {
				err = serr
			}
			if err != nil {
				return fmt.Errorf("fleet: set TCP_USER_TIMEOUT: %w", err)
			}
			return nil
		},
	}
}
