package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// naivePolicy is the first rule an SRE writes: its throttle caps the very
// rate its condition reads. Censored metrics keep it from lifting its own
// throttle while the guest is still loud.
const naivePolicy = `
rule "calm-noisy-writers" {
  when        = disk.write_iops > 400
  for         = "3s"
  clear_after = "4s"
  cooldown    = "1s"
  throttle { write_iops = 150 }
}
`

// guestLine is one progress report of the guest's load generator: the
// write rate it achieved over the second before elapsed.
type guestLine struct {
	elapsed time.Duration
	iops    float64
}

var progressRE = regexp.MustCompile(`qtune-load t=([0-9.]+) phase=\d+ mode=\S+ reads=\d+ writes=\d+ errors=(\d+) iops=([0-9.]+)`)

func guestProgress(t *testing.T, serial string) []guestLine {
	t.Helper()
	var out []guestLine
	for _, m := range progressRE.FindAllStringSubmatch(serial, -1) {
		el, _ := strconv.ParseFloat(m[1], 64)
		iops, _ := strconv.ParseFloat(m[3], 64)
		if m[2] != "0" {
			t.Fatalf("the guest saw I/O errors: %s", m[0])
		}
		out = append(out, guestLine{time.Duration(el * float64(time.Second)), iops})
	}
	return out
}

// within returns the guest's reports whose whole second lies in [from, to).
func within(lines []guestLine, from, to time.Duration) []guestLine {
	var out []guestLine
	for _, l := range lines {
		if l.elapsed-time.Second >= from && l.elapsed <= to {
			out = append(out, l)
		}
	}
	return out
}

// TestNaiveRuleHoldsWhileLoud runs the naive rule against a guest that is
// loud, calm, then loud again, and judges only by what the guest itself
// achieved: once throttled, it stays at the limit for as long as it is
// loud (no flapping), and after a calm spell of clear_after + one interval
// + 2 s it runs unthrottled again (the throttle was released in time).
func TestNaiveRuleHoldsWhileLoud(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx := context.Background()
	const limit = 150
	quiet, loud, calm, again := 6*time.Second, 18*time.Second, 7*time.Second, 5*time.Second
	w := loadgen.Defaults()
	w.Loops, w.Span = 1, 16<<20
	w.Phases = []loadgen.Phase{
		{Pattern: loadgen.RandWrite, Rate: 30, Duration: quiet},
		{Pattern: loadgen.RandWrite, Rate: 0, Duration: loud},
		{Pattern: loadgen.RandWrite, Rate: 30, Duration: calm},
		{Pattern: loadgen.RandWrite, Rate: 0, Duration: again},
		{Pattern: loadgen.Idle, Duration: time.Hour},
	}
	img := filepath.Join(t.TempDir(), "loud.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vm := lab.StartVMT(t, lab.VMConfig{Name: "loud", Workload: &w, Disks: []lab.Disk{{ID: "disk0", Image: img, CacheDirect: true}}})
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, vm.Name+".sock")); err != nil {
		t.Fatal(err)
	}
	startAgentWith(t, bin, naivePolicy, "--qmp-dir", dir)

	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "phase=4"); err != nil {
		t.Fatalf("the guest did not finish its phases: %v", err)
	}
	lines := guestProgress(t, vm.Serial())
	loudStart := quiet
	calmStart := loudStart + loud
	againStart := calmStart + calm

	// Loud: unthrottled first, then held at the limit to the end of the
	// phase. Before censored metrics the throttle was lifted about
	// clear_after after it worked, and the guest was loud again.
	inLoud := within(lines, loudStart, calmStart)
	first := -1
	for i, l := range inLoud {
		if l.iops <= limit*1.2 {
			first = i
			break
		}
	}
	if first < 1 || inLoud[0].iops <= 400 {
		t.Fatalf("the guest was not loud, then throttled: %v", inLoud)
	}
	held := inLoud[first:]
	if len(held) < 8 {
		t.Fatalf("throttled too late to judge (%d seconds held): %v", len(held), inLoud)
	}
	for _, l := range held {
		if l.iops > limit*1.2 {
			t.Errorf("the throttle let go while the guest was loud: %.0f IOPS at t=%s (%v)", l.iops, l.elapsed, held)
		}
	}
	// Loud again after the calm spell: unthrottled from its first second.
	inAgain := within(lines, againStart, againStart+again)
	if len(inAgain) == 0 || inAgain[0].iops <= 2*limit {
		t.Errorf("the throttle was still in force %s after the guest calmed: %v", calm, inAgain)
	}
	t.Logf("guest IOPS loud %v | again %v", ioString(inLoud), ioString(inAgain))
}

func ioString(ls []guestLine) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = strconv.FormatFloat(l.iops, 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}
