package jobs

import (
	"context"
	"strings"
	"time"
)

// Why a libvirt block job failed. libvirt 9.0's only word is its
// path-based block-job event with the status "failed" (go-libvirt never
// delivers BLOCK_JOB_2, which carries no reason either); the job is gone
// from GetBlockJobInfo by then, the disk's I/O status says nothing of a
// copy's target, and libvirt logs nothing. QEMU's BLOCK_JOB_COMPLETED
// event has the error, and libvirt passes QEMU's events on to a
// subscriber without tainting the domain: while qtune runs a job on a
// domain it follows them (virt.Libvirt.BlockJobErrors).

// libvirtNoReason is the failure when QEMU's event did not reach qtune
// (the agent was down, or libvirtd reconnected at that moment).
const libvirtNoReason = "libvirt reports the block job failed and gives no reason"

// errorGrace is how long a failure libvirt reported waits for QEMU's
// event with the reason; the two come on separate streams.
const errorGrace = time.Second

// jobEvent is the last block-job event libvirt sent for a disk path.
type jobEvent struct {
	state int32
	at    time.Time
}

// jobWatch follows one domain's QEMU events while it has a job.
type jobWatch struct {
	cancel context.CancelFunc
	done   <-chan struct{}      // nil while the subscription is being made
	errs   map[string]string    // disk target -> QEMU's error of its failed job
	live   map[string]bool      // disks with a job, as last listed
	gone   map[string]time.Time // disks whose job went, since when
}

// watchJobErrors makes sure vm's QEMU events are followed; a failure is
// logged, not returned: the job runs without, and its reason is then
// what qtune finds itself.
func (b *LibvirtDriver) watchJobErrors(vm string) {
	b.mu.Lock()
	if w := b.watches[vm]; w != nil && !closed(w.done) {
		b.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &jobWatch{cancel: cancel, errs: map[string]string{}, live: map[string]bool{}, gone: map[string]time.Time{}}
	if old := b.watches[vm]; old != nil {
		w.errs, w.live, w.gone = old.errs, old.live, old.gone // seen before the subscription dropped
	}
	b.watches[vm] = w
	b.mu.Unlock()
	done, err := b.v.BlockJobErrors(ctx, vm, func(job, msg string) { b.noteJobError(vm, job, msg) })
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		cancel()
		delete(b.watches, vm)
		b.log.Warn("cannot follow QEMU's events for block job errors; a failed job's reason will be what qtune finds", "vm", vm, "error", err.Error())
		return
	}
	w.done = done
}

func closed(c <-chan struct{}) bool {
	if c == nil {
		return false // being made
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (b *LibvirtDriver) noteJobError(vm, job, msg string) {
	disk := libvirtJobDisk(job)
	if disk == "" {
		return
	}
	b.mu.Lock()
	if w := b.watches[vm]; w != nil {
		w.errs[disk] = msg
	}
	notify := b.onJob
	b.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// libvirtJobDisk is the disk of a libvirt 9.0 job id: libvirt names a
// job "<type>-<disk>-<node>" ("copy-vda-libvirt-1-format").
func libvirtJobDisk(job string) string {
	for _, t := range []string{"active-commit-", "commit-", "copy-", "pull-", "backup-"} {
		if rest, ok := strings.CutPrefix(job, t); ok {
			disk, _, _ := strings.Cut(rest, "-")
			return disk
		}
	}
	return ""
}

// noteLive records the disks of vm that have a job: a job adopted after
// a restart, or one running across a libvirtd reconnect, is followed too.
func (b *LibvirtDriver) noteLive(vm string, live map[string]bool) {
	if len(live) > 0 {
		b.watchJobErrors(vm)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watches[vm]; w != nil {
		w.live = live
	}
}

// stopWatch stops following vm's events.
func (b *LibvirtDriver) stopWatch(vm string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watches[vm]; w != nil {
		w.cancel()
		delete(b.watches, vm)
	}
}

// jobDone forgets a concluded job's error, and stops following the
// domain's events when no other disk of it has a job.
func (b *LibvirtDriver) jobDone(vm, disk string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.watches[vm]
	if w == nil {
		return
	}
	delete(w.errs, disk)
	delete(w.live, disk)
	delete(w.gone, disk)
	if len(w.live) == 0 && len(w.errs) == 0 {
		w.cancel()
		delete(b.watches, vm)
	}
}

// failure says what is known of a disk whose job libvirt no longer
// lists: whether it failed, QEMU's error if its event came, and whether
// the reason is worth waiting a moment for. libvirt dismisses a job
// before it sends its own event, so a job that just went is given that
// moment too before it counts as vanished.
func (b *LibvirtDriver) failure(vm, disk, path string, now time.Time) (failed bool, msg string, wait bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.watches[vm]
	if w != nil && w.errs[disk] != "" {
		return true, w.errs[disk], false
	}
	fresh := false
	if w != nil && (w.live[disk] || !w.gone[disk].IsZero()) {
		if w.gone[disk].IsZero() {
			w.gone[disk] = now
		}
		fresh = now.Sub(w.gone[disk]) < errorGrace
	}
	ev, ok := b.jobEvents[vm+"\x00"+path]
	failed = ok && ev.state == libvirtJobFailed
	return failed, "", fresh || (failed && w != nil && now.Sub(ev.at) < errorGrace)
}

// forgetJobError drops a disk's recorded failure (a new start, or the
// job was concluded).
func (b *LibvirtDriver) forgetJobError(vm, disk string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watches[vm]; w != nil {
		delete(w.errs, disk)
		delete(w.gone, disk)
	}
}
