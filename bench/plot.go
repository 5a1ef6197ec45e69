package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
)

// A small grouped bar chart written with image/png alone. gonum's plot
// (or any library that draws text) is not among the packages this
// project may use, so the chart carries no text: RESULTS.md says beside
// each image what its groups, colours and reference line are.

// barChart is groups of bars, one bar per series in each group, with an
// optional horizontal reference line (the goal) at ref.
type barChart struct {
	series []string
	groups []barGroup
	ref    float64
}

type barGroup struct {
	label  string
	values []float64
}

var (
	seriesColours = []color.RGBA{{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff}}
	axisColour    = color.RGBA{0x33, 0x33, 0x33, 0xff}
	refColour     = color.RGBA{0x99, 0x99, 0x99, 0xff}
	gridColour    = color.RGBA{0xe6, 0xe6, 0xe6, 0xff}
)

const (
	plotW, plotH = 640, 320
	plotMargin   = 20
)

// render draws c; bar heights are proportional to the values, the
// tallest bar or the reference line (whichever is higher) at 90% of the
// plot's height, and there is a light grid line at every tenth of it.
func (c barChart) render() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fill(img, img.Bounds(), color.RGBA{0xff, 0xff, 0xff, 0xff})
	top := c.ref
	for _, g := range c.groups {
		for _, v := range g.values {
			top = max(top, v)
		}
	}
	if top <= 0 || len(c.groups) == 0 {
		return nil, fmt.Errorf("plot: nothing to draw")
	}
	base, height := plotH-plotMargin, float64(plotH-2*plotMargin)
	y := func(v float64) int { return base - int(0.9*height*v/top) }
	for i := 1; i <= 10; i++ {
		gy := base - int(height*float64(i)/10)
		fill(img, image.Rect(plotMargin, gy, plotW-plotMargin, gy+1), gridColour)
	}
	slot := (plotW - 2*plotMargin) / len(c.groups)
	barW := slot / (len(c.series) + 1)
	for gi, g := range c.groups {
		x0 := plotMargin + gi*slot + barW/2
		for si, v := range g.values {
			x := x0 + si*barW
			fill(img, image.Rect(x, y(v), x+barW-2, base), seriesColours[si%len(seriesColours)])
		}
	}
	if c.ref > 0 {
		ry := y(c.ref)
		for x := plotMargin; x < plotW-plotMargin; x += 8 {
			fill(img, image.Rect(x, ry-1, x+5, ry+1), refColour)
		}
	}
	fill(img, image.Rect(plotMargin, base, plotW-plotMargin, base+2), axisColour)
	fill(img, image.Rect(plotMargin-2, plotMargin, plotMargin, base+2), axisColour)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// writePlot writes the chart as name beside the results file.
func writePlot(o options, name string, c barChart) error {
	b, err := c.render()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return os.WriteFile(filepath.Join(o.resultsDir, name), b, 0o644)
}
