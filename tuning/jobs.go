package tuning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/policy"
)

// Block jobs: stream, mirror and live convert, each a durable state
// machine kept in the store's "jobs" bucket. Every transition is written
// before it is acted on, so that after a crash the next start knows what
// may have happened and reconciles it with what QEMU or libvirt report:
//
//	            ┌──────────── budget, window, backoff: wait ───────────┐
//	            v                                                      │
//	        planned ──> starting ──> running ──> ready ──> pivoting ──> done
//	            │           │           │          │           │
//	            │           │           │          │           └──> failed  (job error; VM left where QEMU says)
//	            │           │           │          └──> cancelled  (cancel asked, or the rule no longer wants it)
//	            │           │           └──> failed     (job error, ENOSPC, vanished, QEMU gone)
//	            │           └──> failed, or planned again with backoff (start refused)
//	            └──> cancelled (cancel asked before it started)
//
// stream has no ready or pivoting: running goes to done when the job
// concludes without error and the chain is gone. A mirror or convert that
// does not reach ready within the converge time is given up cleanly; only
// where the operator allowed write-blocking copies (which can crash QEMU,
// see jobs_wblock.go) is it first cancelled and started again in that
// mode (QEMU 7.2 cannot switch a running job's mode).
//
// Whatever happens, the VM stays on its source until a pivot of a ready
// job, the source is never deleted, and a target qtune created is removed
// only when no pivot happened.

// JobKind is what a job does.
type JobKind string

const (
	JobStream  JobKind = "stream"
	JobMirror  JobKind = "mirror"
	JobConvert JobKind = "convert"
)

// jobKindSpec is all qtune knows about one kind of block job: the policy
// knob that asks for it, how a rule's action becomes a request, how a
// request is shaped against the disk as it is (or found pointless), how
// it is told, how each backend starts it, and — for a job that does not
// pivot onto a copy — how its end is judged. Each kind registers from its
// own file (job_*.go), beside its policy half (policy/kind_*.go).
type jobKindSpec struct {
	knob       policy.Knob
	fromAction func(a policy.Action, r *JobRequest)
	shape      func(m *JobManager, j *Job, r JobRequest, img DiskImage) (noop string, err error)
	describe   func(j *Job) string

	qmpStart     func(ctx context.Context, r *reopener, j *Job, img DiskImage) error
	libvirtStart func(ctx context.Context, b *LibvirtBackend, j *Job, img DiskImage) error

	// ended judges a job without a pivot once the hypervisor dropped it;
	// nil marks a copy that goes ready and pivots onto its target.
	ended func(m *JobManager, ctx context.Context, j *Job, img DiskImage) error
}

var jobKinds = map[JobKind]jobKindSpec{}

// registerJob adds a job kind; twice is a programming error.
func registerJob(kind JobKind, spec jobKindSpec) {
	if _, dup := jobKinds[kind]; dup || spec.shape == nil || spec.describe == nil || spec.qmpStart == nil || spec.libvirtStart == nil {
		panic(fmt.Sprintf("tuning: job kind %q registered twice or incomplete", kind))
	}
	jobKinds[kind] = spec
}

// pivots reports whether the job copies to a target and pivots onto it.
func (j *Job) pivots() bool { return jobKinds[j.Kind].ended == nil }

// JobKindOf maps a policy knob to a job kind; ok is false for a knob that
// is not a block job.
func JobKindOf(k policy.Knob) (JobKind, bool) {
	for kind, spec := range jobKinds {
		if spec.knob == k {
			return kind, true
		}
	}
	return "", false
}

// JobState is where a job is in its state machine.
type JobState string

const (
	JobPlanned   JobState = "planned"
	JobStarting  JobState = "starting"
	JobRunning   JobState = "running"
	JobReady     JobState = "ready"
	JobPivoting  JobState = "pivoting"
	JobDone      JobState = "done"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Final reports whether a job has ended.
func (s JobState) Final() bool { return s == JobDone || s == JobFailed || s == JobCancelled }

// Progress is a job's progress as last seen.
type Progress struct {
	Offset uint64        `json:"offset"`
	Length uint64        `json:"length"`
	Rate   float64       `json:"rate"` // bytes/s, from the last two polls
	ETA    time.Duration `json:"eta,omitempty"`
	At     time.Time     `json:"at"`
}

// Percent is the share done, 0-100.
func (p Progress) Percent() float64 {
	if p.Length == 0 {
		return 0
	}
	return 100 * float64(p.Offset) / float64(p.Length)
}

// Job is one block job qtune owns.
type Job struct {
	ID   string  `json:"id"`
	Kind JobKind `json:"kind"`
	Target
	Rule  string   `json:"rule,omitempty"` // the rule that asked for it, empty by hand
	By    string   `json:"by"`             // "policy" or "hand"
	State JobState `json:"state"`
	// Source is the image the disk ran on when the job was planned; it
	// is never deleted by qtune.
	Source string `json:"source"`
	// Dest is the new image (mirror, convert); DestCreated says qtune made
	// it (and so may remove it, if no pivot happened).
	Dest        string        `json:"dest,omitempty"`
	DestCreated bool          `json:"dest_created,omitempty"`
	Layout      policy.Layout `json:"layout,omitempty"`
	Base        string        `json:"base,omitempty"` // stream down to this image
	Speed       uint64        `json:"speed,omitempty"`
	// WriteBlocking: the copy runs (or is to run) in write-blocking mode.
	WriteBlocking bool `json:"write_blocking,omitempty"`
	// CancelAsked: someone asked for a cancel; the job ends cancelled.
	CancelAsked bool `json:"cancel_asked,omitempty"`
	// Restart: the job is being cancelled to start again write-blocking.
	Restart  bool `json:"restart,omitempty"`
	Attempts int  `json:"attempts"`
	// PivotTries counts pivots asked for: a pivot that does not take is
	// asked again a few times, never forever.
	PivotTries int       `json:"pivot_tries,omitempty"`
	PivotAt    time.Time `json:"pivot_at,omitempty"`
	NextTry    time.Time `json:"next_try,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	Started    time.Time `json:"started,omitempty"` // the current attempt
	Ended      time.Time `json:"ended,omitempty"`
	Progress   Progress  `json:"progress"`
	// Waiting says why a planned job has not started yet.
	Waiting string `json:"waiting,omitempty"`
	Error   string `json:"error,omitempty"`
	// Cause is the failure's short name (Cause* constants), for metrics.
	Cause   string `json:"cause,omitempty"`
	Pivoted bool   `json:"pivoted,omitempty"`
}

// TargetDir is the directory the job writes into (for budgets).
func (j *Job) TargetDir() string {
	if j.Dest == "" {
		return dirOf(j.Source)
	}
	return dirOf(j.Dest)
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

// JobID is a job's deterministic id: the same intent (kind, disk, source,
// destination) gives the same id, so a job found in QEMU after a restart
// is known for qtune's own. QEMU wants ids made of letters, digits, '-',
// '.' and '_', starting with a letter.
func JobID(kind JobKind, t Target, source, dest string) string {
	h := sha256.Sum256([]byte(string(kind) + "\x00" + t.VM + "\x00" + t.Disk + "\x00" + source + "\x00" + dest))
	return "qtune-" + string(kind) + "-" + idPart(t.VM, 24) + "-" + idPart(t.Disk, 16) + "-" + hex.EncodeToString(h[:4])
}

func idPart(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= max {
			break
		}
	}
	return b.String()
}

// IsQtuneJobID reports whether a QEMU job id is one qtune gives.
func IsQtuneJobID(id string) bool { return strings.HasPrefix(id, "qtune-") }

var bucketJobs = []byte("jobs")

// ErrNoJob is returned for a job id the store does not hold.
var ErrNoJob = errors.New("tuning: no such job")

// PutJob writes a job (and syncs it to disk).
func (s *Store) PutJob(j *Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketJobs)
		if err != nil {
			return err
		}
		return bk.Put([]byte(j.ID), b)
	})
	if err != nil {
		return fmt.Errorf("record job %s: %w", j.ID, err)
	}
	return nil
}

// Job reads one job.
func (s *Store) Job(id string) (*Job, error) {
	var j *Job
	err := s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketJobs)
		if bk == nil {
			return nil
		}
		if b := bk.Get([]byte(id)); b != nil {
			j = &Job{}
			return json.Unmarshal(b, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	if j == nil {
		return nil, fmt.Errorf("%s: %w", id, ErrNoJob)
	}
	return j, nil
}

// Jobs lists every stored job.
func (s *Store) Jobs() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketJobs)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(_, v []byte) error {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return err
			}
			out = append(out, j)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	return out, nil
}

// DeleteJob forgets a job (ended jobs are pruned after a while).
func (s *Store) DeleteJob(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketJobs)
		if bk == nil {
			return nil
		}
		return bk.Delete([]byte(id))
	})
}
