// Package doctor names the known qcow2 problems of a disk, shows the
// numbers it saw and says how to fix each one. It only reads: the repair
// commands it prints (qemu-img check -r, qemu-img convert, qtune jobs
// start ...) are for the operator to run. The checks and docs/doctor.md
// come from one table (checks.go) so the handbook cannot drift from what
// is checked.
package doctor

import (
	"encoding/json"
	"fmt"
)

// Severity orders findings; the worst one decides the exit status.
type Severity int

// Severities, mildest first.
const (
	OK Severity = iota
	Info
	Warn
	Critical
)

var severityNames = [...]string{"ok", "info", "warn", "critical"}

func (s Severity) String() string {
	if s < OK || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalJSON writes the name, so JSON readers need no table.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a severity by name, so --json output reads back.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	for i, n := range severityNames {
		if n == name {
			*s = Severity(i)
			return nil
		}
	}
	return fmt.Errorf("unknown severity %q", name)
}

// ExitCode is the doctor's exit status for a worst severity: 0 for ok or
// info, 1 for warn, 2 for critical, so monitoring can run it as a probe.
func (s Severity) ExitCode() int {
	switch s {
	case Warn:
		return 1
	case Critical:
		return 2
	}
	return 0
}

// Finding is one check's verdict on one disk.
type Finding struct {
	Check    string            `json:"check"`
	Severity Severity          `json:"severity"`
	Summary  string            `json:"summary"`
	Evidence map[string]string `json:"evidence,omitempty"`
	Fix      string            `json:"fix,omitempty"`
	// Repair is a command that repairs by hand, with its warning; the
	// doctor never runs it.
	Repair string `json:"repair,omitempty"`
	// Automate is the qtune policy or command that does the fix.
	Automate string `json:"automate,omitempty"`
	// Fields are the header fields a qcow2 check found impossible, each
	// with its value and why.
	Fields []FieldProblem `json:"fields,omitempty"`
	// Salvage are shell commands that copy out what a damaged image
	// still holds; they read the image and write only new files.
	Salvage []string `json:"salvage,omitempty"`
}

// Report is every finding of one disk (or image).
type Report struct {
	Target   string    `json:"target"`
	Notes    []string  `json:"notes,omitempty"`
	Findings []Finding `json:"findings"`
	// NotRun are the checks that did not apply to the image, and why.
	NotRun []NotRun `json:"not_run,omitempty"`
}

// Worst is the highest severity among the findings.
func (r Report) Worst() Severity {
	w := OK
	for _, f := range r.Findings {
		if f.Severity > w {
			w = f.Severity
		}
	}
	return w
}

// Worst is the highest severity of several reports.
func Worst(rs []Report) Severity {
	w := OK
	for _, r := range rs {
		if s := r.Worst(); s > w {
			w = s
		}
	}
	return w
}
