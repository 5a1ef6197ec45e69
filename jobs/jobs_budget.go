package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// DiskImage is what a job needs to know of a disk, as the hypervisor has
// it open now.
type DiskImage struct {
	Path            string   `json:"path"` // the active image
	Format          string   `json:"format"`
	Node            string   `json:"node,omitempty"` // its format node (QMP)
	VirtualSize     uint64   `json:"virtual_size"`
	Allocated       uint64   `json:"allocated"` // bytes the whole chain takes on disk
	ClusterSize     uint64   `json:"cluster_size,omitempty"`
	ExtendedL2      bool     `json:"extended_l2,omitempty"`
	CompressionType string   `json:"compression_type,omitempty"`
	Chain           []string `json:"chain,omitempty"` // backing images, top first, without Path
	// Encrypted: the guest's data is encrypted in the image; Encryption
	// is the header's format (luks, or aes: qcow2's old one) and
	// KeySecret what unlocks it where the hypervisor holds it (QMP: the
	// id of the secret object the node names; libvirt: the UUID of the
	// secret its <encryption> names). KeyProblem says why there is none
	// a copy could use, where the driver knows.
	Encrypted  bool   `json:"encrypted,omitempty"`
	Encryption string `json:"encryption,omitempty"`
	KeySecret  string `json:"key_secret,omitempty"`
	KeyProblem string `json:"key_problem,omitempty"`
	// Cache is the disk's host cache mode (QMP): a copy's new nodes get
	// the same, so a pivot does not change it behind the operator's back.
	Cache *state.CacheState `json:"cache,omitempty"`
}

// HVJob is a block job as the hypervisor reports it.
type HVJob struct {
	ID     string // job id; empty where the hypervisor has none (libvirt)
	Disk   string
	Type   string
	Status string // QEMU's job status; libvirt: running or ready
	Offset uint64
	Length uint64
	Ready  bool
	Error  string
}

// Driver runs block jobs on one kind of hypervisor connection. Every
// call is given a deadline by the manager.
type Driver interface {
	// Image describes the disk as the VM runs it now.
	Image(ctx context.Context, t state.Target) (DiskImage, error)
	// BlockJobs lists every block job of a VM, qtune's or not. A VM that
	// is gone gives tuning.ErrVMGone.
	BlockJobs(ctx context.Context, vm string) ([]HVJob, error)
	// StartJob starts j; for a copy, j.Dest exists already.
	StartJob(ctx context.Context, j *state.Job, img DiskImage) error
	// Pivot switches a ready copy to its destination.
	Pivot(ctx context.Context, j *state.Job) error
	// CancelJob cancels j; the VM stays on its source.
	CancelJob(ctx context.Context, j *state.Job) error
	// Finish clears what an ended job leaves in the hypervisor (a
	// concluded job to dismiss, a target node to delete); it is safe to
	// call more than once.
	Finish(ctx context.Context, j *state.Job) error
	// SetSpeed changes a running job's speed limit, bytes/s (0 =
	// unlimited): a copy whose fleet slot is lost is slowed, not
	// cancelled.
	SetSpeed(ctx context.Context, j *state.Job, speed uint64) error
}

// Budget decides whether a job may start now. The local one counts jobs
// on this host; a fleet-wide one on a shared store can take its place.
type Budget interface {
	// Acquire takes a slot for j, or says why not now.
	Acquire(j *state.Job, now time.Time) (ok bool, why string)
	// Hold takes j's slot unconditionally (a job found running after a
	// restart already uses one).
	Hold(j *state.Job)
	// Release gives j's slot back; releasing twice is harmless.
	Release(j *state.Job)
}

// LocalBudget limits jobs on this host: how many run at once, how many
// write into one directory, and when they may start.
type LocalBudget struct {
	Host    int             // jobs at once on the host (default 2)
	PerDir  int             // jobs at once writing into one directory (default 1)
	Windows []policy.Window // start only inside one of these (local time); none = any time

	mu     sync.Mutex
	held   map[string]string // job id -> target directory
	perDir map[string]int
}

// Acquire implements Budget.
func (b *LocalBudget) Acquire(j *state.Job, now time.Time) (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	if _, ok := b.held[j.ID]; ok {
		return true, ""
	}
	if len(b.Windows) > 0 && !inAnyWindow(b.Windows, now) {
		return false, "outside the maintenance windows " + windowsText(b.Windows)
	}
	if host := orInt(b.Host, 2); len(b.held) >= host {
		return false, fmt.Sprintf("host budget: %d of %d jobs running", len(b.held), host)
	}
	dir := j.TargetDir()
	if per := orInt(b.PerDir, 1); b.perDir[dir] >= per {
		return false, fmt.Sprintf("directory budget: %d of %d jobs writing into %s", b.perDir[dir], per, dir)
	}
	b.holdLocked(j)
	return true, ""
}

// Hold implements Budget.
func (b *LocalBudget) Hold(j *state.Job) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	if _, ok := b.held[j.ID]; !ok {
		b.holdLocked(j)
	}
}

// Release implements Budget.
func (b *LocalBudget) Release(j *state.Job) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	dir, ok := b.held[j.ID]
	if !ok {
		return
	}
	delete(b.held, j.ID)
	if b.perDir[dir]--; b.perDir[dir] <= 0 {
		delete(b.perDir, dir)
	}
}

func (b *LocalBudget) holdLocked(j *state.Job) {
	dir := j.TargetDir()
	b.held[j.ID] = dir
	b.perDir[dir]++
}

func (b *LocalBudget) initLocked() {
	if b.held == nil {
		b.held, b.perDir = map[string]string{}, map[string]int{}
	}
}

func orInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func inAnyWindow(ws []policy.Window, now time.Time) bool {
	for _, w := range ws {
		if w.Contains(now) {
			return true
		}
	}
	return false
}

func windowsText(ws []policy.Window) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.String()
	}
	return strings.Join(s, ", ")
}
