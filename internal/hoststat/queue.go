package hoststat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Queue is the block-layer queue of the device under a file: the
// settings an SRE looks at when the host fights the workload.
type Queue struct {
	Device      string // major:minor of the whole device
	Scheduler   string // the one in force ("none", "mq-deadline", "bfq", ...)
	Rotational  bool
	NrRequests  int
	ReadAheadKB int
}

// QueueFor reads the queue settings of the device that holds path. A
// file on tmpfs or overlay has no block device and returns an error.
func (r *Reader) QueueFor(path string) (Queue, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Queue{}, fmt.Errorf("stat %s: %w", path, err)
	}
	q := Queue{Device: r.wholeDevice(unix.Major(st.Dev), unix.Minor(st.Dev))}
	dir := r.path("sys/dev/block/" + q.Device + "/queue")
	sched, err := os.ReadFile(filepath.Join(dir, "scheduler"))
	if err != nil {
		return q, fmt.Errorf("queue of device %s under %s: %w", q.Device, path, err)
	}
	q.Scheduler = inForce(string(sched))
	q.Rotational = readInt(filepath.Join(dir, "rotational")) == 1
	q.NrRequests = readInt(filepath.Join(dir, "nr_requests"))
	q.ReadAheadKB = readInt(filepath.Join(dir, "read_ahead_kb"))
	return q, nil
}

// inForce picks the bracketed scheduler of "none [mq-deadline] kyber".
func inForce(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return strings.TrimSpace(s)
}

func readInt(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}
