package api

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The files under testdata were written by the agent's own types before
// they moved here, every field set: decoding one and encoding it again
// must give the same document, so a field renamed, dropped or retyped
// here breaks clients and agents of other versions and fails this test.
func TestDecodesDocumentsOfEarlierAgents(t *testing.T) {
	for _, tc := range []struct {
		file string
		into any
	}{
		{"status-0.json", &Status{}},
		{"history-0.json", &[]Cycle{}},
		{"planned-0.json", &Planned{}},
		{"jobrequest-0.json", &JobRequest{}},
		{"controlerror-0.json", &ControlError{}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(want))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tc.into); err != nil {
				t.Fatalf("decode: %v", err)
			}
			got, err := json.MarshalIndent(tc.into, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, want, got) {
				t.Errorf("%s changed on the way through api:\n got %s\nwant %s", tc.file, got, want)
			}
		})
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestStatusFieldsAreReadByClients(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "status-0.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	o := st.Owned[0]
	if o.State != OwnedOrphaned || o.VM != "VM" || o.Knob != "Knob" || o.Cooldown.String() != "1m30s" {
		t.Errorf("owned record read as %+v", o)
	}
	if st.Policy.Source != PolicyFromStore {
		t.Errorf("policy source %q", st.Policy.Source)
	}
	j := st.Jobs[0]
	if j.VM != "VM" || j.Progress.Percent() != 100 || !strings.Contains(o.Applied.String(), "iops=1048576") {
		t.Errorf("job read as %+v, applied %s", j, o.Applied)
	}
}

func TestKnobStateString(t *testing.T) {
	for _, tc := range []struct {
		s    KnobState
		want string
	}{
		{KnobState{}, "unset"},
		{KnobState{Cache: &CacheState{Direct: true}}, "direct=true no-flush=false"},
		{KnobState{L2: &L2State{Size: 4 << 20}}, "l2-cache-size=4194304"},
		{KnobState{Raw: json.RawMessage(`{"speed":1}`)}, `{"speed":1}`},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
}
