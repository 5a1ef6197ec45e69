package agent

import (
	"errors"
	"fmt"
	"os"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// openStore opens the state store. One that another agent holds is
// fatal. One that cannot be opened or fails its consistency check is
// refused, never replaced: the agent keeps sampling and serving metrics
// and status (an SRE can see the host while deciding) but changes
// nothing, and says why, until the store is repaired or restored. Its
// decisions then land in a scratch store that is removed on exit.
func (a *Agent) openStore() (closeStore func(), err error) {
	st, err := state.OpenStore(a.cfg.StateDir)
	if err == nil {
		a.store = st
		return func() { st.Close() }, nil
	}
	if errors.Is(err, state.ErrStoreLocked) {
		return nil, err
	}
	a.storeErr = err.Error()
	a.log.Error("state store refused: qtune changes nothing until it is repaired or restored (see qtune state check)",
		"state_dir", a.cfg.StateDir, "error", err.Error())
	scratch, serr := os.MkdirTemp("", "qtune-refused-")
	if serr != nil {
		return nil, fmt.Errorf("%w (and no scratch store: %v)", err, serr)
	}
	if a.store, serr = state.OpenStore(scratch); serr != nil {
		os.RemoveAll(scratch)
		return nil, fmt.Errorf("%w (and no scratch store: %v)", err, serr)
	}
	return func() { a.store.Close(); os.RemoveAll(scratch) }, nil
}

// refusing says whether the agent refuses to act for want of a store it
// can trust.
func (a *Agent) refusing() bool { return a.storeErr != "" }

// refused is the outcome of every decision while refusing.
func (a *Agent) refused(d policy.Decision) api.ActionStatus {
	a.m.actions.WithLabelValues(d.Rule, string(d.Knob), string(state.ResultRefused)).Inc()
	return api.ActionStatus{At: a.clock.Now(), Rule: d.Rule, VM: d.VM, Disk: d.Disk, Knob: string(d.Knob),
		Result: string(state.ResultRefused), Reason: "state store refused: " + a.storeErr}
}
