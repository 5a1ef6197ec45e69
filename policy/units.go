package policy

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the suffixes sizes and rates accept: binary (KiB, MiB,
// GiB, TiB) and decimal (KB, MB, GB, TB), case-sensitive like Nomad's.
var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize reads "64MiB", "1.5GiB", "512" (bytes) into bytes.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	// A whole number is read exactly: through a float64, a count past
	// 2^53 would come back as a neighbour.
	if n, err := strconv.ParseUint(t, 10, 64); err == nil {
		hi, lo := bits.Mul64(n, uint64(mult))
		if hi != 0 {
			return 0, fmt.Errorf("%q is too large (the most is %d bytes)", s, uint64(math.MaxUint64))
		}
		return lo, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%q is too large (the most is %d bytes)", s, uint64(math.MaxUint64))
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a size (try 64MiB, 1GiB or a number of bytes)", s)
	}
	b := v * mult
	if b >= math.MaxUint64 {
		return 0, fmt.Errorf("%q is too large (the most is %d bytes)", s, uint64(math.MaxUint64))
	}
	return uint64(math.Round(b)), nil
}

// ParseRate reads a bandwidth: a size per second, "50MiB" or "50MiB/s".
func ParseRate(s string) (uint64, error) {
	return ParseSize(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
}

var durationSyntax = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$`)

// ParseDuration reads "90s", "5m", "1h30m", and "2d" (days).
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(t, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n >= 0 {
			if n > math.MaxInt64/int(24*time.Hour) {
				return 0, fmt.Errorf("duration %q is too long (the most is %d days)", s, math.MaxInt64/int(24*time.Hour))
			}
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil && durationSyntax.MatchString(t) {
		// Well formed, so time refused it for overflowing.
		return 0, fmt.Errorf("duration %q is too long (the most is %v)", s, time.Duration(math.MaxInt64))
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (try 90s, 5m, 1h)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

// Window is a time-of-day range, "01:00-05:00"; it may wrap past
// midnight ("22:00-02:00").
type Window struct {
	Start, End time.Duration // since midnight
}

// ParseWindow reads "HH:MM-HH:MM".
func ParseWindow(s string) (Window, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	start, err1 := clockTime(a)
	end, err2 := clockTime(b)
	if err1 != nil || err2 != nil {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	if start == end {
		return Window{}, fmt.Errorf("window %q is empty", s)
	}
	return Window{start, end}, nil
}

func clockTime(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Contains reports whether the local time of t falls in the window.
func (w Window) Contains(t time.Time) bool {
	h, m, s := t.Clock()
	at := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second
	if w.Start < w.End {
		return at >= w.Start && at < w.End
	}
	return at >= w.Start || at < w.End
}

func (w Window) String() string {
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(w.Start) + "-" + f(w.End)
}

// SizeText prints a byte count with a binary unit ("64MiB", "1.5GiB").
func SizeText(b uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(b)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f%s", v, units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
