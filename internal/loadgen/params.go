// Package loadgen is the guest-side load generator of qtune's test lab: it
// issues direct reads and writes on a virtio disk at a chosen pattern, block
// size, rate and queue depth, in phases, and reports progress on the serial
// console. Its parameters come from the kernel command line, so the host
// decides the workload when it boots the guest.
package loadgen

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Pattern is an access pattern.
type Pattern string

const (
	SeqRead   Pattern = "read"
	SeqWrite  Pattern = "write"
	RandRead  Pattern = "randread"
	RandWrite Pattern = "randwrite"
	RandRW    Pattern = "randrw" // reads and writes mixed by Params.ReadPct
	Idle      Pattern = "idle"   // no I/O: a quiet phase
	// StampWrite writes stamped blocks at random (see Stamp); each worker
	// owns the blocks i with i%QueueDepth == its number.
	StampWrite Pattern = "stampwrite"
	// Verify reads back, once, every block stamped so far and checks it
	// holds the last generation written; then the phase idles.
	Verify Pattern = "verify"
)

// Phase is one step of the workload.
type Phase struct {
	Pattern  Pattern
	Rate     int // target operations per second; 0 = as fast as the queue allows
	Duration time.Duration
}

// Params is a whole workload.
type Params struct {
	Disk       string // device path, e.g. /dev/vda
	BlockSize  int    // bytes, a multiple of 512
	QueueDepth int    // parallel workers, each with one request in flight
	ReadPct    int    // share of reads in randrw
	Span       int64  // bytes of the disk used, from offset 0; 0 = whole disk
	Phases     []Phase
	Loops      int // times the phase list runs; 0 = forever
	Seed       int64
}

// Defaults: one minute of 4 KiB random writes at 200 ops/s on /dev/vda.
func Defaults() Params {
	return Params{
		Disk: "/dev/vda", BlockSize: 4096, QueueDepth: 1, ReadPct: 50, Loops: 1, Seed: 1,
		Phases: []Phase{{Pattern: RandWrite, Rate: 200, Duration: time.Minute}},
	}
}

// ParseCmdline reads the "qtune.*" keys of a kernel command line:
//
//	qtune.disk=/dev/vda   qtune.bs=4096   qtune.qd=1   qtune.readpct=70
//	qtune.span=64M        qtune.loops=0   qtune.seed=7
//	qtune.phases=randwrite:3000:20s,randwrite:50:20s
//	qtune.mode=randread qtune.rate=500 qtune.duration=30s   (one phase)
//
// Other words are ignored. Every problem is reported at once.
func ParseCmdline(cmdline string) (Params, error) {
	p := Defaults()
	var errs []string
	single := Phase{Pattern: RandWrite, Rate: 200, Duration: time.Minute}
	sawSingle, sawPhases := false, false
	for _, w := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(w, "=")
		if !ok || !strings.HasPrefix(k, "qtune.") {
			continue
		}
		k = strings.TrimPrefix(k, "qtune.")
		var err error
		switch k {
		case "disk":
			p.Disk = v
		case "bs":
			p.BlockSize, err = parseSize(v)
		case "qd":
			p.QueueDepth, err = strconv.Atoi(v)
		case "readpct":
			p.ReadPct, err = strconv.Atoi(v)
		case "span":
			var n int
			n, err = parseSize(v)
			p.Span = int64(n)
		case "loops":
			p.Loops, err = strconv.Atoi(v)
		case "seed":
			p.Seed, err = strconv.ParseInt(v, 10, 64)
		case "phases":
			p.Phases, err = ParsePhases(v)
			sawPhases = true
		case "mode":
			single.Pattern, sawSingle = Pattern(v), true
		case "rate":
			single.Rate, err = strconv.Atoi(v)
			sawSingle = true
		case "duration":
			single.Duration, err = time.ParseDuration(v)
			sawSingle = true
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("qtune.%s=%s: %v", k, v, err))
		}
	}
	if sawSingle && !sawPhases {
		p.Phases = []Phase{single}
	}
	if sawSingle && sawPhases {
		errs = append(errs, "qtune.phases excludes qtune.mode/rate/duration")
	}
	errs = append(errs, p.validate()...)
	if len(errs) > 0 {
		return p, fmt.Errorf("workload: %s", strings.Join(errs, "; "))
	}
	return p, nil
}

// Cmdline renders p as kernel command-line words, the inverse of
// ParseCmdline.
func (p Params) Cmdline() string {
	ph := make([]string, len(p.Phases))
	for i, x := range p.Phases {
		ph[i] = fmt.Sprintf("%s:%d:%s", x.Pattern, x.Rate, x.Duration)
	}
	return fmt.Sprintf("qtune.disk=%s qtune.bs=%d qtune.qd=%d qtune.readpct=%d qtune.span=%d qtune.loops=%d qtune.seed=%d qtune.phases=%s",
		p.Disk, p.BlockSize, p.QueueDepth, p.ReadPct, p.Span, p.Loops, p.Seed, strings.Join(ph, ","))
}

// ParsePhases reads "pattern:rate:duration,..." .
func ParsePhases(s string) ([]Phase, error) {
	var out []Phase
	for i, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("phase %d %q: want pattern:rate:duration", i, part)
		}
		rate, err := strconv.Atoi(f[1])
		if err != nil || rate < 0 {
			return nil, fmt.Errorf("phase %d %q: bad rate", i, part)
		}
		d, err := time.ParseDuration(f[2])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("phase %d %q: bad duration", i, part)
		}
		out = append(out, Phase{Pattern: Pattern(f[0]), Rate: rate, Duration: d})
	}
	return out, nil
}

func (p Params) validate() []string {
	var errs []string
	if p.BlockSize <= 0 || p.BlockSize%512 != 0 {
		errs = append(errs, fmt.Sprintf("block size %d is not a positive multiple of 512", p.BlockSize))
	}
	if p.QueueDepth < 1 || p.QueueDepth > 256 {
		errs = append(errs, fmt.Sprintf("queue depth %d is not in 1..256", p.QueueDepth))
	}
	if p.ReadPct < 0 || p.ReadPct > 100 {
		errs = append(errs, fmt.Sprintf("read share %d%% is not in 0..100", p.ReadPct))
	}
	if p.Loops < 0 {
		errs = append(errs, fmt.Sprintf("loops %d is negative", p.Loops))
	}
	if len(p.Phases) == 0 {
		errs = append(errs, "no phases")
	}
	for i, ph := range p.Phases {
		switch ph.Pattern {
		case SeqRead, SeqWrite, RandRead, RandWrite, RandRW, Idle, StampWrite, Verify:
		default:
			errs = append(errs, fmt.Sprintf("phase %d: unknown pattern %q", i, ph.Pattern))
		}
	}
	return errs
}

// parseSize reads a byte count with an optional K, M or G suffix (binary).
func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// PhaseAt says which phase runs at elapsed time t, and whether the
// workload is over.
func (p Params) PhaseAt(t time.Duration) (idx int, done bool) {
	var loop time.Duration
	for _, ph := range p.Phases {
		loop += ph.Duration
	}
	if loop <= 0 {
		return 0, true
	}
	if p.Loops > 0 && t >= loop*time.Duration(p.Loops) {
		return len(p.Phases) - 1, true
	}
	t %= loop
	for i, ph := range p.Phases {
		if t < ph.Duration {
			return i, false
		}
		t -= ph.Duration
	}
	return len(p.Phases) - 1, false
}
