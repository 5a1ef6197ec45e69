package qmp

import (
	"encoding/json"
	"testing"
)

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}}`,
		`{"return": {}, "id": "q1"}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": "q2"}`,
		`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "BLOCK_JOB_READY", "data": {"device": "j"}}`,
		`{"id": 5}`, `[]`, `null`, `{"QMP": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err == nil && !json.Valid(b) {
			t.Fatalf("accepted malformed JSON: %q", b)
		}
		if err == nil && m.QMP == nil && m.ID == nil && m.Return == nil && m.Error == nil && m.Event == "" {
			t.Fatalf("accepted an empty message: %q", b)
		}
	})
}
