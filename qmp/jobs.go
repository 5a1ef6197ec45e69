package qmp

import (
	"context"
	"encoding/json"
	"errors"
)

// JobStatus is a job's state. States: created, running, paused, ready,
// standby, waiting, pending, aborting, concluded, null; a newer QEMU may
// add more, which are kept as they come.
type JobStatus string

const (
	JobCreated   JobStatus = "created"
	JobRunning   JobStatus = "running"
	JobPaused    JobStatus = "paused"
	JobReady     JobStatus = "ready"
	JobStandby   JobStatus = "standby"
	JobWaiting   JobStatus = "waiting"
	JobPending   JobStatus = "pending"
	JobAborting  JobStatus = "aborting"
	JobConcluded JobStatus = "concluded"
	JobNull      JobStatus = "null"
)

// JobInfo is one entry of query-jobs.
type JobInfo struct {
	ID              string    `json:"id"`
	Type            string    `json:"type"` // stream, mirror, commit, backup, create, ...
	Status          JobStatus `json:"status"`
	CurrentProgress uint64    `json:"current-progress"`
	TotalProgress   uint64    `json:"total-progress"`
	Error           string    `json:"error"`
}

// BlockJobInfo is one entry of query-block-jobs.
type BlockJobInfo struct {
	Type         string    `json:"type"`
	Device       string    `json:"device"` // the job id when one was given
	Len          uint64    `json:"len"`
	Offset       uint64    `json:"offset"`
	Busy         bool      `json:"busy"`
	Paused       bool      `json:"paused"`
	Speed        uint64    `json:"speed"`
	IOStatus     string    `json:"io-status"`
	Ready        bool      `json:"ready"`
	Status       JobStatus `json:"status"`
	AutoFinalize bool      `json:"auto-finalize"`
	AutoDismiss  bool      `json:"auto-dismiss"`
	Error        string    `json:"error"`
}

// ErrNoJobID is returned when a job command lacks its job id: qtune
// always names its jobs so that it can find them again after a restart.
var ErrNoJobID = errors.New("qmp: a block job needs a job-id")

// StreamArgs are block-stream's arguments.
type StreamArgs struct {
	JobID        string `json:"job-id"`
	Device       string `json:"device"`              // node name of the top (or a device name)
	BaseNode     string `json:"base-node,omitempty"` // stream down to (excluding) this node
	BackingFile  string `json:"backing-file,omitempty"`
	Speed        uint64 `json:"speed,omitempty"`
	OnError      string `json:"on-error,omitempty"`
	AutoFinalize *bool  `json:"auto-finalize,omitempty"`
	AutoDismiss  *bool  `json:"auto-dismiss,omitempty"`
}

// MirrorArgs are blockdev-mirror's arguments.
type MirrorArgs struct {
	JobID         string `json:"job-id"`
	Device        string `json:"device"`
	Target        string `json:"target"` // node name of an added target
	Replaces      string `json:"replaces,omitempty"`
	Sync          string `json:"sync"` // full, top, none
	Speed         uint64 `json:"speed,omitempty"`
	Granularity   uint32 `json:"granularity,omitempty"`
	BufSize       uint64 `json:"buf-size,omitempty"`
	OnSourceError string `json:"on-source-error,omitempty"`
	OnTargetError string `json:"on-target-error,omitempty"`
	FilterNode    string `json:"filter-node-name,omitempty"`
	CopyMode      string `json:"copy-mode,omitempty"` // background, write-blocking
	AutoFinalize  *bool  `json:"auto-finalize,omitempty"`
	AutoDismiss   *bool  `json:"auto-dismiss,omitempty"`
}

// DriveMirrorArgs are drive-mirror's arguments (the target is a file QEMU
// opens or creates itself).
type DriveMirrorArgs struct {
	JobID        string `json:"job-id"`
	Device       string `json:"device"`
	Target       string `json:"target"`
	Format       string `json:"format,omitempty"`
	NodeName     string `json:"node-name,omitempty"`
	Replaces     string `json:"replaces,omitempty"`
	Sync         string `json:"sync"`
	Mode         string `json:"mode,omitempty"` // existing, absolute-paths
	Speed        uint64 `json:"speed,omitempty"`
	CopyMode     string `json:"copy-mode,omitempty"`
	AutoFinalize *bool  `json:"auto-finalize,omitempty"`
	AutoDismiss  *bool  `json:"auto-dismiss,omitempty"`
}

// BlockStream starts a block-stream job.
func (b *Block) BlockStream(ctx context.Context, a StreamArgs) error {
	if a.JobID == "" {
		return ErrNoJobID
	}
	return b.call(ctx, "block-stream", a, nil)
}

// BlockdevMirror starts a mirror to an already added target node.
func (b *Block) BlockdevMirror(ctx context.Context, a MirrorArgs) error {
	if a.JobID == "" {
		return ErrNoJobID
	}
	return b.call(ctx, "blockdev-mirror", a, nil)
}

// DriveMirror starts a mirror to a file.
func (b *Block) DriveMirror(ctx context.Context, a DriveMirrorArgs) error {
	if a.JobID == "" {
		return ErrNoJobID
	}
	return b.call(ctx, "drive-mirror", a, nil)
}

// QueryJobs lists every job, block or not.
func (b *Block) QueryJobs(ctx context.Context) ([]JobInfo, error) {
	var out []JobInfo
	return out, b.call(ctx, "query-jobs", nil, &out)
}

// QueryBlockJobs lists the block jobs with their progress and speed.
func (b *Block) QueryBlockJobs(ctx context.Context) ([]BlockJobInfo, error) {
	var out []BlockJobInfo
	return out, b.call(ctx, "query-block-jobs", nil, &out)
}

// BlockJobComplete pivots a ready mirror to its target.
func (b *Block) BlockJobComplete(ctx context.Context, jobID string) error {
	return b.call(ctx, "block-job-complete", map[string]string{"device": jobID}, nil)
}

// BlockJobCancel cancels a job. Cancelling a ready mirror completes it
// without pivoting (the VM stays on its source); force skips waiting for
// in-flight I/O to the target.
func (b *Block) BlockJobCancel(ctx context.Context, jobID string, force bool) error {
	return b.call(ctx, "block-job-cancel", map[string]any{"device": jobID, "force": force}, nil)
}

// BlockJobSetSpeed changes a job's speed limit (bytes/s, 0 = unlimited).
func (b *Block) BlockJobSetSpeed(ctx context.Context, jobID string, speed uint64) error {
	return b.call(ctx, "block-job-set-speed", map[string]any{"device": jobID, "speed": speed}, nil)
}

// JobDismiss removes a concluded job (needed with auto-dismiss off).
func (b *Block) JobDismiss(ctx context.Context, jobID string) error {
	return b.call(ctx, "job-dismiss", map[string]string{"id": jobID}, nil)
}

// JobFinalize finalizes a pending job (needed with auto-finalize off).
func (b *Block) JobFinalize(ctx context.Context, jobID string) error {
	return b.call(ctx, "job-finalize", map[string]string{"id": jobID}, nil)
}

// JobEvent is a decoded job event.
type JobEvent struct {
	Name string // JOB_STATUS_CHANGE, BLOCK_JOB_READY, ...
	// ID is the job id (the "device" of BLOCK_JOB_* events).
	ID     string
	Status JobStatus // JOB_STATUS_CHANGE only
	Type   string    // BLOCK_JOB_* except ERROR
	Len    uint64
	Offset uint64
	Speed  uint64
	// Error is set on a failed BLOCK_JOB_COMPLETED. A cancelled ready
	// mirror also reports COMPLETED, without error and without pivot.
	Error string
	// Operation and Action are set on BLOCK_JOB_ERROR.
	Operation, Action string
}

// DecodeJobEvent decodes the job events qtune follows; ok is false for any
// other event or undecodable data.
func DecodeJobEvent(ev Event) (JobEvent, bool) {
	var d struct {
		ID        string    `json:"id"`
		Status    JobStatus `json:"status"`
		Device    string    `json:"device"`
		Type      string    `json:"type"`
		Len       uint64    `json:"len"`
		Offset    uint64    `json:"offset"`
		Speed     uint64    `json:"speed"`
		Error     string    `json:"error"`
		Operation string    `json:"operation"`
		Action    string    `json:"action"`
	}
	switch ev.Name {
	case "JOB_STATUS_CHANGE", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING":
	default:
		return JobEvent{}, false
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return JobEvent{}, false
	}
	je := JobEvent{Name: ev.Name, ID: d.Device, Status: d.Status, Type: d.Type, Len: d.Len,
		Offset: d.Offset, Speed: d.Speed, Error: d.Error, Operation: d.Operation, Action: d.Action}
	if ev.Name == "JOB_STATUS_CHANGE" || ev.Name == "BLOCK_JOB_PENDING" {
		je.ID = d.ID
	}
	return je, je.ID != ""
}
