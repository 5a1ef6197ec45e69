package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/policy"
)

// The store's "jobs" bucket holds every block job qtune owns as a
// durable record; the state machine that moves them is the jobs
// package's.

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
	ID string `json:"id"`
	// Kind is the policy knob of the job's kind (stream, mirror, convert).
	Kind policy.Knob `json:"kind"`
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
	// SlowedTo is the speed (bytes/s) a running copy was slowed to because
	// its fleet slot went with the lease; 0 while it runs at Speed.
	SlowedTo uint64 `json:"slowed_to,omitempty"`
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
	// Chain is the disk's backing files when the job was planned, top
	// first: a stream takes some of them out of use.
	Chain []string `json:"chain,omitempty"`
	// Kept lists the images the job took the disk off: left on disk,
	// never deleted by qtune.
	Kept []Kept `json:"kept,omitempty"`
}

// Kept is an image a job took a disk off. Open says QEMU still held it
// when the job ended (its space is not freed by deleting it until the
// VM stops); closed, it is free to delete.
type Kept struct {
	Path  string `json:"path"`
	Bytes uint64 `json:"bytes"` // the space it takes on its filesystem
	Open  bool   `json:"open,omitempty"`
}

// TargetDir is the directory the job writes into (for budgets).
func (j *Job) TargetDir() string {
	if j.Dest == "" {
		return DirOf(j.Source)
	}
	return DirOf(j.Dest)
}

// DirOf is the directory of an image path.
func DirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

var bucketJobs = []byte("jobs")

// ErrNoJob is returned for a job id the store does not hold.
var ErrNoJob = errors.New("state: no such job")

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
