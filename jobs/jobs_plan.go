package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// Planned is what planning a job came to.
type Planned struct {
	Job    *state.Job
	Result state.Result // applied (planned), no-op, recommended, dry-run
	Reason string
}

// Plan checks a request against the disk as it is now and, unless dry
// (recommend mode or dry-run), records it as a planned job that the next
// step starts when the budget allows. A disk already as asked, or with a
// job of its own, is a no-op; what is unsafe is a *tuning.Refusal.
func (m *Manager) Plan(ctx context.Context, r Request, by string, dry bool) (Planned, error) {
	return m.plan(ctx, r, by, dry, nil)
}

// plan is Plan with a gate: the executor's rate limits, asked only once
// the job is known to be worth doing.
func (m *Manager) plan(ctx context.Context, r Request, by string, dry bool, gate func() error) (Planned, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, err := m.activeOn(r.Target); err != nil || cur != nil {
		if err != nil {
			return Planned{Result: state.ResultFailed}, err
		}
		return Planned{Job: cur, Result: state.ResultNoOp, Reason: fmt.Sprintf("job %s is %s", cur.ID, cur.State)}, nil
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	img, err := m.driver.Image(cctx, r.Target)
	if err != nil {
		return Planned{Result: state.ResultFailed}, fmt.Errorf("image of %s: %w", r.Target, err)
	}
	if err := m.diskFree(cctx, r.Target); err != nil {
		return Planned{Result: state.ResultRefused}, err
	}
	j, noop, err := m.shape(r, img)
	if err != nil || noop != "" {
		res := state.ResultRefused
		if err == nil {
			res = state.ResultNoOp
		}
		return Planned{Result: res, Reason: noop}, err
	}
	j.By = by
	if old, err := m.store.Job(j.ID); err == nil && old.State == state.JobFailed && r.Rule != "" {
		if until := old.Ended.Add(m.o.FailedHold); m.o.Clock.Now().Before(until) {
			return Planned{Job: old, Result: state.ResultRefused}, &tuning.Refusal{Code: tuning.RefuseFailedBefore, Reason: fmt.Sprintf(
				"the same job failed at %s (%s); not tried again before %s", old.Ended.Format("15:04:05"), old.Error, until.Format("15:04:05"))}
		}
	}
	if gate != nil {
		if err := gate(); err != nil {
			return Planned{Job: j, Result: state.ResultRefused}, err
		}
	}
	if dry {
		return Planned{Job: j, Result: state.ResultDryRun}, nil
	}
	now := m.o.Clock.Now()
	j.State, j.Created = state.JobPlanned, now
	if err := m.save(j); err != nil {
		return Planned{Result: state.ResultFailed}, err
	}
	m.audit(j, "planned "+describe(j))
	m.Notify()
	return Planned{Job: j, Result: state.ResultApplied}, nil
}

// diskFree refuses a disk that already has a block job, qtune's or not.
func (m *Manager) diskFree(ctx context.Context, t state.Target) error {
	hv, err := m.driver.BlockJobs(ctx, t.VM)
	if err != nil {
		return fmt.Errorf("block jobs of %s: %w", t.VM, err)
	}
	for _, h := range hv {
		if hvBlocks(h, t) {
			return &tuning.Refusal{Code: tuning.RefuseBusy, Reason: fmt.Sprintf("%s already has a block job (%s %s, status %s)", t, h.Type, h.ID, h.Status)}
		}
	}
	return nil
}

// hvBlocks reports whether a hypervisor job may be on disk t. A job of
// unknown disk that qtune did not start blocks every disk of its VM; one
// of qtune's names its disk in its id.
func hvBlocks(h HVJob, t state.Target) bool {
	switch {
	case h.Disk != "":
		return h.Disk == t.Disk
	case IsQtuneJobID(h.ID):
		return strings.Contains(h.ID, "-"+idPart(t.VM, 24)+"-"+idPart(t.Disk, 16)+"-")
	}
	return true
}

// shape turns a request into a job for the disk as it is, or says why
// there is nothing to do (noop) or why it is refused (err).
func (m *Manager) shape(r Request, img DiskImage) (*state.Job, string, error) {
	j := &state.Job{Kind: r.Kind, Target: r.Target, Rule: r.Rule, Source: img.Path, Speed: r.Speed,
		Chain: img.Chain, WriteBlocking: r.CopyMode == "write-blocking"}
	spec, ok := jobKindOf(r.Kind)
	if !ok {
		return nil, "", &tuning.Refusal{Code: tuning.RefuseUnsupported, Reason: fmt.Sprintf("unknown job kind %q", r.Kind)}
	}
	if noop, err := spec.shape(m, j, r, img); err != nil || noop != "" {
		return nil, noop, err
	}
	if err := m.refuseWriteBlocking(j); err != nil {
		return nil, "", err
	}
	j.ID = JobID(j.Kind, j.Target, j.Source, j.Dest)
	return j, "", nil
}

func (m *Manager) shapeStream(j *state.Job, r Request, img DiskImage) (string, error) {
	if len(img.Chain) == 0 {
		return "no backing chain", nil
	}
	if r.Base != "" {
		i := indexOf(img.Chain, r.Base)
		if i < 0 {
			return "", &tuning.Refusal{Code: tuning.RefuseBounds, Reason: fmt.Sprintf("base %s is not in the backing chain of %s", r.Base, img.Path)}
		}
		if i == 0 {
			return "the image sits right on its base", nil
		}
		j.Base = r.Base
	}
	// The chain's data lands in the active image: its filesystem needs
	// room for it (the chain's size is an upper bound).
	return "", m.checkSpace(state.DirOf(img.Path), img.Allocated)
}

func (m *Manager) shapeCopy(j *state.Job, r Request, img DiskImage) (string, error) {
	dir := state.DirOf(img.Path)
	if r.Kind == policy.KnobMirror {
		if !filepath.IsAbs(r.TargetDir) {
			return "", &tuning.Refusal{Code: tuning.RefuseBounds, Reason: fmt.Sprintf("mirror target %q is not an absolute directory", r.TargetDir)}
		}
		if !m.allowedDir(r.TargetDir) {
			return "", &tuning.Refusal{Code: tuning.RefuseMirrorDir, Reason: fmt.Sprintf("%s is not an allowed mirror directory (mirror_dirs, --allow-mirror-dir): allowed are %s",
				r.TargetDir, listOrNone(m.o.MirrorDirs))}
		}
		dir = filepath.Clean(r.TargetDir)
	}
	l := fillLayout(r.Layout, img)
	if err := refuseClearCopy(img, l); err != nil {
		return "", err
	}
	if dir == state.DirOf(img.Path) && layoutMatches(l, img) {
		if r.Kind == policy.KnobMirror {
			return "already in " + dir + " as " + l.String(), nil
		}
		return "already laid out as " + l.String(), nil
	}
	if len(img.Chain) > 0 && r.Kind == policy.KnobConvert {
		// A copy flattens the chain: the layout changes, so does what the
		// disk's history rests on. Stream first.
		return "", &tuning.Refusal{Code: tuning.RefuseIncompatible, Reason: "convert of a disk with a backing chain: stream it first"}
	}
	if r.Kind == policy.KnobConvert && l.Format == "qcow2" && l.Preallocation == "" && !img.Encrypted {
		// A rewrite is for an unfragmented image: its clusters are laid
		// out in disk order up front (no data blocks on a sparse
		// filesystem), and the copy fills them in place. Not for an
		// encrypted copy: a cluster allocated but not written would read
		// through the key as garbage where the guest had zeros.
		l.Preallocation = "metadata"
	}
	j.Layout = l
	j.Dest = destPath(r.Kind, img.Path, dir, l)
	if err := m.checkSpace(dir, copyNeed(l, img)); err != nil {
		return "", err
	}
	if _, err := os.Lstat(j.Dest); err == nil {
		return "", &tuning.Refusal{Code: tuning.RefuseExists, Reason: fmt.Sprintf("%s already exists; qtune never overwrites a file", j.Dest)}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", &tuning.Refusal{Code: tuning.RefuseExists, Reason: err.Error()}
	}
	return "", nil
}

// checkSpace refuses a job whose data would not fit in dir with a margin.
func (m *Manager) checkSpace(dir string, need uint64) error {
	margin := max(m.o.SpaceMargin, need/20)
	free, err := m.o.FreeSpace(dir)
	if err != nil {
		return &tuning.Refusal{Code: tuning.RefuseSpace, Reason: err.Error()}
	}
	if free < need+margin {
		return &tuning.Refusal{Code: tuning.RefuseSpace, Reason: fmt.Sprintf("%s has %s free; the job needs %s plus a margin of %s",
			dir, bytesText(free), bytesText(need), bytesText(margin))}
	}
	return nil
}

// fillLayout takes what the request leaves open from the source.
func fillLayout(l policy.Layout, img DiskImage) policy.Layout {
	if l.Format == "" {
		l.Format = img.Format
	}
	if l.Format != "qcow2" {
		return policy.Layout{Format: l.Format, Preallocation: l.Preallocation}
	}
	if l.ClusterSize == 0 && img.Format == "qcow2" {
		l.ClusterSize = img.ClusterSize
	}
	if l.ExtendedL2 == nil && img.Format == "qcow2" {
		x := img.ExtendedL2
		l.ExtendedL2 = &x
	}
	if l.CompressionType == "" && img.Format == "qcow2" {
		l.CompressionType = img.CompressionType
	}
	return l
}

// layoutMatches: preallocation is not visible in a finished image and so
// never makes a copy by itself.
func layoutMatches(l policy.Layout, img DiskImage) bool {
	if l.Format != img.Format {
		return false
	}
	if l.Format != "qcow2" {
		return true
	}
	return l.ClusterSize == img.ClusterSize && (l.ExtendedL2 == nil || *l.ExtendedL2 == img.ExtendedL2) &&
		(l.CompressionType == "" || img.CompressionType == "" || l.CompressionType == img.CompressionType)
}

// destPath names a copy's target: a mirror keeps the file's name in its
// new directory; a convert (same directory) adds a tag of its layout.
func destPath(kind policy.Knob, src, dir string, l policy.Layout) string {
	base := filepath.Base(src)
	if kind == policy.KnobMirror && dir != state.DirOf(src) {
		return filepath.Join(dir, base)
	}
	ext := filepath.Ext(base)
	h := sha256.Sum256([]byte(src + "\x00" + l.String()))
	return filepath.Join(dir, strings.TrimSuffix(base, ext)+".qtune-"+hex.EncodeToString(h[:3])+"."+l.Format)
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func describe(j *state.Job) string {
	if spec, ok := jobKindOf(j.Kind); ok {
		return spec.describe(j)
	}
	return string(j.Kind) + " " + j.Source
}

// audit records a job's step in the action log and the journal.
func (m *Manager) audit(j *state.Job, what string) {
	r := &state.Record{At: m.o.Clock.Now(), Target: j.Target, Knob: j.Kind, Rule: j.Rule,
		Job: j.State, Reason: what, After: j.ID}
	if err := m.store.Append(r); err != nil {
		m.log.Error("action log write failed", "job", j.ID, "error", err.Error())
	}
	args := []any{"job", j.ID, "vm", j.VM, "disk", j.Disk, "state", string(j.State), "what", what}
	if j.Error != "" {
		args = append(args, "error", j.Error)
	}
	if j.State == state.JobFailed {
		m.log.Error("block job", args...)
		return
	}
	m.log.Info("block job", args...)
}
