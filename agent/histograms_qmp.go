package agent

import (
	"context"

	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/qmp"
)

// SetHistograms says whether the VMs' disks should have latency
// histograms; each runner brings its VM in line before its next sample.
func (s *qmpSource) SetHistograms(on bool) { s.histWant.Store(on) }

// histVM is what one connection to a VM did with histograms.
type histVM struct {
	// histSynced is whether histograms were last wanted (and set);
	// histOwned the disks qtune turned them on for on this connection.
	histSynced bool
	histOwned  []qmp.DiskID
}

// syncHistograms turns histograms on for every disk that has none when
// they are wanted, and off again, when they no longer are, on exactly the
// disks it turned them on for: histograms someone else set (another tool,
// an earlier qtune whose record is gone) are never touched.
func (s *qmpSource) syncHistograms(ctx context.Context, vm facts.VM, hv *histVM) {
	want := s.histWant.Load()
	if want == hv.histSynced {
		return
	}
	hv.histSynced = want
	if !want {
		for _, id := range hv.histOwned {
			if err := vm.Block.SetLatencyHistogram(ctx, id, qmp.HistogramBoundaries{}); err != nil {
				s.log.Warn("cannot disable latency histograms", "vm", vm.Name, "disk", id.String(), "error", err.Error())
			}
		}
		hv.histOwned = nil
		return
	}
	infos, err := vm.Block.QueryBlock(ctx)
	if err != nil {
		s.log.Warn("cannot enable latency histograms", "vm", vm.Name, "error", err.Error())
		hv.histSynced = false // try again next sample
		return
	}
	already := facts.HistogramDisks(ctx, vm.Block)
	for _, bi := range infos {
		id := qmp.DiskID{QOMPath: bi.QDev, Device: bi.Device}
		if bi.Inserted == nil || already[bi.QDev] || already[bi.Device] {
			continue
		}
		if err := vm.Block.SetLatencyHistogram(ctx, id, qmp.HistogramBoundaries{All: s.hists}); err != nil {
			s.log.Warn("cannot enable latency histograms", "vm", vm.Name, "disk", id.String(), "error", err.Error())
			continue
		}
		hv.histOwned = append(hv.histOwned, id)
	}
}
