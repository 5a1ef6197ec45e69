package jobs

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// convergeSpan is the part of its 8 MiB disk the guest rewrites: small,
// so that the whole of it stays dirty for a background copy under the
// cap (a copy moves the whole disk, allocated or not).
const convergeSpan = 4 << 20

// A mirror whose guest dirties the disk faster than its speed cap does not
// converge in background mode. By default it is given up after the
// converge time, without a write-blocking restart: QEMU can crash when a
// write-blocking copy is cancelled before it is ready while the guest
// writes (jobs_wblock.go). Where the operator allowed that mode, it is
// cancelled and started again write-blocking (guest writes then reach the
// target as they happen), which converges under the same cap and pivots.
// Either way the VM stays on its source until a pivot, and its I/O goes on.
func TestRealJobMirrorNotConverging(t *testing.T) {
	lab.NeedQEMU(t)
	t.Run("write-blocking converges", func(t *testing.T) {
		t.Parallel()
		l, req := convergeRig(t, "wbok", 25*time.Second, 2<<20, 10*time.Second, true)
		p, err := l.m.Plan(context.Background(), req, "hand", false)
		if err != nil || p.Result != state.ResultApplied || p.Job.WriteBlocking {
			t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
		}
		j := l.waitState(t, p.Job.ID, state.JobDone, 90*time.Second)
		if j.State != state.JobDone || !j.Pivoted || !j.WriteBlocking {
			t.Fatalf("qemu stderr: %s\njob %s pivoted=%v write-blocking=%v progress=%+v: %s", l.vm.StderrTail(), j.State, j.Pivoted, j.WriteBlocking, j.Progress, j.Error)
		}
		trail := auditTrail(t, l.store, j.ID)
		if !regexp.MustCompile(`(?s)not ready after 10s; restarting in write-blocking mode.*planned again in write-blocking mode.*the VM runs on`).MatchString(trail) {
			t.Fatalf("audit trail:\n%s", trail)
		}
		if in, err := insertedOf(context.Background(), l.block, j.Target); err != nil || in.File != j.Dest {
			t.Fatalf("the VM runs on %v (%v), want %s", in, err, j.Dest)
		}
		waitVerified(t, l.vm) // the guest's writes before, during and after the switch read back
		l.vm.Stop()
		if _, err := os.Stat(j.Source); err != nil {
			t.Fatalf("source gone: %v", err)
		}
		if n, err := lab.CheckStamps(context.Background(), j.Dest, convergeSpan); err != nil || n == 0 {
			t.Fatalf("stamps in %s: %d blocks, %v", j.Dest, n, err)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		l, req := convergeRig(t, "wbno", time.Hour, 64<<10, 3*time.Second, false)
		p, err := l.m.Plan(context.Background(), req, "hand", false)
		if err != nil || p.Result != state.ResultApplied {
			t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
		}
		j := l.waitState(t, p.Job.ID, state.JobFailed, 60*time.Second)
		select {
		case <-l.vm.Exited():
			t.Fatalf("QEMU died: %v: %s", l.vm.ExitErr(), l.vm.StderrTail())
		default:
		}
		if j.State != state.JobFailed || j.WriteBlocking || !strings.Contains(j.Error, "given up without trying write-blocking mode") {
			t.Fatalf("qemu stderr: %s\njob %s write-blocking=%v: %s", l.vm.StderrTail(), j.State, j.WriteBlocking, j.Error)
		}
		if trail := auditTrail(t, l.store, j.ID); strings.Contains(trail, "restarting") || strings.Contains(trail, "planned again") {
			t.Fatalf("restarted:\n%s", trail)
		}
		if in, err := insertedOf(context.Background(), l.block, j.Target); err != nil || in.File != j.Source {
			t.Fatalf("the VM runs on %v (%v), want its source %s", in, err, j.Source)
		}
		if jobs, _ := l.block.QueryJobs(context.Background()); len(jobs) != 0 {
			t.Fatalf("jobs left in QEMU: %+v", jobs)
		}
		// The final state is written before the target is removed.
		deadline := time.Now().Add(10 * time.Second)
		for ents, _ := os.ReadDir(filepath.Dir(j.Dest)); len(ents) != 0; ents, _ = os.ReadDir(filepath.Dir(j.Dest)) {
			if time.Now().After(deadline) {
				t.Fatalf("left in the target directory: %v", ents)
			}
			time.Sleep(100 * time.Millisecond)
		}
		guestGoesOn(t, l.vm)
	})
}

// convergeRig starts a guest rewriting convergeSpan as fast as it can for
// writeFor, and a job manager that calls a copy not converging after
// converge (and restarts it write-blocking if allowWB).
func convergeRig(t *testing.T, name string, writeFor time.Duration, speed uint64, converge time.Duration, allowWB bool) (*labJobs, Request) {
	t.Helper()
	src := filepath.Join(t.TempDir(), name+".qcow2")
	if err := lab.CreateImage(context.Background(), src, "qcow2", 8<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := lab.Stamper(loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 400, Duration: writeFor}, loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})
	w.Span = convergeSpan
	vm := lab.StartVMT(t, lab.VMConfig{Name: name, Workload: w, Disks: []lab.Disk{{ID: "disk0", Image: src, CacheDirect: true}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vm.WaitSerial(ctx, "qtune-load t="); err != nil { // writing
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{dir}, ConvergeTimeout: converge, AllowWriteBlocking: allowWB})
	return l, Request{Kind: policy.KnobMirror, Target: state.Target{VM: name, Disk: "disk0"}, TargetDir: dir, Speed: speed}
}

// auditTrail is a job's steps in the action log, one a line.
func auditTrail(t *testing.T, s *state.Store, id string) string {
	t.Helper()
	recs, err := s.Records(1000)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		if r.After == id {
			lines = append(lines, string(r.Result)+": "+r.Reason)
		}
	}
	return strings.Join(lines, "\n")
}

// guestGoesOn waits for two more progress lines of the guest's load
// generator, without I/O errors.
func guestGoesOn(t *testing.T, vm *lab.VM) {
	t.Helper()
	before := strings.Count(vm.Serial(), "qtune-load t=")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for strings.Count(vm.Serial(), "qtune-load t=") < before+2 && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	if s := vm.Serial(); regexp.MustCompile(`errors=[1-9]`).MatchString(s) || ctx.Err() != nil {
		t.Fatalf("guest I/O after the copy gave up:\n%s", s[max(0, len(s)-600):])
	}
}
