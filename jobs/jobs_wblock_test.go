package jobs

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// By default a copy that does not converge is given up in background
// mode: its cancel is the only one, and no write-blocking copy starts.
func TestJobNotConvergingGivesUpWithoutWriteBlocking(t *testing.T) {
	r := newJobRig(t, Options{ConvergeTimeout: time.Minute})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	r.clk.Advance(2 * time.Minute)
	j = r.step(j.ID) // cancel: given up
	j = r.step(j.ID)
	r.expect(j, state.JobFailed)
	if j.WriteBlocking || j.Cause != CauseNotConverged || !strings.Contains(j.Error, "given up without trying write-blocking mode") ||
		!strings.Contains(j.Error, "jobs.allow_write_blocking") {
		t.Fatalf("write-blocking=%v cause %s: %s", j.WriteBlocking, j.Cause, j.Error)
	}
	if got := strings.Join(r.f.calls, " "); got != "start cancel finish" || len(r.f.wb) != 1 || r.f.wb[0] {
		t.Fatalf("calls %q, write-blocking starts %v", got, r.f.wb)
	}
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatal("the given-up copy's target is kept")
	}
	if r.f.images[jvda].Path != j.Source {
		t.Fatalf("the VM runs on %s", r.f.images[jvda].Path)
	}
}

// A write-blocking copy asked for (by hand or by a rule) is refused with
// the reason, unless the operator allowed the mode.
func TestJobWriteBlockingRefusedUnlessAllowed(t *testing.T) {
	for _, allow := range []bool{false, true} {
		r := newJobRig(t, Options{AllowWriteBlocking: allow})
		req := mirrorReq(r.fast())
		req.CopyMode = "write-blocking"
		p, err := r.plan(req)
		var ref *tuning.Refusal
		switch {
		case !allow && (p.Result != state.ResultRefused || !errors.As(err, &ref) || ref.Code != "unsafe" || !strings.Contains(ref.Reason, "QEMU can crash")):
			t.Fatalf("not allowed: %s %v", p.Result, err)
		case allow && (err != nil || p.Result != state.ResultApplied || !p.Job.WriteBlocking):
			t.Fatalf("allowed: %s %v", p.Result, err)
		}
		if !allow {
			if jobs, _ := r.store.Jobs(); len(jobs) != 0 {
				t.Fatalf("a refused job was stored: %+v", jobs)
			}
			continue
		}
		j := r.step(p.Job.ID)
		r.expect(j, state.JobRunning)
		if len(r.f.wb) != 1 || !r.f.wb[0] {
			t.Fatalf("write-blocking starts %v", r.f.wb)
		}
	}
}
