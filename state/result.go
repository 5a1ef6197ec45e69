package state

// Result is what became of one decision, as the action log records it.
type Result string

const (
	ResultApplied      Result = "applied"
	ResultNoOp         Result = "no-op"       // already as desired; no cooldown starts
	ResultRefused      Result = "refused"     // a safety limit said no
	ResultRecommended  Result = "recommended" // recommend mode: recorded, not acted on
	ResultDryRun       Result = "dry-run"
	ResultFailed       Result = "failed"
	ResultVerifyFailed Result = "verify-failed"
	ResultReverted     Result = "reverted"
	ResultDrift        Result = "drift" // someone else changed an owned knob; qtune let go
	// ResultResolved: a record left between intent and verification by a
	// crash was matched with what the knob holds.
	ResultResolved Result = "resolved"
	// ResultForgotten: the record's VM is gone and its change went with
	// it; the record is dropped without touching anything.
	ResultForgotten Result = "forgotten"
	// ResultAdopted: a record the VM carried in (from the host it came
	// from) became this host's own.
	ResultAdopted Result = "adopted"
	// ResultHandedOver: the VM migrated away; its records went with it
	// and this host dropped its own without touching anything.
	ResultHandedOver Result = "handed-over"
)
