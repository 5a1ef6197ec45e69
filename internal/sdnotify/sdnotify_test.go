package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen plays systemd: a unixgram socket at name ("\x00..." for an
// abstract one).
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestHelpersSendExactDatagrams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	tests := []struct {
		name string
		send func() (bool, error)
		want string
	}{
		{"notify", func() (bool, error) { return Notify("READY=1\nSTATUS=up") }, "READY=1\nSTATUS=up"},
		{"ready", Ready, "READY=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"watchdog", Watchdog, "WATCHDOG=1"},
		{"status", func() (bool, error) { return Status("3 VMs, 7 disks") }, "STATUS=3 VMs, 7 disks"},
		{"status newline", func() (bool, error) { return Status("a\nREADY=1") }, "STATUS=a READY=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent, err := tt.send()
			if !sent || err != nil {
				t.Fatalf("sent %v, err %v", sent, err)
			}
			if got := recv(t, c); got != tt.want {
				t.Errorf("datagram %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	before := monotonicUsec(t)
	if sent, err := Notify(Reloading()); !sent || err != nil {
		t.Fatalf("sent %v, err %v", sent, err)
	}
	after := monotonicUsec(t)
	got := recv(t, c)
	rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok {
		t.Fatalf("datagram %q", got)
	}
	usec, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%s, want a number in [%d, %d]", rest, before, after)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "qtune-sdnotify-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c := listen(t, "\x00"+name)
	t.Setenv("NOTIFY_SOCKET", "@"+name)
	if sent, err := Ready(); !sent || err != nil {
		t.Fatalf("sent %v, err %v", sent, err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("datagram %q", got)
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Run("unset", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "") // restores the variable afterwards
		os.Unsetenv("NOTIFY_SOCKET")
		if sent, err := Notify("READY=1"); sent || err != nil {
			t.Errorf("sent %v, err %v; want false, nil", sent, err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		if sent, err := Ready(); sent || err != nil {
			t.Errorf("sent %v, err %v; want false, nil", sent, err)
		}
	})
}

func TestNotifyErrors(t *testing.T) {
	t.Run("no listener", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
		if sent, err := Ready(); sent || err == nil {
			t.Errorf("sent %v, err %v; want false and an error", sent, err)
		}
	})
	t.Run("vsock", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
		if sent, err := Ready(); sent || !errors.Is(err, ErrUnsupportedSocket) {
			t.Errorf("sent %v, err %v; want false, ErrUnsupportedSocket", sent, err)
		}
	})
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name, usec, pid string
		want            time.Duration
		ok              bool
	}{
		{"ours", "30000000", self, 15 * time.Second, true},
		{"no pid", "30000000", "", 15 * time.Second, true},
		{"odd usec", "3", "", 1500 * time.Nanosecond, true},
		{"other pid", "30000000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"garbage pid", "30000000", "self", 0, false},
		{"off", "", "", 0, false},
		{"garbage usec", "soon", self, 0, false},
		{"unit suffix", "30s", self, 0, false},
		{"zero", "0", self, 0, false},
		{"negative", "-5", self, 0, false},
		{"overflows a Duration", "9223372036854775807", self, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			got, ok := WatchdogInterval()
			if got != tt.want || ok != tt.ok {
				t.Errorf("WatchdogInterval() = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
