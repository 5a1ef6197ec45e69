package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// stepPlanned starts a planned job when its time, the budget and the disk
// allow: intent (starting, and the target qtune is about to create) is
// written before each act.
func (m *Manager) stepPlanned(ctx context.Context, j *state.Job, hv []HVJob, hvErr error) error {
	now := m.o.Clock.Now()
	if j.CancelAsked {
		return m.end(ctx, j, state.JobCancelled, "cancelled before it started")
	}
	if errors.Is(hvErr, tuning.ErrVMGone) {
		return m.fail(ctx, j, CauseVMGone, "the VM is gone")
	}
	if hvErr != nil || now.Before(j.NextTry) {
		return nil
	}
	for _, h := range hv {
		if h.ID != j.ID && hvBlocks(h, j.Target) {
			return m.wait(j, fmt.Sprintf("the disk has a block job already (%s %s)", h.Type, h.ID))
		}
	}
	if ok, why := m.o.Budget.Acquire(j, now); !ok {
		return m.wait(j, why)
	}
	j.State, j.Started, j.Waiting, j.Error, j.Cause = state.JobStarting, now, "", "", ""
	j.Attempts++
	j.Progress = state.Progress{At: now}
	if err := m.save(j); err != nil {
		m.o.Budget.Release(j)
		return err
	}
	m.audit(j, fmt.Sprintf("starting (attempt %d of %d)", j.Attempts, m.o.MaxAttempts))
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	img, err := m.driver.Image(cctx, j.Target)
	if err == nil && img.Path != j.Source {
		return m.fail(ctx, j, CauseDiskMoved, "the disk runs on "+img.Path+" now, not on "+j.Source+" as planned")
	}
	if err == nil && j.Dest != "" {
		err = m.createDest(cctx, j, img)
	}
	if err == nil {
		err = m.driver.StartJob(cctx, j, img)
	}
	if err != nil {
		return m.startFailed(ctx, j, err)
	}
	j.State = state.JobRunning
	m.audit(j, "running")
	return m.save(j)
}

func (m *Manager) wait(j *state.Job, why string) error {
	if j.Waiting == why {
		return nil
	}
	j.Waiting = why
	m.log.Info("block job waits", "job", j.ID, "why", why)
	return m.save(j)
}

// createDest creates a copy's target. The claim on it is written first,
// and a file that exists already is never taken over.
func (m *Manager) createDest(ctx context.Context, j *state.Job, img DiskImage) error {
	if j.DestCreated {
		m.removeDest(j) // a half-made target of an attempt before a crash
	}
	if _, err := os.Lstat(j.Dest); err == nil {
		return fmt.Errorf("%s exists; qtune never overwrites a file", j.Dest)
	}
	j.DestCreated = true
	if err := m.save(j); err != nil {
		return err
	}
	create := func() error { return m.o.CreateImage(ctx, j.Dest, j.Layout, img.VirtualSize) }
	if img.Encrypted {
		create = func() error { return createEmpty(j.Dest) } // the driver formats it with the key
	}
	if err := create(); err != nil {
		return err
	}
	return sameOwner(j.Dest, j.Source)
}

// sameOwner gives a new image the owner and mode of the one it replaces:
// the QEMU that opens it often runs as another user than qtune.
func sameOwner(dst, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", src, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := os.Chown(dst, int(sys.Uid), int(sys.Gid)); err != nil && int(sys.Uid) != os.Geteuid() {
			return fmt.Errorf("give %s the owner of %s: %w", dst, src, err)
		}
	}
	return os.Chmod(dst, st.Mode().Perm())
}

// startFailed ends an attempt: the target goes, and the job is planned
// again after a backoff or, after its last attempt, fails.
func (m *Manager) startFailed(ctx context.Context, j *state.Job, cause error) error {
	m.callDriver(ctx, "finish", j, m.driver.Finish)
	if j.Attempts >= m.o.MaxAttempts {
		return m.fail(ctx, j, CauseStartFailed, fmt.Sprintf("start failed %d times, last: %v", j.Attempts, cause))
	}
	m.removeDest(j)
	m.o.Budget.Release(j)
	j.State = state.JobPlanned
	j.NextTry = m.o.Clock.Now().Add(m.o.Backoff << (j.Attempts - 1))
	j.Error = cause.Error()
	m.audit(j, fmt.Sprintf("start failed (%v); trying again at %s", cause, j.NextTry.Format("15:04:05")))
	return m.save(j)
}
