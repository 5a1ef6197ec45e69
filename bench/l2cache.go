package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// L2 cache: random 4 KiB reads over a qcow2 image whose allocated data
// is larger than its L2 cache covers, before and after qtune sizes the
// cache, against the same data in a raw image (the limit). The image has
// 4 KiB clusters, so one L2 table of 4 KiB maps 2 MiB, and the cache is
// set to QEMU's smallest, two tables (4 MiB), as an operator's explicit
// l2-cache-size or an old default leaves a disk: on a random read almost
// every lookup misses and costs an extra metadata read. All I/O is direct
// (cache.direct=on, qemu-img bench -t none), so that read goes to the
// device.

const (
	l2ImageSize = 256 << 20
	l2Small     = 8 << 10
)

var l2Policy = `
rule "l2-cache-covers-disk" {
  match {
    format = "qcow2"
  }
  when         = disk.l2_coverage < 1 && disk.read_iops > 50
  for          = "2s"
  release_when = avg_over(disk.read_iops, "10m") < 1
  clear_after  = "30m"
  l2_cache {
    size = "auto"
    max  = "64MiB"
  }
}
`

// l2Figures are IOPS of one way of reading.
type l2Figures struct {
	raw, before, after float64
}

type l2Result struct {
	bench, guest l2Figures
	size         uint64        // the l2-cache-size qtune set
	waited       time.Duration // from the agent's start to the action
}

func l2cache(ctx context.Context, o options) (string, error) {
	phase, count := 3*time.Second, 3000
	if o.full {
		phase, count = 30*time.Second, 20000
	}
	dir, err := os.MkdirTemp("", "qtune-bench-l2-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	raw, qcow := filepath.Join(dir, "data.raw"), filepath.Join(dir, "data.qcow2")
	if err := lab.CreateImage(ctx, raw, "raw", l2ImageSize, lab.ImageOpts{Preallocation: "full"}); err != nil {
		return "", err
	}
	if err := lab.CreateImage(ctx, qcow, "qcow2", l2ImageSize, lab.ImageOpts{ClusterSize: 4096, Preallocation: "full"}); err != nil {
		return "", err
	}
	var r l2Result
	if err := l2Guest(ctx, o, dir, raw, qcow, phase, &r); err != nil {
		return "", err
	}
	rounds := 2
	if o.full {
		rounds = 5
	}
	if r.bench, err = l2Bench(ctx, raw, qcow, r.size, count, rounds); err != nil {
		return "", err
	}
	if err := writePlot(o, "l2cache.png", l2Chart(r)); err != nil {
		return "", err
	}
	return l2Table(r, phase, count, rounds), nil
}

// l2Guest measures the guest's random reads on the raw image, then on the
// qcow2 image with the small cache, before and after the agent's action.
func l2Guest(ctx context.Context, o options, dir, raw, qcow string, phase time.Duration, r *l2Result) error {
	w := loadgen.Defaults()
	w.Loops = 0
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandRead, Duration: time.Hour}}
	g, err := startGuest(ctx, "l2raw", w, lab.Disk{ID: "disk0", Image: raw, Format: "raw", CacheDirect: true})
	if err != nil {
		return err
	}
	_, _, r.guest.raw, err = g.measure(ctx, phase)
	g.close()
	if err != nil {
		return err
	}
	g, err = startGuest(ctx, "l2qcow", w, lab.Disk{ID: "disk0", Image: qcow, CacheDirect: true, L2CacheSize: l2Small})
	if err != nil {
		return err
	}
	defer g.close()
	if _, _, r.guest.before, err = g.measure(ctx, phase); err != nil {
		return err
	}
	a, err := startAgent(ctx, o, dir, "", map[string]string{"l2.hcl": l2Policy}, g)
	if err != nil {
		return err
	}
	defer a.stop()
	start := time.Now()
	s, err := a.waitFor(ctx, 30*time.Second, func(s api.Status) bool { return lastAction(s, "l2qcow", "applied") != nil })
	if err != nil {
		return fmt.Errorf("no L2 action: %w", err)
	}
	r.waited = time.Since(start)
	act := lastAction(s, "l2qcow", "applied")
	m := regexp.MustCompile(`l2-cache-size=(\d+)`).FindStringSubmatch(act.After)
	if m == nil {
		return fmt.Errorf("the L2 action set %q, not an l2-cache-size", act.After)
	}
	r.size, _ = strconv.ParseUint(m[1], 10, 64)
	_, _, r.guest.after, err = g.measure(ctx, phase)
	return err
}

// l2Bench runs qemu-img bench on the three setups in turn, rounds times,
// and keeps each one's median: interleaved, so that a busy spell on the
// shared machine does not land on one setup only.
func l2Bench(ctx context.Context, raw, qcow string, size uint64, count, rounds int) (l2Figures, error) {
	opts := []string{
		"driver=raw,file.filename=" + raw,
		fmt.Sprintf("driver=qcow2,file.filename=%s,l2-cache-size=%d", qcow, l2Small),
		fmt.Sprintf("driver=qcow2,file.filename=%s,l2-cache-size=%d", qcow, size),
	}
	runs := make([][]float64, len(opts))
	for i := 0; i < rounds; i++ {
		for j, o := range opts {
			iops, err := qemuImgBench(ctx, o, count)
			if err != nil {
				return l2Figures{}, err
			}
			runs[j] = append(runs[j], iops)
		}
	}
	return l2Figures{raw: median(runs[0]), before: median(runs[1]), after: median(runs[2])}, nil
}

var benchRE = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

// qemuImgBench runs count direct 4 KiB reads, one at a time, stepping
// 7919 blocks (a prime, so the walk visits every block of the
// power-of-two image before repeating) between requests: a random walk
// as far as the L2 cache is concerned, since consecutive reads land ~31
// MiB, fifteen L2 tables, apart.
func qemuImgBench(ctx context.Context, imageOpts string, count int) (float64, error) {
	cmd := exec.CommandContext(ctx, "qemu-img", "bench", "-c", strconv.Itoa(count), "-d", "1", "-s", "4096",
		"-S", strconv.Itoa(4096*7919), "-t", "none", "--image-opts", imageOpts)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("qemu-img bench %s: %w\n%s", imageOpts, err, out)
	}
	m := benchRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("qemu-img bench %s: no timing in %q", imageOpts, out)
	}
	secs, _ := strconv.ParseFloat(string(m[1]), 64)
	return float64(count) / secs, nil
}

func l2Table(r l2Result, phase time.Duration, count, rounds int) string {
	var b bytes.Buffer
	b.WriteString("## L2 cache\n\n")
	fmt.Fprintf(&b, "Random 4 KiB direct reads, one at a time, over %d MiB of allocated data: a qcow2 image with 4 KiB clusters (one L2 table maps 2 MiB) opened with `l2-cache-size=%d` (QEMU's smallest, two tables: 4 MiB covered), before and after qtune's L2 action (rule `l2_cache { size = \"auto\" }`, `for = \"2s\"`), and the same data in a raw image, the limit. `qemu-img bench`: %d reads with a prime step between them, the three setups run in turn %d times, median kept; guest: the load generator reading at random as fast as it can, %s per figure. Ratios are to raw in the same run.\n\n", l2ImageSize>>20, l2Small, count, rounds, phase)
	b.WriteString("| tool | raw IOPS | qcow2 before | ratio | qcow2 after | ratio |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, row := range []struct {
		name string
		f    l2Figures
	}{{"qemu-img bench", r.bench}, {"guest", r.guest}} {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f× | %.0f | %.2f× |\n", row.name, row.f.raw, row.f.before,
			ratio(row.f.before, row.f.raw), row.f.after, ratio(row.f.after, row.f.raw))
	}
	b.WriteString("\n![IOPS relative to raw, before and after the L2 action](l2cache.png)\n\n")
	b.WriteString("Plot: IOPS as a share of raw for qemu-img bench (left) and the guest (right): raw (blue, 1.0), qcow2 before (orange), qcow2 after (green); the grey line is the goal, 0.95× raw.\n\n")
	met := func(f l2Figures) string {
		if ratio(f.after, f.raw) >= 0.95 {
			return "met"
		}
		return "not met"
	}
	fmt.Fprintf(&b, "Reading: qtune set l2-cache-size=%d %s after the agent started. With qemu-img bench the image went from %.2f× to %.2f× raw (goal ≥ 0.95×: %s); in the guest from %.2f× to %.2f× (%s).\n",
		r.size, r.waited.Round(100*time.Millisecond), ratio(r.bench.before, r.bench.raw), ratio(r.bench.after, r.bench.raw), met(r.bench),
		ratio(r.guest.before, r.guest.raw), ratio(r.guest.after, r.guest.raw), met(r.guest))
	return b.String()
}

func l2Chart(r l2Result) barChart {
	c := barChart{series: []string{"raw", "before", "after"}, ref: 0.95}
	for _, row := range []struct {
		name string
		f    l2Figures
	}{{"qemu-img bench", r.bench}, {"guest", r.guest}} {
		c.groups = append(c.groups, barGroup{label: row.name, values: []float64{1, ratio(row.f.before, row.f.raw), ratio(row.f.after, row.f.raw)}})
	}
	return c
}
