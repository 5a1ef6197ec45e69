//go:build linux

// Command guestinit is /init of the test lab's guest: it mounts the basic
// file systems, loads the virtio modules shipped in the initramfs, runs the
// workload that the kernel command line describes on the virtio disk, prints
// progress on the console, and powers the VM off. It is built statically
// (CGO_ENABLED=0) by the lab; nothing else runs in the guest.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtune/qtune/internal/loadgen"
)

// moduleOrder is the load order of the virtio block stack; Debian's cloud
// kernel builds these as modules and the initramfs carries no modules.dep.
var moduleOrder = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk",
}

func main() {
	out := console()
	err := run(out)
	if err != nil {
		fmt.Fprintf(out, "qtune-load error: %v\n", err)
	}
	fmt.Fprintln(out, "qtune-load done")
	unix.Sync()
	if os.Getpid() == 1 {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	if err != nil {
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	if os.Getpid() == 1 {
		if err := mounts(); err != nil {
			return err
		}
		if err := loadModules("/lib/modules"); err != nil {
			return err
		}
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	p, err := loadgen.ParseCmdline(string(cmdline))
	if err != nil {
		return err
	}
	dev, size, err := openDisk(p.Disk, 15*time.Second)
	if err != nil {
		return err
	}
	defer dev.Close()
	fmt.Fprintf(out, "qtune-load start disk=%s size=%d %s\n", p.Disk, size, p.Cmdline())
	r := &loadgen.Runner{
		P: p, Dev: dev, Size: size, Alloc: aligned,
		Report:   func(pr loadgen.Progress) { fmt.Fprintln(out, pr.String()) },
		Ready:    func() { fmt.Fprintln(out, "qtune-load ready") },
		Verified: func(v loadgen.VerifyResult) { fmt.Fprintln(out, v.String()) },
	}
	return r.Run(context.Background())
}

func console() io.Writer {
	for _, p := range []string{"/dev/console", "/dev/ttyS0"} {
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			return f
		}
	}
	return os.Stdout
}

func mounts() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

func loadModules(dir string) error {
	for _, name := range moduleOrder {
		path := filepath.Join(dir, name+".ko")
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0) // ENOENT here means an unresolved symbol: wrong order
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

// openDisk waits for the device node to appear after virtio_blk probes,
// then opens it for direct I/O.
func openDisk(path string, wait time.Duration) (*os.File, int64, error) {
	deadline := time.Now().Add(wait)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
		if err == nil {
			size, err := f.Seek(0, io.SeekEnd)
			if err != nil {
				f.Close()
				return nil, 0, err
			}
			return f, size, nil
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("open %s: %w (devices: %s)", path, err, listDev())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listDev() string {
	m, _ := filepath.Glob("/dev/vd*")
	return strings.Join(m, " ")
}

// aligned returns page-aligned memory, as O_DIRECT requires.
func aligned(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return make([]byte, n)
	}
	return b
}
