package tuning

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/policy"
)

// Block jobs go through the executor like every other change: recommend
// mode and dry-run stop them before anything is written, and every
// decision is audited. The job manager then owns their long life.

func isJobKnob(k policy.Knob) bool {
	_, ok := JobKindOf(k)
	return ok
}

// SetJobs hands block-job decisions to m.
func (e *Executor) SetJobs(m *JobManager) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jobs = m
}

// Jobs is the job manager, if any.
func (e *Executor) Jobs() *JobManager {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.jobs
}

func (e *Executor) planJob(ctx context.Context, d policy.Decision) (Outcome, error) {
	if e.jobs == nil {
		return Outcome{Result: ResultRefused}, &Refusal{Code: "unsupported", Reason: "block jobs are not enabled in this agent"}
	}
	if d.Revert {
		// A job is not undone: a flattened chain or a finished copy
		// stays. A job still running when its rule stops firing ends
		// cancelled at its pivot (Wanted).
		return Outcome{Result: ResultNoOp, Reason: "a block job is not reverted"}, nil
	}
	req, _ := RequestFromDecision(d)
	dry := d.Mode == policy.ModeRecommend || e.dryRun
	p, err := e.jobs.plan(ctx, req, "policy", dry, e.jobRateGate(req.Target, d, dry))
	out := Outcome{Result: p.Result, Reason: p.Reason}
	if p.Result == ResultDryRun && d.Mode == policy.ModeRecommend {
		out.Result = ResultRecommended
	}
	if p.Job != nil && out.Reason == "" {
		out.Reason = fmt.Sprintf("job %s: %s", p.Job.ID, p.Job.describe())
	}
	return out, err
}

// StartJob plans a job asked for by hand, through the same checks,
// budget and audit as a rule's.
func (e *Executor) StartJob(ctx context.Context, r JobRequest) (Planned, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.jobs == nil {
		return Planned{Result: ResultRefused}, &Refusal{Code: "unsupported", Reason: "block jobs are not enabled in this agent"}
	}
	r.Rule = ""
	p, err := e.jobs.plan(ctx, r, "hand", e.dryRun, e.jobRateGate(r.Target, policy.Decision{Knob: policy.Knob(r.Kind)}, e.dryRun))
	out := Outcome{Result: p.Result, Reason: p.Reason}
	if err != nil && out.Reason == "" {
		out.Reason = err.Error()
	}
	if p.Job != nil && out.Reason == "" {
		out.Reason = fmt.Sprintf("job %s: %s", p.Job.ID, p.Job.describe())
	}
	knob := policy.Knob(r.Kind)
	e.audit(r.Target, policy.Decision{Rule: "(by hand)", Knob: knob}, out)
	return p, err
}

// jobRateGate applies the per-VM and per-host change rates to a job about
// to be planned; a planned job counts as one change.
func (e *Executor) jobRateGate(t Target, d policy.Decision, dry bool) func() error {
	return func() error {
		now := e.clock.Now()
		if err := e.checkLimits(t, d, nil, KnobState{}, KnobState{}, now); err != nil {
			return err
		}
		if !dry {
			e.changes = append(e.changes, change{vm: t.VM, at: now})
		}
		return nil
	}
}
