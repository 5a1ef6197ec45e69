package jobs

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Disks QEMU names json:{...}: a LUKS qcow2 (its encrypt.key-secret does
// not fit in a file name) and a raw node with an offset, copied under
// guest writes through the manager and the QMP driver.

const labKey = "qtune-lab-key-0"

// labSecret is the secret object the LUKS lab disks are opened with.
var labSecret = []string{"-object", "secret,id=sec0,data=" + labKey}

func luksImage(t *testing.T, path string) {
	t.Helper()
	qemuImgOut(t, append([]string{"create", "-q", "-f", "qcow2"}, append(labSecret,
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", path, "64M")...)...)
}

// luksOpts reads an encrypted qcow2 through the lab key with qemu-img.
func luksOpts(path string) []string {
	return append(append([]string{}, labSecret...), "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename="+path)
}

// startDiskVM boots a stamping guest on one disk d.
func startDiskVM(t *testing.T, name string, d lab.Disk, extra []string, phases ...loadgen.Phase) *lab.VM {
	t.Helper()
	vm := lab.StartVMT(t, lab.VMConfig{Name: name, Workload: lab.Stamper(phases...), Disks: []lab.Disk{d}, Extra: extra})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	return vm
}

var copyPhases = []loadgen.Phase{{Pattern: loadgen.StampWrite, Rate: 300, Duration: 4 * time.Second},
	{Pattern: loadgen.Idle, Duration: 4 * time.Second}, {Pattern: loadgen.Verify, Duration: time.Second}}

// copyJSONDisk runs a copy of a disk QEMU names json:{...} while the
// guest writes, pivots when it is quiet, and checks the guest reads its
// data back through the new image.
func copyJSONDisk(t *testing.T, vm *lab.VM, dir string, req Request) *state.Job {
	t.Helper()
	ctx := context.Background()
	var quiet atomic.Bool
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{dir}, PivotGate: func(*state.Job) bool { return quiet.Load() }})
	in, err := insertedOf(ctx, l.block, req.Target)
	if err != nil || !strings.HasPrefix(in.File, "json:") {
		t.Fatalf("the lab disk is not named json:{...}: %v %v", in, err)
	}
	p, err := l.m.Plan(ctx, req, "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	if j := l.waitState(t, p.Job.ID, state.JobReady, time.Minute); j.State != state.JobReady {
		t.Fatalf("copy ended %s before ready: %s", j.State, j.Error)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "phase=1"); err != nil {
		t.Fatal(err)
	}
	quiet.Store(true)
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone || !j.Pivoted {
		t.Fatalf("copy ended %s: %s", j.State, j.Error)
	}
	waitVerified(t, vm)
	vm.Stop()
	return j
}

// A raw node with an offset: QEMU names it json:{"offset": ...}; it is
// planned, owned, budgeted and mirrored like any other disk.
func TestRealJobMirrorJSONFilename(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	dir, fast := t.TempDir(), t.TempDir()
	src := filepath.Join(dir, "offset.raw")
	qemuImgOut(t, "create", "-q", "-f", "raw", src, "64M")
	vm := startDiskVM(t, "jsonraw", lab.Disk{ID: "disk0", Image: src, Format: "raw", CacheDirect: true,
		FormatOpts: map[string]any{"offset": 1 << 20, "size": 32 << 20}}, nil, copyPhases...)
	j := copyJSONDisk(t, vm, fast, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "jsonraw", Disk: "disk0"}, TargetDir: fast, Speed: 4 << 20})
	if j.Source != src || j.Dest != filepath.Join(fast, "offset.raw") {
		t.Fatalf("job copies %s to %s", j.Source, j.Dest)
	}
	checkStamps(t, j.Dest)
}
