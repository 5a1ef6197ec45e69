// Package tuning is the only path by which qtune changes a VM. Its
// Executor takes policy decisions and, for each, reads the knob, refuses
// what breaks a safety limit, writes its intent and the knob's original
// value to the state store before acting, applies through a Backend,
// reads back to verify, and records the outcome. A revert restores the
// recorded original only if the knob still holds what qtune set;
// otherwise someone else changed it, and qtune reports the drift and
// lets go instead of fighting.
//
// Each kind of knob registers itself (kinds.go, knob_*.go). Block jobs
// (stream, mirror, live convert) are one-shot and long: the executor
// hands their decisions, after its recommend/dry-run gate and rate
// limits, to a JobPlanner (the jobs package) and audits the outcome. The
// backends export a per-VM handle (VMHandle) for the job drivers.
package tuning

import (
	"context"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Backend reads and sets knobs of a hypervisor. Implementations: QMP on a
// socket, libvirt (native API for throttles, passthrough for reopen).
type Backend interface {
	Read(ctx context.Context, t state.Target, k policy.Knob) (state.KnobState, error)
	Apply(ctx context.Context, t state.Target, k policy.Knob, s state.KnobState, persist bool) error
}
