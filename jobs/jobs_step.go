package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// Step moves every unended job one step on, and forgets jobs that ended
// long ago. The agent's loop calls it through Run; tests call it directly.
// The hypervisors are asked for their jobs first, in parallel and without
// the lock: a hung VM costs its own deadline and does not hold up the
// executor's planning or the other VMs' jobs.
func (m *Manager) Step(ctx context.Context) {
	jobs, err := m.store.Jobs()
	if err != nil {
		m.log.Error("read jobs", "error", err.Error())
		return
	}
	hv, hvErr := m.hypervisorJobs(ctx, jobs)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range jobs {
		j, err := m.store.Job(jobs[i].ID) // the latest: a cancel may have come meanwhile
		if err != nil {
			continue
		}
		if j.State.Final() {
			if m.o.Clock.Now().Sub(j.Ended) > m.o.KeepEnded {
				m.store.DeleteJob(j.ID)
			}
			continue
		}
		if _, asked := hv[j.VM]; !asked {
			continue // planned since the list was read: next step
		}
		if err := m.step(ctx, j, hv[j.VM], hvErr[j.VM]); err != nil {
			m.log.Error("block job step", "job", j.ID, "state", string(j.State), "error", err.Error())
		}
		if err := m.keepSlot(ctx, j); err != nil {
			m.log.Error("block job speed", "job", j.ID, "error", err.Error())
		}
	}
}

// keepSlot slows a running copy whose fleet slot went with the lease to
// the floor speed, and gives it its own speed back once the slot is held
// again. It is never cancelled: a cancelled copy loses its progress.
func (m *Manager) keepSlot(ctx context.Context, j *state.Job) error {
	k, ok := m.o.Budget.(SlotKeeper)
	if !ok || (j.State != state.JobRunning && j.State != state.JobReady) {
		return nil
	}
	floor, why := k.Keep(j)
	switch {
	case why != "" && j.SlowedTo != floor:
		if err := m.setSpeed(ctx, j, floor); err != nil {
			return err
		}
		j.SlowedTo, j.Waiting = floor, why
		m.audit(j, fmt.Sprintf("slowed to %d B/s: %s", floor, why))
		return m.save(j)
	case why != "" && j.Waiting != why:
		j.Waiting = why
		return m.save(j)
	case why == "" && j.SlowedTo != 0:
		if err := m.setSpeed(ctx, j, j.Speed); err != nil {
			return err
		}
		j.SlowedTo, j.Waiting = 0, ""
		m.audit(j, fmt.Sprintf("fleet slot held again: back to %s", speedText(j.Speed)))
		return m.save(j)
	}
	return nil
}

func (m *Manager) setSpeed(ctx context.Context, j *state.Job, speed uint64) error {
	return m.callDriver(ctx, "set speed", j, func(ctx context.Context, j *state.Job) error {
		return m.driver.SetSpeed(ctx, j, speed)
	})
}

func speedText(s uint64) string {
	if s == 0 {
		return "no speed limit"
	}
	return fmt.Sprintf("%d B/s", s)
}

// hypervisorJobs lists the block jobs of every VM that has an unended job.
func (m *Manager) hypervisorJobs(ctx context.Context, jobs []state.Job) (map[string][]HVJob, map[string]error) {
	hv, hvErr := map[string][]HVJob{}, map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, j := range jobs {
		if j.State.Final() || seen[j.VM] {
			continue
		}
		seen[j.VM] = true
		wg.Add(1)
		go func(vm string) {
			defer wg.Done()
			cctx, cancel := m.callCtx(ctx)
			defer cancel()
			list, err := m.driver.BlockJobs(cctx, vm)
			mu.Lock()
			defer mu.Unlock()
			hv[vm], hvErr[vm] = list, err
		}(j.VM)
	}
	wg.Wait()
	return hv, hvErr
}

func (m *Manager) step(ctx context.Context, j *state.Job, hv []HVJob, hvErr error) error {
	if j.State == state.JobPlanned {
		return m.stepPlanned(ctx, j, hv, hvErr)
	}
	if errors.Is(hvErr, tuning.ErrVMGone) {
		// QEMU went away mid-job: the job died with it. Nothing is
		// touched — the target may still be what a restarted VM needs.
		j.DestCreated = false
		return m.fail(ctx, j, CauseVMGone, "the VM's QEMU went away during the job: "+hvErr.Error())
	}
	if hvErr != nil {
		return nil // a hung or unreachable VM: looked at again next time
	}
	h, found := findHV(j, hv)
	if found {
		m.progress(j, h)
	}
	switch {
	case j.State == state.JobStarting && !found:
		return m.startFailed(ctx, j, fmt.Errorf("no job in the hypervisor after the start"))
	case j.State == state.JobStarting:
		j.State = state.JobRunning
		m.audit(j, "adopted: found running after a restart")
		return m.save(j)
	case !found || h.Status == "concluded" || h.Error != "":
		return m.concluded(ctx, j, h, found)
	}
	return m.stepLive(ctx, j, h)
}

// stepLive handles a job the hypervisor still runs.
func (m *Manager) stepLive(ctx context.Context, j *state.Job, h HVJob) error {
	now := m.o.Clock.Now()
	if h.Status == "aborting" {
		return m.save(j) // ending already: its end is judged once it is over
	}
	if j.CancelAsked || j.Restart {
		return m.callDriver(ctx, "cancel", j, m.driver.CancelJob)
	}
	switch j.State {
	case state.JobRunning:
		if h.Ready || h.Status == "ready" {
			j.State = state.JobReady
			m.audit(j, "ready: source and target in sync")
			if err := m.save(j); err != nil {
				return err
			}
			return m.stepLive(ctx, j, h)
		}
		if pivots(j) && now.Sub(j.Started) > m.o.ConvergeTimeout {
			return m.notConverging(ctx, j)
		}
		return m.save(j)
	case state.JobReady:
		if j.By != "hand" && m.o.Wanted != nil && !m.o.Wanted(j) {
			j.CancelAsked = true
			j.Error, j.Cause = "its rule no longer asks for it", CauseRuleGone
			if err := m.save(j); err != nil {
				return err
			}
			return m.callDriver(ctx, "cancel", j, m.driver.CancelJob)
		}
		if m.o.PivotGate != nil && !m.o.PivotGate(j) {
			return m.save(j)
		}
		j.State = state.JobPivoting
		m.audit(j, "pivoting to "+j.Dest)
		return m.pivot(ctx, j)
	case state.JobPivoting:
		// Still there: the pivot asked for has not taken yet. A mirror
		// under writes may take a while to finish its last pass.
		if now.Sub(j.PivotAt) < pivotPatience {
			return m.save(j)
		}
		return m.pivot(ctx, j)
	}
	return m.save(j)
}

// A pivot that has not taken after pivotPatience is asked for again, at
// most maxPivotTries times.
const (
	maxPivotTries = 3
	pivotPatience = 30 * time.Second
)

// pivot asks for the switch, written first; after maxPivotTries that did
// not take, the copy is cancelled and the VM stays on its source.
func (m *Manager) pivot(ctx context.Context, j *state.Job) error {
	if j.PivotTries >= maxPivotTries {
		j.CancelAsked, j.Cause = true, CausePivotFailed
		j.Error = fmt.Sprintf("the pivot did not take after %d tries; cancelled, the VM stays on its source", j.PivotTries)
		if err := m.save(j); err != nil {
			return err
		}
		return m.callDriver(ctx, "cancel", j, m.driver.CancelJob)
	}
	j.PivotTries++
	j.PivotAt = m.o.Clock.Now()
	if err := m.save(j); err != nil { // written before the pivot is asked for
		return err
	}
	return m.callDriver(ctx, "pivot", j, m.driver.Pivot)
}

// notConverging: a copy that is not ready in time is restarted once in
// write-blocking mode (QEMU 7.2 cannot change a running mirror's mode)
// where the operator allowed that mode, and given up cleanly after that,
// or at once where not (see jobs_wblock.go).
func (m *Manager) notConverging(ctx context.Context, j *state.Job) error {
	if why := notConvergingWhy(j, m.o.AllowWriteBlocking, m.o.ConvergeTimeout); why != "" {
		j.CancelAsked, j.Cause, j.Error = true, CauseNotConverged, why
	} else {
		j.Restart = true
		m.audit(j, fmt.Sprintf("not ready after %s; restarting in write-blocking mode", m.o.ConvergeTimeout))
	}
	if err := m.save(j); err != nil {
		return err
	}
	return m.callDriver(ctx, "cancel", j, m.driver.CancelJob)
}

// qemuCancelled is the error QEMU gives a job cancelled before it was
// ready (ECANCELED).
const qemuCancelled = "Operation canceled"

// concluded handles a job that ended in the hypervisor, or is no longer
// there at all.
func (m *Manager) concluded(ctx context.Context, j *state.Job, h HVJob, found bool) error {
	cctx, cancel := m.callCtx(ctx)
	img, imgErr := m.driver.Image(cctx, j.Target)
	cancel()
	if errors.Is(imgErr, tuning.ErrVMGone) {
		j.DestCreated = false
		return m.fail(ctx, j, CauseVMGone, "the VM's QEMU went away during the job")
	}
	if imgErr != nil {
		return imgErr // looked at again next step
	}
	j.Pivoted = j.Dest != "" && img.Path == j.Dest
	if err := m.callDriver(ctx, "finish", j, m.driver.Finish); err != nil {
		m.log.Warn("block job leftovers not cleared", "job", j.ID, "error", err.Error())
	}
	if (j.Restart || j.CancelAsked) && h.Error == qemuCancelled {
		// QEMU ends a copy cancelled before ready with this error: it is
		// the cancel qtune asked for, not a failure of the copy.
		h.Error = ""
	}
	switch {
	case h.Error != "":
		return m.failCopy(ctx, j, img, CauseJobError, "the job failed: "+h.Error)
	case !pivots(j):
		spec, _ := jobKindOf(j.Kind)
		return spec.ended(m, ctx, j, img)
	case j.Pivoted:
		m.keep(j)
		return m.end(ctx, j, state.JobDone, "the VM runs on "+j.Dest+keptNote(j))
	case j.State == state.JobPivoting && j.CancelAsked:
		return m.fail(ctx, j, CausePivotFailed, j.Error)
	case j.State == state.JobPivoting:
		return m.fail(ctx, j, CausePivotFailed, "the pivot did not happen: the VM still runs on "+img.Path)
	case j.Restart:
		return m.restartWriteBlocking(ctx, j)
	case j.CancelAsked && j.Error != "":
		return m.fail(ctx, j, j.Cause, j.Error)
	case j.CancelAsked:
		return m.end(ctx, j, state.JobCancelled, "cancelled; the VM stays on "+img.Path)
	}
	return m.failCopy(ctx, j, img, CauseVanished,
		"the job vanished before its pivot (cancelled by someone else, QEMU restarted, or it failed while qtune was away); the VM stays on "+img.Path)
}

func (m *Manager) streamEnded(ctx context.Context, j *state.Job, img DiskImage) error {
	flat := len(img.Chain) == 0 || (j.Base != "" && len(img.Chain) > 0 && img.Chain[0] == j.Base)
	switch {
	case flat && img.Path == j.Source:
		m.keep(j)
		return m.end(ctx, j, state.JobDone, "chain flattened"+keptNote(j))
	case j.CancelAsked:
		return m.end(ctx, j, state.JobCancelled, "cancelled; the chain is partly streamed, which is harmless")
	}
	return m.fail(ctx, j, CauseVanished, fmt.Sprintf("the job vanished and the chain is still %d deep", len(img.Chain)))
}

func (m *Manager) restartWriteBlocking(ctx context.Context, j *state.Job) error {
	m.removeDest(j)
	m.o.Budget.Release(j)
	j.State, j.Restart, j.WriteBlocking, j.Waiting = state.JobPlanned, false, true, ""
	m.audit(j, "planned again in write-blocking mode")
	return m.save(j)
}

// fail ends a job failed, for the cause named.
func (m *Manager) fail(ctx context.Context, j *state.Job, cause, why string) error {
	j.Cause = cause
	return m.end(ctx, j, state.JobFailed, why)
}

// end writes a final state, then cleans up: the hypervisor's leftovers
// and, when no pivot happened, a target qtune created.
func (m *Manager) end(ctx context.Context, j *state.Job, s state.JobState, why string) error {
	j.State, j.Ended = s, m.o.Clock.Now()
	if s == state.JobFailed {
		j.Error = why
	}
	if err := m.save(j); err != nil {
		return err
	}
	m.removeDest(j)
	m.o.Budget.Release(j)
	m.audit(j, why)
	return m.save(j)
}

func (m *Manager) progress(j *state.Job, h HVJob) {
	now := m.o.Clock.Now()
	p := state.Progress{Offset: h.Offset, Length: h.Length, At: now, Rate: j.Progress.Rate}
	if dt := now.Sub(j.Progress.At).Seconds(); !j.Progress.At.IsZero() && dt > 0 && h.Offset >= j.Progress.Offset {
		p.Rate = float64(h.Offset-j.Progress.Offset) / dt
	}
	if p.Rate > 0 && p.Length > p.Offset {
		p.ETA = time.Duration(float64(p.Length-p.Offset) / p.Rate * float64(time.Second)).Round(time.Second)
	}
	j.Progress = p
}

func (m *Manager) callDriver(ctx context.Context, what string, j *state.Job, f func(context.Context, *state.Job) error) error {
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	if err := f(cctx, j); err != nil {
		return fmt.Errorf("%s %s: %w", what, j.ID, err)
	}
	return nil
}

// findHV finds a job in the hypervisor's list: by id, or by disk where
// the hypervisor has no ids.
func findHV(j *state.Job, hv []HVJob) (HVJob, bool) {
	for _, h := range hv {
		if h.ID == j.ID || (h.ID == "" && h.Disk == j.Disk) {
			return h, true
		}
	}
	return HVJob{}, false
}
