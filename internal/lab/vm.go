package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/loadgen"
)

// Disk is one virtio-blk disk of a lab VM. With -blockdev (the default)
// every layer gets explicit node names as libvirt gives them: the active
// layer "<ID>-file" and "<ID>-fmt", backing layer i "<ID>-b<i>-file" and
// "<ID>-b<i>-fmt", each read-only.
type Disk struct {
	ID           string // device id, e.g. "disk0"
	Image        string
	Format       string // qcow2 (default) or raw
	Legacy       bool   // -drive if=none (device name ID, auto node names) instead of -blockdev
	CacheDirect  bool
	CacheNoFlush bool
	AIO          string // threads (default), native, io_uring
	Discard      string // unmap or ignore
	ReadOnly     bool
	L2CacheSize  uint64
	// WriteThrough turns the guest-visible write cache off (the device's
	// write-cache=off: cache=writethrough, or directsync with CacheDirect).
	WriteThrough bool
	// WError is the device's write error policy (stop, enospc, report,
	// ignore); QEMU's default for virtio-blk is enospc.
	WError string
	// FormatOpts are more options of the disk's format node (-blockdev
	// only), e.g. {"encrypt": {"format": "luks", "key-secret": "sec0"}}
	// with the secret object in VMConfig.Extra, or a raw node's offset.
	FormatOpts map[string]any
}

// VMConfig describes a lab VM.
type VMConfig struct {
	Name     string
	Disks    []Disk
	Paused   bool            // -S: QMP, block jobs and reopen work, guest I/O does not
	Workload *loadgen.Params // boot the guest running this workload
	MemoryMB int             // default 256
	Extra    []string
}

// VM is a running QEMU process.
type VM struct {
	Name      string
	Dir       string
	Args      []string          // argv as started
	Blockdevs map[string]string // node-name -> the -blockdev JSON it was started with

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopMu  sync.Mutex
	stopped bool
}

// StartVM starts QEMU (TCG) with a QMP socket in a new temporary directory
// and waits until the socket accepts.
func StartVM(ctx context.Context, cfg VMConfig) (*VM, error) {
	if cfg.Name == "" {
		cfg.Name = "vm"
	}
	dir, err := os.MkdirTemp("", "qtune-lab-"+cfg.Name+"-")
	if err != nil {
		return nil, err
	}
	vm := &VM{Name: cfg.Name, Dir: dir, Blockdevs: map[string]string{}, exited: make(chan struct{})}
	args, err := vm.args(ctx, cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	vm.Args = append([]string{"qemu-system-x86_64"}, args...)
	vm.cmd = exec.Command("qemu-system-x86_64", args...)
	vm.cmd.Stderr, _ = os.Create(filepath.Join(dir, "stderr.log"))
	// Its own process group, so that a ^C to the test does not reach it
	// before Stop does.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := vm.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.exited)
	}()
	if err := vm.waitSocket(ctx, 10*time.Second); err != nil {
		vm.Stop()
		return nil, err
	}
	return vm, nil
}

// StartVMT is StartVM for tests; the VM is stopped when the test ends.
func StartVMT(t testing.TB, cfg VMConfig) *VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := StartVM(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := vm.Stop(); err != nil {
			t.Errorf("stop %s: %v", vm.Name, err)
		}
	})
	return vm
}

func (vm *VM) args(ctx context.Context, cfg VMConfig) ([]string, error) {
	mem := cfg.MemoryMB
	if mem == 0 {
		mem = 256
	}
	a := []string{
		"-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-no-user-config",
		"-name", cfg.Name, "-m", fmt.Sprint(mem), "-smp", "1", "-no-reboot",
		"-qmp", "unix:" + vm.QMPPath() + ",server=on,wait=off",
		"-serial", "file:" + vm.serialPath(),
	}
	if cfg.Paused {
		a = append(a, "-S")
	}
	if cfg.Workload != nil {
		kernel, initrd, err := Guest(ctx)
		if err != nil {
			return nil, err
		}
		// no_timer_check: see domainXML.
		a = append(a, "-kernel", kernel, "-initrd", initrd,
			"-append", "console=ttyS0 panic=-1 quiet loglevel=3 no_timer_check "+cfg.Workload.Cmdline())
	}
	for _, d := range cfg.Disks {
		da, err := vm.diskArgs(ctx, d)
		if err != nil {
			return nil, err
		}
		a = append(a, da...)
	}
	return append(a, cfg.Extra...), nil
}

func (vm *VM) diskArgs(ctx context.Context, d Disk) ([]string, error) {
	if d.Format == "" {
		d.Format = "qcow2"
	}
	if d.Legacy {
		cache := "writeback"
		if d.CacheDirect {
			cache = "none"
		}
		return []string{
			"-drive", fmt.Sprintf("if=none,id=%s,file=%s,format=%s,cache=%s", d.ID, d.Image, d.Format, cache),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=%s,id=%s", d.ID, d.ID),
		}, nil
	}
	layers := []ImageInfo{{Filename: d.Image, Format: d.Format}}
	if d.Format == "qcow2" {
		chain, err := Info(ctx, d.Image)
		if err != nil {
			return nil, err
		}
		layers = chain
	}
	var args []string
	// Bottom layer first: a -blockdev may only name nodes already defined.
	for i := len(layers) - 1; i >= 0; i-- {
		prefix := d.ID
		if i > 0 {
			prefix = fmt.Sprintf("%s-b%d", d.ID, i)
		}
		file := map[string]any{
			"driver": "file", "filename": layers[i].Filename, "node-name": prefix + "-file",
			"auto-read-only": true, "discard": orDefault(d.Discard, "unmap"),
			"aio":   orDefault(d.AIO, "threads"),
			"cache": map[string]bool{"direct": d.CacheDirect, "no-flush": d.CacheNoFlush},
		}
		fmtNode := map[string]any{
			"driver": layers[i].Format, "file": prefix + "-file", "node-name": prefix + "-fmt",
			"read-only": i > 0 || d.ReadOnly, "discard": orDefault(d.Discard, "unmap"),
			"cache": map[string]bool{"direct": d.CacheDirect, "no-flush": d.CacheNoFlush},
		}
		if layers[i].Format == "qcow2" {
			if i+1 < len(layers) {
				fmtNode["backing"] = fmt.Sprintf("%s-b%d-fmt", d.ID, i+1)
			} else {
				fmtNode["backing"] = nil
			}
			if i == 0 && d.L2CacheSize != 0 {
				fmtNode["l2-cache-size"] = d.L2CacheSize
			}
		}
		if i == 0 {
			for k, v := range d.FormatOpts {
				fmtNode[k] = v
			}
		}
		for _, node := range []map[string]any{file, fmtNode} {
			b, _ := json.Marshal(node)
			vm.Blockdevs[node["node-name"].(string)] = string(b)
			args = append(args, "-blockdev", string(b))
		}
	}
	dev := fmt.Sprintf("virtio-blk-pci,drive=%s-fmt,id=%s", d.ID, d.ID)
	if d.WriteThrough {
		dev += ",write-cache=off"
	}
	if d.WError != "" {
		dev += ",werror=" + d.WError
	}
	return append(args, "-device", dev), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (vm *VM) waitSocket(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-vm.exited:
			return fmt.Errorf("qemu exited at start (%v): %s", vm.waitErr, vm.StderrTail())
		default:
		}
		if c, err := net.Dial("unix", vm.QMPPath()); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("qemu QMP socket %s not up after %v: %s", vm.QMPPath(), limit, vm.StderrTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// QMPPath is the VM's QMP socket.
func (vm *VM) QMPPath() string { return filepath.Join(vm.Dir, "qmp.sock") }

func (vm *VM) serialPath() string { return filepath.Join(vm.Dir, "serial.log") }

// PID is the QEMU process id.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// ExitErr is QEMU's exit status once Exited is closed (nil for exit 0).
func (vm *VM) ExitErr() error { <-vm.exited; return vm.waitErr }

// Serial returns what the guest printed on its serial console so far.
func (vm *VM) Serial() string {
	b, _ := os.ReadFile(vm.serialPath())
	return string(b)
}

// StderrTail is the end of QEMU's stderr, for error messages.
func (vm *VM) StderrTail() string {
	b, _ := os.ReadFile(filepath.Join(vm.Dir, "stderr.log"))
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// WaitSerial waits until the serial console shows substr on a complete
// line (see completeLines).
func (vm *VM) WaitSerial(ctx context.Context, substr string) error {
	for {
		if strings.Contains(completeLines(vm.Serial()), substr) {
			return nil
		}
		select {
		case <-ctx.Done():
			tail := vm.Serial()
			if len(tail) > 1500 {
				tail = tail[len(tail)-1500:]
			}
			return fmt.Errorf("%s: %q not on the serial console: %w\n%s", vm.Name, substr, ctx.Err(), tail)
		case <-vm.exited:
			if strings.Contains(vm.Serial(), substr) { // all it will ever print
				return nil
			}
			return fmt.Errorf("%s exited before printing %q: %s\n%s", vm.Name, substr, vm.StderrTail(), vm.Serial())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// completeLines is s up to its last newline: a marker a test waits for
// counts once its whole line is on the console, so that what the test
// reads next is not cut off in the middle of that line.
func completeLines(s string) string {
	return s[:strings.LastIndexByte(s, '\n')+1]
}

// Signal sends sig to QEMU (e.g. SIGSTOP to make it hang).
func (vm *VM) Signal(sig syscall.Signal) error { return vm.cmd.Process.Signal(sig) }

// Stop ends QEMU by its PID — SIGTERM, then SIGKILL after five seconds —
// waits for it, and removes its directory. It is safe to call twice.
func (vm *VM) Stop() error {
	vm.stopMu.Lock()
	defer vm.stopMu.Unlock()
	if vm.stopped {
		return nil
	}
	vm.stopped = true
	var err error
	select {
	case <-vm.exited:
	default:
		vm.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
		vm.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-vm.exited:
		case <-time.After(5 * time.Second):
			vm.cmd.Process.Kill()
			<-vm.exited
			err = errors.New("qemu ignored SIGTERM and was killed")
		}
	}
	if f, ok := vm.cmd.Stderr.(*os.File); ok {
		f.Close()
	}
	if rmErr := os.RemoveAll(vm.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// ODirect reports, for every file descriptor process pid holds on path,
// whether it is open with O_DIRECT (from /proc/<pid>/fdinfo): how tests
// see the cache mode QEMU really uses.
func ODirect(pid int, path string) ([]bool, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	var out []bool
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); target != path {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, _ := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
				out = append(out, flags&syscall.O_DIRECT != 0)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process %d holds no fd on %s", pid, path)
	}
	return out, nil
}

// ODirectT is ODirect for tests.
func ODirectT(t testing.TB, pid int, path string) []bool {
	t.Helper()
	flags, err := ODirect(pid, path)
	if err != nil {
		t.Fatal(err)
	}
	return flags
}
