package qmp

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseKeyvalBlockdev(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"driver=file,filename=/a,,b.img,node-name=f,cache.direct=on,cache.no-flush=off,aio=native",
			`{"aio":"native","cache":{"direct":true,"no-flush":false},"driver":"file","filename":"/a,b.img","node-name":"f"}`},
		{"driver=qcow2,file=f,node-name=q,backing=,l2-cache-size=1048576,read-only=off",
			`{"backing":null,"driver":"qcow2","file":"f","l2-cache-size":1048576,"node-name":"q","read-only":false}`},
		{"node-name=q,driver=qcow2,file.driver=file,file.filename=/x=y.img,discard=unmap,",
			`{"discard":"unmap","driver":"qcow2","file":{"driver":"file","filename":"/x=y.img"},"node-name":"q"}`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			o, err := ParseKeyvalBlockdev(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(o)
			if string(b) != tc.want {
				t.Errorf("\n got %s\nwant %s", b, tc.want)
			}
		})
	}
}

func TestParseKeyvalBlockdevRefuses(t *testing.T) {
	tests := []struct{ in, why string }{
		{"driver=file,filename", `"filename" has no '='`},
		{"driver=file,driver=raw", "given twice"},
		{"file=f,file.driver=file", "both a value and an object"},
		{"file.driver=file,file=f", "given twice or is also an object"},
		{"driver=quorum,children.0=a", "list options"},
		{"driver=file,a..b=1", "not a valid key"},
		{"read-only=maybe", `"maybe" is not on or off`},
		{"l2-cache-size=1M", "not an integer"},
		{"driver=file,throttle-group=g", "throttle-group: qtune does not know"},
	}
	for _, tc := range tests {
		_, err := ParseKeyvalBlockdev(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: error %v, want one saying %q", tc.in, err, tc.why)
		}
	}
}

// FuzzParseKeyval checks that no input panics and that what parses comes
// back the same when written out again with commas escaped.
func FuzzParseKeyval(f *testing.F) {
	f.Add("driver=file,filename=/a,,b,node-name=f,cache.direct=on")
	f.Add("a.b.c=,d=x,,,,y")
	f.Add("=,,=")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseKeyval(s)
		if err != nil {
			return
		}
		again, err := ParseKeyval(formatKeyval(m, ""))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", formatKeyval(m, ""), err)
		}
		a, _ := json.Marshal(m)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("round trip of %q: %s != %s", s, a, b)
		}
		ParseKeyvalBlockdev(s)
	})
}

func formatKeyval(m map[string]any, prefix string) string {
	var parts []string
	for k, v := range m {
		if child, ok := v.(map[string]any); ok {
			if sub := formatKeyval(child, prefix+k+"."); sub != "" {
				parts = append(parts, sub)
			}
			continue
		}
		parts = append(parts, prefix+k+"="+strings.ReplaceAll(v.(string), ",", ",,"))
	}
	return strings.Join(parts, ",")
}
