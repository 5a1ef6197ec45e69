package fleet

import (
	"context"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Release gives back the job's slots and its place in line, in every
// configured budget; releasing twice is harmless. When etcd cannot be
// reached the release is retried in the background until it can (or
// until the lease ends, which releases too).
func (f *Fleet) Release(ctx context.Context, jobID string) error {
	f.mu.Lock()
	delete(f.jobs, jobID)
	f.mu.Unlock()
	var ops []clientv3.Op
	for _, b := range f.cfg.Budgets {
		ops = append(ops, clientv3.OpDelete(f.slotKey(b.Name, f.host, jobID)),
			clientv3.OpDelete(f.waiterKey(b.Name, f.host, jobID)))
	}
	err := f.commit(ctx, nil, ops)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.jobs[jobID] == nil {
			f.releases[jobID] = true
		}
		return fmt.Errorf("release %s: %w", jobID, err)
	}
	delete(f.releases, jobID)
	return nil
}

// ReleaseExcept releases every slot and waiter of this host whose job is
// not in live: after a restart, the copies that ended while the agent was
// away. Call it once the live copies are known, beside their Retake.
func (f *Fleet) ReleaseExcept(ctx context.Context, live []string) error {
	keep := map[string]bool{}
	for _, j := range live {
		keep[j] = true
	}
	held, waiting, err := f.Held(ctx)
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	var gone []string
	for _, s := range append(held, waiting...) {
		if s.Host != f.host || keep[s.JobID] {
			continue
		}
		ops = append(ops, clientv3.OpDelete(f.slotKey(s.Budget, f.host, s.JobID)),
			clientv3.OpDelete(f.waiterKey(s.Budget, f.host, s.JobID)))
		gone = append(gone, s.Budget+"/"+s.JobID)
	}
	f.mu.Lock()
	for job := range f.jobs {
		if !keep[job] {
			delete(f.jobs, job)
		}
	}
	f.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	// etcd bounds the operations of one transaction (128 by default).
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if err := f.commit(ctx, nil, ops[:n]); err != nil {
			return fmt.Errorf("release ended jobs: %w", err)
		}
		ops = ops[n:]
	}
	f.log.Info("released the slots of copies that ended while away", "slots", gone)
	return nil
}

// Held lists the slots held and the copies waiting fleet-wide, in every
// budget found on etcd (configured here or not): held by budget and age,
// waiting by budget and in the order they will be served.
func (f *Fleet) Held(ctx context.Context) (held, waiting []Slot, err error) {
	rctx, cancel := f.reqCtx(ctx)
	defer cancel()
	resp, err := f.cli.Get(rctx, f.cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("list fleet slots: %w", err)
	}
	byBudget := map[string][]int{}
	for i, kv := range resp.Kvs {
		name, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), f.cfg.Prefix), "/")
		byBudget[name] = append(byBudget[name], i)
	}
	names := make([]string, 0, len(byBudget))
	for n := range byBudget {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		kvs := resp.Kvs[:0:0]
		for _, i := range byBudget[name] {
			kvs = append(kvs, resp.Kvs[i])
		}
		v, err := f.parseBudget(name, kvs)
		if err != nil {
			return nil, nil, err
		}
		held = append(held, v.slots...)
		waiting = append(waiting, v.waiters...)
	}
	return held, waiting, nil
}
