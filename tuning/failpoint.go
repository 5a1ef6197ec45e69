package tuning

import "github.com/qtune/qtune/policy"

// Failpoints sit between the durable steps of a change, where a crash
// leaves the most to recover: the intent is written but the knob not yet
// changed, the knob changed but not read back, read back but not yet
// recorded as applied. Tests stop the process at one of them and prove
// that the next start ends every knob held, restored or handed over.
const (
	FailAfterIntent   = "after-intent"
	FailAfterChange   = "after-change"
	FailAfterReadBack = "after-read-back"
)

// Failpoints lists every failpoint, in the order a change passes them.
var Failpoints = []string{FailAfterIntent, FailAfterChange, FailAfterReadBack}

// failpoint stops here when armed for this step and knob. The hook is
// nil in a build without the failpoints tag, unless a test sets it.
func (e *Executor) failpoint(name string, k policy.Knob) {
	if e.fail != nil {
		e.fail(name, k)
	}
}
