package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// fakeSource returns one scripted sample per call, its clock one second
// apart, and fails when the script runs out.
type fakeSource struct {
	samples [][]sample.Disk
	calls   int
}

func (f *fakeSource) Sample(context.Context) ([]sample.Disk, error) {
	if f.calls >= len(f.samples) {
		return nil, errors.New("script exhausted")
	}
	s := f.samples[f.calls]
	f.calls++
	return s, nil
}

func (f *fakeSource) Close() error { return nil }

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
	if err := statsLoop(context.Background(), src, f, &statsPrinter{w: &out, json: true}); err != nil {
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
	if err := statsLoop(context.Background(), src, f, &statsPrinter{w: &out}); err != nil {
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

func TestStatsLoopStopsOnSourceError(t *testing.T) {
	src := &fakeSource{}
	f := statsFlags{interval: time.Millisecond, timeout: time.Second}
	err := statsLoop(context.Background(), src, f, &statsPrinter{w: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "script exhausted") {
		t.Fatalf("err = %v", err)
	}
}

func TestStatsFlagValidation(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--qmp SOCKET or --libvirt"},
		{[]string{"--qmp", "x", "--libvirt"}, "exclude each other"},
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
