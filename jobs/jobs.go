// Package jobs runs qtune's block jobs: stream, mirror and live convert,
// each a durable state machine kept in the state store's "jobs" bucket. Every transition is written
// before it is acted on, so that after a crash the next start knows what
// may have happened and reconciles it with what QEMU or libvirt report:
//
//	    ┌──────────── budget, window, backoff: wait ───────────┐
//	    v                                                      │
//	planned ──> starting ──> running ──> ready ──> pivoting ──> done
//	    │           │           │          │           │
//	    │           │           │          │           └──> failed  (job error; VM left where QEMU says)
//	    │           │           │          └──> cancelled  (cancel asked, or the rule no longer wants it)
//	    │           │           └──> failed     (job error, ENOSPC, vanished, QEMU gone)
//	    │           └──> failed, or planned again with backoff (start refused)
//	    └──> cancelled (cancel asked before it started)
//
// stream has no ready or pivoting: running goes to done when the job
// concludes without error and the chain is gone. A mirror or convert that
// does not reach ready within the converge time is given up cleanly; only
// where the operator allowed write-blocking copies (which can crash QEMU,
// see jobs_wblock.go) is it first cancelled and started again in that
// mode (QEMU 7.2 cannot switch a running job's mode).
//
// Whatever happens, the VM stays on its source until a pivot of a ready
// job, the source is never deleted, and a target qtune created is removed
// only when no pivot happened. A finished job lets go of the images it
// took the disk off (jobs_release.go): QEMU closes them, they stay on disk.
//
// Jobs reach a hypervisor through a Driver (QMPDriver, LibvirtDriver,
// over the tuning backends' exported handles), and reach the executor's
// gate through tuning.JobPlanner, which the Manager satisfies.
package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// jobKindSpec is all qtune knows about one kind of block job, beside
// its policy half (policy/kind_*.go, which names it by its knob): how a
// rule's action becomes a request, how a request is shaped against the
// disk as it is (or found pointless), how it is told, how each driver
// starts it, and — for a job that does not pivot onto a copy — how its
// end is judged. Each kind registers from its own file (job_*.go).
type jobKindSpec struct {
	fromAction func(a policy.Action, r *Request)
	shape      func(m *Manager, j *state.Job, r Request, img DiskImage) (noop string, err error)
	describe   func(j *state.Job) string

	qmpStart     func(ctx context.Context, vm *tuning.VMHandle, j *state.Job, img DiskImage) error
	libvirtStart func(ctx context.Context, d *LibvirtDriver, j *state.Job, img DiskImage) error

	// ended judges a job without a pivot once the hypervisor dropped it;
	// nil marks a copy that goes ready and pivots onto its target.
	ended func(m *Manager, ctx context.Context, j *state.Job, img DiskImage) error
}

var jobKinds = struct {
	sync.RWMutex
	by map[policy.Knob]jobKindSpec
}{by: map[policy.Knob]jobKindSpec{}}

// registerJob adds a job kind; twice is a programming error.
func registerJob(kind policy.Knob, spec jobKindSpec) {
	jobKinds.Lock()
	defer jobKinds.Unlock()
	if _, dup := jobKinds.by[kind]; dup || spec.shape == nil || spec.describe == nil || spec.qmpStart == nil || spec.libvirtStart == nil {
		panic(fmt.Sprintf("jobs: job kind %q registered twice or incomplete", kind))
	}
	jobKinds.by[kind] = spec
}

func unregisterJob(kind policy.Knob) {
	jobKinds.Lock()
	defer jobKinds.Unlock()
	delete(jobKinds.by, kind)
}

func jobKindOf(k policy.Knob) (jobKindSpec, bool) {
	jobKinds.RLock()
	defer jobKinds.RUnlock()
	spec, ok := jobKinds.by[k]
	return spec, ok
}

// pivots reports whether the job copies to a target and pivots onto it.
func pivots(j *state.Job) bool {
	spec, _ := jobKindOf(j.Kind)
	return spec.ended == nil
}

// Known reports whether k is a block job kind this package runs.
func Known(k policy.Knob) bool {
	_, ok := jobKindOf(k)
	return ok
}

// JobID is a job's deterministic id: the same intent (kind, disk, source,
// destination) gives the same id, so a job found in QEMU after a restart
// is known for qtune's own. QEMU wants ids made of letters, digits, '-',
// '.' and '_', starting with a letter.
func JobID(kind policy.Knob, t state.Target, source, dest string) string {
	h := sha256.Sum256([]byte(string(kind) + "\x00" + t.VM + "\x00" + t.Disk + "\x00" + source + "\x00" + dest))
	return "qtune-" + string(kind) + "-" + idPart(t.VM, 24) + "-" + idPart(t.Disk, 16) + "-" + hex.EncodeToString(h[:4])
}

func idPart(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= max {
			break
		}
	}
	return b.String()
}

// IsQtuneJobID reports whether a QEMU job id is one qtune gives.
func IsQtuneJobID(id string) bool { return strings.HasPrefix(id, "qtune-") }
