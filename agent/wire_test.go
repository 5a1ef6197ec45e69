package agent

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/jobs"
	"github.com/qtune/qtune/state"
)

// Every field of a record, set, must reach its api document with the
// same JSON: a field added to a record and not to the document, or
// copied under another name, fails here.
func TestWireDocumentsCarryEveryField(t *testing.T) {
	var job state.Job
	fillAll(reflect.ValueOf(&job).Elem(), "")
	var owned state.Owned
	fillAll(reflect.ValueOf(&owned).Elem(), "")
	var planned jobs.Planned
	fillAll(reflect.ValueOf(&planned).Elem(), "")
	var req api.JobRequest
	fillAll(reflect.ValueOf(&req).Elem(), "")
	for _, tc := range []struct {
		name         string
		record, wire any
	}{
		{"job", job, wireJob(job)},
		{"owned", owned, wireOwned(owned)},
		{"planned", planned, wirePlanned(planned)},
		{"job request", jobRequest(req), req},
	} {
		a, err := json.Marshal(tc.record)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(tc.wire)
		if err != nil {
			t.Fatal(err)
		}
		var x, y any
		json.Unmarshal(a, &x)
		json.Unmarshal(b, &y)
		if !reflect.DeepEqual(x, y) {
			t.Errorf("%s: record\n%s\nbecomes\n%s", tc.name, a, b)
		}
	}
}

// fillAll sets every exported field of v to something other than its
// zero value.
func fillAll(v reflect.Value, name string) {
	switch v.Type() {
	case reflect.TypeOf(json.RawMessage{}):
		v.Set(reflect.ValueOf(json.RawMessage(`{"speed":1}`)))
		return
	case reflect.TypeOf(time.Time{}):
		v.Set(reflect.ValueOf(time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(name)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(3)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillAll(p.Elem(), name)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillAll(s.Index(0), name)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillAll(k, name+"_key")
		fillAll(e, name)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() {
				fillAll(v.Field(i), f.Name)
			}
		}
	}
}
