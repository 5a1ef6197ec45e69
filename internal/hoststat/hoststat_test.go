package hoststat

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParsePressure(t *testing.T) {
	h, err := parsePressure([]byte("some avg10=1.50 avg60=0.17 avg300=0.21 total=3082905\nfull avg10=0.48 avg60=0.14 avg300=0.19 total=2731955\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.IOPressureSomeAvg10 != 1.5 || h.IOPressureSomeAvg60 != 0.17 || h.IOPressureFullAvg10 != 0.48 || h.IOPressureFullAvg60 != 0.14 {
		t.Fatalf("parsed %+v", h)
	}
	if _, err := parsePressure([]byte("some avg10=x avg60=0\n")); err == nil {
		t.Fatal("bad number accepted")
	}
	if _, err := parsePressure([]byte("")); err == nil {
		t.Fatal("empty file accepted")
	}
}

func TestPressureMissingFile(t *testing.T) {
	r := &Reader{Root: t.TempDir()}
	if _, err := r.Pressure(); err != ErrNoPressure {
		t.Fatalf("err = %v, want ErrNoPressure", err)
	}
}

func TestParseIOTicks(t *testing.T) {
	stats := []byte("   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n 254       0 vda 1000 0 80000 500 2000 0 160000 900 0 1234 1400 0 0 0 0 0 0\n")
	got, err := parseIOTicks(stats, "254:0")
	if err != nil || got != 1234 {
		t.Fatalf("parseIOTicks = %d, %v; want 1234", got, err)
	}
	if _, err := parseIOTicks(stats, "8:0"); err == nil {
		t.Fatal("missing device found")
	}
}

// TestForImageUtil drives utilisation from a fixture diskstats in which the
// image's real device appears, and checks free space against statfs.
func TestForImageUtil(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Reader{Root: root}
	dev := r.wholeDevice(unix.Major(st.Dev), unix.Minor(st.Dev))
	write := func(ioMs int) {
		maj, min, _ := strings.Cut(dev, ":")
		line := " " + maj + " " + min + " sdx 1 0 0 0 0 0 0 0 0 " + strconv.Itoa(ioMs) + " 0 0 0 0 0 0 0\n"
		if err := os.WriteFile(filepath.Join(root, "proc/diskstats"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(1000, 0)
	write(5000)
	first, err := r.ForImage(img, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(first.Util) {
		t.Fatalf("first util = %v, want NaN (no previous reading)", first.Util)
	}
	if first.FreeBytes == 0 {
		t.Fatal("free bytes = 0")
	}
	write(5500)
	second, err := r.ForImage(img, t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if second.Util != 0.25 {
		t.Fatalf("util = %v, want 0.25 (500 ms busy in 2 s)", second.Util)
	}
	again, _ := r.ForImage(img, t0.Add(2*time.Second))
	if again.Util != 0.25 {
		t.Fatalf("same-pass util = %v, want the shared 0.25", again.Util)
	}
	// One read of diskstats per pass: a rewrite within the pass is not
	// seen, the next pass sees it.
	write(9000)
	if c, _ := r.counters(dev, t0.Add(2*time.Second)); c.ioMs != 5500 {
		t.Errorf("same pass re-read diskstats: io ms %d, want 5500", c.ioMs)
	}
	if c, _ := r.counters(dev, t0.Add(3*time.Second)); c.ioMs != 9000 {
		t.Errorf("next pass: io ms %d, want 9000", c.ioMs)
	}
}

func TestDeviceRates(t *testing.T) {
	// reads, merged, sectors, ms; writes, merged, sectors, ms; in flight, io ms, weighted ms
	a, err := parseDiskstats([]byte(" 8 0 sda 100 0 800 50 200 0 1600 400 0 1000 2000 0 0 0 0\n"), "8:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseDiskstats([]byte(" 8 0 sda 300 0 4800 450 200 0 9600 400 3 1500 4000 0 0 0 0\n"), "8:0")
	if err != nil {
		t.Fatal(err)
	}
	d := derive(a, b, 2*time.Second)
	want := Device{Util: 0.25, ReadBPS: 4000 * 512 / 2, WriteBPS: 8000 * 512 / 2, ReadLatencyMs: 2, QueueDepth: 1}
	if d.Util != want.Util || d.ReadBPS != want.ReadBPS || d.WriteBPS != want.WriteBPS || d.ReadLatencyMs != want.ReadLatencyMs || d.QueueDepth != want.QueueDepth {
		t.Errorf("derive = %+v, want %+v", d, want)
	}
	if !math.IsNaN(d.WriteLatencyMs) {
		t.Errorf("write latency without writes = %v, want NaN", d.WriteLatencyMs)
	}
}

func TestDeviceRatesAfterReset(t *testing.T) {
	r := &Reader{}
	t0 := time.Unix(1000, 0)
	r.rates("8:0", reading{c: counters{reads: 100, ioMs: 10}, at: t0})
	d := r.rates("8:0", reading{c: counters{reads: 5, ioMs: 20}, at: t0.Add(time.Second)})
	if !math.IsNaN(d.Util) || !math.IsNaN(d.ReadBPS) {
		t.Errorf("rates across a counter reset = %+v, want unknown", d)
	}
}
