package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/qtune/qtune/doctor"
	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{name: "doctor", summary: "name the known qcow2 problems of images, with evidence and fixes (reads only)", run: runDoctor})
}

// imageList is a repeatable --image flag.
type imageList []string

func (l *imageList) String() string     { return strings.Join(*l, ",") }
func (l *imageList) Set(v string) error { *l = append(*l, v); return nil }

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qtune doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var images imageList
	fs.Var(&images, "image", "an image file to check offline (repeatable)")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	handbook := fs.Bool("handbook", false, "print the handbook of every check (docs/doctor.md) and exit")
	l2 := fs.String("l2-cache", "32MiB", "the qcow2 L2 cache the images get (QEMU's default caps it at 32MiB)")
	noCheck := fs.Bool("no-check", false, "skip qemu-img check (it reads all of the metadata)")
	qemuImg := fs.String("qemu-img", "qemu-img", "the qemu-img binary")
	timeout := fs.Duration("timeout", 10*time.Minute, "deadline for all of the checks")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qtune doctor --image FILE [--image FILE...] [--json] [--l2-cache SIZE] [--no-check]\n       qtune doctor --handbook\nExit status: 0 ok or info, 1 warn, 2 critical, 3 a check could not run.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *handbook {
		if err := doctor.WriteHandbook(stdout); err != nil {
			fmt.Fprintf(stderr, "qtune doctor: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	cache, err := policy.ParseSize(*l2)
	if err != nil || fs.NArg() > 0 || len(images) == 0 {
		if err != nil {
			fmt.Fprintf(stderr, "qtune doctor: --l2-cache %q: %v\n", *l2, err)
		}
		fs.Usage()
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	q := doctor.QemuImg{Path: *qemuImg}
	var reports []doctor.Report
	for _, img := range images {
		f, err := q.Gather(ctx, img, cache, *noCheck)
		if err != nil {
			fmt.Fprintf(stderr, "qtune doctor: %v\n", err)
			return 3
		}
		reports = append(reports, doctor.CheckImage(f))
	}
	write := doctor.WriteText
	if *asJSON {
		write = doctor.WriteJSON
	}
	if err := write(stdout, reports); err != nil {
		fmt.Fprintf(stderr, "qtune doctor: %v\n", err)
		return exitFailure
	}
	return doctor.Worst(reports).ExitCode()
}
