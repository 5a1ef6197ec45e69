package tuning

import (
	"fmt"
	"time"
)

// Write-blocking copies and a QEMU crash.
//
// In write-blocking copy mode (QEMU's "active mirror") every guest write
// also goes to the target before the guest sees it done. When such a
// mirror ends before it is ready — cancelled, or failed on a target error
// — QEMU's mirror_run frees the job's in-flight bitmap and only then
// drains the guest writes still under way; each of those, as it settles,
// clears its bits in the freed bitmap. QEMU 7.2.22 dies of it with
// "malloc(): unaligned tcache chunk detected" (or silently): in the lab,
// the cancel of a not-ready write-blocking mirror under guest writes
// killed QEMU in about half the runs on a loaded host. The same order is
// in upstream block/mirror.c as late as its 2025 sources, so no QEMU
// release is known to be free of it, and the guest dies with its QEMU.
//
// So qtune starts no write-blocking copy unless the operator says the
// hypervisor's QEMU is safe (JobOptions.AllowWriteBlocking, the agent's
// jobs.allow_write_blocking): a request for one is refused, and a copy
// that does not converge is given up in background mode, whose cancel
// waits for all of its own I/O first. A write-blocking copy that reaches
// ready and pivots (or is cancelled once ready) drains the guest writes
// before QEMU frees anything, so allowing the mode exposes only the
// not-ready end.

// writeBlockingOff says why write-blocking copies are not used.
const writeBlockingOff = "write-blocking copies are off: QEMU can crash (use after free in block/mirror.c) " +
	"when one is cancelled or fails before it is ready while the guest writes; " +
	"jobs.allow_write_blocking turns them on for a QEMU known to be fixed"

// refuseWriteBlocking refuses a write-blocking copy unless the operator
// allowed the mode.
func (m *JobManager) refuseWriteBlocking(j *Job) error {
	if !j.WriteBlocking || m.o.AllowWriteBlocking {
		return nil
	}
	return &Refusal{Code: "unsafe", Reason: writeBlockingOff}
}

// notConvergingWhy is the end of a copy not ready after converge, or ""
// when it is to be restarted in write-blocking mode.
func notConvergingWhy(j *Job, allowed bool, converge time.Duration) string {
	switch {
	case j.WriteBlocking:
		return fmt.Sprintf("not ready after %s even in write-blocking mode; given up", converge)
	case !allowed:
		return fmt.Sprintf("not ready after %s; given up without trying write-blocking mode (%s)", converge, writeBlockingOff)
	}
	return ""
}
