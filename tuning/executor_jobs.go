package tuning

import (
	"context"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Block jobs go through the executor like every other change: recommend
// mode and dry-run stop them before anything is written, the rate limits
// count them, and every decision is audited. A JobPlanner (the jobs
// package's manager) then owns their long life; tuning knows nothing of
// how they run.

// JobPlanner plans the block job a rule's decision asks for. dry plans
// without recording anything (recommend mode, dry-run); gate is the
// executor's rate limits, to be asked only once the job is known to be
// worth doing. The outcome's Result is applied (planned), no-op,
// dry-run or refused.
type JobPlanner interface {
	PlanDecision(ctx context.Context, d policy.Decision, dry bool, gate func() error) (Outcome, error)
}

// isJobKnob: the policy layer knows which kinds are block jobs.
func isJobKnob(k policy.Knob) bool {
	kind, ok := policy.ActionKindOf(k)
	return ok && kind.Job
}

// SetJobs hands block-job decisions to p.
func (e *Executor) SetJobs(p JobPlanner) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jobs = p
}

func errNoJobs() error {
	return &Refusal{Code: RefuseUnsupported, Reason: "block jobs are not enabled in this agent"}
}

func (e *Executor) planJob(ctx context.Context, d policy.Decision) (Outcome, error) {
	if e.jobs == nil {
		return Outcome{Result: state.ResultRefused}, errNoJobs()
	}
	if d.Revert {
		// A job is not undone: a flattened chain or a finished copy
		// stays. A job still running when its rule stops firing ends
		// cancelled at its pivot (the manager's Wanted).
		return Outcome{Result: state.ResultNoOp, Reason: "a block job is not reverted"}, nil
	}
	dry := d.Mode == policy.ModeRecommend || e.dryRun
	out, err := e.jobs.PlanDecision(ctx, d, dry, e.jobRateGate(state.Target{VM: d.VM, Disk: d.Disk}, d, dry))
	if out.Result == state.ResultDryRun && d.Mode == policy.ModeRecommend {
		out.Result = state.ResultRecommended
	}
	return out, err
}

// HandJob runs plan, a block job asked for by hand, through the same
// gate as a rule's — dry-run, the rate limits — and audits its outcome
// as by hand. plan is given whether to plan dry and the rate gate; it
// is not called when the executor has no JobPlanner.
func (e *Executor) HandJob(t state.Target, k policy.Knob, plan func(dry bool, gate func() error) (Outcome, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out Outcome
	var err error
	if e.jobs == nil {
		out, err = Outcome{Result: state.ResultRefused}, errNoJobs()
	} else {
		out, err = plan(e.dryRun, e.jobRateGate(t, policy.Decision{Knob: k}, e.dryRun))
	}
	if err != nil && out.Reason == "" {
		out.Reason = err.Error()
	}
	e.audit(t, policy.Decision{Rule: "(by hand)", Knob: k}, out)
	return err
}

// jobRateGate applies the per-VM and per-host change rates to a job about
// to be planned; a planned job counts as one change.
func (e *Executor) jobRateGate(t state.Target, d policy.Decision, dry bool) func() error {
	return func() error {
		now := e.clock.Now()
		if err := e.checkLimits(t, d, nil, state.KnobState{}, state.KnobState{}, now); err != nil {
			return err
		}
		if !dry {
			e.changes = append(e.changes, change{vm: t.VM, at: now})
		}
		return nil
	}
}
