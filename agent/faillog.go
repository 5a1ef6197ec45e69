package agent

import (
	"errors"
	"time"

	"github.com/qtune/qtune/facts"

	"github.com/qtune/qtune/internal/sample"
)

// failureReminder is how often a failure that repeats every cycle is
// logged again, with its count, after it was first logged.
const failureReminder = 5 * time.Minute

// logSampleErrors logs a VM's sample failure when it starts, when its
// error changes and as a reminder, not every cycle; and its end once.
// The metric counts every failure.
func (a *Agent) logSampleErrors(disks []sample.Disk, errs map[string]error, gone []string) {
	for vm, err := range errs {
		a.m.sampleErrors.WithLabelValues(vm).Inc()
		// A runner still busy with its last try says nothing new about a
		// VM already failing: it counts as a repeat, not a new message.
		if errors.Is(err, facts.ErrBusy) && a.failLog.Repeat("sample/"+vm) {
			continue
		}
		if log, n := a.failLog.Failed("sample/"+vm, err.Error()); log {
			args := []any{"vm", vm, "error", err.Error()}
			if n > 0 {
				args = append(args, "repeats_since_last_line", n)
			}
			a.log.Warn("sample failed", args...)
		}
	}
	ok := map[string]bool{}
	for _, d := range disks {
		ok[d.VM] = true
	}
	for vm := range ok {
		if _, failing := errs[vm]; !failing && a.failLog.Recovered("sample/"+vm) {
			a.log.Info("sample works again", "vm", vm)
		}
	}
	for _, vm := range gone {
		a.failLog.Recovered("sample/" + vm)
	}
}
