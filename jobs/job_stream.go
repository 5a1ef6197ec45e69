package jobs

import (
	"context"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// The stream job: flatten a disk's backing chain (all of it, or down to a
// base) into its active image. It has no ready or pivot: it is done when
// it concludes without error and the chain is gone.
func init() {
	registerJob(policy.KnobStream, jobKindSpec{shape: (*Manager).shapeStream,
		fromAction: func(a policy.Action, r *Request) {
			if s := a.Stream; s != nil {
				r.Base, r.Speed = s.Base, s.Speed
			}
		},
		describe: func(j *state.Job) string {
			if j.Base != "" {
				return "stream " + j.Source + " down to " + j.Base
			}
			return "stream " + j.Source
		},
		qmpStart: func(ctx context.Context, vm *tuning.VMHandle, j *state.Job, img DiskImage) error {
			off := false
			a := qmp.StreamArgs{JobID: j.ID, Device: img.Node, Speed: j.Speed, AutoDismiss: &off}
			if j.Base != "" {
				var err error
				if a.BaseNode, err = nodeOfFile(ctx, vm.Block(), j.Base); err != nil {
					return err
				}
			}
			return vm.Block().BlockStream(ctx, a)
		},
		libvirtStart: func(ctx context.Context, b *LibvirtDriver, j *state.Job, _ DiskImage) error {
			if j.Base != "" {
				return b.v.BlockPullTo(ctx, j.VM, j.Disk, j.Base, j.Speed)
			}
			return b.v.BlockPull(ctx, j.VM, j.Disk, j.Speed)
		},
		ended: (*Manager).streamEnded,
	})
}
