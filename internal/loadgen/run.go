package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Device is what the workers read and write: an *os.File opened with
// O_DIRECT in the guest, any ReaderAt/WriterAt in tests.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// Progress is one report line's worth of counters.
type Progress struct {
	Elapsed       time.Duration
	Phase         int
	Pattern       Pattern
	Reads, Writes uint64
	Errors        uint64
	IOPS          float64 // over the last report interval
	FirstErr      string
	// ReadLat and WriteLat are the latencies of the I/O completed since
	// the last report.
	ReadLat, WriteLat LatHist
}

// String is the machine-readable console line the host's lab parses.
func (p Progress) String() string {
	s := fmt.Sprintf("qtune-load t=%.1f phase=%d mode=%s reads=%d writes=%d errors=%d iops=%.0f",
		p.Elapsed.Seconds(), p.Phase, p.Pattern, p.Reads, p.Writes, p.Errors, p.IOPS)
	for _, l := range []struct {
		name string
		h    LatHist
	}{{"r", p.ReadLat}, {"w", p.WriteLat}} {
		if l.h.Count() > 0 {
			s += fmt.Sprintf(" %sp50=%.3fms %sp99=%.3fms %slat=%s", l.name, ms(l.h.Quantile(0.5)),
				l.name, ms(l.h.Quantile(0.99)), l.name, l.h)
		}
	}
	if p.FirstErr != "" {
		s += fmt.Sprintf(" err=%q", p.FirstErr)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Runner runs a workload on one device.
type Runner struct {
	P      Params
	Dev    Device
	Size   int64              // bytes of the device
	Alloc  func(n int) []byte // aligned buffers for O_DIRECT; plain make when nil
	Report func(Progress)     // called about once a second and at the end
	Every  time.Duration      // report interval, default 1s
	Ready  func()             // called once, after the first completed I/O
	// Verified is called after each worker's pass of a verify phase.
	Verified func(VerifyResult)

	reads, writes, errs atomic.Uint64
	readLat, writeLat   latCounter
	firstErr            atomic.Value
	readyOnce           sync.Once
	seq                 atomic.Int64

	mu       sync.Mutex
	phase    int
	nextSlot time.Time
}

// Run issues I/O until the phases are over or ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	span := r.P.Span
	if span <= 0 || span > r.Size {
		span = r.Size
	}
	if span < int64(r.P.BlockSize) {
		return fmt.Errorf("device of %d bytes is smaller than one block of %d", span, r.P.BlockSize)
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < r.P.QueueDepth; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r.worker(ctx, cancel, start, span, w)
		}(w)
	}
	r.reportLoop(ctx, start)
	wg.Wait()
	r.report(start, time.Now(), 0)
	return nil
}

func (r *Runner) reportLoop(ctx context.Context, start time.Time) {
	every := r.Every
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := uint64(0)
	lastAt := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			total := r.reads.Load() + r.writes.Load()
			r.report(start, now, float64(total-last)/now.Sub(lastAt).Seconds())
			last, lastAt = total, now
		}
	}
}

func (r *Runner) report(start, now time.Time, iops float64) {
	if r.Report == nil {
		return
	}
	idx, _ := r.P.PhaseAt(now.Sub(start))
	p := Progress{
		Elapsed: now.Sub(start), Phase: idx, Pattern: r.P.Phases[idx].Pattern,
		Reads: r.reads.Load(), Writes: r.writes.Load(), Errors: r.errs.Load(), IOPS: iops,
		ReadLat: r.readLat.drain(), WriteLat: r.writeLat.drain(),
	}
	if e, ok := r.firstErr.Load().(string); ok {
		p.FirstErr = e
	}
	r.Report(p)
}

func (r *Runner) worker(ctx context.Context, stop func(), start time.Time, span int64, w int) {
	buf := r.alloc(r.P.BlockSize)
	for i := range buf {
		buf[i] = byte(i*7 + w)
	}
	rng := rand.New(rand.NewPCG(uint64(r.P.Seed), uint64(w)))
	blocks := span / int64(r.P.BlockSize)
	qd := int64(r.P.QueueDepth)
	st := &stamps{gen: make([]uint64, (blocks+qd-1)/qd)}
	verified := -1
	for ctx.Err() == nil {
		idx, done := r.P.PhaseAt(time.Since(start))
		if done {
			stop()
			return
		}
		ph := r.P.Phases[idx]
		if ph.Pattern == Verify && verified != idx {
			verified = idx
			if res := r.verify(buf, st, w); r.Verified != nil {
				r.Verified(res)
			}
			continue
		}
		if ph.Pattern == Idle || ph.Pattern == Verify {
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		if ph.Pattern == StampWrite {
			if !r.pace(ctx, idx, ph.Rate) {
				return
			}
			i := rng.Int64N(int64(len(st.gen)))
			if off := (i*qd + int64(w)) * int64(r.P.BlockSize); off+int64(len(buf)) <= span {
				st.gen[i]++
				Stamp(buf, off, st.gen[i])
				r.do(false, buf, off)
			}
			continue
		}
		if !r.pace(ctx, idx, ph.Rate) {
			return
		}
		read := ph.Pattern == SeqRead || ph.Pattern == RandRead ||
			(ph.Pattern == RandRW && rng.IntN(100) < r.P.ReadPct)
		var off int64
		if ph.Pattern == SeqRead || ph.Pattern == SeqWrite {
			off = (r.seq.Add(1) - 1) % blocks * int64(r.P.BlockSize)
		} else {
			off = rng.Int64N(blocks) * int64(r.P.BlockSize)
		}
		r.do(read, buf, off)
	}
}

func (r *Runner) do(read bool, buf []byte, off int64) {
	var err error
	start := time.Now()
	if read {
		_, err = r.Dev.ReadAt(buf, off)
	} else {
		_, err = r.Dev.WriteAt(buf, off)
	}
	took := time.Since(start)
	switch {
	case err != nil:
		r.errs.Add(1)
		r.firstErr.CompareAndSwap(nil, err.Error())
		return
	case read:
		r.reads.Add(1)
		r.readLat.add(took)
	default:
		r.writes.Add(1)
		r.writeLat.add(took)
	}
	if r.Ready != nil {
		r.readyOnce.Do(r.Ready)
	}
}

// pace hands out send times 1/rate apart across all workers. A worker that
// fell behind by more than a second does not burst to catch up.
func (r *Runner) pace(ctx context.Context, phase, rate int) bool {
	if rate <= 0 {
		return true
	}
	now := time.Now()
	r.mu.Lock()
	if r.phase != phase || r.nextSlot.Before(now.Add(-time.Second)) {
		r.phase, r.nextSlot = phase, now
	}
	slot := r.nextSlot
	r.nextSlot = r.nextSlot.Add(time.Second / time.Duration(rate))
	r.mu.Unlock()
	if d := time.Until(slot); d > 0 {
		return sleepCtx(ctx, d)
	}
	return ctx.Err() == nil
}

func (r *Runner) alloc(n int) []byte {
	if r.Alloc != nil {
		return r.Alloc(n)
	}
	return make([]byte, n)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
