// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): each notification is one datagram of newline-separated
// "KEY=value" lines sent to the unix socket named by $NOTIFY_SOCKET, an
// abstract socket when the name starts with '@'. The protocol is this
// small, so it is written here rather than taken on as a dependency.
//
// Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
package sdnotify

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsupportedSocket means $NOTIFY_SOCKET names neither a path nor an
// abstract socket (e.g. systemd's "vsock:" addresses, for VMs).
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET")

// writeTimeout bounds a send, so a stuck service manager cannot stall
// the caller's main loop.
const writeTimeout = time.Second

// Notify sends state, e.g. "READY=1", as one datagram. It reports
// false, nil when $NOTIFY_SOCKET is unset, i.e. not run by systemd.
func Notify(state string) (sent bool, err error) {
	name := os.Getenv("NOTIFY_SOCKET")
	switch {
	case name == "":
		return false, nil
	case name[0] == '@':
		name = "\x00" + name[1:]
	case name[0] != '/':
		return false, fmt.Errorf("%w: %q", ErrUnsupportedSocket, name)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}

// Ready tells systemd that start-up (or a reload) is complete.
func Ready() (bool, error) { return Notify("READY=1") }

// Stopping tells systemd that shutdown has begun.
func Stopping() (bool, error) { return Notify("STOPPING=1") }

// Watchdog pings the service watchdog (WatchdogSec=).
func Watchdog() (bool, error) { return Notify("WATCHDOG=1") }

// Status sets the free-form status line shown by systemctl status.
// A newline would start another KEY=value line, so it becomes a space.
func Status(msg string) (bool, error) {
	return Notify("STATUS=" + strings.ReplaceAll(msg, "\n", " "))
}

// Reloading returns, rather than sends, the message announcing a reload,
// because the agent passes every state through its own notify hook: send
// it with Notify(Reloading()) and follow with Ready() when done. It is
// built at call time since systemd ≥ 253 wants the CLOCK_MONOTONIC time
// of the reload with it (required by Type=notify-reload); older systemd
// ignores the extra line.
func Reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// WatchdogInterval is how often to call Watchdog: half of $WATCHDOG_USEC,
// as sd_watchdog_enabled(3) advises. ok is false when the watchdog is
// off, the value is not a positive number that fits a Duration, or $WATCHDOG_PID names
// another process (the variable was inherited from a parent).
func WatchdogInterval() (interval time.Duration, ok bool) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 || usec > int64(math.MaxInt64/time.Microsecond) {
		return 0, false
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0, false
		}
	}
	return time.Duration(usec) * time.Microsecond / 2, true
}
