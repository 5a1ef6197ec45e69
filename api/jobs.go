package api

import (
	"time"

	"github.com/qtune/qtune/policy"
)

// JobState is where a block job is in its state machine.
type JobState string

// The states of a block job, as the agent's job manager names them.
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

// Job is one block job as GET /v1/jobs and the status list it. The kind
// is the policy knob that asks for it (stream, mirror, convert).
type Job struct {
	ID   string      `json:"id"`
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
	// SlowedTo is the speed a running copy was slowed to while its fleet
	// slot is lost (0: it runs at Speed).
	SlowedTo      uint64    `json:"slowed_to,omitempty"`
	WriteBlocking bool      `json:"write_blocking,omitempty"`
	CancelAsked   bool      `json:"cancel_asked,omitempty"`
	Restart       bool      `json:"restart,omitempty"`
	Attempts      int       `json:"attempts"`
	PivotTries    int       `json:"pivot_tries,omitempty"`
	PivotAt       time.Time `json:"pivot_at,omitempty"`
	NextTry       time.Time `json:"next_try,omitempty"`
	Created       time.Time `json:"created"`
	Updated       time.Time `json:"updated"`
	Started       time.Time `json:"started,omitempty"` // the current attempt
	Ended         time.Time `json:"ended,omitempty"`
	Progress      Progress  `json:"progress"`
	// Waiting says why a planned job has not started yet, or why a
	// running copy is slowed.
	Waiting string `json:"waiting,omitempty"`
	Error   string `json:"error,omitempty"`
	// Cause is the failure's short name (target_full, job_error, ...).
	Cause   string `json:"cause,omitempty"`
	Pivoted bool   `json:"pivoted,omitempty"`
	// Chain is the disk's backing files when the job was planned, top
	// first.
	Chain []string `json:"chain,omitempty"`
	// Kept lists the images the job took the disk off, left on disk.
	Kept []Kept `json:"kept,omitempty"`
}

// Kept is an image a job took a disk off and left on disk. Open says
// QEMU still held it when the job ended (deleting it frees nothing until
// the VM stops); closed, it is free to delete.
type Kept struct {
	Path  string `json:"path"`
	Bytes uint64 `json:"bytes"` // the space it takes on its filesystem
	Open  bool   `json:"open,omitempty"`
}

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
