package facts

import (
	"context"

	"github.com/qtune/qtune/qmp"
)

// HistogramDisks names (by QOM path and by device) the disks of a plain
// QEMU VM that already have a latency histogram, whoever set it: those
// who turn histograms on leave these alone. nil when it cannot be read.
func HistogramDisks(ctx context.Context, b *qmp.Block) map[string]bool {
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
