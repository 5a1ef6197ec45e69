package qmp

import (
	"context"
)

// RunState is query-status's reply: Status is QEMU's RunState
// ("running", "paused", "io-error", ...).
type RunState struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus reads the VM's run state.
func (b *Block) QueryStatus(ctx context.Context) (RunState, error) {
	var s RunState
	return s, b.call(ctx, "query-status", nil, &s)
}
