package main

import (
	"bytes"
	"image/png"
	"testing"
	"time"
)

// Bars are drawn in their series' colours with heights in proportion to
// their values, and the reference line sits at its value.
func TestBarChartRender(t *testing.T) {
	c := barChart{series: []string{"a", "b"}, ref: 2, groups: []barGroup{
		{label: "one", values: []float64{1, 4}},
		{label: "two", values: []float64{2, 3}},
	}}
	b, err := c.render()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != plotW || img.Bounds().Dy() != plotH {
		t.Fatalf("size %v", img.Bounds())
	}
	// Height of the run of colour col in column x, from the axis up.
	height := func(x int, col [3]uint8) int {
		n := 0
		for y := 0; y < plotH; y++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == col[0] && uint8(g>>8) == col[1] && uint8(bl>>8) == col[2] {
				n++
			}
		}
		return n
	}
	slot := (plotW - 2*plotMargin) / 2
	barW := slot / 3
	blue, orange := [3]uint8{0x1f, 0x77, 0xb4}, [3]uint8{0xff, 0x7f, 0x0e}
	mid := func(g, s int) int { return plotMargin + g*slot + barW/2 + s*barW + barW/2 }
	h1, h4 := height(mid(0, 0), blue), height(mid(0, 1), orange)
	h2, h3 := height(mid(1, 0), blue), height(mid(1, 1), orange)
	if h1 == 0 || h4 < 4*h1-4 || h4 > 4*h1+4 || h2 < 2*h1-2 || h3 < h2 || h3 > h4 {
		t.Errorf("bar heights 1→%d 2→%d 3→%d 4→%d", h1, h2, h3, h4)
	}
	if _, err := (barChart{series: []string{"a"}}).render(); err == nil {
		t.Error("an empty chart rendered")
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 10; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Second)
	}
	s := summarize(ds)
	if s.min != time.Second || s.p50 != 5*time.Second || s.p90 != 9*time.Second || s.max != 10*time.Second {
		t.Errorf("summary %+v", s)
	}
	if ds[0] != 10*time.Second {
		t.Error("summarize sorted its input in place")
	}
	if one := summarize(ds[:1]); one.p50 != 10*time.Second || one.p90 != 10*time.Second {
		t.Errorf("one value: %+v", one)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3 1 2 = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of 4 1 3 2 = %v", m)
	}
	if median(nil) != 0 {
		t.Error("median of nothing")
	}
}

// The guest's console line is parsed with its latency histograms.
func TestParseProgress(t *testing.T) {
	p, ok := parseProgress("qtune-load t=3.0 phase=0 mode=randread reads=600 writes=0 errors=0 iops=201 rp50=0.200ms rp99=1.000ms rlat=30:150;40:2")
	if !ok || p.mode != "randread" || p.iops != 201 || p.readLat.Count() != 152 || p.writeLat.Count() != 0 {
		t.Fatalf("parsed %+v %v", p, ok)
	}
	if _, ok := parseProgress("qtune-load ready"); ok {
		t.Error("a line without counters parsed")
	}
}
