package fleet

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// run keeps this host's lease for as long as the Fleet lives: grant,
// keep alive, and when the lease is lost (etcd gone longer than the TTL,
// or a partition), mark the held slots lost and grant a new one.
func (f *Fleet) run(ctx context.Context) {
	defer close(f.done)
	defer f.catching.Wait()
	retry := f.cfg.LeaseTTL / 4
	for ctx.Err() == nil {
		id, ttl, ch, err := f.grant(ctx)
		if err != nil {
			f.mu.Lock()
			f.leaseErr = err
			f.mu.Unlock()
			f.log.Debug("no lease", "error", err)
			sleep(ctx, retry)
			continue
		}
		f.leaseUp(ctx, id, ttl)
		f.keep(ctx, id, ttl, ch)
		f.leaseDown(id, "lease expired or etcd unreachable")
	}
}

// grant asks for a lease. etcd may grant a longer TTL than asked (never
// under 1.5 election timeouts): what it grants is what counts.
func (f *Fleet) grant(ctx context.Context) (clientv3.LeaseID, time.Duration, <-chan *clientv3.LeaseKeepAliveResponse, error) {
	rctx, cancel := f.reqCtx(ctx)
	defer cancel()
	g, err := f.cli.Grant(rctx, int64(f.cfg.LeaseTTL/time.Second))
	if err != nil {
		return 0, 0, nil, fmt.Errorf("grant lease: %w", err)
	}
	ch, err := f.cli.KeepAlive(ctx, g.ID)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("keep lease %x alive: %w", g.ID, err)
	}
	return g.ID, time.Duration(g.TTL) * time.Second, ch, nil
}

// keep returns when the lease is gone for good. The client gives up on a
// lease only a full TTL after its last answer, when etcd may already have
// expired it and given its slots away; so a lease that has not been
// renewed for two thirds of the TTL counts as lost here already (the
// copies slow down before another host can start), and as found again
// when an answer comes back in time.
func (f *Fleet) keep(ctx context.Context, id clientv3.LeaseID, ttl time.Duration, ch <-chan *clientv3.LeaseKeepAliveResponse) {
	last, stale := time.Now(), false
	tick := time.NewTicker(ttl / 8)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			last = time.Now()
			if stale {
				stale = false
				f.leaseUp(ctx, id, ttl)
			}
		case <-tick.C:
			if !stale && time.Since(last) > ttl*2/3 {
				stale = true
				f.leaseDown(id, fmt.Sprintf("no answer from etcd for %s", time.Since(last).Round(time.Millisecond)))
				continue
			}
			if !stale {
				f.catchUpAsync(ctx)
			}
		}
	}
}

// leaseUp makes id the lease and takes back the slots lost meanwhile.
func (f *Fleet) leaseUp(ctx context.Context, id clientv3.LeaseID, ttl time.Duration) {
	f.mu.Lock()
	f.lease, f.leaseOK, f.leaseErr, f.ttl = id, true, nil, ttl
	f.mu.Unlock()
	f.log.Info("fleet lease held", "lease", fmt.Sprintf("%x", id), "ttl", ttl.String())
	f.catchUpAsync(ctx)
}

// catchUpAsync runs catchUp beside the keepalive loop, one at a time: a
// catch-up that waits on etcd must not delay noticing the lease's answers.
func (f *Fleet) catchUpAsync(ctx context.Context) {
	if !f.catchingUp.CompareAndSwap(false, true) {
		return
	}
	f.catching.Add(1)
	go func() {
		defer f.catching.Done()
		defer f.catchingUp.Store(false)
		f.catchUp(ctx)
	}()
}

// leaseDown marks every held slot lost: its key may expire, and another
// host take its place.
func (f *Fleet) leaseDown(id clientv3.LeaseID, why string) {
	f.mu.Lock()
	if f.lease != id || !f.leaseOK {
		f.mu.Unlock()
		return
	}
	f.leaseOK, f.leaseErr = false, fmt.Errorf("%s", why)
	f.lostTotal++
	var lost []string
	for job, e := range f.jobs {
		if e.state == Held {
			e.state, e.running = Lost, true
			lost = append(lost, job)
		}
	}
	f.mu.Unlock()
	f.log.Warn("fleet lease lost: running copies slow to the floor speed until their slots are taken again",
		"lease", fmt.Sprintf("%x", id), "reason", why, "jobs", lost, "floor_speed", f.cfg.FloorSpeed)
	if len(lost) > 0 {
		f.notify()
	}
}

// catchUp retries what could not be done while etcd was away: releases
// that did not reach it, and slots lost with a lease.
func (f *Fleet) catchUp(ctx context.Context) {
	f.mu.Lock()
	var releases []string
	for job := range f.releases {
		releases = append(releases, job)
	}
	var lost []*entry
	for _, e := range f.jobs {
		if e.state == Lost {
			lost = append(lost, e)
		}
	}
	f.mu.Unlock()
	for _, job := range releases {
		if err := f.Release(ctx, job); err != nil {
			f.log.Debug("release still pending", "job", job, "error", err)
		}
	}
	for _, e := range lost {
		f.mu.Lock()
		c := e.c
		f.mu.Unlock()
		if _, why, err := f.Retake(ctx, c); err != nil || why != "" {
			f.log.Debug("lost slot not taken back yet", "job", c.JobID, "why", why, "error", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
