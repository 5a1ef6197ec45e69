package jobs

import (
	"context"
	"errors"
	"testing"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

func TestExecutorHandsJobsToTheManager(t *testing.T) {
	r := newJobRig(t, Options{})
	e := tuning.NewExecutor(noBackend{}, r.store, tuning.Options{Clock: r.clk})
	d := policy.Decision{Rule: "move", VM: jvda.VM, Disk: jvda.Disk, Knob: policy.KnobMirror, Mode: policy.ModeEnforce,
		Action: policy.Action{Mirror: &policy.MirrorSpec{TargetDir: r.fast()}}}
	var ref *tuning.Refusal
	if _, err := e.Execute(context.Background(), d); !errors.As(err, &ref) || ref.Code != "unsupported" {
		t.Fatalf("without a job manager: %v", err)
	}
	e.SetJobs(r.m)
	rec := d
	rec.Mode = policy.ModeRecommend
	if out, err := e.Execute(context.Background(), rec); err != nil || out.Result != state.ResultRecommended {
		t.Fatalf("recommend: %s %v", out.Result, err)
	}
	if jobs, _ := r.m.Jobs(); len(jobs) != 0 {
		t.Fatal("recommend mode planned a job")
	}
	out, err := e.Execute(context.Background(), d)
	if err != nil || out.Result != state.ResultApplied {
		t.Fatalf("enforce: %s %v", out.Result, err)
	}
	// The rule fires again next cycle: the job in flight is not doubled.
	if out, err := e.Execute(context.Background(), d); err != nil || out.Result != state.ResultNoOp {
		t.Fatalf("second decision: %s %v", out.Result, err)
	}
	rev := d
	rev.Revert = true
	if out, _ := e.Execute(context.Background(), rev); out.Result != state.ResultNoOp {
		t.Fatalf("revert of a job: %s", out.Result)
	}
	recs, _ := r.store.Records(10)
	if len(recs) < 3 {
		t.Fatalf("audit: %+v", recs)
	}
	p, err := r.m.Start(context.Background(), e, Request{Kind: policy.KnobStream, Target: jvda})
	if err != nil || p.Result != state.ResultNoOp {
		t.Fatalf("by hand on a disk with a job: %s %v", p.Result, err)
	}
}

func TestJobPlansCountAgainstChangeRates(t *testing.T) {
	r := newJobRig(t, Options{})
	e := tuning.NewExecutor(noBackend{}, r.store, tuning.Options{Clock: r.clk, Limits: tuning.Limits{PerVMPerHour: 1}})
	e.SetJobs(r.m)
	other := state.Target{VM: jvda.VM, Disk: "vdb"}
	img := r.f.images[jvda]
	img.Chain = []string{"/img/base"}
	r.f.images[other] = img
	if p, err := r.m.Start(context.Background(), e, Request{Kind: policy.KnobMirror, Target: jvda, TargetDir: r.fast()}); err != nil || p.Result != state.ResultApplied {
		t.Fatalf("first job: %s %v", p.Result, err)
	}
	var ref *tuning.Refusal
	if _, err := r.m.Start(context.Background(), e, Request{Kind: policy.KnobStream, Target: other}); !errors.As(err, &ref) || ref.Code != "rate-limit-vm" {
		t.Fatalf("second job on the VM within the hour: %v", err)
	}
}

// noBackend holds no knobs: the executor is given only job decisions.
type noBackend struct{}

func (noBackend) Read(context.Context, state.Target, policy.Knob) (state.KnobState, error) {
	return state.KnobState{}, errors.New("no knobs here")
}

func (noBackend) Apply(context.Context, state.Target, policy.Knob, state.KnobState, bool) error {
	return errors.New("no knobs here")
}
