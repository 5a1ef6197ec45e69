package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Libvirtd is a libvirtd of the lab's own: it runs in a private mount
// namespace whose /run, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt
// and /var/cache/libvirt are directories of the lab, so it neither sees nor
// disturbs a libvirtd the machine may already run. Its socket is an
// ordinary file under Dir that any client outside the namespace can dial.
//
// Several can run at once (StartLibvirtds): each has its own host UUID,
// its own migration ports and no cgroups of its own, so a domain can be
// live-migrated from one to another over loopback (see Migrate).
type Libvirtd struct {
	Dir    string
	holder *exec.Cmd // keeps the namespace alive
	done   chan struct{}
	mntNS  string // the namespace, as /proc/PID/ns/mnt names it
	// HostUUID is the host_uuid the daemon reports: libvirt refuses a
	// migration between two daemons with the same one.
	HostUUID string
	// MigrationPorts are the first and last port the daemon listens on
	// for an incoming migration.
	MigrationPorts [2]int
}

// libvirtdDirs are bind-mounted over the daemon's paths, in this order.
var libvirtdDirs = []struct{ sub, target string }{
	{"run", "/run"},
	{"etc", "/etc/libvirt"},
	{"lib", "/var/lib/libvirt"},
	{"log", "/var/log/libvirt"},
	{"cache", "/var/cache/libvirt"},
}

// StartLibvirtd starts the daemon and waits until its socket answers.
func StartLibvirtd(ctx context.Context) (*Libvirtd, error) {
	dir, err := os.MkdirTemp("", "qtune-libvirtd-")
	if err != nil {
		return nil, err
	}
	d := &Libvirtd{Dir: dir, done: make(chan struct{})}
	if err := d.prepare(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.startHolder(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.startDaemon(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// StartLibvirtdT is StartLibvirtd for tests, stopped at the test's end.
func StartLibvirtdT(t testing.TB) *Libvirtd {
	t.Helper()
	return StartLibvirtdsT(t, 1)[0]
}

// StartLibvirtds starts n daemons, one after the other (the first start
// on a machine probes QEMU; the others copy its result), each in its own
// namespace. On error the ones already started are stopped.
func StartLibvirtds(ctx context.Context, n int) ([]*Libvirtd, error) {
	var ds []*Libvirtd
	for i := 0; i < n; i++ {
		d, err := StartLibvirtd(ctx)
		if err != nil {
			for _, started := range ds {
				started.Stop()
			}
			return nil, fmt.Errorf("libvirtd %d of %d: %w", i+1, n, err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// StartLibvirtdsT is StartLibvirtds for tests; every daemon is stopped at
// the test's end, and a namespace left behind fails the test.
func StartLibvirtdsT(t testing.TB, n int) []*Libvirtd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ds, err := StartLibvirtds(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		t.Cleanup(func() {
			if err := d.Stop(); err != nil {
				t.Errorf("stop libvirtd: %v", err)
			}
		})
	}
	return ds
}

// SocketPath is the daemon's read-write socket, dialable from outside.
func (d *Libvirtd) SocketPath() string { return filepath.Join(d.Dir, "run", "libvirt", "libvirt-sock") }

// URI is a virsh URI for the daemon.
func (d *Libvirtd) URI() string { return "qemu:///system?socket=" + d.SocketPath() }

func (d *Libvirtd) startHolder(ctx context.Context) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	root, err := FlavourRoot()
	if err != nil {
		return err
	}
	if root != "" {
		// The flavour's libvirtd runs chrooted in its root: the host's
		// /dev, /proc and /sys, and the temporary and cache directories
		// that hold the tests' images, kernels and sockets, appear there
		// at the same paths, so a domain XML names the same files
		// inside and out.
		mounts, err := flavourMounts(root)
		if err != nil {
			return err
		}
		script.WriteString(mounts)
	}
	for _, m := range libvirtdDirs {
		fmt.Fprintf(&script, "mount --bind %q %q\n", filepath.Join(d.Dir, m.sub), filepath.Join(root, m.target))
	}
	script.WriteString("echo ready\nexec sleep 2147483647\n")
	d.holder = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script.String())
	d.holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := d.holder.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	d.holder.Stderr = &stderr
	if err := d.holder.Start(); err != nil {
		return fmt.Errorf("start namespace holder: %w", err)
	}
	go func() { d.holder.Wait(); close(d.done) }()
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-d.done
			return fmt.Errorf("namespace holder failed: %s", stderr.String())
		}
		d.mntNS, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", d.holder.Process.Pid))
		if err != nil {
			return fmt.Errorf("namespace holder: %w", err)
		}
		return nil
	case <-ctx.Done():
		d.holder.Process.Kill()
		return ctx.Err()
	}
}

func (d *Libvirtd) startDaemon(ctx context.Context) error {
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	// One probe per flavour: each libvirt keeps its own format, and
	// sharing one would re-probe at every switch.
	shared := filepath.Join(cache, "libvirt-cache"+Flavour())
	// The first start on a machine probes QEMU's capabilities (~8 s);
	// the probe is kept in the lab cache and copied to every later
	// daemon. Serialise that across test binaries.
	unlock, err := lockCache(cache)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = copyCapsCache(shared, filepath.Join(d.Dir, "cache"))
	if err != nil {
		return err
	}
	argv, err := libvirtdCommand("libvirtd")
	if err != nil {
		return err
	}
	argv = append([]string{"-t", strconv.Itoa(d.holder.Process.Pid), "-m"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", append(argv, "-d", "-p", d.pidFile())...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("libvirtd -d: %w: %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "virsh", "-q", "-c", d.URI(), "version").CombinedOutput()
		if err == nil {
			// Back to the lab cache: the first probe, or a new one
			// after QEMU or libvirt changed.
			_, err = copyCapsCache(filepath.Join(d.Dir, "cache"), shared)
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("libvirtd at %s does not answer: %s\n%s", d.SocketPath(), out, d.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *Libvirtd) pidFile() string { return filepath.Join(d.Dir, "libvirtd.pid") }

func (d *Libvirtd) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "log", "libvirtd.log"))
	s := string(b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// PID is libvirtd's process id (from its pid file), 0 when not running.
func (d *Libvirtd) PID() int {
	b, err := os.ReadFile(d.pidFile())
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || !alive(pid) {
		return 0
	}
	return pid
}

// Kill stops libvirtd alone by PID (its VMs keep running), as a crash or
// an upgrade would.
func (d *Libvirtd) Kill() error {
	pid := d.PID()
	if pid == 0 {
		return errors.New("libvirtd is not running")
	}
	return stopPID(pid, syscall.SIGTERM, 10*time.Second)
}

// Restart kills libvirtd and starts it again in the same namespace; the
// domains it ran are picked up again.
func (d *Libvirtd) Restart(ctx context.Context) error {
	if err := d.Kill(); err != nil {
		return err
	}
	return d.startDaemon(ctx)
}

// Virsh runs virsh against the daemon.
func (d *Libvirtd) Virsh(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", d.URI()}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop destroys the daemon's domains, stops libvirtd and the namespace by
// PID, and removes the directory.
func (d *Libvirtd) Stop() error {
	var errs []error
	// QEMU processes libvirt started, found by their pid files.
	pids, _ := filepath.Glob(filepath.Join(d.Dir, "run", "libvirt", "qemu", "*.pid"))
	if pid := d.PID(); pid != 0 {
		if err := stopPID(pid, syscall.SIGTERM, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range pids {
		b, _ := os.ReadFile(f)
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			if err := stopPID(pid, syscall.SIGTERM, 5*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if d.holder != nil && d.holder.Process != nil {
		d.holder.Process.Kill()
		<-d.done
	}
	if err := d.namespaceGone(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopPID sends sig, waits up to grace for the process to go, then kills.
func stopPID(pid int, sig syscall.Signal, grace time.Duration) error {
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("pid %d ignored %v and was killed", pid, sig)
}

// alive reports whether pid runs; a zombie (exited, not yet reaped by
// whoever adopted the daemon) counts as gone.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
