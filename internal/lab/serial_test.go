package lab

import "testing"

func TestCompleteLines(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "",
		"qtune-verify ok worker=0 checked": "",
		"ready\nqtune-verify ok worker=0 checked":      "ready\n",
		"ready\nqtune-verify ok worker=0 checked=12\n": "ready\nqtune-verify ok worker=0 checked=12\n",
	} {
		if got := completeLines(in); got != want {
			t.Errorf("completeLines(%q) = %q, want %q", in, got, want)
		}
	}
}
