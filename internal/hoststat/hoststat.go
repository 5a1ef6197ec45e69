// Package hoststat reads what the host itself shows about storage: I/O
// pressure from /proc/pressure/io, the utilisation, bytes, latency and
// queue depth of the block device under an image from /proc/diskstats
// (the whole device, found through sysfs), and free space on the image's
// filesystem.
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
	// prev holds the last diskstats reading per "major:minor".
	prev map[string]reading
	// whole maps a "major:minor" to its whole device. The sysfs topology
	// under a mounted filesystem does not change, and resolving it is a
	// symlink walk per image per cycle.
	whole map[string]string
	// stats is /proc/diskstats as read at statsAt: one read serves every
	// image of a pass.
	stats   []byte
	statsAt time.Time
	// What ForImage learns depends only on the filesystem's device: one
	// answer per device serves every image of a pass (passAt), and an
	// image's device is looked up again only after imageDevAge.
	passAt   time.Time
	passDevs map[uint64]Image
	imageDev map[string]imageDev
}

type imageDev struct {
	dev uint64
	at  time.Time
}

// imageDevAge is how long an image file's device (its filesystem) is
// taken as known: a file moves to another filesystem only by being
// replaced, which a later stat finds.
const imageDevAge = time.Minute

// counters are one device's /proc/diskstats fields that qtune uses.
type counters struct {
	reads, sectorsRead, msReading     uint64
	writes, sectorsWritten, msWriting uint64
	ioMs, weightedMs                  uint64
}

type reading struct {
	c     counters
	at    time.Time
	rates Device // computed at this reading
}

// Device is what a host block device did between two readings; NaN when
// not known (the first reading, no operations for a latency).
type Device struct {
	Util              float64 // fraction of wall time the device was busy
	ReadBPS, WriteBPS float64 // bytes per second
	ReadLatencyMs     float64 // average time per read (Δ ms reading / Δ reads)
	WriteLatencyMs    float64
	QueueDepth        float64 // average requests in flight (Δ weighted ms / Δ wall ms)
}

func unknownDevice() Device {
	n := math.NaN()
	return Device{Util: n, ReadBPS: n, WriteBPS: n, ReadLatencyMs: n, WriteLatencyMs: n, QueueDepth: n}
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
	Device string // "major:minor" of the whole block device under the image
	// Dev is what that device did since the last call (NaN on the first).
	Dev       Device
	Util      float64 // Dev.Util, kept for callers that want only it
	FreeBytes uint64  // available to unprivileged users on the image's filesystem
}

// ForImage reads the block device utilisation and free space for the file
// at path, at time now.
func (r *Reader) ForImage(path string, now time.Time) (Image, error) {
	dev, err := r.deviceOf(path, now)
	if err != nil {
		return Image{Util: math.NaN(), Dev: unknownDevice()}, err
	}
	r.mu.Lock()
	if !r.passAt.Equal(now) {
		r.passAt, r.passDevs = now, map[uint64]Image{}
		for p, c := range r.imageDev { // images of VMs long gone
			if now.Sub(c.at) > 2*imageDevAge {
				delete(r.imageDev, p)
			}
		}
	}
	img, ok := r.passDevs[dev]
	r.mu.Unlock()
	if ok {
		return img, nil
	}
	img, err = r.forDevice(path, dev, now)
	if err != nil {
		return img, err
	}
	r.mu.Lock()
	if r.passAt.Equal(now) {
		r.passDevs[dev] = img
	}
	r.mu.Unlock()
	return img, nil
}

// deviceOf is the device of the filesystem holding path.
func (r *Reader) deviceOf(path string, now time.Time) (uint64, error) {
	r.mu.Lock()
	c, ok := r.imageDev[path]
	r.mu.Unlock()
	if ok && now.Sub(c.at) < imageDevAge && !now.Before(c.at) {
		return c.dev, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat image %s: %w", path, err)
	}
	r.mu.Lock()
	if r.imageDev == nil {
		r.imageDev = map[string]imageDev{}
	}
	r.imageDev[path] = imageDev{dev: st.Dev, at: now}
	r.mu.Unlock()
	return st.Dev, nil
}

func (r *Reader) forDevice(path string, dev uint64, now time.Time) (Image, error) {
	img := Image{Util: math.NaN(), Dev: unknownDevice()}
	fs, err := StatFS(path)
	if err != nil {
		return img, err
	}
	img.FreeBytes = fs.Free
	img.Device = r.cachedWholeDevice(unix.Major(dev), unix.Minor(dev))
	c, err := r.counters(img.Device, now)
	if err != nil {
		// Overlay, tmpfs and NFS have no diskstats line; free space still counts.
		return img, nil
	}
	img.Dev = r.rates(img.Device, reading{c: c, at: now})
	img.Util = img.Dev.Util
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

func (r *Reader) cachedWholeDevice(major, minor uint32) string {
	key := fmt.Sprintf("%d:%d", major, minor)
	r.mu.Lock()
	dev, ok := r.whole[key]
	r.mu.Unlock()
	if ok {
		return dev
	}
	dev = r.wholeDevice(major, minor)
	r.mu.Lock()
	if r.whole == nil {
		r.whole = make(map[string]string)
	}
	r.whole[key] = dev
	r.mu.Unlock()
	return dev
}

// counters reads dev's line of /proc/diskstats as of now; images sampled
// at the same now share one read of the file.
func (r *Reader) counters(dev string, now time.Time) (counters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stats == nil || !r.statsAt.Equal(now) {
		b, err := os.ReadFile(r.path("proc/diskstats"))
		if err != nil {
			return counters{}, fmt.Errorf("read diskstats: %w", err)
		}
		r.stats, r.statsAt = b, now
	}
	return parseDiskstats(r.stats, dev)
}

// parseIOTicks finds the "time spent doing I/Os" (ms, 10th stat field) of
// dev in /proc/diskstats.
func parseIOTicks(b []byte, dev string) (uint64, error) {
	c, err := parseDiskstats(b, dev)
	return c.ioMs, err
}

// parseDiskstats reads dev's line of /proc/diskstats (the kernel's
// Documentation/admin-guide/iostats.rst: fields 1-11 after the name).
func parseDiskstats(b []byte, dev string) (counters, error) {
	major, minor, _ := strings.Cut(dev, ":")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 14 || f[0] != major || f[1] != minor {
			continue
		}
		var v [11]uint64
		for i := range v {
			x, err := strconv.ParseUint(f[3+i], 10, 64)
			if err != nil {
				return counters{}, fmt.Errorf("diskstats %s: field %d %q: %w", dev, i+1, f[3+i], err)
			}
			v[i] = x
		}
		return counters{reads: v[0], sectorsRead: v[2], msReading: v[3], writes: v[4], sectorsWritten: v[6], msWriting: v[7],
			ioMs: v[9], weightedMs: v[10]}, nil
	}
	return counters{}, fmt.Errorf("diskstats: no device %s", dev)
}

// rates turns the device's new reading into what it did since the
// previous reading of the same device.
func (r *Reader) rates(dev string, cur reading) Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		r.prev = make(map[string]reading)
	}
	prev, ok := r.prev[dev]
	if ok && cur.at.Equal(prev.at) {
		// Several images on one device in the same pass share one reading.
		return prev.rates
	}
	cur.rates = unknownDevice()
	if dt := cur.at.Sub(prev.at); ok && dt > 0 && monotone(prev.c, cur.c) {
		cur.rates = derive(prev.c, cur.c, dt)
	}
	r.prev[dev] = cur
	return cur.rates
}

// monotone reports whether no counter went backwards (a device removed and
// added again under the same number starts from zero).
func monotone(a, b counters) bool {
	return b.reads >= a.reads && b.sectorsRead >= a.sectorsRead && b.msReading >= a.msReading &&
		b.writes >= a.writes && b.sectorsWritten >= a.sectorsWritten && b.msWriting >= a.msWriting &&
		b.ioMs >= a.ioMs && b.weightedMs >= a.weightedMs
}

// derive computes rates from two readings dt apart. Sectors are 512 bytes
// in diskstats whatever the device's block size.
func derive(a, b counters, dt time.Duration) Device {
	ms := dt.Seconds() * 1000
	d := unknownDevice()
	d.Util = math.Min(1, float64(b.ioMs-a.ioMs)/ms)
	d.ReadBPS = float64(b.sectorsRead-a.sectorsRead) * 512 / dt.Seconds()
	d.WriteBPS = float64(b.sectorsWritten-a.sectorsWritten) * 512 / dt.Seconds()
	d.QueueDepth = float64(b.weightedMs-a.weightedMs) / ms
	if n := b.reads - a.reads; n > 0 {
		d.ReadLatencyMs = float64(b.msReading-a.msReading) / float64(n)
	}
	if n := b.writes - a.writes; n > 0 {
		d.WriteLatencyMs = float64(b.msWriting-a.msWriting) / float64(n)
	}
	return d
}
