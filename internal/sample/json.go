package sample

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
)

// JSON has no NaN, and NaN is how a sample says "no value" (no reads, no
// histogram, no pressure file). These methods write such values as null
// and read null back as NaN, so points travel between the agent and
// qtune plan unchanged.

// MarshalJSON implements json.Marshaler.
func (r Rates) MarshalJSON() ([]byte, error) { type plain Rates; return marshalNaN(plain(r)) }

// UnmarshalJSON implements json.Unmarshaler.
func (r *Rates) UnmarshalJSON(b []byte) error {
	type plain Rates
	return unmarshalNaN(b, (*plain)(r))
}

// MarshalJSON implements json.Marshaler.
func (h Host) MarshalJSON() ([]byte, error) { type plain Host; return marshalNaN(plain(h)) }

// UnmarshalJSON implements json.Unmarshaler.
func (h *Host) UnmarshalJSON(b []byte) error {
	type plain Host
	return unmarshalNaN(b, (*plain)(h))
}

// MarshalJSON implements json.Marshaler.
func (d Disk) MarshalJSON() ([]byte, error) { type plain Disk; return marshalNaN(plain(d)) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Disk) UnmarshalJSON(b []byte) error {
	type plain Disk
	return unmarshalNaN(b, (*plain)(d))
}

// marshalNaN encodes v (a struct without these methods) with every NaN
// float64 field, at any depth of embedding, written as null.
func marshalNaN(v any) ([]byte, error) {
	b, err := json.Marshal(nanFree(reflect.ValueOf(v)))
	return b, err
}

// nanFree copies a struct into a map keyed by JSON names, NaN as nil.
func nanFree(v reflect.Value) any {
	if v.Kind() != reflect.Struct {
		if v.Kind() == reflect.Float64 && math.IsNaN(v.Float()) {
			return nil
		}
		return v.Interface()
	}
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, omit := jsonName(f)
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
			for k, x := range nanFree(fv).(map[string]any) {
				out[k] = x
			}
			continue
		}
		if omit && fv.IsZero() {
			continue
		}
		if fv.Kind() == reflect.Float64 && math.IsNaN(fv.Float()) {
			out[name] = nil
			continue
		}
		out[name] = fv.Interface()
	}
	return out
}

func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	if tag == "" {
		return f.Name, false
	}
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, opts == "omitempty"
}

// unmarshalNaN decodes b into v, then sets to NaN every float64 field
// that was null.
func unmarshalNaN(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil
	}
	setNulls(reflect.ValueOf(v).Elem(), raw)
	return nil
}

func setNulls(v reflect.Value, raw map[string]json.RawMessage) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			setNulls(v.Field(i), raw)
			continue
		}
		name, _ := jsonName(f)
		if f.Type.Kind() == reflect.Float64 && string(raw[name]) == "null" {
			v.Field(i).SetFloat(math.NaN())
		}
	}
}

// MarshalJSON implements json.Marshaler.
func (h Health) MarshalJSON() ([]byte, error) { type plain Health; return marshalNaN(plain(h)) }

// UnmarshalJSON implements json.Unmarshaler.
func (h *Health) UnmarshalJSON(b []byte) error {
	type plain Health
	return unmarshalNaN(b, (*plain)(h))
}
