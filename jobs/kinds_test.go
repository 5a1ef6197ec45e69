package jobs

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// trimSpec is the spec of a made-up block job, test_trim, that hands a
// disk's free clusters back (a discard pass at a given speed).
type trimSpec struct{ Speed uint64 }

const knobTrim policy.Knob = "test_trim"

// registerTrimKind is everything the made-up job kind needs, in one
// place and through the registries alone: its policy block and its job
// hooks. No switch elsewhere learns of it.
func registerTrimKind(t *testing.T) {
	policy.RegisterAction(policy.ActionKind{Knob: knobTrim, Job: true, Attrs: []string{"speed"},
		Parse: func(b *policy.Block) any {
			n, _ := b.Number("speed", false)
			return trimSpec{Speed: n}
		},
		Describe: func(spec any) string { return fmt.Sprintf("trim at %d B/s", spec.(trimSpec).Speed) },
	})
	registerJob(knobTrim, jobKindSpec{
		fromAction: func(a policy.Action, r *Request) {
			if s, ok := a.Spec(knobTrim).(trimSpec); ok {
				r.Speed = s.Speed
			}
		},
		shape: func(_ *Manager, j *state.Job, _ Request, img DiskImage) (string, error) {
			if img.Format != "qcow2" {
				return "only qcow2 images are trimmed", nil
			}
			return "", nil
		},
		describe: func(j *state.Job) string { return "trim " + j.Source },
		qmpStart: func(ctx context.Context, vm *tuning.VMHandle, j *state.Job, _ DiskImage) error {
			return vm.Block().Call(ctx, "x-trim", map[string]any{"job-id": j.ID, "speed": j.Speed}, nil)
		},
		libvirtStart: func(context.Context, *LibvirtDriver, *state.Job, DiskImage) error {
			return fmt.Errorf("libvirt has no trim job")
		},
		ended: func(m *Manager, ctx context.Context, j *state.Job, _ DiskImage) error {
			return m.end(ctx, j, state.JobDone, "trimmed")
		},
	})
	t.Cleanup(func() {
		policy.UnregisterAction(knobTrim)
		unregisterJob(knobTrim)
	})
}

// A job kind is added in one place: a policy asking for the made-up
// job is parsed, evaluated, gated by the executor (recommend mode acts
// on nothing), planned with the kind's shape and words, started through
// the Driver seam, and ended by the kind's own judgement, each step in
// the action log.
func TestRegisteredJobKindEndToEnd(t *testing.T) {
	registerTrimKind(t)
	set, _, err := policy.Parse(map[string][]byte{"trim.hcl": []byte(`
rule "trim-busy" {
  when = disk.write_iops > 100
  for  = "0s"
  test_trim { speed = 1048576 }
}`)})
	if err != nil {
		t.Fatal(err)
	}
	r := newJobRig(t, Options{})
	e := tuning.NewExecutor(noBackend{}, r.store, tuning.Options{Clock: r.clk})
	e.SetJobs(r.m)
	ev := policy.NewEvaluator(set)
	at := r.clk.Now()
	ds := ev.Evaluate(at, []sample.Point{{Disk: sample.Disk{VM: jvda.VM, Name: jvda.Disk, Time: at, Format: "qcow2"},
		Rates: sample.Rates{WriteIOPS: 500, ReadLatencyMs: math.NaN()}}})
	if len(ds) != 1 || ds[0].Knob != knobTrim {
		t.Fatalf("decisions %+v", ds)
	}
	rec := ds[0]
	rec.Mode = policy.ModeRecommend
	if out, err := e.Execute(context.Background(), rec); err != nil || out.Result != state.ResultRecommended {
		t.Fatalf("recommend: %+v %v", out, err)
	}
	out, err := e.Execute(context.Background(), ds[0])
	if err != nil || out.Result != state.ResultApplied || !strings.Contains(out.Reason, "trim "+r.f.images[jvda].Path) {
		t.Fatalf("enforce: %+v %v", out, err)
	}
	jobs, _ := r.m.Jobs()
	if len(jobs) != 1 || jobs[0].Kind != knobTrim || jobs[0].Speed != 1<<20 || !strings.HasPrefix(jobs[0].ID, "qtune-test_trim-") {
		t.Fatalf("jobs %+v", jobs)
	}
	j := r.step(jobs[0].ID)
	r.expect(j, state.JobRunning)
	r.f.set(j.ID, func(h *HVJob) { h.Status = "concluded" })
	r.clk.Advance(time.Second)
	j = r.step(j.ID)
	r.expect(j, state.JobDone)
	recs, _ := r.store.Records(20)
	var got []string
	for _, l := range recs {
		got = append(got, l.Outcome()+" "+l.Reason)
	}
	if s := strings.Join(got, "\n"); !strings.Contains(s, "job-planned planned trim ") || !strings.HasSuffix(s, "job-done trimmed") {
		t.Fatalf("audit:\n%s", s)
	}
}
