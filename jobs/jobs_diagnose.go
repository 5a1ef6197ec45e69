package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// What qtune finds itself about a failed copy, beside (or, under libvirt
// when QEMU's event did not reach it, instead of) the hypervisor's words:
// the target's filesystem and file as they are after the failure, looked
// at before the target is removed. Worded as qtune's finding, never as
// QEMU's or libvirt's.

// Causes of a failed job, short and few: the reason label of
// qtune_job_state. The sentence is in Job.Error.
const (
	CauseTargetFull       = "target_full"
	CauseTargetGone       = "target_gone"
	CauseTargetUnreadable = "target_unreadable"
	CauseTargetReadOnly   = "target_read_only"
	CauseJobError         = "job_error" // the hypervisor's error, nothing more found
	CauseVanished         = "vanished"
	CauseVMGone           = "vm_gone"
	CauseDiskMoved        = "disk_moved"
	CauseStartFailed      = "start_failed"
	CausePivotFailed      = "pivot_failed"
	CauseNotConverged     = "not_converged"
	CauseRuleGone         = "rule_gone"
)

// copyNeed is the space a copy of img laid out as l takes on its target.
func copyNeed(l policy.Layout, img DiskImage) uint64 {
	if l.Preallocation == "full" || l.Preallocation == "falloc" || l.Format == "raw" {
		return img.VirtualSize
	}
	return img.Allocated
}

// targetFinding looks at a failed copy's target and its filesystem; an
// empty cause means nothing wrong was found there.
func (m *Manager) targetFinding(j *state.Job, img DiskImage) (cause, text string) {
	if !pivots(j) || j.Dest == "" || j.Pivoted {
		return "", ""
	}
	st, err := os.Stat(j.Dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return CauseTargetGone, "the target " + j.Dest + " gone"
	case err != nil:
		return CauseTargetUnreadable, "the target " + j.Dest + " unreadable: " + err.Error()
	}
	if err := readable(j.Dest); err != nil {
		return CauseTargetUnreadable, "the target " + j.Dest + " unreadable: " + err.Error()
	}
	dir := j.TargetDir()
	fs, err := m.o.StatFS(dir)
	if err != nil {
		return "", ""
	}
	if fs.ReadOnly {
		return CauseTargetReadOnly, "the target filesystem " + dir + " read-only"
	}
	var have uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		have = uint64(sys.Blocks) * 512
	}
	if need := copyNeed(j.Layout, img); fs.Free+have < need {
		return CauseTargetFull, fmt.Sprintf("the target filesystem %s full: %s free of %s, the copy needs %s",
			dir, bytesText(fs.Free), bytesText(fs.Size), bytesText(need))
	}
	return "", ""
}

// readable reads the first bytes of a file: a target on a failing disk
// or a lost mount fails here.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Read(make([]byte, 512)); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// failCopy fails a copy with what qtune found at its target: why is
// the hypervisor's account; a finding is added to it and names the cause.
func (m *Manager) failCopy(ctx context.Context, j *state.Job, img DiskImage, cause, why string) error {
	if found, text := m.targetFinding(j, img); found != "" {
		cause, why = found, why+"; qtune found "+text
	}
	return m.fail(ctx, j, cause, why)
}
