package policy

import (
	"slices"
	"strings"
	"testing"
)

// The histogram knob is held and listed with the others (status and
// qtune_owned_knobs count it), but no rule can write it: the agent sets
// it from the metrics the rules read.
func TestHistogramKnobIsDrivenNotWritten(t *testing.T) {
	if !slices.Contains(HeldKnobs(), KnobHistogram) {
		t.Fatalf("held knobs %v lack %s", HeldKnobs(), KnobHistogram)
	}
	_, _, err := Parse(map[string][]byte{"h.hcl": []byte("rule \"h\" {\n  when = true\n  histogram { boundaries = [1] }\n}\n")})
	if err == nil || !strings.Contains(err.Error(), "h.hcl:3") {
		t.Fatalf("a rule with a histogram block: %v, want an error at its line", err)
	}
	if err != nil && strings.Contains(err.Error(), "give one of") && strings.Contains(err.Error(), "histogram,") {
		t.Errorf("the error offers histogram as an action: %v", err)
	}
	_, _, err = Parse(map[string][]byte{"n.hcl": []byte("rule \"n\" {\n  when = true\n}\n")})
	if err == nil || strings.Contains(err.Error(), "histogram") {
		t.Errorf("a rule with no action: %v, want an error that does not offer histogram", err)
	}
}
