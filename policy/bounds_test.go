package policy

import (
	"fmt"
	"strings"
	"testing"
)

// A value at a kind's bound loads; one past it is refused at its place,
// naming the value.
func TestKindBounds(t *testing.T) {
	for _, tc := range []struct {
		name, block string
		err         string // "" when the rule loads
	}{
		{"throttle at THROTTLE_VALUE_MAX", `throttle { write_iops = 1000000000000000 }`, ""},
		{"throttle past it", `throttle { write_iops = 1000000000000001 }`, "p.hcl:3:27: rule \"r\": write_iops = 1000000000000001 is above 1000000000000000"},
		{"throttle past 2^64", `throttle { write_iops = 18446744073709551616 }`, "write_iops = 18446744073709551616 is above 1000000000000000"},
		{"bps as a size past it", "throttle {\n  read_bps = \"1000TB\"\n  read_bps_max = \"1001TB\"\n}", `read_bps_max = "1001TB" is above`},
		{"burst at its longest", `throttle {
  read_iops = 10
  read_iops_max = 1000
  read_iops_max_length = 1000000000000
}`, ""},
		{"burst one second longer", `throttle {
  read_iops = 10
  read_iops_max = 1000
  read_iops_max_length = 1000000000001
}`, "read_iops_max_length = 1000000000001 is too long for read_iops_max = 1000"},
		{"l2 at its bound", fmt.Sprintf(`l2_cache { size = %d }`, uint64(L2CacheMax)), ""},
		{"l2 past it", fmt.Sprintf("l2_cache {\n  size = \"auto\"\n  max = %d\n}", uint64(L2CacheMax)+1), "max = 1099511627265 is above 1099511627264"},
		{"clean interval at its bound", `l2_cache {
  size = "auto"
  clean_interval = "4294967295s"
}`, ""},
		{"clean interval past it", `l2_cache {
  size = "auto"
  clean_interval = "4294967296s"
}`, `clean_interval = "4294967296s" is above`},
		{"stream speed at int64", `stream { speed = 9223372036854775807 }`, ""},
		{"stream speed past it", `stream { speed = "8388608TiB" }`, `speed = "8388608TiB" is above 9223372036854775807`},
		{"mirror speed past 2^64", `mirror {
  target_dir = "/fast"
  speed = 18446744073709551616
}`, "speed = 18446744073709551616 is above 9223372036854775807"},
		{"convert speed past 2^64 as a size", `convert {
  format = "raw"
  speed = "18446744073709551616"
}`, `speed: "18446744073709551616" is too large`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "rule \"r\" {\n  when = disk.read_iops > 1\n  " + tc.block + "\n}\n"
			_, _, err := Parse(map[string][]byte{"p.hcl": []byte(src)})
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.err != "" && err == nil:
				t.Errorf("loaded; want %q", tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Errorf("error %q; want %q", err, tc.err)
			}
		})
	}
}

// Every bound a kind declares names one of its attributes and a reason.
// A driven kind has no block, so nothing in a rule to bound.
func TestKindsDeclareBounds(t *testing.T) {
	for _, k := range ActionKinds() {
		if len(k.Bounds) == 0 && k.Knob != KnobCache && !k.Driven {
			t.Errorf("%s declares no bounds", k.Knob)
		}
		for _, b := range k.Bounds {
			if b.Max == 0 || b.Why == "" {
				t.Errorf("%s: bound %+v", k.Knob, b)
			}
		}
	}
}

func TestUnitOverflow(t *testing.T) {
	for in, want := range map[string]string{
		"18446744073709551616": "too large",
		"18446744073709551615": "",
		"16777216TiB":          "too large",
		"16777215TiB":          "",
		"1e30":                 "too large",
		"9007199254740993":     "",
	} {
		n, err := ParseSize(in)
		switch {
		case want == "" && err != nil:
			t.Errorf("ParseSize(%q): %v", in, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), in)):
			t.Errorf("ParseSize(%q) = %d, %v; want an error naming it, %q", in, n, err, want)
		}
	}
	if n, _ := ParseSize("9007199254740993"); n != 9007199254740993 {
		t.Errorf("2^53+1 read as %d", n)
	}
	for _, in := range []string{"106752d", "3000000h"} {
		if _, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), "too long") || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseDuration(%q): %v; want too long, naming it", in, err)
		}
	}
	if _, err := ParseDuration("106751d"); err != nil {
		t.Errorf("106751d: %v", err)
	}
}
