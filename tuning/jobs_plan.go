package tuning

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
)

// Planned is what planning a job came to.
type Planned struct {
	Job    *Job
	Result Result // applied (planned), no-op, recommended, dry-run
	Reason string
}

// Plan checks a request against the disk as it is now and, unless dry
// (recommend mode or dry-run), records it as a planned job that the next
// step starts when the budget allows. A disk already as asked, or with a
// job of its own, is a no-op; what is unsafe is a *Refusal.
func (m *JobManager) Plan(ctx context.Context, r JobRequest, by string, dry bool) (Planned, error) {
	return m.plan(ctx, r, by, dry, nil)
}

// plan is Plan with a gate: the executor's rate limits, asked only once
// the job is known to be worth doing.
func (m *JobManager) plan(ctx context.Context, r JobRequest, by string, dry bool, gate func() error) (Planned, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, err := m.activeOn(r.Target); err != nil || cur != nil {
		if err != nil {
			return Planned{Result: ResultFailed}, err
		}
		return Planned{Job: cur, Result: ResultNoOp, Reason: fmt.Sprintf("job %s is %s", cur.ID, cur.State)}, nil
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	img, err := m.driver.Image(cctx, r.Target)
	if err != nil {
		return Planned{Result: ResultFailed}, fmt.Errorf("image of %s: %w", r.Target, err)
	}
	if err := m.diskFree(cctx, r.Target); err != nil {
		return Planned{Result: ResultRefused}, err
	}
	j, noop, err := m.shape(r, img)
	if err != nil || noop != "" {
		res := ResultRefused
		if err == nil {
			res = ResultNoOp
		}
		return Planned{Result: res, Reason: noop}, err
	}
	j.By = by
	if old, err := m.store.Job(j.ID); err == nil && old.State == JobFailed && r.Rule != "" {
		if until := old.Ended.Add(m.o.FailedHold); m.o.Clock.Now().Before(until) {
			return Planned{Job: old, Result: ResultRefused}, &Refusal{Code: "failed-before", Reason: fmt.Sprintf(
				"the same job failed at %s (%s); not tried again before %s", old.Ended.Format("15:04:05"), old.Error, until.Format("15:04:05"))}
		}
	}
	if gate != nil {
		if err := gate(); err != nil {
			return Planned{Job: j, Result: ResultRefused}, err
		}
	}
	if dry {
		return Planned{Job: j, Result: ResultDryRun}, nil
	}
	now := m.o.Clock.Now()
	j.State, j.Created = JobPlanned, now
	if err := m.save(j); err != nil {
		return Planned{Result: ResultFailed}, err
	}
	m.audit(j, "planned "+j.describe())
	m.Notify()
	return Planned{Job: j, Result: ResultApplied}, nil
}

// diskFree refuses a disk that already has a block job, qtune's or not.
func (m *JobManager) diskFree(ctx context.Context, t Target) error {
	hv, err := m.driver.BlockJobs(ctx, t.VM)
	if err != nil {
		return fmt.Errorf("block jobs of %s: %w", t.VM, err)
	}
	for _, h := range hv {
		if hvBlocks(h, t) {
			return &Refusal{Code: "busy", Reason: fmt.Sprintf("%s already has a block job (%s %s, status %s)", t, h.Type, h.ID, h.Status)}
		}
	}
	return nil
}

// hvBlocks reports whether a hypervisor job may be on disk t. A job of
// unknown disk that qtune did not start blocks every disk of its VM; one
// of qtune's names its disk in its id.
func hvBlocks(h HVJob, t Target) bool {
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
func (m *JobManager) shape(r JobRequest, img DiskImage) (*Job, string, error) {
	j := &Job{Kind: r.Kind, Target: r.Target, Rule: r.Rule, Source: img.Path, Speed: r.Speed,
		WriteBlocking: r.CopyMode == "write-blocking"}
	spec, ok := jobKinds[r.Kind]
	if !ok {
		return nil, "", &Refusal{Code: "unsupported", Reason: fmt.Sprintf("unknown job kind %q", r.Kind)}
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

func (m *JobManager) shapeStream(j *Job, r JobRequest, img DiskImage) (string, error) {
	if len(img.Chain) == 0 {
		return "no backing chain", nil
	}
	if r.Base != "" {
		i := indexOf(img.Chain, r.Base)
		if i < 0 {
			return "", &Refusal{Code: "bounds", Reason: fmt.Sprintf("base %s is not in the backing chain of %s", r.Base, img.Path)}
		}
		if i == 0 {
			return "the image sits right on its base", nil
		}
		j.Base = r.Base
	}
	// The chain's data lands in the active image: its filesystem needs
	// room for it (the chain's size is an upper bound).
	return "", m.checkSpace(dirOf(img.Path), img.Allocated)
}

func (m *JobManager) shapeCopy(j *Job, r JobRequest, img DiskImage) (string, error) {
	dir := dirOf(img.Path)
	if r.Kind == JobMirror {
		if !filepath.IsAbs(r.TargetDir) {
			return "", &Refusal{Code: "bounds", Reason: fmt.Sprintf("mirror target %q is not an absolute directory", r.TargetDir)}
		}
		if !m.allowedDir(r.TargetDir) {
			return "", &Refusal{Code: "mirror-dir", Reason: fmt.Sprintf("%s is not an allowed mirror directory (mirror_dirs, --allow-mirror-dir): allowed are %s",
				r.TargetDir, listOrNone(m.o.MirrorDirs))}
		}
		dir = filepath.Clean(r.TargetDir)
	}
	l := fillLayout(r.Layout, img)
	if dir == dirOf(img.Path) && layoutMatches(l, img) {
		if r.Kind == JobMirror {
			return "already in " + dir + " as " + l.String(), nil
		}
		return "already laid out as " + l.String(), nil
	}
	if len(img.Chain) > 0 && r.Kind == JobConvert {
		// A copy flattens the chain: the layout changes, so does what the
		// disk's history rests on. Stream first.
		return "", &Refusal{Code: "incompatible", Reason: "convert of a disk with a backing chain: stream it first"}
	}
	if r.Kind == JobConvert && l.Format == "qcow2" && l.Preallocation == "" {
		// A rewrite is for an unfragmented image: its clusters are laid
		// out in disk order up front (no data blocks on a sparse
		// filesystem), and the copy fills them in place.
		l.Preallocation = "metadata"
	}
	j.Layout = l
	j.Dest = destPath(r.Kind, img.Path, dir, l)
	if err := m.checkSpace(dir, copyNeed(l, img)); err != nil {
		return "", err
	}
	if _, err := os.Lstat(j.Dest); err == nil {
		return "", &Refusal{Code: "exists", Reason: fmt.Sprintf("%s already exists; qtune never overwrites a file", j.Dest)}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", &Refusal{Code: "exists", Reason: err.Error()}
	}
	return "", nil
}

// checkSpace refuses a job whose data would not fit in dir with a margin.
func (m *JobManager) checkSpace(dir string, need uint64) error {
	margin := max(m.o.SpaceMargin, need/20)
	free, err := m.o.FreeSpace(dir)
	if err != nil {
		return &Refusal{Code: "space", Reason: err.Error()}
	}
	if free < need+margin {
		return &Refusal{Code: "space", Reason: fmt.Sprintf("%s has %s free; the job needs %s plus a margin of %s",
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
func destPath(kind JobKind, src, dir string, l policy.Layout) string {
	base := filepath.Base(src)
	if kind == JobMirror && dir != dirOf(src) {
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

func (j *Job) describe() string {
	if spec, ok := jobKinds[j.Kind]; ok {
		return spec.describe(j)
	}
	return string(j.Kind) + " " + j.Source
}

// audit records a job's step in the action log and the journal.
func (m *JobManager) audit(j *Job, what string) {
	r := &Record{At: m.o.Clock.Now(), Target: j.Target, Knob: policy.Knob(j.Kind), Rule: j.Rule,
		Result: Result("job-" + string(j.State)), Reason: what, After: j.ID}
	if err := m.store.Append(r); err != nil {
		m.log.Error("action log write failed", "job", j.ID, "error", err.Error())
	}
	args := []any{"job", j.ID, "vm", j.VM, "disk", j.Disk, "state", string(j.State), "what", what}
	if j.Error != "" {
		args = append(args, "error", j.Error)
	}
	if j.State == JobFailed {
		m.log.Error("block job", args...)
		return
	}
	m.log.Info("block job", args...)
}
