package fleet

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Key layout under the prefix (DefaultPrefix, /qtune/budgets/):
//
//	<budget>/guard                 rewritten by every transaction that adds a slot
//	<budget>/slots/<host>/<job>    a slot held, under the holder's lease
//	<budget>/waiters/<host>/<job>  a copy waiting, under its host's lease
//
// Host and job are path-escaped, so neither can break the layout. The
// guard is what makes taking a slot safe: a taker reads the budget, then
// writes its slot only if the guard has not moved since, so two hosts
// racing for the last slot cannot both win. Slots that go away (a
// release, a lease that expires) need no guard: they only free room.

// Slot is a copy's place in one budget: held, or waited for.
type Slot struct {
	Budget string    `json:"-"`
	JobID  string    `json:"job"`
	Host   string    `json:"host"`
	VM     string    `json:"vm"`
	Disk   string    `json:"disk"`
	Kind   string    `json:"kind"`  // mirror, stream, convert
	Speed  uint64    `json:"speed"` // bytes/s; 0 = unbounded
	Since  time.Time `json:"since"`
	// Running marks a waiter whose copy is already moving data (its slot
	// was lost, or the agent restarted): it comes before copies not
	// started yet.
	Running bool `json:"running,omitempty"`
	// Revision is the key's create revision: a waiter's place in line.
	Revision int64 `json:"-"`
}

func (f *Fleet) budgetPrefix(budget string) string { return f.cfg.Prefix + budget + "/" }
func (f *Fleet) guardKey(budget string) string     { return f.budgetPrefix(budget) + "guard" }

func (f *Fleet) slotKey(budget, host, job string) string {
	return f.budgetPrefix(budget) + "slots/" + url.PathEscape(host) + "/" + url.PathEscape(job)
}

func (f *Fleet) waiterKey(budget, host, job string) string {
	return f.budgetPrefix(budget) + "waiters/" + url.PathEscape(host) + "/" + url.PathEscape(job)
}

// budgetView is one budget as read in one snapshot.
type budgetView struct {
	guardRev int64 // the guard's mod revision; 0 when it was never written
	slots    []Slot
	waiters  []Slot
	rev      map[string]int64 // key -> mod revision, for the keys of this host
}

// parseBudget reads the keys under one budget's prefix.
func (f *Fleet) parseBudget(budget string, kvs []*mvccpb.KeyValue) (budgetView, error) {
	v := budgetView{rev: map[string]int64{}}
	pre := f.budgetPrefix(budget)
	for _, kv := range kvs {
		rest := strings.TrimPrefix(string(kv.Key), pre)
		if rest == "guard" {
			v.guardRev = kv.ModRevision
			continue
		}
		kind, _, _ := strings.Cut(rest, "/")
		if kind != "slots" && kind != "waiters" {
			continue
		}
		var s Slot
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return v, fmt.Errorf("fleet: key %s: %w", kv.Key, err)
		}
		s.Budget, s.Revision = budget, kv.CreateRevision
		v.rev[string(kv.Key)] = kv.ModRevision
		if kind == "slots" {
			v.slots = append(v.slots, s)
		} else {
			v.waiters = append(v.waiters, s)
		}
	}
	sortWaiters(v.waiters)
	sort.Slice(v.slots, func(i, j int) bool { return v.slots[i].Revision < v.slots[j].Revision })
	return v, nil
}

// sortWaiters puts waiters in the order they are served: running copies
// first, then by create revision.
func sortWaiters(w []Slot) {
	sort.Slice(w, func(i, j int) bool { return ahead(w[i], w[j]) })
}

// ahead reports whether waiter a is served before waiter b.
func ahead(a, b Slot) bool {
	if a.Running != b.Running {
		return a.Running
	}
	return a.Revision < b.Revision
}
