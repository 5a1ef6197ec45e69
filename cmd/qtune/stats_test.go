package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
)

// fakeSource returns one scripted sample per call, its clock one second
// apart, and fails as a whole source when the script runs out.
type fakeSource struct {
	samples [][]sample.Disk
	errs    []map[string]error // per call, when set
	calls   int
}

func (f *fakeSource) Sample(context.Context) ([]sample.Disk, map[string]error, []string) {
	if f.calls >= len(f.samples) {
		return nil, map[string]error{api.SourceError: errors.New("script exhausted")}, nil
	}
	s := f.samples[f.calls]
	var errs map[string]error
	if f.calls < len(f.errs) {
		errs = f.errs[f.calls]
	}
	f.calls++
	return s, errs, nil
}

func (f *fakeSource) Close() {}

func disk(at time.Time, rdOps, wrOps, wrBytes, wrNs uint64) sample.Disk {
	return sample.Disk{
		VM: "vm1", Name: "disk0", Format: "qcow2", VirtualSize: 64 << 20, BackingDepth: 2,
		Time: at, CacheDirect: true,
		Throttle: sample.Throttle{IOPSWrite: 500},
		Counters: sample.Counters{ReadOps: rdOps, WriteOps: wrOps, WriteBytes: wrBytes, WriteTimeNs: wrNs},
	}
}

func TestStatsLoopJSONRatesMatchCounterDeltas(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{samples: [][]sample.Disk{
		{disk(t0, 0, 0, 0, 0)},
		{disk(t0.Add(time.Second), 10, 400, 400*4096, 400*2e6)},
		{disk(t0.Add(2*time.Second), 10, 900, 900*4096, 900*2e6)},
	}}
	var out bytes.Buffer
	f := statsFlags{interval: time.Millisecond, count: 2, json: true, timeout: time.Second}
	if err := statsLoop(context.Background(), src, f, &statsPrinter{w: &out, json: true}, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rows []jsonRow
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r jsonRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2 (count=2): %s", len(rows), out.String())
	}
	if rows[0].WriteIOPS != 400 || rows[0].ReadIOPS != 10 || rows[1].WriteIOPS != 500 {
		t.Errorf("rates %v/%v then %v, want 400/10 then 500", rows[0].WriteIOPS, rows[0].ReadIOPS, rows[1].WriteIOPS)
	}
	if rows[1].WriteBPS != 500*4096 {
		t.Errorf("write_bps = %v, want %v", rows[1].WriteBPS, 500*4096)
	}
	if rows[1].WriteLatencyMs == nil || *rows[1].WriteLatencyMs != 2 {
		t.Errorf("write latency = %v, want 2 ms", rows[1].WriteLatencyMs)
	}
	if rows[1].ReadLatencyMs != nil {
		t.Errorf("read latency with no reads = %v, want null", *rows[1].ReadLatencyMs)
	}
	if rows[1].Cache != "none" || rows[1].Throttle == nil || rows[1].Throttle.IOPSWrite != 500 {
		t.Errorf("cache %q throttle %+v", rows[1].Cache, rows[1].Throttle)
	}
}

func TestStatsTable(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{samples: [][]sample.Disk{
		{disk(t0, 0, 0, 0, 0)},
		{disk(t0.Add(time.Second), 0, 250, 250*4096, 0)},
	}}
	var out bytes.Buffer
	f := statsFlags{interval: time.Millisecond, count: 1, timeout: time.Second}
	if err := statsLoop(context.Background(), src, f, &statsPrinter{w: &out}, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want header and one row, got:\n%s", out.String())
	}
	for _, want := range []string{"W_IOPS", "THROTTLE", "DEPTH"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header lacks %s: %s", want, lines[0])
		}
	}
	row := strings.Fields(lines[1])
	// TIME VM DISK R_IOPS W_IOPS R_MB/s W_MB/s R_LAT W_LAT F_LAT INFLIGHT CACHE THROTTLE FORMAT VSIZE DEPTH
	want := []string{"vm1", "disk0", "0", "250", "0.00", "1.02", "-", "0.00", "-", "0.00", "none", "w_iops=500", "qcow2", "64MiB", "2"}
	if len(row) != len(want)+1 {
		t.Fatalf("row has %d fields, want %d: %q", len(row), len(want)+1, lines[1])
	}
	for i, w := range want {
		if row[i+1] != w {
			t.Errorf("field %d = %q, want %q (row %q)", i+1, row[i+1], w, lines[1])
		}
	}
}

func TestStatsLoopStopsOnSourceErrorBeforeAnythingPrinted(t *testing.T) {
	src := &fakeSource{}
	f := statsFlags{libvirt: true, interval: time.Millisecond, timeout: time.Second}
	err := statsLoop(context.Background(), src, f, &statsPrinter{w: &bytes.Buffer{}}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "script exhausted") {
		t.Fatalf("err = %v", err)
	}
}

// Under libvirt or --qmp-dir one VM that cannot be read is said once on
// stderr (again when its error changes) and the others go on; a source
// that fails after rows were printed is said and waited out.
func TestStatsLoopGoesOnPastOneVMsError(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	broken := errors.New("domain vm2 XML: connection reset")
	var samples [][]sample.Disk
	var errs []map[string]error
	for i := range 5 {
		samples = append(samples, []sample.Disk{disk(t0.Add(time.Duration(i)*time.Second), 0, uint64(100*i), 0, 0)})
		errs = append(errs, map[string]error{"vm2": broken})
	}
	errs[0] = map[string]error{"vm2": errors.New("domain vm2: XML read still under way after 500ms")}
	errs[3] = map[string]error{api.SourceError: errors.New("libvirt: connection lost"), "vm2": broken}
	samples[3] = nil
	errs[4] = map[string]error{"vm2": errors.New("domain vm2 XML: timeout")}
	src := &fakeSource{samples: samples, errs: errs}
	var out, stderr bytes.Buffer
	f := statsFlags{libvirt: true, interval: time.Millisecond, count: 4, json: true, timeout: time.Second}
	if err := statsLoop(context.Background(), src, f, &statsPrinter{w: &out, json: true}, &stderr); err != nil {
		t.Fatalf("loop ended with %v; stderr:\n%s", err, stderr.String())
	}
	want := "qtune stats: vm2: domain vm2 XML: connection reset\n" +
		"qtune stats: libvirt: connection lost\n" +
		"qtune stats: vm2: domain vm2 XML: timeout\n"
	if stderr.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}
	// Rows at samples 2 and 3, the empty sample 4 (no disk: printed to
	// keep the pace), and sample 5 rated against sample 3.
	if lines := strings.Count(out.String(), "\n"); lines != 3 {
		t.Errorf("%d rows printed, want 3:\n%s", lines, out.String())
	}
}

// Nothing to read is said once, and again only after disks came and went.
func TestStatsLoopSaysWhenThereIsNothingToRead(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{samples: [][]sample.Disk{nil, nil, {disk(t0, 0, 0, 0, 0)}, {disk(t0.Add(time.Second), 0, 5, 0, 0)}, nil, nil}}
	var stderr bytes.Buffer
	f := statsFlags{qmpDir: "/run/qemu", interval: time.Millisecond, count: 3, timeout: time.Second}
	if err := statsLoop(context.Background(), src, f, &statsPrinter{w: io.Discard}, &stderr); err != nil {
		t.Fatal(err)
	}
	line := "qtune stats: no QMP socket (*.sock) in /run/qemu yet; waiting for a VM\n"
	if stderr.String() != line+line {
		t.Errorf("stderr:\n%s\nwant that line twice (before the VM came and after it went)", stderr.String())
	}
	for _, c := range []struct {
		f    statsFlags
		want string
	}{
		{statsFlags{libvirt: true}, "no active libvirt domain"},
		{statsFlags{libvirt: true, domain: "web-1"}, "domain web-1 has no disk to read (is it running?)"},
	} {
		if got := c.f.nothingToRead(); !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
}

func TestStatsLoopEndsWhenTheOneQMPVMFails(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{
		samples: [][]sample.Disk{{disk(t0, 0, 0, 0, 0)}, {disk(t0.Add(time.Second), 0, 10, 0, 0)}, nil},
		errs:    []map[string]error{nil, nil, {"vm1": errors.New("QMP socket /run/vm1.sock: connection refused")}},
	}
	f := statsFlags{qmpPath: "/run/vm1.sock", interval: time.Millisecond, timeout: time.Second}
	err := statsLoop(context.Background(), src, f, &statsPrinter{w: &bytes.Buffer{}}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want the VM's error", err)
	}
}

func TestStatsFlagValidation(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--qmp SOCKET, --qmp-dir DIR or --libvirt"},
		{[]string{"--qmp", "x", "--libvirt"}, "exclude each other"},
		{[]string{"--qmp", "x", "--qmp-dir", "d"}, "exclude each other"},
		{[]string{"--qmp-dir", "d", "--uri", "qemu:///system"}, "go with --libvirt"},
		{[]string{"--qmp", "x", "--domain", "d"}, "go with --libvirt"},
		{[]string{"--qmp", "x", "--interval", "1ms"}, "too short"},
	}
	for _, tc := range tests {
		var stderr bytes.Buffer
		code := run(context.Background(), append([]string{"stats"}, tc.args...), &bytes.Buffer{}, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("stats %v: code %d, stderr %q; want usage error with %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
