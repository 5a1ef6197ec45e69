// Command qtune-lab starts throwaway QEMU VMs whose guests do real disk
// I/O, runs a command against them, and stops them again: the quickest way
// to see qtune work without touching a real VM.
//
//	qtune-lab run [flags] -- COMMAND [ARG...]
//
// In COMMAND's arguments "{qmp}" is replaced by the QMP socket of the first
// VM and "{qmpdir}" by the directory holding every VM's socket; the same
// are in the environment as QTUNE_LAB_QMP and QTUNE_LAB_QMPDIR.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "run" && os.Args[1] != "demo") {
		fmt.Fprintln(os.Stderr, "usage: qtune-lab run [--vms N] [--phases P] [--size BYTES] -- COMMAND [ARG...]")
		fmt.Fprintln(os.Stderr, "       qtune-lab demo [--qtune PATH] [--duration D]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if os.Args[1] == "demo" {
		code = demo(ctx, os.Args[2:])
	} else {
		code = run(ctx, os.Args[2:])
	}
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("qtune-lab run", flag.ContinueOnError)
	vms := fs.Int("vms", 1, "number of VMs")
	phases := fs.String("phases", "randwrite:400:20s,randrw:800:20s,idle:0:5s", "guest workload, pattern:rate:duration,... (repeats)")
	size := fs.Uint64("size", 256<<20, "virtual size of each VM's qcow2 disk")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(os.Stderr, "qtune-lab: no command given after --")
		return 2
	}
	ph, err := loadgen.ParsePhases(*phases)
	if err != nil {
		fmt.Fprintf(os.Stderr, "qtune-lab: --phases: %v\n", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "qtune-lab-run-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	var specs []vmSpec
	for i := 0; i < *vms; i++ {
		specs = append(specs, vmSpec{name: fmt.Sprintf("lab%d", i+1), phases: ph})
	}
	sockets, cleanup, err := startVMs(ctx, dir, specs, *size)
	defer cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab:", err)
		return 1
	}
	return runCommand(ctx, cmdArgs, sockets, filepath.Join(dir, "qmp"))
}

// vmSpec is one lab VM to boot: its name and its guest's workload.
type vmSpec struct {
	name   string
	phases []loadgen.Phase
}

// startVMs boots the guests and links their QMP sockets into dir/qmp as
// <name>.sock.
func startVMs(ctx context.Context, dir string, specs []vmSpec, size uint64) ([]string, func(), error) {
	var started []*lab.VM
	cleanup := func() {
		for _, vm := range started {
			vm.Stop()
		}
	}
	qmpDir := filepath.Join(dir, "qmp")
	if err := os.MkdirAll(qmpDir, 0o755); err != nil {
		return nil, cleanup, err
	}
	var sockets []string
	for i, spec := range specs {
		name, ph := spec.name, spec.phases
		img := filepath.Join(dir, name+".qcow2")
		if err := lab.CreateImage(ctx, img, "qcow2", size, lab.ImageOpts{}); err != nil {
			return nil, cleanup, err
		}
		w := loadgen.Defaults()
		w.Phases, w.Loops, w.Seed = ph, 0, int64(i+1)
		fmt.Fprintf(os.Stderr, "qtune-lab: starting %s (workload %s)\n", name, phasesString(ph))
		vm, err := lab.StartVM(ctx, lab.VMConfig{Name: name, Workload: &w, Disks: []lab.Disk{{ID: "disk0", Image: img, CacheDirect: true}}})
		if err != nil {
			return nil, cleanup, err
		}
		started = append(started, vm)
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = vm.WaitSerial(wctx, "qtune-load ready")
		cancel()
		if err != nil {
			return nil, cleanup, err
		}
		link := filepath.Join(qmpDir, name+".sock")
		if err := os.Symlink(vm.QMPPath(), link); err != nil {
			return nil, cleanup, err
		}
		sockets = append(sockets, link)
	}
	return sockets, cleanup, nil
}

func phasesString(ph []loadgen.Phase) string {
	parts := make([]string, len(ph))
	for i, p := range ph {
		parts[i] = fmt.Sprintf("%s:%d:%s", p.Pattern, p.Rate, p.Duration)
	}
	return strings.Join(parts, ",")
}

func runCommand(ctx context.Context, args, sockets []string, qmpDir string) int {
	r := strings.NewReplacer("{qmp}", sockets[0], "{qmpdir}", qmpDir)
	for i := range args {
		args[i] = r.Replace(args[i])
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "QTUNE_LAB_QMP="+sockets[0], "QTUNE_LAB_QMPDIR="+qmpDir)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(err)
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		return exitCode(<-done)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "qtune-lab:", err)
	return 1
}
