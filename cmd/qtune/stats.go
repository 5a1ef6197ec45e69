package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{
		name:    "stats",
		summary: "print live per-disk I/O rates, latencies and settings of VMs",
		run:     runStats,
	})
}

// diskSource is one way of reading the disks of one or more VMs: a QMP
// socket, or a libvirt connection.
type diskSource interface {
	Sample(ctx context.Context) ([]sample.Disk, error)
	Close() error
}

type statsFlags struct {
	qmpPath  string
	libvirt  bool
	uri      string
	socket   string
	domain   string
	interval time.Duration
	count    int
	json     bool
	timeout  time.Duration
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f statsFlags
	fs := flag.NewFlagSet("qtune stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.qmpPath, "qmp", "", "QMP unix socket of a plain QEMU VM")
	fs.BoolVar(&f.libvirt, "libvirt", false, "read every running libvirt domain (or --domain)")
	fs.StringVar(&f.uri, "uri", "", "libvirt URI (qemu:///system, qemu+ssh://host/system, qemu+tls://host/system)")
	fs.StringVar(&f.socket, "socket", "", "libvirt socket path (default /run/libvirt/libvirt-sock)")
	fs.StringVar(&f.domain, "domain", "", "only this libvirt domain")
	fs.DurationVar(&f.interval, "interval", time.Second, "time between samples")
	fs.IntVar(&f.count, "count", 0, "stop after this many samples (0: run until interrupted)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per disk and sample")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "deadline of each call to QEMU or libvirt")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qtune stats --qmp SOCKET | --libvirt [--uri URI] [--domain NAME] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "qtune stats: %v\n", err)
		return exitUsage
	}
	src, err := openSource(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "qtune stats: %v\n", err)
		return exitFailure
	}
	defer src.Close()
	p := &statsPrinter{w: stdout, json: f.json}
	if err := statsLoop(ctx, src, f, p); err != nil {
		fmt.Fprintf(stderr, "qtune stats: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func (f statsFlags) validate() error {
	switch {
	case f.qmpPath == "" && !f.libvirt:
		return errors.New("say where the VMs are: --qmp SOCKET or --libvirt")
	case f.qmpPath != "" && f.libvirt:
		return errors.New("--qmp and --libvirt exclude each other")
	case f.qmpPath != "" && (f.uri != "" || f.domain != "" || f.socket != ""):
		return errors.New("--uri, --socket and --domain go with --libvirt")
	case f.interval < 100*time.Millisecond:
		return fmt.Errorf("--interval %v is too short (at least 100ms)", f.interval)
	case f.count < 0:
		return fmt.Errorf("--count %d is negative", f.count)
	case f.timeout <= 0:
		return fmt.Errorf("--timeout %v must be positive", f.timeout)
	}
	return nil
}

// statsLoop samples every interval and prints rates from the second sample
// on; --count counts printed samples.
func statsLoop(ctx context.Context, src diskSource, f statsFlags, p *statsPrinter) error {
	prev := map[string]sample.Disk{}
	printed := 0
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, f.timeout)
		disks, err := src.Sample(cctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		rows := make([]statsRow, 0, len(disks))
		for _, d := range disks {
			key := d.VM + "\x00" + d.Name
			if old, ok := prev[key]; ok {
				if r, err := sample.Derive(old, d); err == nil {
					rows = append(rows, statsRow{Disk: d, Rates: r})
				}
			}
			prev[key] = d
		}
		if len(rows) > 0 || (len(prev) > 0 && len(disks) == 0) {
			if err := p.print(rows); err != nil {
				return err
			}
			printed++
			if f.count > 0 && printed >= f.count {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

type statsRow struct {
	sample.Disk
	sample.Rates
}

type statsPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

func (p *statsPrinter) print(rows []statsRow) error {
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].VM != rows[j].VM {
			return rows[i].VM < rows[j].VM
		}
		return rows[i].Name < rows[j].Name
	})
	if p.json {
		return p.printJSON(rows)
	}
	return p.printTable(rows)
}

// jsonRow is the stable, documented shape of --json output.
type jsonRow struct {
	Time           time.Time        `json:"time"`
	VM             string           `json:"vm"`
	Disk           string           `json:"disk"`
	QOMPath        string           `json:"qom_path,omitempty"`
	Node           string           `json:"node,omitempty"`
	IntervalS      float64          `json:"interval_s"`
	ReadIOPS       float64          `json:"read_iops"`
	WriteIOPS      float64          `json:"write_iops"`
	FlushIOPS      float64          `json:"flush_iops"`
	ReadBPS        float64          `json:"read_bps"`
	WriteBPS       float64          `json:"write_bps"`
	ReadLatencyMs  *float64         `json:"read_latency_ms"`
	WriteLatencyMs *float64         `json:"write_latency_ms"`
	FlushLatencyMs *float64         `json:"flush_latency_ms"`
	InFlight       float64          `json:"in_flight"`
	Cache          string           `json:"cache"`
	Throttle       *sample.Throttle `json:"throttle,omitempty"`
	Format         string           `json:"format,omitempty"`
	VirtualSize    uint64           `json:"virtual_size,omitempty"`
	BackingDepth   int              `json:"backing_depth"`
	Counters       sample.Counters  `json:"counters"`
}

func (p *statsPrinter) printJSON(rows []statsRow) error {
	enc := json.NewEncoder(p.w)
	for _, r := range rows {
		j := jsonRow{
			Time: r.Time.UTC(), VM: r.VM, Disk: r.Name, QOMPath: r.QOMPath, Node: r.Node,
			IntervalS: r.Interval.Seconds(),
			ReadIOPS:  r.ReadIOPS, WriteIOPS: r.WriteIOPS, FlushIOPS: r.FlushIOPS,
			ReadBPS: r.ReadBPS, WriteBPS: r.WriteBPS,
			// JSON has no NaN: no operations means no latency, null.
			ReadLatencyMs: finite(r.ReadLatencyMs), WriteLatencyMs: finite(r.WriteLatencyMs),
			FlushLatencyMs: finite(r.FlushLatencyMs),
			InFlight:       r.QueueDepth, Cache: cacheMode(r.Disk), Format: r.Format,
			VirtualSize: r.VirtualSize, BackingDepth: r.BackingDepth, Counters: r.Counters,
		}
		if r.Throttle.Active() {
			t := r.Throttle
			j.Throttle = &t
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// tableFormat has fixed widths so that rows printed a second apart line
// up under one header.
const tableFormat = "%-8s  %-16s  %-8s  %7s  %7s  %7s  %7s  %8s  %8s  %8s  %8s  %-15s  %-18s  %-6s  %7s  %5s\n"

func (p *statsPrinter) printTable(rows []statsRow) error {
	if !p.header {
		fmt.Fprintf(p.w, tableFormat, "TIME", "VM", "DISK", "R_IOPS", "W_IOPS", "R_MB/s", "W_MB/s",
			"R_LAT_ms", "W_LAT_ms", "F_LAT_ms", "INFLIGHT", "CACHE", "THROTTLE", "FORMAT", "VSIZE", "DEPTH")
		p.header = true
	}
	for _, r := range rows {
		_, err := fmt.Fprintf(p.w, tableFormat,
			r.Time.Local().Format("15:04:05"), r.VM, r.Name,
			fmt.Sprintf("%.0f", r.ReadIOPS), fmt.Sprintf("%.0f", r.WriteIOPS),
			fmt.Sprintf("%.2f", r.ReadBPS/1e6), fmt.Sprintf("%.2f", r.WriteBPS/1e6),
			latency(r.ReadLatencyMs), latency(r.WriteLatencyMs), latency(r.FlushLatencyMs),
			fmt.Sprintf("%.2f", r.QueueDepth), cacheMode(r.Disk), policy.ThrottleText(r.Throttle),
			dash(r.Format), size(r.VirtualSize), fmt.Sprint(r.BackingDepth))
		if err != nil {
			return err
		}
	}
	return nil
}

func latency(ms float64) string {
	if math.IsNaN(ms) {
		return "-"
	}
	return fmt.Sprintf("%.2f", ms)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cacheMode names the host cache mode the way libvirt's <driver cache=...>
// does, from the file node's flags.
func cacheMode(d sample.Disk) string {
	switch {
	case d.CacheDirect && d.CacheNoFlush:
		return "direct,no-flush"
	case d.CacheDirect:
		return "none"
	case d.CacheNoFlush:
		return "unsafe"
	default:
		return "writeback"
	}
}

// size prints a byte count in binary units, "-" for none.
func size(b uint64) string {
	if b == 0 {
		return "-"
	}
	return policy.SizeText(b)
}
