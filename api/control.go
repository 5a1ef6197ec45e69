package api

import "github.com/qtune/qtune/policy"

// The control socket (a unix socket only root or the control group may
// open) takes:
//
//	GET  /v1/jobs              -> []Job
//	POST /v1/jobs              JobRequest -> Planned
//	POST /v1/jobs/{id}/cancel  -> Job
//
// and answers a refused or failed request with a ControlError body.

// JobRequest asks for a block job by hand (qtune jobs start).
type JobRequest struct {
	Kind policy.Knob `json:"kind"` // stream, mirror or convert
	Target
	Rule      string        `json:"rule,omitempty"`
	Base      string        `json:"base,omitempty"`       // stream: down to this image
	TargetDir string        `json:"target_dir,omitempty"` // mirror
	Layout    policy.Layout `json:"layout,omitempty"`     // mirror, convert
	Speed     uint64        `json:"speed,omitempty"`
	CopyMode  string        `json:"copy_mode,omitempty"`
}

// Planned is the reply to a JobRequest. Its fields carry no JSON tags, so
// they are spelled as here on the wire; Result is the executor's
// (applied, no-op, recommended, dry-run).
type Planned struct {
	Job    *Job
	Result string
	Reason string
}

// ResultApplied is the Result of a request that planned a job.
const ResultApplied = "applied"

// ControlError is the body of a refused or failed control request.
type ControlError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"` // a refusal's code
}
