// Package hoststat reads what the host itself shows about storage: I/O
// pressure from /proc/pressure/io, the utilisation of the block device under
// an image from /proc/diskstats, and free space on the image's filesystem.
// None of it talks to a hypervisor; it fills the host side of a sample.
package hoststat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtune/qtune/internal/sample"
)

// ErrNoPressure means the kernel does not expose PSI (CONFIG_PSI off or
// psi=0 on the command line).
var ErrNoPressure = errors.New("hoststat: /proc/pressure/io not available")

// Reader reads host statistics below Root ("/" in production, a fixture
// tree in tests). It remembers the previous diskstats reading of each device
// so that utilisation is a rate over the time between two calls.
type Reader struct {
	Root string

	mu sync.Mutex
	// prev holds the last io_ticks reading per "major:minor".
	prev map[string]ticks
}

type ticks struct {
	ioMs uint64
	at   time.Time
	util float64 // utilisation computed at this reading
}

// NewReader returns a reader of the live host.
func NewReader() *Reader { return &Reader{Root: "/"} }

func (r *Reader) path(p string) string { return filepath.Join(r.Root, p) }

// Pressure reads /proc/pressure/io.
func (r *Reader) Pressure() (sample.Host, error) {
	b, err := os.ReadFile(r.path("proc/pressure/io"))
	if errors.Is(err, os.ErrNotExist) {
		return sample.Host{}, ErrNoPressure
	}
	if err != nil {
		return sample.Host{}, fmt.Errorf("read io pressure: %w", err)
	}
	return parsePressure(b)
}

func parsePressure(b []byte) (sample.Host, error) {
	h := sample.Host{
		IOPressureSomeAvg10: math.NaN(), IOPressureSomeAvg60: math.NaN(),
		IOPressureFullAvg10: math.NaN(), IOPressureFullAvg60: math.NaN(),
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var avg10, avg60 *float64
		switch f[0] {
		case "some":
			avg10, avg60 = &h.IOPressureSomeAvg10, &h.IOPressureSomeAvg60
		case "full":
			avg10, avg60 = &h.IOPressureFullAvg10, &h.IOPressureFullAvg60
		default:
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || (k != "avg10" && k != "avg60") {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return h, fmt.Errorf("io pressure: %s %s: %w", f[0], kv, err)
			}
			if k == "avg10" {
				*avg10 = x
			} else {
				*avg60 = x
			}
		}
	}
	if math.IsNaN(h.IOPressureSomeAvg10) {
		return h, fmt.Errorf("io pressure: no \"some\" line")
	}
	return h, nil
}

// Image is the host side of one disk image.
type Image struct {
	Device    string  // "major:minor" of the whole block device under the image
	Util      float64 // fraction of wall time the device was busy since the last call; NaN on the first
	FreeBytes uint64  // available to unprivileged users on the image's filesystem
}

// ForImage reads the block device utilisation and free space for the file
// at path, at time now.
func (r *Reader) ForImage(path string, now time.Time) (Image, error) {
	img := Image{Util: math.NaN()}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return img, fmt.Errorf("stat image %s: %w", path, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return img, fmt.Errorf("statfs %s: %w", path, err)
	}
	img.FreeBytes = fs.Bavail * uint64(fs.Bsize)
	img.Device = r.wholeDevice(unix.Major(st.Dev), unix.Minor(st.Dev))
	ms, err := r.ioTicks(img.Device)
	if err != nil {
		// Overlay, tmpfs and NFS have no diskstats line; free space still counts.
		return img, nil
	}
	img.Util = r.util(img.Device, ticks{ioMs: ms, at: now})
	return img, nil
}

// wholeDevice maps a partition to its disk through sysfs, so that
// utilisation is that of the device the kernel queues on.
func (r *Reader) wholeDevice(major, minor uint32) string {
	dev := fmt.Sprintf("%d:%d", major, minor)
	link, err := filepath.EvalSymlinks(r.path("sys/dev/block/" + dev))
	if err != nil {
		return dev
	}
	if _, err := os.Stat(filepath.Join(link, "partition")); err != nil {
		return dev
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(link), "dev"))
	if err != nil {
		return dev
	}
	return strings.TrimSpace(string(b))
}

func (r *Reader) ioTicks(dev string) (uint64, error) {
	b, err := os.ReadFile(r.path("proc/diskstats"))
	if err != nil {
		return 0, fmt.Errorf("read diskstats: %w", err)
	}
	return parseIOTicks(b, dev)
}

// parseIOTicks finds the "time spent doing I/Os" (ms, 10th stat field) of
// dev in /proc/diskstats.
func parseIOTicks(b []byte, dev string) (uint64, error) {
	major, minor, _ := strings.Cut(dev, ":")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 13 || f[0] != major || f[1] != minor {
			continue
		}
		v, err := strconv.ParseUint(f[12], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("diskstats %s: io_ticks %q: %w", dev, f[12], err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("diskstats: no device %s", dev)
}

// util turns the device's new io_ticks reading into utilisation since the
// previous reading of the same device.
func (r *Reader) util(dev string, cur ticks) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		r.prev = make(map[string]ticks)
	}
	prev, ok := r.prev[dev]
	if ok && cur.at.Equal(prev.at) {
		// Several images on one device in the same pass share one reading.
		return prev.util
	}
	cur.util = math.NaN()
	if dt := cur.at.Sub(prev.at); ok && dt > 0 && cur.ioMs >= prev.ioMs {
		cur.util = math.Min(1, float64(cur.ioMs-prev.ioMs)/(dt.Seconds()*1000))
	}
	r.prev[dev] = cur
	return cur.util
}
