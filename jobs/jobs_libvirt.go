package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/qtune/qtune/internal/qemuimg"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// The tuning.LibvirtBackend runs block jobs through libvirt's own API, so the
// domain XML stays true: DomainBlockPull for stream, DomainBlockCopy (a
// transient job, into a target qtune created) and DomainBlockJobAbort
// with PIVOT for copies. libvirt has no job ids: a disk has at most one
// job, found by its target name. After a pivot the persistent definition
// is pointed at the new image too, or the next cold boot would start the
// VM on its old, stale one.

// LibvirtDriver runs block jobs on libvirt domains, on the connection of
// the libvirt backend, and follows their events.
type LibvirtDriver struct {
	v       *virt.Libvirt
	log     hclog.Logger
	qemuImg qemuimg.Runner // reads the images libvirt names
	pid     func(domain string) int

	mu        sync.Mutex
	jobEvents map[string]jobEvent  // last block-job event by domain and disk path
	watches   map[string]*jobWatch // domains whose QEMU events are followed for job errors
	onJob     func()
}

// DriverOptions configure a driver.
type DriverOptions struct {
	Log     hclog.Logger
	QemuImg qemuimg.Runner // the agent's qemu_img
}

// NewLibvirtDriver returns a driver on b's connection; b passes the
// block-job events the sampler receives on to it.
func NewLibvirtDriver(b *tuning.LibvirtBackend, o DriverOptions) *LibvirtDriver {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	d := &LibvirtDriver{v: b.Libvirt(), log: o.Log, qemuImg: o.QemuImg, pid: b.QEMUPID, watches: map[string]*jobWatch{}}
	b.SetJobEventSink(d.NoteJobEvent)
	return d
}

// libvirt's block job types (virDomainBlockJobType).
var libvirtJobTypes = map[int32]string{1: "pull", 2: "copy", 3: "commit", 4: "active-commit", 5: "backup"}

func (b *LibvirtDriver) running(ctx context.Context, vm string) error {
	d, err := b.v.LookupDomain(ctx, vm)
	switch {
	case errors.Is(err, virt.ErrDomainNotFound):
		return fmt.Errorf("%s: %w", vm, tuning.ErrVMGone)
	case err != nil:
		return err
	case d.ID < 0:
		return fmt.Errorf("%s is not running: %w", vm, tuning.ErrVMGone)
	}
	return nil
}

func (b *LibvirtDriver) liveDisks(ctx context.Context, vm string) ([]virt.DomainDisk, error) {
	if err := b.running(ctx, vm); err != nil {
		return nil, err
	}
	doc, err := b.v.DomainXML(ctx, vm, false)
	if err != nil {
		return nil, err
	}
	return virt.ParseDomainDisks(doc)
}

// Image implements Driver: the path from the live XML, the layout
// from the image itself.
func (b *LibvirtDriver) Image(ctx context.Context, t state.Target) (DiskImage, error) {
	disks, err := b.liveDisks(ctx, t.VM)
	if err != nil {
		return DiskImage{}, err
	}
	for _, d := range disks {
		if d.Target == t.Disk {
			if d.Source == "" {
				return DiskImage{}, fmt.Errorf("%s is not a file-backed disk", t)
			}
			img, err := b.imageInfo(ctx, d.Source)
			if err == nil {
				libvirtKey(ctx, b.v, d.Encryption, &img)
			}
			return img, err
		}
	}
	return DiskImage{}, fmt.Errorf("domain %s has no disk %s", t.VM, t.Disk)
}

// imageInfo reads an image and its chain with qemu-img.
func (b *LibvirtDriver) imageInfo(ctx context.Context, path string) (DiskImage, error) {
	chain, err := b.qemuImg.Info(ctx, path)
	if err != nil {
		return DiskImage{}, err
	}
	top := chain[0]
	img := DiskImage{Path: path, Format: top.Format, VirtualSize: top.VirtualSize, ClusterSize: top.ClusterSize}
	if fs := top.FormatSpecific; fs != nil && fs.Type == "qcow2" {
		img.ExtendedL2, img.CompressionType = fs.Data.ExtendedL2, fs.Data.CompressionType
		if e := fs.Data.Encrypt; e != nil {
			img.Encryption = e.Format
		}
	}
	// The key of an encrypted disk is the libvirt secret its XML names
	// (libvirtKey).
	img.Encrypted = top.Encrypted
	for i, l := range chain {
		img.Allocated += l.ActualSize
		if i > 0 {
			img.Chain = append(img.Chain, l.Filename)
		}
	}
	return img, nil
}

// BlockJobs implements Driver: one job at most per disk, without id.
func (b *LibvirtDriver) BlockJobs(ctx context.Context, vm string) ([]HVJob, error) {
	disks, err := b.liveDisks(ctx, vm)
	if errors.Is(err, tuning.ErrVMGone) {
		b.stopWatch(vm) // its jobs end failed, without a Finish
	}
	if err != nil {
		return nil, err
	}
	var out []HVJob
	live := map[string]bool{}
	for _, d := range disks {
		j, err := b.v.BlockJobInfo(ctx, vm, d.Target)
		if err != nil {
			return nil, err
		}
		if !j.Found {
			if h, ok := b.endedJob(vm, d); ok {
				out = append(out, h)
			}
			continue
		}
		live[d.Target] = true
		h := HVJob{Disk: d.Target, Type: libvirtJobTypes[j.Type], Status: "running", Offset: j.Cur, Length: j.End}
		// A copy is ready (mirroring) once it has caught up: libvirt
		// reports it so, as virsh blockjob does.
		if j.Type == 2 && j.End > 0 && j.Cur == j.End {
			h.Ready, h.Status = true, "ready"
		}
		out = append(out, h)
	}
	b.noteLive(vm, live)
	return out, nil
}

// endedJob reports a disk whose job libvirt no longer lists but said
// failed: with QEMU's reason when its event came, else as failed without
// one. A failure just reported waits a moment for that event, as a job
// still ending.
func (b *LibvirtDriver) endedJob(vm string, d virt.DomainDisk) (HVJob, bool) {
	failed, msg, wait := b.failure(vm, d.Target, d.Source, time.Now())
	switch {
	case msg == "" && wait:
		return HVJob{Disk: d.Target, Status: "aborting"}, true
	case !failed:
		return HVJob{}, false // gone: the manager judges it from the disk
	case msg == "":
		msg = libvirtNoReason
	}
	return HVJob{Disk: d.Target, Status: "concluded", Error: msg}, true
}

// NoteJobEvent records a libvirt block-job event (path based; the only
// one go-libvirt delivers) and wakes the job manager.
func (b *LibvirtDriver) NoteJobEvent(vm, path string, state int32) {
	b.mu.Lock()
	if b.jobEvents == nil {
		b.jobEvents = map[string]jobEvent{}
	}
	b.jobEvents[vm+"\x00"+path] = jobEvent{state: state, at: time.Now()}
	notify := b.onJob
	b.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// SetJobNotify sets the function called on every block-job event.
func (b *LibvirtDriver) SetJobNotify(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onJob = f
}

// libvirtJobFailed is VIR_DOMAIN_BLOCK_JOB_FAILED.
const libvirtJobFailed = 1

func (b *LibvirtDriver) forgetJobEvent(vm, path string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.jobEvents, vm+"\x00"+path)
}

// StartJob implements Driver, by the job kind's libvirt start.
func (b *LibvirtDriver) StartJob(ctx context.Context, j *state.Job, img DiskImage) error {
	spec, ok := jobKindOf(j.Kind)
	if !ok {
		return fmt.Errorf("unknown job kind %q", j.Kind)
	}
	b.forgetJobEvent(j.VM, img.Path)
	b.forgetJobError(j.VM, j.Disk)
	b.watchJobErrors(j.VM) // before the start: a job can fail within milliseconds
	return spec.libvirtStart(ctx, b, j, img)
}

// Pivot implements Driver.
func (b *LibvirtDriver) Pivot(ctx context.Context, j *state.Job) error {
	return b.v.BlockJobAbort(ctx, j.VM, j.Disk, true)
}

// CancelJob implements Driver.
func (b *LibvirtDriver) CancelJob(ctx context.Context, j *state.Job) error {
	return b.v.BlockJobAbort(ctx, j.VM, j.Disk, false)
}

// SetSpeed implements Driver (virDomainBlockJobSetSpeed, in bytes).
func (b *LibvirtDriver) SetSpeed(ctx context.Context, j *state.Job, speed uint64) error {
	return b.v.BlockJobSetSpeed(ctx, j.VM, j.Disk, speed)
}

// QEMUPID implements pidDriver: after a pivot or a pull, libvirt itself
// deletes the nodes of the images the disk left (blockdev-del), so qtune
// only looks whether QEMU still holds them.
func (b *LibvirtDriver) QEMUPID(vm string) int { return b.pid(vm) }

// Finish implements Driver: libvirt clears its jobs itself; after a
// pivot the persistent definition follows the live one.
func (b *LibvirtDriver) Finish(ctx context.Context, j *state.Job) error {
	b.forgetJobEvent(j.VM, j.Source)
	b.jobDone(j.VM, j.Disk)
	if !j.Pivoted || j.Dest == "" {
		return nil
	}
	doc, err := b.v.DomainXML(ctx, j.VM, true)
	if err != nil {
		return err
	}
	out, err := tuning.RepointDisk(doc, j.Disk, j.Source, j.Dest, j.Layout.Format)
	if err != nil {
		return fmt.Errorf("persistent definition of %s after the pivot: %w", j.Target, err)
	}
	if out == doc {
		return nil
	}
	return b.v.DefineXML(ctx, out)
}
