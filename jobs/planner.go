package jobs

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// The executor stays the one gate of every change: a rule's job decision
// comes here through tuning.JobPlanner after its recommend/dry-run gate,
// and a job asked for by hand goes through tuning.Executor.HandJob.

var _ tuning.JobPlanner = (*Manager)(nil)

// PlanDecision implements tuning.JobPlanner: the job a rule's decision
// asks for, planned (or, dry, only checked).
func (m *Manager) PlanDecision(ctx context.Context, d policy.Decision, dry bool, gate func() error) (tuning.Outcome, error) {
	req, ok := RequestFromDecision(d)
	if !ok {
		return tuning.Outcome{Result: state.ResultRefused}, &tuning.Refusal{Code: tuning.RefuseUnsupported, Reason: fmt.Sprintf("knob %q is not a block job", d.Knob)}
	}
	p, err := m.plan(ctx, req, "policy", dry, gate)
	return p.outcome(), err
}

func (p Planned) outcome() tuning.Outcome {
	out := tuning.Outcome{Result: p.Result, Reason: p.Reason}
	if p.Job != nil && out.Reason == "" {
		out.Reason = fmt.Sprintf("job %s: %s", p.Job.ID, describe(p.Job))
	}
	return out
}

// Start plans a job asked for by hand, through the same checks, budget,
// rate limits and audit as a rule's: e is the executor that gates them.
// A nil manager (jobs not enabled) is refused by e.
func (m *Manager) Start(ctx context.Context, e *tuning.Executor, r Request) (Planned, error) {
	r.Rule = ""
	var p Planned
	err := e.HandJob(r.Target, r.Kind, func(dry bool, gate func() error) (tuning.Outcome, error) {
		var err error
		p, err = m.plan(ctx, r, "hand", dry, gate)
		out := tuning.Outcome{Result: p.Result, Reason: p.Reason}
		if err != nil && out.Reason == "" {
			out.Reason = err.Error()
		}
		if p.Job != nil && out.Reason == "" {
			out.Reason = fmt.Sprintf("job %s: %s", p.Job.ID, describe(p.Job))
		}
		return out, err
	})
	return p, err
}

// DriverFor is the job driver of a tuning backend; ok is false for a
// backend that runs no block jobs.
func DriverFor(b tuning.Backend, o DriverOptions) (Driver, bool) {
	switch b := b.(type) {
	case *tuning.QMPBackend:
		return NewQMPDriver(b), b != nil
	case *tuning.LibvirtBackend:
		if b == nil {
			return nil, false
		}
		return NewLibvirtDriver(b, o), true
	}
	return nil, false
}
