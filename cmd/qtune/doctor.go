package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/qtune/qtune/doctor"
	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{name: "doctor", summary: "name the known qcow2 and disk problems of VMs or images, with evidence and fixes (reads only)", run: runDoctor})
}

// exitUnreadable is the doctor's exit status when a VM or an image could
// not be read at all.
const exitUnreadable = 3

// imageList is a repeatable --image flag.
type imageList []string

func (l *imageList) String() string     { return strings.Join(*l, ",") }
func (l *imageList) Set(v string) error { *l = append(*l, v); return nil }

type doctorFlags struct {
	images   imageList
	qmp      imageList
	qmpDir   string
	libvirt  bool
	uri      string
	socket   string
	domain   string
	asJSON   bool
	l2       string
	cache    uint64
	noCheck  bool
	qemuImg  string
	interval time.Duration
	timeout  time.Duration
	callTO   time.Duration
}

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f doctorFlags
	fs := newFlagSet("qtune doctor")
	fs.SetOutput(stderr)
	fs.Var(&f.images, "image", "an image file to check offline (repeatable)")
	fs.Var(&f.qmp, "qmp", "QMP socket of a running plain QEMU VM to check live (repeatable)")
	fs.StringVar(&f.qmpDir, "qmp-dir", "", "check every plain QEMU VM whose *.sock QMP socket is in this directory")
	fs.BoolVar(&f.libvirt, "libvirt", false, "check every active libvirt domain (or --domain)")
	fs.StringVar(&f.uri, "uri", "", "libvirt URI (qemu:///system, qemu+ssh://host/system)")
	fs.StringVar(&f.socket, "socket", "", "libvirt socket path (default /run/libvirt/libvirt-sock)")
	fs.StringVar(&f.domain, "domain", "", "only this libvirt domain")
	fs.BoolVar(&f.asJSON, "json", false, "print the findings as JSON")
	handbook := fs.Bool("handbook", false, "print the handbook of every check (docs/doctor.md) and exit")
	fs.StringVar(&f.l2, "l2-cache", "32MiB", "the qcow2 L2 cache offline images get (QEMU's default caps it at 32MiB); live disks use the cache in force")
	fs.BoolVar(&f.noCheck, "no-check", false, "skip qemu-img check (it reads all of the metadata)")
	fs.StringVar(&f.qemuImg, "qemu-img", "qemu-img", "the qemu-img binary")
	fs.DurationVar(&f.interval, "interval", 2*time.Second, "time between the two samples of a live VM")
	fs.DurationVar(&f.callTO, "call-timeout", 5*time.Second, "deadline of each call to QEMU or libvirt")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "deadline for all of the checks")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qtune doctor --image FILE [--image FILE...] | --qmp SOCKET | --qmp-dir DIR | --libvirt [--domain NAME]\n                    [--json] [--no-check] [--interval 2s]\n       qtune doctor --handbook\nExit status: 0 ok or info, 1 warn, 2 critical, 3 a VM or image could not be read.")
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
	if err := f.validate(fs.NArg()); err != nil {
		fmt.Fprintf(stderr, "qtune doctor: %v\n", err)
		fs.Usage()
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	reports, errs := f.run(ctx)
	for _, err := range errs {
		fmt.Fprintf(stderr, "qtune doctor: %v\n", err)
	}
	write := doctor.WriteText
	if f.asJSON {
		write = doctor.WriteJSON
	}
	if err := write(stdout, reports); err != nil {
		fmt.Fprintf(stderr, "qtune doctor: %v\n", err)
		return exitFailure
	}
	if len(errs) > 0 {
		return exitUnreadable
	}
	return doctor.Worst(reports).ExitCode()
}

func (f *doctorFlags) validate(extra int) error {
	cache, err := policy.ParseSize(f.l2)
	if err != nil {
		return fmt.Errorf("--l2-cache %q: %w", f.l2, err)
	}
	f.cache = cache
	modes := 0
	for _, on := range []bool{len(f.images) > 0, len(f.qmp) > 0, f.qmpDir != "", f.libvirt} {
		if on {
			modes++
		}
	}
	switch {
	case extra > 0:
		return errors.New("unexpected arguments")
	case modes == 0:
		return errors.New("say what to check: --image, --qmp, --qmp-dir or --libvirt")
	case modes > 1:
		return errors.New("--image, --qmp, --qmp-dir and --libvirt exclude each other")
	case !f.libvirt && (f.uri != "" || f.socket != "" || f.domain != ""):
		return errors.New("--uri, --socket and --domain go with --libvirt")
	case f.interval < 100*time.Millisecond:
		return fmt.Errorf("--interval %v is too short (at least 100ms)", f.interval)
	case f.callTO <= 0:
		return fmt.Errorf("--call-timeout %v must be positive", f.callTO)
	}
	return nil
}

func (f *doctorFlags) run(ctx context.Context) ([]doctor.Report, []error) {
	q := doctor.QemuImg{Path: f.qemuImg}
	if len(f.images) == 0 {
		return f.live(ctx, q)
	}
	var all []doctor.ImageFacts
	for _, img := range f.images {
		facts, err := q.Gather(ctx, img, f.cache, f.noCheck)
		if err != nil {
			return nil, []error{err}
		}
		all = append(all, facts)
	}
	doctor.ShareFilesystems(all)
	reports := make([]doctor.Report, len(all))
	for i, facts := range all {
		reports[i] = doctor.CheckImage(facts)
	}
	return reports, nil
}
