package agent

import (
	"context"

	"github.com/qtune/qtune/qmp"
)

// SetHistograms says whether the VMs' disks should have latency
// histograms; each runner brings its VM in line before its next sample.
func (s *qmpSource) SetHistograms(on bool) { s.histWant.Store(on) }

// syncHistograms turns histograms on for every disk that has none when
// they are wanted, and off again, when they no longer are, on exactly the
// disks it turned them on for: histograms someone else set (another tool,
// an earlier qtune whose record is gone) are never touched.
func (r *qmpRunner) syncHistograms(ctx context.Context, vm *qmpVM) {
	want := r.src.histWant.Load()
	if want == vm.histSynced {
		return
	}
	vm.histSynced = want
	if !want {
		for _, id := range vm.histOwned {
			if err := vm.block.SetLatencyHistogram(ctx, id, qmp.HistogramBoundaries{}); err != nil {
				r.src.log.Warn("cannot disable latency histograms", "vm", r.name, "disk", id.String(), "error", err.Error())
			}
		}
		vm.histOwned = nil
		return
	}
	infos, err := vm.block.QueryBlock(ctx)
	if err != nil {
		r.src.log.Warn("cannot enable latency histograms", "vm", r.name, "error", err.Error())
		vm.histSynced = false // try again next sample
		return
	}
	already := r.disksWithHistograms(ctx, vm.block)
	for _, bi := range infos {
		id := qmp.DiskID{QOMPath: bi.QDev, Device: bi.Device}
		if bi.Inserted == nil || already[bi.QDev] || already[bi.Device] {
			continue
		}
		if err := vm.block.SetLatencyHistogram(ctx, id, qmp.HistogramBoundaries{All: r.src.hists}); err != nil {
			r.src.log.Warn("cannot enable latency histograms", "vm", r.name, "disk", id.String(), "error", err.Error())
			continue
		}
		vm.histOwned = append(vm.histOwned, id)
	}
}

// disksWithHistograms names (by QOM path and by device) the disks that
// already have a latency histogram.
func (r *qmpRunner) disksWithHistograms(ctx context.Context, b *qmp.Block) map[string]bool {
	stats, err := b.QueryBlockstats(ctx, false)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, st := range stats {
		if st.Stats.RdLatencyHist == nil && st.Stats.WrLatencyHist == nil && st.Stats.FlushLatencyHist == nil {
			continue
		}
		for _, k := range []string{st.QDev, st.Device} {
			if k != "" {
				out[k] = true
			}
		}
	}
	return out
}
