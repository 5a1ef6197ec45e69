package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// attempts bounds how often one call re-reads a budget that moved under
// it; the job manager calls again next step anyway.
const attempts = 5

// Acquire asks for c's slots and never blocks: the first call queues the
// copy, later calls (one per step of the job manager) take the slots once
// the copy is first in line and fits. granted is true only while c holds
// a slot in every budget it names; whatever err says, a copy not granted
// must not start (why says why, for status). A copy that gives up waiting
// must be Released, or it holds the line until its host's lease ends.
func (f *Fleet) Acquire(ctx context.Context, c Copy) (granted bool, why string, err error) {
	return f.take(ctx, c, false)
}

// Retake takes back the slots of a copy found running: after a restart,
// or when its slot was lost with the lease. Slots this host still holds
// (under an old lease) are moved to the new one; otherwise the copy
// queues before every copy not started yet, and is granted when it fits.
// Until then its State is Lost and it should run at FloorSpeed.
func (f *Fleet) Retake(ctx context.Context, c Copy) (granted bool, why string, err error) {
	return f.take(ctx, c, true)
}

func (f *Fleet) take(ctx context.Context, c Copy, running bool) (bool, string, error) {
	if len(c.Budgets) == 0 {
		return true, "", nil
	}
	for _, b := range c.Budgets {
		if _, ok := f.budgets[b]; !ok {
			return false, fmt.Sprintf("budget %q is not configured", b), fmt.Errorf("%w %q", ErrUnknownBudget, b)
		}
	}
	f.mu.Lock()
	e := f.jobs[c.JobID]
	if e == nil {
		e = &entry{c: c}
		f.jobs[c.JobID] = e
		delete(f.releases, c.JobID)
	}
	if running {
		e.running = true
		if e.state != Held {
			e.state = Lost
		}
	}
	if e.state != Held {
		e.c = c
	}
	lease, ok, leaseErr := f.lease, f.leaseOK, f.leaseErr
	if e.state == Held && e.lease == lease && ok {
		f.mu.Unlock()
		return true, "", nil
	}
	c, running = e.c, e.running
	f.mu.Unlock()
	if !ok {
		if running {
			return false, fmt.Sprintf("slot lost with the fleet lease (%v): running at the floor speed until it is taken again", leaseErr), nil
		}
		return false, fmt.Sprintf("no fleet lease, etcd unreachable: %v", leaseErr), nil
	}
	granted, why, err := f.try(ctx, c, running, lease)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs[c.JobID] != e {
		// Released while asking (the background retake of a lost
		// slot races the job's end): what was taken goes back.
		if granted {
			f.releases[c.JobID] = true
		}
		return false, "released meanwhile", nil
	}
	switch {
	case granted:
		was := e.state
		e.state, e.lease, e.running = Held, lease, false
		if was == Lost {
			f.log.Info("fleet slot taken again", "job", c.JobID)
			f.notify()
		}
	case e.state != Lost:
		e.state = Waiting
	}
	if err != nil && why == "" {
		why = "etcd unreachable: " + err.Error()
	}
	return granted, why, err
}

// try is one round of reading c's budgets and, when c may go, taking
// every slot in one transaction.
func (f *Fleet) try(ctx context.Context, c Copy, running bool, lease clientv3.LeaseID) (bool, string, error) {
	for i := 0; i < attempts; i++ {
		views, err := f.snapshot(ctx, c.Budgets)
		if err != nil {
			return false, "", err
		}
		var cmps []clientv3.Cmp
		var ops, enqueue []clientv3.Op
		var why []string
		for _, name := range c.Budgets {
			v, b := views[name], f.budgets[name]
			sk, wk, gk := f.slotKey(name, f.host, c.JobID), f.waiterKey(name, f.host, c.JobID), f.guardKey(name)
			if rev, mine := v.rev[sk]; mine {
				// Held already, perhaps under an old lease: move it to ours.
				since := time.Now()
				for _, s := range v.slots {
					if s.Host == f.host && s.JobID == c.JobID {
						since = s.Since
					}
				}
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(sk), "=", rev))
				ops = append(ops, clientv3.OpPut(sk, f.value(c, since, false), clientv3.WithLease(lease)), clientv3.OpDelete(wk))
				continue
			}
			me, queued := v.find(f.host, c.JobID)
			if !queued || me.Running != running {
				// A Put keeps a key's create revision: a waiter
				// re-put (new lease, now running) keeps its place.
				enqueue = append(enqueue, clientv3.OpPut(wk, f.value(c, time.Now(), running), clientv3.WithLease(lease)))
				if running {
					enqueue = append(enqueue, clientv3.OpPut(gk, ""))
				}
				continue
			}
			if r := blocked(v, me, name); r != "" {
				why = append(why, r)
				continue
			}
			if r := full(v, b, c, f.host); r != "" {
				why = append(why, r)
				continue
			}
			cmps = append(cmps,
				clientv3.Compare(clientv3.ModRevision(gk), "=", v.guardRev),
				clientv3.Compare(clientv3.CreateRevision(wk), "=", me.Revision))
			ops = append(ops, clientv3.OpPut(sk, f.value(c, time.Now(), false), clientv3.WithLease(lease)),
				clientv3.OpDelete(wk), clientv3.OpPut(gk, ""))
		}
		if len(enqueue) > 0 {
			if err := f.commit(ctx, nil, enqueue); err != nil {
				return false, "", fmt.Errorf("queue %s: %w", c.JobID, err)
			}
			continue
		}
		if len(why) > 0 {
			return false, strings.Join(why, "; "), nil
		}
		rctx, cancel := f.reqCtx(ctx)
		resp, err := f.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return false, "", fmt.Errorf("take slot for %s: %w", c.JobID, err)
		}
		if resp.Succeeded {
			return true, "", nil
		}
		// Another host took a slot, or our waiter went with a lease:
		// read again.
	}
	return false, "the budget changed under every attempt; trying again next step", nil
}

func (f *Fleet) commit(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) error {
	rctx, cancel := f.reqCtx(ctx)
	defer cancel()
	_, err := f.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	return err
}

// snapshot reads every named budget at one revision.
func (f *Fleet) snapshot(ctx context.Context, budgets []string) (map[string]budgetView, error) {
	ops := make([]clientv3.Op, len(budgets))
	for i, b := range budgets {
		ops[i] = clientv3.OpGet(f.budgetPrefix(b), clientv3.WithPrefix())
	}
	rctx, cancel := f.reqCtx(ctx)
	defer cancel()
	resp, err := f.cli.Txn(rctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read budgets %v: %w", budgets, err)
	}
	views := map[string]budgetView{}
	for i, b := range budgets {
		v, err := f.parseBudget(b, resp.Responses[i].GetResponseRange().Kvs)
		if err != nil {
			return nil, err
		}
		views[b] = v
	}
	return views, nil
}

func (f *Fleet) value(c Copy, since time.Time, running bool) string {
	b, _ := json.Marshal(Slot{JobID: c.JobID, Host: f.host, VM: c.VM, Disk: c.Disk, Kind: c.Kind,
		Speed: c.Speed, Since: since.UTC().Round(time.Millisecond), Running: running})
	return string(b)
}

func (v budgetView) find(host, job string) (Slot, bool) {
	for _, w := range v.waiters {
		if w.Host == host && w.JobID == job {
			return w, true
		}
	}
	return Slot{}, false
}

// blocked says why me must wait for copies queued before it, or "".
func blocked(v budgetView, me Slot, budget string) string {
	var before []Slot
	for _, w := range v.waiters {
		if ahead(w, me) {
			before = append(before, w)
		}
	}
	if len(before) == 0 {
		return ""
	}
	return fmt.Sprintf("budget %s: %d copies queued before this one (first: %s)", budget, len(before), who(before[0]))
}

// full says why c does not fit into b beside the slots held, or "".
func full(v budgetView, b Budget, c Copy, host string) string {
	var n int
	var speed uint64
	for _, s := range v.slots {
		if s.Host == host && s.JobID == c.JobID {
			continue
		}
		n++
		speed += counted(s.Speed, b)
	}
	if n+1 > b.MaxCopies {
		return fmt.Sprintf("budget %s: %d of %d copies running (first: %s)", b.Name, n, b.MaxCopies, who(v.slots[0]))
	}
	if need := counted(c.Speed, b); b.MaxSpeed > 0 && speed+need > b.MaxSpeed {
		return fmt.Sprintf("budget %s: %s of %s taken, this copy needs %s", b.Name, rate(speed), rate(b.MaxSpeed), rate(need))
	}
	return ""
}

// counted is the bandwidth a copy takes from b: its speed, or the whole
// budget when it is unbounded or faster than the budget allows.
func counted(speed uint64, b Budget) uint64 {
	if b.MaxSpeed > 0 && (speed == 0 || speed > b.MaxSpeed) {
		return b.MaxSpeed
	}
	return speed
}

func who(s Slot) string { return fmt.Sprintf("%s %s/%s %s", s.Host, s.VM, s.Disk, s.Kind) }

func rate(b uint64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB/s", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%.4gMiB/s", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.4gKiB/s", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB/s", b)
}
