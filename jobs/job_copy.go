package jobs

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// The mirror and convert jobs: copy a disk into a new image qtune
// created (in another allowed directory, or beside it with another
// layout), wait until source and target are in sync, and pivot the VM
// onto the copy. The source is never deleted.
func init() {
	registerJob(policy.KnobMirror, jobKindSpec{shape: (*Manager).shapeCopy,
		fromAction: func(a policy.Action, r *Request) {
			if s := a.Mirror; s != nil {
				r.TargetDir, r.Layout, r.Speed, r.CopyMode = s.TargetDir, s.Layout, s.Speed, s.CopyMode
			}
		},
		describe:     func(j *state.Job) string { return "mirror " + j.Source + " to " + j.Dest },
		qmpStart:     qmpStartCopy,
		libvirtStart: libvirtStartCopy,
	})
	registerJob(policy.KnobConvert, jobKindSpec{shape: (*Manager).shapeCopy,
		fromAction: func(a policy.Action, r *Request) {
			if s := a.Convert; s != nil {
				r.Layout, r.Speed, r.CopyMode = s.Layout, s.Speed, s.CopyMode
			}
		},
		describe: func(j *state.Job) string {
			return "convert " + j.Source + " to " + j.Dest + " (" + j.Layout.String() + ")"
		},
		qmpStart:     qmpStartCopy,
		libvirtStart: libvirtStartCopy,
	})
}

// qmpStartCopy adds the target qtune created as nodes of its own and
// mirrors the disk onto them.
func qmpStartCopy(ctx context.Context, vm *tuning.VMHandle, j *state.Job, img DiskImage) error {
	off := false
	fileNode, fmtNode := targetNodes(j.ID)
	file := map[string]any{"driver": "file", "filename": j.Dest, "node-name": fileNode}
	format := map[string]any{"driver": j.Layout.Format, "file": fileNode, "node-name": fmtNode}
	if c := img.Cache; c != nil {
		for _, n := range []map[string]any{file, format} {
			n["cache"] = map[string]any{"direct": c.Direct, "no-flush": c.NoFlush}
		}
	}
	if img.Encrypted {
		// LUKS's key derivation (QEMU's default: two seconds of PBKDF2,
		// once to make the key slot and once to open it) runs in QEMU's
		// main loop and holds the monitor meanwhile: these calls get a
		// deadline of their own.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), encryptedStartTimeout)
		defer cancel()
	}
	if err := vm.Block().BlockdevAdd(ctx, file); err != nil {
		return fmt.Errorf("add target %s: %w", j.Dest, err)
	}
	if img.Encrypted {
		// The target is formatted here, by QEMU, with the disk's key.
		enc, err := qmpFormatEncrypted(ctx, vm, j, img, fileNode)
		if err != nil {
			vm.Block().BlockdevDel(ctx, fileNode)
			return err
		}
		for k, v := range enc {
			format[k] = v
		}
	}
	if err := vm.Block().BlockdevAdd(ctx, format); err != nil {
		vm.Block().BlockdevDel(ctx, fileNode)
		return fmt.Errorf("add target %s: %w", j.Dest, err)
	}
	if img.Encrypted {
		if err := checkEncryptedNode(ctx, vm, fmtNode); err != nil {
			vm.Block().BlockdevDel(ctx, fmtNode)
			vm.Block().BlockdevDel(ctx, fileNode)
			return err
		}
	}
	mode := "background"
	if j.WriteBlocking {
		mode = "write-blocking"
	}
	// Errors on either side end the job (report) instead of pausing the
	// guest: the VM goes on on its source whatever the target does.
	a := qmp.MirrorArgs{JobID: j.ID, Device: img.Node, Target: fmtNode, Sync: "full",
		Speed: j.Speed, OnSourceError: "report", OnTargetError: "report", CopyMode: mode, AutoDismiss: &off}
	if j.Kind == policy.KnobConvert && len(img.Chain) == 0 {
		// The target's clusters are laid out in disk order when it is
		// created, and the copy must fill them in place. sync=full would
		// first zero the whole target with unmap, freeing them, and the
		// chunks then land in whatever order they finish (blockdev-mirror
		// has no unmap switch on 7.2). With no backing chain, top copies
		// the same data and skips that pass.
		a.Sync = "top"
	}
	return vm.Block().BlockdevMirror(ctx, a)
}

func libvirtStartCopy(ctx context.Context, b *LibvirtDriver, j *state.Job, img DiskImage) error {
	secret := ""
	if img.Encrypted {
		// Making the target's key slot and libvirt's opening of it each
		// run LUKS's key derivation: seconds, more on a loaded host.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), encryptedStartTimeout)
		defer cancel()
		if err := b.formatEncryptedLibvirt(ctx, j, img); err != nil {
			return err
		}
		secret = img.KeySecret
	}
	dest := copyDestXML(j.Dest, j.Layout.Format, secret)
	flags := libvirt.DomainBlockCopyReuseExt // qtune made the target, with the layout asked for
	if j.WriteBlocking {
		flags |= libvirt.DomainBlockCopySynchronousWrites
	}
	// A convert cannot keep its target's preallocated layout here:
	// libvirt copies a disk without a chain with sync=full (it drops a
	// shallow flag there), and QEMU's first pass frees the target's
	// clusters. The new image has the layout asked for, but is less
	// perfectly ordered than through QMP.
	return b.v.BlockCopy(ctx, j.VM, j.Disk, dest, j.Speed, flags)
}
