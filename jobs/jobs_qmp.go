package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// The tuning.QMPBackend runs block jobs too: block-stream, and blockdev-add plus
// blockdev-mirror for copies, always with qtune's job id and with
// auto-dismiss off, so that a job that ended while qtune was away is still
// there to be read.

// QMPDriver runs block jobs on plain QEMU VMs through the QMP
// backend's per-VM handles.
type QMPDriver struct{ be *tuning.QMPBackend }

// NewQMPDriver returns a driver over b's VMs.
func NewQMPDriver(b *tuning.QMPBackend) *QMPDriver { return &QMPDriver{be: b} }

// SetJobNotify sets the function called on every job event (the
// manager's Notify).
func (b *QMPDriver) SetJobNotify(f func()) { b.be.SetJobNotify(f) }

// jobVM finds a VM for a job call (see tuning.QMPBackend.VM).
func (b *QMPDriver) jobVM(name string) (*tuning.VMHandle, error) { return b.be.VM(name) }

// Image implements Driver.
func (b *QMPDriver) Image(ctx context.Context, t state.Target) (DiskImage, error) {
	r, err := b.jobVM(t.VM)
	if err != nil {
		return DiskImage{}, err
	}
	in, err := insertedOf(ctx, r.Block(), t)
	if err != nil {
		return DiskImage{}, err
	}
	path, opts, err := qmp.NodeFilename(in.File)
	if err != nil {
		return DiskImage{}, fmt.Errorf("%s: %w", t, err)
	}
	img := DiskImage{Path: path, Format: in.Driver, Node: in.NodeName, Encrypted: in.Encrypted, KeySecret: qmp.KeySecret(opts),
		Cache: &state.CacheState{Direct: in.Cache.Direct, NoFlush: in.Cache.NoFlush}}
	if in.Image != nil {
		img.VirtualSize, img.ClusterSize = in.Image.VirtualSize, in.Image.ClusterSize
		if fs := in.Image.FormatSpecific; fs != nil && fs.Type == "qcow2" {
			img.ExtendedL2, img.CompressionType = fs.Data.ExtendedL2, fs.Data.CompressionType
			if e := fs.Data.Encrypt; e != nil {
				img.Encryption = e.Format
			}
		}
		for i := in.Image; i != nil; i = i.BackingImage {
			img.Allocated += i.ActualSize
			if i != in.Image {
				img.Chain = append(img.Chain, qmp.ImagePath(i.Filename))
			}
		}
	}
	return img, nil
}

func insertedOf(ctx context.Context, b *qmp.Block, t state.Target) (*qmp.BlockDeviceInfo, error) {
	infos, err := b.QueryBlock(ctx)
	if err != nil {
		return nil, err
	}
	for _, bi := range infos {
		id := qmp.DiskID{QOMPath: bi.QDev, Device: bi.Device}
		if id.ShortID() == t.Disk && bi.Inserted != nil {
			return bi.Inserted, nil
		}
	}
	return nil, fmt.Errorf("%s has no disk %q", t.VM, t.Disk)
}

// BlockJobs implements Driver: query-jobs for status and error,
// query-block-jobs for progress. QEMU does not say which disk a job
// works on; the disk of a job qtune did not start is unknown ("").
func (b *QMPDriver) BlockJobs(ctx context.Context, vm string) ([]HVJob, error) {
	r, err := b.jobVM(vm)
	if err != nil {
		return nil, err
	}
	jobs, err := r.Block().QueryJobs(ctx)
	if err != nil {
		return nil, b.goneOr(vm, err)
	}
	bjobs, err := r.Block().QueryBlockJobs(ctx)
	if err != nil {
		return nil, b.goneOr(vm, err)
	}
	byID := map[string]qmp.BlockJobInfo{}
	for _, bj := range bjobs {
		byID[bj.Device] = bj
	}
	var out []HVJob
	for _, j := range jobs {
		bj := byID[j.ID]
		out = append(out, HVJob{ID: j.ID, Type: j.Type, Status: string(j.Status), Error: j.Error,
			Offset: j.CurrentProgress, Length: j.TotalProgress, Ready: bj.Ready || j.Status == qmp.JobReady})
	}
	return out, nil
}

// goneOr turns an error into tuning.ErrVMGone when the monitor died meanwhile.
func (b *QMPDriver) goneOr(vm string, err error) error {
	if _, gone := b.jobVM(vm); errors.Is(gone, tuning.ErrVMGone) {
		return gone
	}
	return err
}

// targetNodes names a copy's target nodes after its job (node names are
// at most 31 characters).
func targetNodes(jobID string) (file, format string) {
	h := sha256.Sum256([]byte(jobID))
	n := "qtune-" + hex.EncodeToString(h[:6])
	return n + "-f", n + "-t"
}

// StartJob implements Driver, by the job kind's QMP start.
func (b *QMPDriver) StartJob(ctx context.Context, j *state.Job, img DiskImage) error {
	spec, ok := jobKindOf(j.Kind)
	if !ok {
		return fmt.Errorf("unknown job kind %q", j.Kind)
	}
	r, err := b.jobVM(j.VM)
	if err != nil {
		return err
	}
	if img.Node == "" {
		return fmt.Errorf("%s: the disk's node has no usable name", j.Target)
	}
	return spec.qmpStart(ctx, r, j, img)
}

func nodeOfFile(ctx context.Context, b *qmp.Block, path string) (string, error) {
	nodes, err := b.QueryNamedBlockNodes(ctx, true)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		if qmp.ImagePath(n.File) == path && n.Driver != "file" && !qmp.IsAutoNodeName(n.NodeName) {
			return n.NodeName, nil
		}
	}
	return "", fmt.Errorf("no named node opens %s", path)
}

// Pivot implements Driver.
func (b *QMPDriver) Pivot(ctx context.Context, j *state.Job) error {
	r, err := b.jobVM(j.VM)
	if err != nil {
		return err
	}
	return r.Block().BlockJobComplete(ctx, j.ID)
}

// CancelJob implements Driver.
func (b *QMPDriver) CancelJob(ctx context.Context, j *state.Job) error {
	r, err := b.jobVM(j.VM)
	if err != nil {
		return err
	}
	return r.Block().BlockJobCancel(ctx, j.ID, false)
}

// SetSpeed implements Driver (block-job-set-speed).
func (b *QMPDriver) SetSpeed(ctx context.Context, j *state.Job, speed uint64) error {
	r, err := b.jobVM(j.VM)
	if err != nil {
		return err
	}
	return r.Block().BlockJobSetSpeed(ctx, j.ID, speed)
}

// Finish implements Driver: dismiss the concluded job, and delete the
// target nodes of a copy that did not pivot (the file is then free to go).
func (b *QMPDriver) Finish(ctx context.Context, j *state.Job) error {
	r, err := b.jobVM(j.VM)
	if err != nil {
		return err
	}
	var errs []error
	if err := r.Block().JobDismiss(ctx, j.ID); err != nil && !notFound(err) {
		errs = append(errs, err)
	}
	// A copy that pivoted, or a stream, let go of images: their nodes,
	// once unused, are deleted so that QEMU closes the files.
	if _, err := releaseNodes(ctx, r.Block(), releasedPaths(j)); err != nil {
		errs = append(errs, err)
	}
	if pivots(j) && !j.Pivoted {
		fileNode, fmtNode := targetNodes(j.ID)
		for _, n := range []string{fmtNode, fileNode} {
			if err := r.Block().BlockdevDel(ctx, n); err != nil && !notFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// QEMUPID implements pidDriver.
func (b *QMPDriver) QEMUPID(vm string) int {
	if r, err := b.jobVM(vm); err == nil {
		return r.PID()
	}
	return 0
}

// notFound: QEMU's answer for a job or node that is not there.
func notFound(err error) bool {
	var qe *qmp.Error
	if errors.As(err, &qe) {
		return qe.Class == "DeviceNotFound" || strings.Contains(qe.Desc, "not found") || strings.Contains(qe.Desc, "Cannot find")
	}
	return false
}
