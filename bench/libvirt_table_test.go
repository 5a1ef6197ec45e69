package main

import (
	"strings"
	"testing"
	"time"
)

func libvirtRow(disks int, bulkDaemon, perDiskDaemon float64) libvirtFigures {
	return libvirtFigures{
		disks: disks, phase: time.Minute,
		agentCPU: 1, agentDaemon: 5.5, virshCPU: 2.5, virshDaemon: 2.5,
		virshSamples: 20, agentSamples: 60,
		agent: agentMetrics{p50: 0.64, p99: 1.28, disks: disks},
		bulk:  floorFigures{cpu: 0.1, daemon: bulkDaemon, samples: 60},
		// per-disk reads of every disk come less often than once a second
		perDisk: floorFigures{cpu: 0.5, daemon: perDiskDaemon, samples: 30},
	}
}

// Every row has as many cells as the header, and the floors' cells are
// the figures measured.
func TestLibvirtTableColumns(t *testing.T) {
	text := libvirtTable([]libvirtFigures{libvirtRow(400, 5.4, 11.5), libvirtRow(100, 1.9, 3)})
	var table []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "|") {
			table = append(table, l)
		}
	}
	if len(table) != 4 {
		t.Fatalf("want header, separator and two rows, got:\n%s", text)
	}
	cells := func(l string) []string { return strings.Split(strings.Trim(l, "|"), "|") }
	header := cells(table[0])
	for _, l := range table[1:] {
		if n := len(cells(l)); n != len(header) {
			t.Errorf("%d cells, header has %d: %s", n, len(header), l)
		}
	}
	row := map[string]string{}
	for i, c := range cells(table[3]) { // 400 disks, sorted last
		row[strings.TrimSpace(header[i])] = strings.TrimSpace(c)
	}
	// bulk: 5.5 with libvirtd, 5.5/5 = 1.10×; per sample (5.5/60)/(5/20) = 0.37×.
	// per-disk: 12.0, 2.40×; per sample (12/30)/(5/20) = 1.60×.
	want := map[string]string{
		"disks":                                      "400",
		"bulk call alone + libvirtd":                 "5.50",
		"bulk ratio":                                 "1.10×",
		"bulk ratio per sample":                      "0.37×",
		"per-disk calls + libvirtd":                  "12.00",
		"per-disk ratio":                             "2.40×",
		"per-disk ratio per sample":                  "1.60×",
		"samples/min agent / loop / bulk / per-disk": "60 / 20 / 60 / 30",
	}
	for col, w := range want {
		if got, ok := row[col]; !ok || got != w {
			t.Errorf("column %q = %q, want %q\n%s", col, got, w, text)
		}
	}
}

// The reading's verdict on the floor follows the figures.
func TestLibvirtReadingFloorVerdict(t *testing.T) {
	for _, tc := range []struct {
		name          string
		bulk, perDisk float64 // libvirtd's CPU in the floor phases
		want          []string
		notWant       []string
	}{
		{
			name: "both floors above", bulk: 5.4, perDisk: 11.5,
			want:    []string{"1.10× the virsh loop and libvirtd (0.37× per sample), above the 0.25× target", "4.4× what the bulk call costs, more", "neither of libvirt's APIs"},
			notWant: []string{"reachable"},
		},
		{
			name: "bulk floor within", bulk: 1.0, perDisk: 11.5,
			want:    []string{"1.10 CPU-s per minute with libvirtd", "0.22× the virsh loop and libvirtd", "within the 0.25× target", "reachable with libvirt's bulk call"},
			notWant: []string{"neither", "above the"},
		},
		{
			name: "only per-disk within", bulk: 5.4, perDisk: 0.4,
			want:    []string{"above the 0.25× target", "what the bulk call costs, less", "the per-disk calls meet it"},
			notWant: []string{"neither"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := libvirtReading(libvirtRow(400, tc.bulk, tc.perDisk))
			// What the reading said before the floors were measured stays.
			for _, w := range append(tc.want, "the agent and libvirtd used 6.50 CPU-s per minute against 5.00", "1.30×, over the 0.25× target") {
				if !strings.Contains(text, w) {
					t.Errorf("missing %q in\n%s", w, text)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(text, nw) {
					t.Errorf("unexpected %q in\n%s", nw, text)
				}
			}
		})
	}
}
