//go:build failpoints

package tuning

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/qtune/qtune/policy"
)

// armedFailpoint is QTUNE_FAILPOINT, "step" or "step:knob": a binary
// built with the failpoints tag kills itself with SIGKILL when a change
// reaches that step (for that kind of knob). Production builds have no
// such code.
func armedFailpoint() func(string, policy.Knob) {
	v := os.Getenv("QTUNE_FAILPOINT")
	if v == "" {
		return nil
	}
	step, knob, _ := strings.Cut(v, ":")
	return func(name string, k policy.Knob) {
		if name != step || (knob != "" && knob != string(k)) {
			return
		}
		fmt.Fprintf(os.Stderr, "failpoint %s reached for %s: SIGKILL\n", name, k)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
