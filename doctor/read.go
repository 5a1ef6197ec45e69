package doctor

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
)

// Reader is where the live checks read VMs: a facts source opened with
// Details, so that they read what the agent and qtune stats read, the
// same way.
type Reader interface {
	Sample(ctx context.Context) (disks []sample.Disk, errs map[string]error, gone []string)
	Details(vm string) (facts.Details, bool)
}

// pass is one sample of every VM's disks.
type pass struct {
	disks   map[string]map[string]sample.Disk // by VM, then disk
	details map[string]facts.Details
	host    map[string]map[string]hoststat.Image
	errs    map[string]error
}

func readPass(ctx context.Context, src Reader, hr *hoststat.Reader) pass {
	disks, errs, _ := src.Sample(ctx)
	p := pass{disks: map[string]map[string]sample.Disk{}, details: map[string]facts.Details{},
		host: map[string]map[string]hoststat.Image{}, errs: errs}
	byVM := map[string][]sample.Disk{}
	for _, d := range disks {
		byVM[d.VM] = append(byVM[d.VM], d)
	}
	for vm, ds := range byVM {
		p.disks[vm] = map[string]sample.Disk{}
		for _, d := range ds {
			p.disks[vm][d.Name] = d
		}
		if det, ok := src.Details(vm); ok {
			p.details[vm] = det
		}
		p.host[vm] = hostPass(hr, ds)
	}
	return p
}

// Live samples every VM src reads twice, interval apart, and returns
// every disk's live state. A VM that cannot be read is an error of its
// own; the others still count. A VM first read at the second sample
// (one whose facts were still being read) has no rates.
func Live(ctx context.Context, src Reader, interval time.Duration) ([]LiveDisk, []error) {
	hr := hoststat.NewReader()
	first := readPass(ctx, src, hr)
	if err := sleep(ctx, interval); err != nil {
		return nil, []error{err}
	}
	second := readPass(ctx, src, hr)
	if err := second.errs[facts.SourceError]; err != nil {
		return nil, []error{err}
	}
	var out []LiveDisk
	for _, vm := range sortedKeys(second.disks) {
		for _, name := range sortedKeys(second.disks[vm]) {
			out = append(out, combine(first, second, vm, name))
		}
	}
	var errs []error
	for _, vm := range sortedKeys(second.errs) {
		errs = append(errs, fmt.Errorf("%s: %w", vm, second.errs[vm]))
	}
	return out, errs
}

// combine makes one disk's LiveDisk of its two samples and what facts
// read of its VM beside them.
func combine(a, b pass, vm, name string) LiveDisk {
	d := b.disks[vm][name]
	prev, seen := a.disks[vm][name]
	l := liveFromSample(prev, d, b.host[vm][name])
	l.IOStatus = d.IOStatus
	det, ok := b.details[vm]
	if !ok {
		return l
	}
	l.RunState = det.RunState
	dd, ok := det.Disks[name]
	if !ok {
		return l
	}
	l.CacheKnown, l.CacheWriteback = true, dd.Cache.Writeback
	l.AIO, l.Discard, l.DetectZeroes = dd.AIO, dd.Discard, dd.DetectZeroes
	if dd.ErrorsKnown {
		l.Errors = &OpErrors{Failed: [2]uint64{dd.Failed, dd.Failed}, Invalid: [2]uint64{dd.Invalid, dd.Invalid}}
		if d0, ok := a.details[vm].Disks[name]; ok && seen && d0.ErrorsKnown {
			l.Errors.Failed[0], l.Errors.Invalid[0] = d0.Failed, d0.Invalid
		}
	}
	return l
}

// hostPass reads the host device under every disk's image at one instant,
// so disks on the same device share one reading.
func hostPass(hr *hoststat.Reader, disks []sample.Disk) map[string]hoststat.Image {
	now := time.Now()
	out := map[string]hoststat.Image{}
	for _, d := range disks {
		if d.Path == "" {
			continue
		}
		if img, err := hr.ForImage(d.Path, now); err == nil {
			out[d.Name] = img
		}
	}
	return out
}

// liveFromSample fills what a sample.Disk pair says; the L2 cache is the
// sample's, the figure the agent's policies read.
func liveFromSample(a, b sample.Disk, host hoststat.Image) LiveDisk {
	l := LiveDisk{
		VM: b.VM, Disk: b.Name, Image: b.Path, Format: b.Format,
		CacheDirect: b.CacheDirect, CacheNoFlush: b.CacheNoFlush, Throttle: b.Throttle,
		VirtualSize: b.VirtualSize, Allocation: b.Allocation, L2Cache: b.L2CacheSize,
		HostDevice: host.Device, Host: host.Dev,
	}
	if host.Device == "" {
		l.Host = hoststat.Device{ReadLatencyMs: math.NaN(), WriteLatencyMs: math.NaN()}
	}
	if a.Time.IsZero() { // no first sample of this disk: no rates
		return l
	}
	if r, err := sample.Derive(a, b); err == nil {
		l.Rates = r
	}
	return l
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
