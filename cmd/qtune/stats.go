package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/facts"
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

// diskSource is where the disks come from: the agent's own sampling
// (facts.Sampler), or a fake in tests.
type diskSource interface {
	Sample(ctx context.Context) (disks []sample.Disk, errs map[string]error, gone []string)
	Close()
}

type statsFlags struct {
	qmpPath  string
	qmpDir   string
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
	fs := newFlagSet("qtune stats")
	fs.SetOutput(stderr)
	fs.StringVar(&f.qmpPath, "qmp", "", "QMP unix socket of a plain QEMU VM")
	fs.StringVar(&f.qmpDir, "qmp-dir", "", "every plain QEMU VM whose QMP socket (*.sock) is in this directory, as the agent finds them")
	fs.BoolVar(&f.libvirt, "libvirt", false, "read every active libvirt domain (or --domain)")
	fs.StringVar(&f.uri, "uri", "", "libvirt URI (qemu:///system, qemu+ssh://host/system, qemu+tls://host/system)")
	fs.StringVar(&f.socket, "socket", "", "libvirt socket path (default /run/libvirt/libvirt-sock)")
	fs.StringVar(&f.domain, "domain", "", "only this libvirt domain")
	fs.DurationVar(&f.interval, "interval", time.Second, "time between samples")
	fs.IntVar(&f.count, "count", 0, "stop after this many samples (0: run until interrupted)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per disk and sample")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "deadline of each call to QEMU or libvirt")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qtune stats --qmp SOCKET | --qmp-dir DIR | --libvirt [--uri URI] [--domain NAME] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "qtune stats: %v\n", err)
		return exitUsage
	}
	src, err := facts.OpenSampler(ctx, f.samplerOptions(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "qtune stats: %v\n", err)
		return exitFailure
	}
	defer src.Close()
	p := &statsPrinter{w: stdout, json: f.json}
	if err := statsLoop(ctx, src, f, p, stderr); err != nil {
		fmt.Fprintf(stderr, "qtune stats: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func (f statsFlags) validate() error {
	where := 0
	for _, set := range []bool{f.qmpPath != "", f.qmpDir != "", f.libvirt} {
		if set {
			where++
		}
	}
	switch {
	case where == 0:
		return errors.New("say where the VMs are: --qmp SOCKET, --qmp-dir DIR or --libvirt")
	case where > 1:
		return errors.New("--qmp, --qmp-dir and --libvirt exclude each other")
	case !f.libvirt && (f.uri != "" || f.domain != "" || f.socket != ""):
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

// samplerOptions are the flags as the agent's sampling takes them.
func (f statsFlags) samplerOptions() facts.Options {
	o := facts.Options{Interval: f.interval, CallTimeout: f.timeout}
	switch {
	case f.qmpPath != "":
		o.QMPSockets = []string{f.qmpPath}
	case f.qmpDir != "":
		o.QMPDir = f.qmpDir
	default:
		o.LibvirtURI, o.LibvirtSocket = f.uri, f.socket
		if f.domain != "" {
			o.Domains = []string{f.domain}
		}
	}
	return o
}

// statsLoop samples every interval and prints rates from the second sample
// on; --count counts printed samples. With --qmp, the one VM failing ends
// the run; otherwise a VM that cannot be read is said once on stderr (and
// again when its error changes) while the others go on, and a failure of
// the whole source (libvirt unreachable) ends the run only before anything
// was printed: the connection comes back by itself. When there is nothing
// to read (no active domain, no socket), stderr says so once.
func statsLoop(ctx context.Context, src diskSource, f statsFlags, p *statsPrinter, stderr io.Writer) error {
	rates := sample.NewRater()
	said := map[string]string{} // VM: the error last said of it
	saidNone := false
	printed, seen := 0, 0
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		disks, errs, gone := src.Sample(ctx)
		if ctx.Err() != nil {
			return nil
		}
		for _, vm := range gone {
			rates.ForgetVM(vm)
		}
		if err := statsFatal(f, errs, printed); err != nil {
			return err
		}
		// The first sample's errors wait for the second: a domain whose
		// XML is still being read then has not failed.
		if n > 0 {
			sayErrors(stderr, errs, said)
		}
		switch {
		case len(disks) > 0:
			saidNone = false
		case len(errs) == 0 && !saidNone:
			fmt.Fprintf(stderr, "qtune stats: %s\n", f.nothingToRead())
			saidNone = true
		}
		rows := make([]statsRow, 0, len(disks))
		for _, d := range disks {
			if r, ok := rates.Next(d); ok {
				rows = append(rows, statsRow{Disk: d, Rates: r})
			}
		}
		rates.Sweep()
		// From the second sample on, every sample is printed, even one
		// with no disks (every VM gone): the output keeps its pace.
		if len(rows) > 0 || (seen > 0 && len(disks) == 0) {
			if err := p.print(rows); err != nil {
				return err
			}
			printed++
			if f.count > 0 && printed >= f.count {
				return nil
			}
		}
		if len(disks) > 0 {
			seen++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// nothingToRead says why a sample had no disk and no error.
func (f statsFlags) nothingToRead() string {
	switch {
	case f.qmpDir != "":
		return fmt.Sprintf("no QMP socket (*.sock) in %s yet; waiting for a VM", f.qmpDir)
	case f.domain != "":
		return fmt.Sprintf("domain %s has no disk to read (is it running?); waiting", f.domain)
	case f.libvirt:
		return "no active libvirt domain yet; waiting for one"
	}
	return "the VM has no disk to read; waiting"
}

// statsFatal is the error that ends the run, if any.
func statsFatal(f statsFlags, errs map[string]error, printed int) error {
	if f.qmpPath != "" {
		for _, err := range errs {
			return err
		}
	}
	if err := errs[api.SourceError]; err != nil && printed == 0 {
		return err
	}
	return nil
}

// sayErrors writes each VM's error once, and again when it changes.
func sayErrors(w io.Writer, errs map[string]error, said map[string]string) {
	vms := make([]string, 0, len(errs))
	for vm := range errs {
		vms = append(vms, vm)
	}
	sort.Strings(vms)
	for _, vm := range vms {
		text := errs[vm].Error()
		if said[vm] == text {
			continue
		}
		said[vm] = text
		if vm == api.SourceError {
			fmt.Fprintf(w, "qtune stats: %s\n", text)
			continue
		}
		fmt.Fprintf(w, "qtune stats: %s: %s\n", vm, text)
	}
	for vm := range said {
		if _, ok := errs[vm]; !ok {
			delete(said, vm) // it answered again
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
			InFlight:       r.QueueDepth, Cache: r.Disk.CacheMode(), Format: r.Format,
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
			fmt.Sprintf("%.2f", r.QueueDepth), r.Disk.CacheMode(), policy.ThrottleText(r.Throttle),
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

// size prints a byte count in binary units, "-" for none.
func size(b uint64) string {
	if b == 0 {
		return "-"
	}
	return policy.SizeText(b)
}
