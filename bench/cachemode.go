package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// Cache mode: the same guest workloads with cache.direct off (host page
// cache, QEMU's writeback default) and on (O_DIRECT), each on a fresh
// preallocated qcow2 image: a write-heavy phase (4 KiB random writes as
// fast as the guest can) and then a read-heavy one (4 KiB random reads),
// one request in flight. cache.direct=on is the baseline: it is what the
// cache-mode example policy moves disks to.

type cacheFigures struct {
	writeIOPS, readIOPS float64
	writeP99, readP99   time.Duration
}

func cacheMode(ctx context.Context, o options) (string, error) {
	phase := 3 * time.Second
	if o.full {
		phase = 20 * time.Second
	}
	dir, err := os.MkdirTemp("", "qtune-bench-cache-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	var figs [2]cacheFigures // [0] direct off, [1] direct on
	for i, direct := range []bool{false, true} {
		img := filepath.Join(dir, fmt.Sprintf("cache%d.qcow2", i))
		if err := lab.CreateImage(ctx, img, "qcow2", 128<<20, lab.ImageOpts{Preallocation: "full"}); err != nil {
			return "", err
		}
		if figs[i], err = measureCache(ctx, img, direct, phase); err != nil {
			return "", err
		}
	}
	return cacheTable(figs, phase), nil
}

func measureCache(ctx context.Context, img string, direct bool, phase time.Duration) (cacheFigures, error) {
	var f cacheFigures
	w := loadgen.Defaults()
	w.Loops, w.Span = 1, 64<<20
	// A second longer each: the first report of a phase is partly the
	// previous one, and is left out.
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Duration: phase + time.Second},
		{Pattern: loadgen.RandRead, Duration: phase + time.Second}, {Pattern: loadgen.Idle, Duration: time.Hour}}
	g, err := startGuest(ctx, "cache", w, lab.Disk{ID: "disk0", Image: img, CacheDirect: direct})
	if err != nil {
		return f, err
	}
	defer g.close()
	wctx, cancel := context.WithTimeout(ctx, 4*phase+time.Minute)
	defer cancel()
	if err := g.vm.WaitSerial(wctx, "mode=idle"); err != nil {
		return f, err
	}
	var wlat, rlat loadgen.LatHist
	f.writeIOPS, wlat = g.phaseFigures("randwrite", false)
	f.readIOPS, rlat = g.phaseFigures("randread", true)
	f.writeP99, f.readP99 = wlat.Quantile(0.99), rlat.Quantile(0.99)
	return f, nil
}

// phaseFigures is the mean IOPS and merged latencies of the console lines
// of one mode, less the first (which straddles the phase change).
func (g *guest) phaseFigures(mode string, reads bool) (float64, loadgen.LatHist) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var h loadgen.LatHist
	var iops float64
	n, skipped := 0, false
	for _, p := range g.lines {
		if p.mode != mode {
			continue
		}
		if !skipped {
			skipped = true
			continue
		}
		iops += p.iops
		n++
		if reads {
			h.Merge(p.readLat)
		} else {
			h.Merge(p.writeLat)
		}
	}
	if n == 0 {
		return 0, h
	}
	return iops / float64(n), h
}

func cacheTable(f [2]cacheFigures, phase time.Duration) string {
	off, on := f[0], f[1]
	var b bytes.Buffer
	b.WriteString("## Cache mode\n\n")
	fmt.Fprintf(&b, "One guest per mode on a preallocated 128 MiB qcow2 image: %s of 4 KiB random writes as fast as it can (write-heavy), then %s of 4 KiB random reads (read-heavy), one request in flight, over 64 MiB. Baseline: cache.direct=on (O_DIRECT), measured in the same run.\n\n", phase, phase)
	b.WriteString("| workload | direct on IOPS | direct off IOPS | off / on | p99 on | p99 off |\n| --- | --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| write-heavy | %.0f | %.0f | %.2f× | %.2f ms | %.2f ms |\n", on.writeIOPS, off.writeIOPS, ratio(off.writeIOPS, on.writeIOPS), msf(on.writeP99), msf(off.writeP99))
	fmt.Fprintf(&b, "| read-heavy | %.0f | %.0f | %.2f× | %.2f ms | %.2f ms |\n", on.readIOPS, off.readIOPS, ratio(off.readIOPS, on.readIOPS), msf(on.readP99), msf(off.readP99))
	fmt.Fprintf(&b, "\nReading: with the host page cache the guest wrote at %.2f× and read at %.2f× the O_DIRECT rate. The page cache's speed is borrowed: its writes are not on the device until flushed, and it competes for host memory; the 64 MiB span fits in this host's page cache, so reads after the first pass are memory copies.\n",
		ratio(off.writeIOPS, on.writeIOPS), ratio(off.readIOPS, on.readIOPS))
	return b.String()
}
