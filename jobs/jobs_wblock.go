package jobs

import (
	"fmt"
	"time"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// Write-blocking copies and a QEMU crash.
//
// In write-blocking copy mode (QEMU's "active mirror") every guest write
// also goes to the target before the guest sees it done. The cancel of
// such a mirror before it is ready, while the guest writes, kills QEMU
// 7.2.22 with "malloc(): unaligned tcache chunk detected" (or silently):
// 5 of 21 bare cancels over QMP on a loaded lab host, none of 16 cancels
// of background copies. Reading QEMU's block/mirror.c, a job that leaves
// mirror_run early (cancelled, or failed on a target error) frees its
// in-flight bitmap and only then drains the guest writes still under way,
// which clear their bits in it as they settle. The same order is in
// upstream sources of 2025, so no QEMU release is known to be free of it,
// and the guest dies with its QEMU. docs/jobs.md has the details.
//
// So qtune starts no write-blocking copy unless the operator says the
// hypervisor's QEMU is safe (Options.AllowWriteBlocking, the agent's
// jobs.allow_write_blocking): a request for one is refused, and a copy
// that does not converge is given up in background mode, whose cancel
// waits for all of its own I/O first. A write-blocking copy that reaches
// ready and pivots (or is cancelled once ready) drains the guest writes
// before QEMU frees anything, so allowing the mode exposes only the
// not-ready end.

// writeBlockingOff says why write-blocking copies are not used.
const writeBlockingOff = "write-blocking copies are off: QEMU can crash (heap corruption in its mirror job) " +
	"when one is cancelled or fails before it is ready while the guest writes; " +
	"jobs.allow_write_blocking turns them on for a QEMU known to be fixed"

// refuseWriteBlocking refuses a write-blocking copy unless the operator
// allowed the mode.
func (m *Manager) refuseWriteBlocking(j *state.Job) error {
	if !j.WriteBlocking || m.o.AllowWriteBlocking {
		return nil
	}
	return &tuning.Refusal{Code: tuning.RefuseUnsafe, Reason: writeBlockingOff}
}

// notConvergingWhy is the end of a copy not ready after converge, or ""
// when it is to be restarted in write-blocking mode.
func notConvergingWhy(j *state.Job, allowed bool, converge time.Duration) string {
	switch {
	case j.WriteBlocking:
		return fmt.Sprintf("not ready after %s even in write-blocking mode; given up", converge)
	case !allowed:
		return fmt.Sprintf("not ready after %s; given up without trying write-blocking mode (%s)", converge, writeBlockingOff)
	}
	return ""
}
