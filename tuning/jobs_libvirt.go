package tuning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

// The LibvirtBackend runs block jobs through libvirt's own API, so the
// domain XML stays true: DomainBlockPull for stream, DomainBlockCopy (a
// transient job, into a target qtune created) and DomainBlockJobAbort
// with PIVOT for copies. libvirt has no job ids: a disk has at most one
// job, found by its target name. After a pivot the persistent definition
// is pointed at the new image too, or the next cold boot would start the
// VM on its old, stale one.

// libvirt's block job types (virDomainBlockJobType).
var libvirtJobTypes = map[int32]string{1: "pull", 2: "copy", 3: "commit", 4: "active-commit", 5: "backup"}

func (b *LibvirtBackend) running(ctx context.Context, vm string) error {
	d, err := b.v.LookupDomain(ctx, vm)
	switch {
	case errors.Is(err, virt.ErrDomainNotFound):
		return fmt.Errorf("%s: %w", vm, ErrVMGone)
	case err != nil:
		return err
	case d.ID < 0:
		return fmt.Errorf("%s is not running: %w", vm, ErrVMGone)
	}
	return nil
}

func (b *LibvirtBackend) liveDisks(ctx context.Context, vm string) ([]virt.DomainDisk, error) {
	if err := b.running(ctx, vm); err != nil {
		return nil, err
	}
	doc, err := b.v.DomainXML(ctx, vm, false)
	if err != nil {
		return nil, err
	}
	return virt.ParseDomainDisks(doc)
}

// Image implements JobDriver: the path from the live XML, the layout
// from the image itself.
func (b *LibvirtBackend) Image(ctx context.Context, t Target) (DiskImage, error) {
	disks, err := b.liveDisks(ctx, t.VM)
	if err != nil {
		return DiskImage{}, err
	}
	for _, d := range disks {
		if d.Target == t.Disk {
			if d.Source == "" {
				return DiskImage{}, fmt.Errorf("%s is not a file-backed disk", t)
			}
			return imageInfo(ctx, d.Source)
		}
	}
	return DiskImage{}, fmt.Errorf("domain %s has no disk %s", t.VM, t.Disk)
}

// imageInfo reads an image and its chain with qemu-img (-U: the VM holds
// it open).
func imageInfo(ctx context.Context, path string) (DiskImage, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--backing-chain", "--output=json", path).Output()
	if err != nil {
		return DiskImage{}, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	var chain []qmp.ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil || len(chain) == 0 {
		return DiskImage{}, fmt.Errorf("qemu-img info %s: %v", path, err)
	}
	top := chain[0]
	img := DiskImage{Path: path, Format: top.Format, VirtualSize: top.VirtualSize, ClusterSize: top.ClusterSize}
	if fs := top.FormatSpecific; fs != nil && fs.Type == "qcow2" {
		img.ExtendedL2, img.CompressionType = fs.Data.ExtendedL2, fs.Data.CompressionType
	}
	for i, l := range chain {
		img.Allocated += l.ActualSize
		if i > 0 {
			img.Chain = append(img.Chain, l.Filename)
		}
	}
	return img, nil
}

// BlockJobs implements JobDriver: one job at most per disk, without id.
func (b *LibvirtBackend) BlockJobs(ctx context.Context, vm string) ([]HVJob, error) {
	disks, err := b.liveDisks(ctx, vm)
	if errors.Is(err, ErrVMGone) {
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
func (b *LibvirtBackend) endedJob(vm string, d virt.DomainDisk) (HVJob, bool) {
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
func (b *LibvirtBackend) NoteJobEvent(vm, path string, state int32) {
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
func (b *LibvirtBackend) SetJobNotify(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onJob = f
}

// libvirtJobFailed is VIR_DOMAIN_BLOCK_JOB_FAILED.
const libvirtJobFailed = 1

func (b *LibvirtBackend) forgetJobEvent(vm, path string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.jobEvents, vm+"\x00"+path)
}

// StartJob implements JobDriver, by the job kind's libvirt start.
func (b *LibvirtBackend) StartJob(ctx context.Context, j *Job, img DiskImage) error {
	spec, ok := jobKinds[j.Kind]
	if !ok {
		return fmt.Errorf("unknown job kind %q", j.Kind)
	}
	b.forgetJobEvent(j.VM, img.Path)
	b.forgetJobError(j.VM, j.Disk)
	b.watchJobErrors(j.VM) // before the start: a job can fail within milliseconds
	return spec.libvirtStart(ctx, b, j, img)
}

// Pivot implements JobDriver.
func (b *LibvirtBackend) Pivot(ctx context.Context, j *Job) error {
	return b.v.BlockJobAbort(ctx, j.VM, j.Disk, true)
}

// CancelJob implements JobDriver.
func (b *LibvirtBackend) CancelJob(ctx context.Context, j *Job) error {
	return b.v.BlockJobAbort(ctx, j.VM, j.Disk, false)
}

// Finish implements JobDriver: libvirt clears its jobs itself; after a
// pivot the persistent definition follows the live one.
func (b *LibvirtBackend) Finish(ctx context.Context, j *Job) error {
	b.forgetJobEvent(j.VM, j.Source)
	b.jobDone(j.VM, j.Disk)
	if !j.Pivoted || j.Dest == "" {
		return nil
	}
	doc, err := b.v.DomainXML(ctx, j.VM, true)
	if err != nil {
		return err
	}
	out, err := repointDisk(doc, j.Disk, j.Source, j.Dest, j.Layout.Format)
	if err != nil {
		return fmt.Errorf("persistent definition of %s after the pivot: %w", j.Target, err)
	}
	if out == doc {
		return nil
	}
	return b.v.DefineXML(ctx, out)
}

// repointDisk points disk dev of a definition from old to new (and its
// driver to format). A definition that no longer names old is left as
// it is: someone else changed it.
func repointDisk(doc, dev, old, new, format string) (string, error) {
	target := regexp.MustCompile(`<target\b[^>]*\bdev=['"]` + regexp.QuoteMeta(dev) + `['"]`)
	source := regexp.MustCompile(`(<source\b[^>]*\bfile=)(['"])` + regexp.QuoteMeta(xmlEscape(old)) + `(['"])`)
	found := false
	out := diskElem.ReplaceAllStringFunc(doc, func(disk string) string {
		if !target.MatchString(disk) || !source.MatchString(disk) {
			return disk
		}
		found = true
		disk = source.ReplaceAllStringFunc(disk, func(m string) string {
			return source.FindStringSubmatch(m)[1] + "'" + xmlEscape(new) + "'"
		})
		if loc := driverElem.FindStringIndex(disk); loc != nil && format != "" {
			disk = disk[:loc[0]] + setAttr(disk[loc[0]:loc[1]], "type", format) + disk[loc[1]:]
		}
		return disk
	})
	if !found {
		return doc, nil
	}
	return out, nil
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;").Replace(s)
}
