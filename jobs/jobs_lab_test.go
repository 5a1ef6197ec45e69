package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// Block jobs through the manager and the QMP driver against a real QEMU
// whose guest writes stamped blocks during the job and verifies them
// afterwards.

type labJobs struct {
	vm    *lab.VM
	m     *Manager
	store *state.Store
	block *qmp.Block
	stop  func()
}

func startLabJobs(t *testing.T, vm *lab.VM, o Options) *labJobs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, vm.QMPPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b := tuning.NewQMPBackend()
	s, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	o.PollInterval = 200 * time.Millisecond
	m := NewManager(NewQMPDriver(b), s, o)
	b.SetJobNotify(m.Notify)
	b.AddVM(vm.Name, c, c.PeerPID())
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(rctx) }()
	lj := &labJobs{vm: vm, m: m, store: s, block: qmp.NewBlock(c), stop: func() { stop(); <-done }}
	t.Cleanup(lj.stop)
	return lj
}

// waitState waits for a job to reach one of the final states (or want).
func (l *labJobs) waitState(t *testing.T, id string, want state.JobState, limit time.Duration) *state.Job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		j, err := l.store.Job(id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == want || j.State.Final() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %v (progress %+v, waiting %q, error %q)", id, j.State, limit, j.Progress, j.Waiting, j.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stampVM(t *testing.T, name, img string, phases ...loadgen.Phase) *lab.VM {
	t.Helper()
	vm := lab.StartVMT(t, lab.VMConfig{Name: name, Workload: lab.Stamper(phases...),
		Disks: []lab.Disk{{ID: "disk0", Image: img, CacheDirect: true}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	return vm
}

func waitVerified(t *testing.T, vm *lab.VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vm.WaitSerial(ctx, "qtune-verify"); err != nil {
		t.Fatal(err)
	}
	if s := vm.Serial(); !strings.Contains(s, "qtune-verify ok") || strings.Contains(s, "FAILED") || !regexp.MustCompile(`checked=[1-9]`).MatchString(s) {
		t.Fatalf("the guest's data does not verify:\n%s", s)
	}
}

func checkStamps(t *testing.T, path string) {
	t.Helper()
	n, err := lab.CheckStamps(context.Background(), path, lab.StampSpan)
	if err != nil || n == 0 {
		t.Fatalf("stamps in %s: %d blocks, %v", path, n, err)
	}
}

func qemuImgOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := lab.QemuImg(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestRealJobStreamUnderGuestWrites(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	chain, err := lab.Chain(ctx, dir, 3, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range chain {
		if err := lab.WritePattern(ctx, l, "qcow2", byte(0x10+i), uint64(32+i)<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	vm := stampVM(t, "stream", chain[0], loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 200, Duration: 4 * time.Second},
		loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})
	l := startLabJobs(t, vm, Options{})
	p, err := l.m.Plan(ctx, Request{Kind: policy.KnobStream, Target: state.Target{VM: "stream", Disk: "disk0"}, Speed: 1 << 20}, "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %v", p.Result, err)
	}
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone {
		t.Fatalf("stream ended %s: %s", j.State, j.Error)
	}
	if jobs, _ := l.block.QueryJobs(ctx); len(jobs) != 0 {
		t.Errorf("jobs left in QEMU: %+v", jobs)
	}
	waitVerified(t, vm)
	vm.Stop()
	if out := qemuImgOut(t, "info", chain[0]); strings.Contains(out, "backing file") {
		t.Fatalf("still has a backing file:\n%s", out)
	}
	for i := range chain {
		cmd := "read -P 0x" + strconv.FormatUint(uint64(0x10+i), 16) + " " + strconv.Itoa((32+i)<<20) + " 1M"
		if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", cmd, chain[0]).CombinedOutput(); err != nil || strings.Contains(string(out), "mismatch") {
			t.Fatalf("layer %d's data after the stream: %v %s", i, err, out)
		}
	}
	checkStamps(t, chain[0])
}

// copyUnderWrites runs a mirror or convert while the guest writes, holds
// the pivot until the guest stopped writing, and checks the copy.
func copyUnderWrites(t *testing.T, name string, req func(src, dir string) Request, cluster uint64) (*state.Job, string) {
	t.Helper()
	ctx := context.Background()
	dir, fast := t.TempDir(), t.TempDir()
	src := filepath.Join(dir, name+".qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{ClusterSize: cluster}); err != nil {
		t.Fatal(err)
	}
	vm := stampVM(t, name, src, loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 300, Duration: 4 * time.Second},
		loadgen.Phase{Pattern: loadgen.Idle, Duration: 4 * time.Second}, loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})
	var quiet atomic.Bool
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{fast}, PivotGate: func(*state.Job) bool { return quiet.Load() }})
	p, err := l.m.Plan(ctx, req(src, fast), "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	if j := l.waitState(t, p.Job.ID, state.JobReady, time.Minute); j.State != state.JobReady {
		t.Fatalf("copy ended %s before ready: %s", j.State, j.Error)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "phase=1"); err != nil { // the guest stopped writing
		t.Fatal(err)
	}
	quiet.Store(true)
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone || !j.Pivoted {
		t.Fatalf("copy ended %s: %s", j.State, j.Error)
	}
	in, err := insertedOf(ctx, l.block, j.Target)
	if err != nil || in.File != j.Dest {
		t.Fatalf("the VM runs on %v (%v), want %s", in, err, j.Dest)
	}
	for _, direct := range lab.ODirectT(t, vm.PID(), j.Dest) {
		if !direct {
			t.Fatal("the new image is not opened O_DIRECT like the source (cache mode changed by the pivot)")
		}
	}
	waitVerified(t, vm) // read back through the new image
	select {
	case <-vm.Exited():
		t.Fatal("the VM stopped")
	default:
	}
	vm.Stop()
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("source gone: %v", err)
	}
	if same, err := lab.Compare(ctx, src, j.Dest); err != nil || !same {
		t.Fatalf("qemu-img compare %s %s: identical=%v %v", src, j.Dest, same, err)
	}
	checkStamps(t, j.Dest)
	return j, src
}

func TestRealJobMirrorPivotsUnderGuestWrites(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	j, src := copyUnderWrites(t, "mirror", func(_, dir string) Request {
		return Request{Kind: policy.KnobMirror, Target: state.Target{VM: "mirror", Disk: "disk0"}, TargetDir: dir, Speed: 4 << 20}
	}, 0)
	if filepath.Dir(j.Dest) == filepath.Dir(src) || j.Progress.Length == 0 {
		t.Fatalf("job %+v", j)
	}
}

func TestRealJobConvertTo64KClusters(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	j, src := copyUnderWrites(t, "convert", func(_, _ string) Request {
		return Request{Kind: policy.KnobConvert, Target: state.Target{VM: "convert", Disk: "disk0"}, Layout: policy.Layout{ClusterSize: 64 << 10}, Speed: 4 << 20}
	}, 4096)
	if filepath.Dir(j.Dest) != filepath.Dir(src) {
		t.Fatalf("convert wrote into %s", j.Dest)
	}
	info, err := lab.Info(context.Background(), j.Dest)
	if err != nil || info[0].ClusterSize != 64<<10 {
		t.Fatalf("cluster size of %s: %+v %v", j.Dest, info, err)
	}
	out := qemuImgOut(t, "check", j.Dest)
	m := regexp.MustCompile(`([0-9.]+)% fragmented`).FindStringSubmatch(out)
	if !strings.Contains(out, "No errors were found") || m == nil {
		t.Fatalf("qemu-img check:\n%s", out)
	}
	t.Logf("qemu-img check %s: %s", j.Dest, strings.TrimSpace(out))
	if frag, _ := strconv.ParseFloat(m[1], 64); frag > 1 {
		t.Fatalf("the rewritten image is %.2f%% fragmented:\n%s", frag, out)
	}
}

// A target directory on a filesystem smaller than the disk: refused by the
// space check; and, with the check fooled, the job hits ENOSPC, fails,
// and the VM stays on its source with its I/O going on.
func TestRealJobTargetFull(t *testing.T) {
	lab.NeedQEMU(t)
	small := lab.TmpfsT(t, "4m")
	t.Parallel()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "full.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, src, "qcow2", 0x5a, 16<<20, 16<<20); err != nil {
		t.Fatal(err)
	}
	vm := stampVM(t, "full", src, loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 100, Duration: time.Hour})
	var lie atomic.Bool
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{small}, MaxAttempts: 1, FreeSpace: func(dir string) (uint64, error) {
		if lie.Load() {
			return 1 << 40, nil
		}
		return FreeSpace(dir)
	}})
	req := Request{Kind: policy.KnobMirror, Target: state.Target{VM: "full", Disk: "disk0"}, TargetDir: small}
	if _, err := l.m.Plan(ctx, req, "hand", false); err == nil || !strings.Contains(err.Error(), "free") {
		t.Fatalf("mirror onto a 4 MiB filesystem: %v", err)
	}
	lie.Store(true)
	p, err := l.m.Plan(ctx, req, "hand", false)
	if err != nil {
		t.Fatal(err)
	}
	j := l.waitState(t, p.Job.ID, state.JobFailed, time.Minute)
	t.Logf("job %s: %s", j.State, j.Error)
	if j.State != state.JobFailed || j.Cause != CauseTargetFull || !strings.Contains(j.Error, "the job failed: No space left on device") ||
		!strings.Contains(j.Error, "qtune found the target filesystem "+small+" full: ") {
		t.Fatalf("job %s (cause %q): %s", j.State, j.Cause, j.Error)
	}
	if in, err := insertedOf(ctx, l.block, j.Target); err != nil || in.File != src {
		t.Fatalf("the VM runs on %+v (%v), want its source", in, err)
	}
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatalf("half-made target left: %v", err)
	}
	if ents, _ := os.ReadDir(small); len(ents) != 0 {
		t.Fatalf("left in the target directory: %v", ents)
	}
	before := strings.Count(vm.Serial(), "qtune-load t=")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for strings.Count(vm.Serial(), "qtune-load t=") < before+2 && wctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	if s := vm.Serial(); regexp.MustCompile(`errors=[1-9]`).MatchString(s) || wctx.Err() != nil {
		t.Fatalf("guest I/O after the failed copy:\n%s", s[max(0, len(s)-600):])
	}
}

// QEMU killed during a copy: the job fails with the reason, and nothing
// is touched (the target stays: a restarted VM might need it).
func TestRealJobQEMUKilled(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "killed.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, src, "qcow2", 0x5a, 0, 32<<20); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "killed", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: src}}})
	fast := t.TempDir()
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{fast}})
	p, err := l.m.Plan(ctx, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "killed", Disk: "disk0"}, TargetDir: fast, Speed: 1 << 20}, "hand", false)
	if err != nil {
		t.Fatal(err)
	}
	l.waitState(t, p.Job.ID, state.JobRunning, 30*time.Second)
	vm.Signal(syscall.SIGKILL)
	j := l.waitState(t, p.Job.ID, state.JobFailed, 30*time.Second)
	if j.State != state.JobFailed || !strings.Contains(j.Error, "went away") {
		t.Fatalf("job %s: %s", j.State, j.Error)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("source: %v", err)
	}
}

func TestRealJobStreamDownToBase(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx := context.Background()
	chain, err := lab.Chain(ctx, t.TempDir(), 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range chain {
		if err := lab.WritePattern(ctx, img, "qcow2", byte(0x40+i), uint64(i)<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	reference := filepath.Join(t.TempDir(), "reference.raw")
	qemuImgOut(t, "convert", "-O", "raw", chain[0], reference)
	vm := lab.StartVMT(t, lab.VMConfig{Name: "base", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: chain[0]}}})
	l := startLabJobs(t, vm, Options{})
	p, err := l.m.Plan(ctx, Request{Kind: policy.KnobStream, Target: state.Target{VM: "base", Disk: "disk0"}, Base: chain[2]}, "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	if j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute); j.State != state.JobDone {
		t.Fatalf("stream %s: %s", j.State, j.Error)
	}
	vm.Stop()
	info, err := lab.Info(ctx, chain[0])
	if err != nil || len(info) != 2 || info[1].Filename != chain[2] {
		t.Fatalf("after a stream down to the base: %+v %v", info, err)
	}
	if same, err := lab.Compare(ctx, chain[0], reference); err != nil || !same {
		t.Fatalf("content changed: %v %v", same, err)
	}
}

// A write-blocking copy, where the operator allowed the mode, pivots: QEMU
// 7.2 takes that mode when a mirror starts (it cannot switch it later).
func TestRealJobWriteBlockingMirror(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "wb.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, src, "qcow2", 0x77, 4<<20, 8<<20); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "wb", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: src}}})
	fast := t.TempDir()
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{fast}, AllowWriteBlocking: true})
	p, err := l.m.Plan(ctx, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "wb", Disk: "disk0"}, TargetDir: fast, CopyMode: "write-blocking"}, "hand", false)
	if err != nil || p.Result != state.ResultApplied || !p.Job.WriteBlocking {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone {
		t.Fatalf("write-blocking mirror %s: %s", j.State, j.Error)
	}
	vm.Stop()
	if same, err := lab.Compare(ctx, src, j.Dest); err != nil || !same {
		t.Fatalf("qemu-img compare: identical=%v %v", same, err)
	}
}
