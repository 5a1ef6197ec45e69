package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Version is QEMU's version as the greeting reports it.
type Version struct {
	Major   int    `json:"major"`
	Minor   int    `json:"minor"`
	Micro   int    `json:"micro"`
	Package string `json:"-"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// VMName is the name of the plain QEMU VM behind a QMP socket: the
// socket's file name without its extension (web-1.sock is web-1), for the
// agent and qtune stats alike, so that both label a VM the same way and
// the agent's records stay with the socket whatever -name QEMU was given.
func VMName(socketPath string) string {
	base := filepath.Base(socketPath)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// Sockets lists the plain QEMU VMs' QMP sockets in dir: its *.sock
// files, sorted. The agent's --qmp-dir and qtune doctor --qmp-dir find
// VMs with it, and VMName names them.
func Sockets(dir string) ([]string, error) {
	found, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return nil, fmt.Errorf("list QMP sockets in %s: %w", dir, err)
	}
	sort.Strings(found)
	return found, nil
}

// DialVM connects to a plain QEMU VM's QMP socket as every qtune command
// does: Dial, then refuse a QEMU whose counters qtune cannot match to
// its disks (see MinVersion).
func DialVM(ctx context.Context, path string, opt ...Option) (*Conn, error) {
	c, err := Dial(ctx, path, opt...)
	if err != nil {
		return nil, err
	}
	if err := c.Greeting().Version.Supported(path); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// MinVersion is the oldest QEMU qtune reads: its query-blockstats names
// disks by QOM path (qdev), which -blockdev disks need.
var MinVersion = Version{Major: 3, Minor: 0}

// ErrTooOld is returned for a QEMU older than MinVersion.
var ErrTooOld = errors.New("qmp: QEMU too old")

// Supported says why qtune cannot read a QEMU of this version, nil when
// it can; path names the socket in the message.
func (v Version) Supported(path string) error {
	if v.AtLeast(MinVersion.Major, MinVersion.Minor) {
		return nil
	}
	return fmt.Errorf("QEMU %s behind %s is too old: qtune needs QEMU %d.%d or newer (query-blockstats with qdev): %w",
		v, path, MinVersion.Major, MinVersion.Minor, ErrTooOld)
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// Greeting is what QEMU says first on a QMP connection.
type Greeting struct {
	Version      Version
	Capabilities []string
}

// Option configures Dial.
type Option func(*options)

type options struct {
	log             hclog.Logger
	callTimeout     time.Duration
	greetingTimeout time.Duration
}

// WithLogger logs commands at debug level and connection loss at warn.
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.log = l } }

// WithCallTimeout bounds calls whose context has no deadline (default 10s).
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithGreetingTimeout bounds the wait for QEMU's greeting (default 2s).
// QEMU accepts a second client on a busy monitor but greets it only when
// the first leaves, so a missing greeting means the socket is held.
func WithGreetingTimeout(d time.Duration) Option { return func(o *options) { o.greetingTimeout = d } }

// Conn is a QMP connection over a unix socket, made for a daemon: replies
// of any size, any number of concurrent callers matched by request id,
// deadlines on every call, and events that never block replies.
//
// A Conn does not reconnect by itself: when Done is closed, Dial again.
type Conn struct {
	path     string
	peerPID  int // QEMU's pid from SO_PEERCRED, 0 when unknown
	opts     options
	nc       net.Conn
	greeting Greeting
	hub      *Hub

	wmu sync.Mutex // serialises writes of whole commands

	mu      sync.Mutex
	pending map[string]chan reply // by request id
	err     error                 // why the connection ended

	nextID    atomic.Uint64
	done      chan struct{}
	closeOnce sync.Once
}

type reply struct {
	ret json.RawMessage
	err error
}

// Dial connects to the QMP socket at path, reads the greeting and
// negotiates capabilities.
func Dial(ctx context.Context, path string, opt ...Option) (*Conn, error) {
	o := options{log: hclog.NewNullLogger(), callTimeout: 10 * time.Second, greetingTimeout: 2 * time.Second}
	for _, f := range opt {
		f(&o)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, dialError(path, err)
	}
	c := &Conn{path: path, opts: o, nc: nc, hub: NewHub(), pending: map[string]chan reply{}, done: make(chan struct{})}
	c.peerPID = peerPID(nc)
	fr := newFrameReader(nc, 64<<10)
	if err := c.readGreeting(ctx, fr); err != nil {
		nc.Close()
		return nil, err
	}
	go c.readLoop(fr)
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp %s: negotiate capabilities: %w", path, err)
	}
	o.log.Debug("connected", "path", path, "qemu", c.greeting.Version.String())
	return c, nil
}

// fileKind names what a path that should be a socket is instead.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	}
	return "a " + m.Type().String() + " file"
}

func dialError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("qmp socket %s does not exist (is the VM running with -qmp unix:%s,server=on?): %w", path, path, fs.ErrNotExist)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("qmp socket %s: permission denied (run as the VM's owner or root): %w", path, fs.ErrPermission)
	case errors.Is(err, syscall.ECONNREFUSED):
		if st, serr := os.Stat(path); serr == nil && st.Mode()&fs.ModeSocket == 0 {
			return fmt.Errorf("qmp socket %s is not a socket (%s): %w", path, fileKind(st.Mode()), err)
		}
		return fmt.Errorf("qmp socket %s: connection refused (QEMU is not listening; the VM may have exited): %w", path, err)
	}
	return fmt.Errorf("qmp socket %s: %w", path, err)
}

func (c *Conn) readGreeting(ctx context.Context, fr *frameReader) error {
	deadline := time.Now().Add(c.opts.greetingTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.nc.SetReadDeadline(deadline)
	defer c.nc.SetReadDeadline(time.Time{})
	raw, err := fr.next()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("qmp socket %s: no greeting within %v; the monitor is probably held by another client (libvirt, another qtune, socat): %w",
				c.path, c.opts.greetingTimeout, ErrBusy)
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("qmp socket %s: closed before the greeting: %w", c.path, ErrNotQMP)
		}
		return fmt.Errorf("qmp socket %s: %v: %w", c.path, err, ErrNotQMP)
	}
	m, err := decodeMessage(raw)
	if err != nil || m.QMP == nil {
		return fmt.Errorf("qmp socket %s: first message is not a QMP greeting: %w", c.path, ErrNotQMP)
	}
	c.greeting = Greeting{Version: m.QMP.Version.QEMU, Capabilities: m.QMP.Capabilities}
	c.greeting.Version.Package = m.QMP.Version.Package
	return nil
}

// Greeting returns what QEMU said when the connection opened.
func (c *Conn) Greeting() Greeting { return c.greeting }

// PeerPID is the pid of the process serving the socket (QEMU), from the
// kernel's SO_PEERCRED; 0 when unknown. qtune reads the VM's -blockdev
// options from that process's command line.
func (c *Conn) PeerPID() int { return c.peerPID }

func peerPID(nc net.Conn) int {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// Path is the socket path.
func (c *Conn) Path() string { return c.path }

// Done is closed when the connection is lost or closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended; nil while it is up.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Subscribe returns a subscription to every event from now on.
func (c *Conn) Subscribe(buf int) *Subscription { return c.hub.Subscribe(buf) }

// Close ends the connection; pending calls fail with ErrClosed. It is safe
// to call more than once.
func (c *Conn) Close() error {
	c.shutdown(ErrClosed)
	return nil
}

func (c *Conn) shutdown(why error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = why
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		c.nc.Close()
		for _, ch := range pending {
			ch <- reply{err: why}
		}
		c.hub.Close()
		close(c.done)
	})
}

// readLoop reads each message, checks it and hands it on. A reply of a
// few dozen disks' stats comes every second from every VM: see
// jsonscan.go for why this is not encoding/json's stream decoder.
func (c *Conn) readLoop(fr *frameReader) {
	for {
		b, err := fr.next()
		if err != nil {
			c.readFailed(err)
			return
		}
		m, err := decodeMessage(b)
		var se *syntaxError
		if errors.As(err, &se) {
			c.readFailed(err)
			return
		}
		if err != nil {
			// Well-formed JSON of the wrong shape: the stream is still
			// in step.
			c.opts.log.Warn("ignoring unexpected qmp message", "path", c.path, "error", err.Error())
			continue
		}
		c.dispatch(m)
	}
}

func (c *Conn) readFailed(err error) {
	c.mu.Lock()
	closing := c.err != nil
	c.mu.Unlock()
	if closing {
		return // Close ran: nothing went wrong
	}
	why := fmt.Errorf("qmp socket %s: connection lost: %v: %w", c.path, err, ErrClosed)
	if errors.Is(err, io.EOF) {
		why = fmt.Errorf("qmp socket %s: QEMU closed the connection: %w", c.path, ErrClosed)
	}
	var se *syntaxError
	if errors.As(err, &se) {
		// Past bad JSON, where the next message starts is a guess.
		why = fmt.Errorf("qmp socket %s: malformed JSON from QEMU at offset %d: %v: %w", c.path, se.Off, err, ErrClosed)
	}
	c.opts.log.Warn("qmp connection ended", "path", c.path, "error", why.Error())
	c.shutdown(why)
}

func (c *Conn) dispatch(m message) {
	if m.Event != "" {
		ev := Event{Name: m.Event, Data: m.Data}
		if m.Timestamp != nil {
			ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
		}
		c.hub.Publish(ev)
		return
	}
	var id string
	if err := json.Unmarshal(m.ID, &id); err != nil {
		c.opts.log.Warn("qmp reply without our id", "path", c.path, "id", string(m.ID))
		return
	}
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !ok {
		return // the caller gave up on this id; drop the late reply
	}
	r := reply{ret: m.Return}
	if m.Error != nil {
		r.err = &Error{Class: m.Error.Class, Desc: m.Error.Desc}
	} else if r.ret == nil {
		r.ret = json.RawMessage("{}")
	}
	ch <- r
}

// Execute runs command with args (nil for none) and returns its "return"
// value. A QMP error reply is a *Error; a missed deadline returns an error
// wrapping context.DeadlineExceeded and the connection stays usable.
func (c *Conn) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.callTimeout)
		defer cancel()
	}
	start := time.Now()
	id := "q" + strconv.FormatUint(c.nextID.Add(1), 10)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: encode arguments: %w", command, err)
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(ctx, append(line, '\n')); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case r := <-ch:
		c.logCall(command, start, r.err)
		var qe *Error
		if errors.As(r.err, &qe) {
			qe.Command = command
			return nil, qe
		}
		if r.err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, r.err)
		}
		return r.ret, nil
	case <-ctx.Done():
		c.forget(id)
		c.logCall(command, start, ctx.Err())
		return nil, fmt.Errorf("qmp %s on %s: no reply after %v: %w", command, c.path, time.Since(start).Round(time.Millisecond), ctx.Err())
	}
}

func (c *Conn) logCall(command string, start time.Time, err error) {
	if err != nil {
		c.opts.log.Debug("qmp command", "command", command, "duration", time.Since(start).String(), "error", err.Error())
		return
	}
	c.opts.log.Debug("qmp command", "command", command, "duration", time.Since(start).String())
}

func (c *Conn) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// write sends one command line. A write that misses ctx's deadline after
// sending part of the command has left half a command on the wire, so
// the connection is closed then; one whose deadline passed before any
// byte went out (it waited behind other writers) fails alone.
func (c *Conn) write(ctx context.Context, line []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp socket %s: not sent: %w", c.path, err)
	}
	if d, ok := ctx.Deadline(); ok {
		c.nc.SetWriteDeadline(d)
		defer c.nc.SetWriteDeadline(time.Time{})
	}
	n, err := c.nc.Write(line)
	if err == nil {
		return nil
	}
	var ne net.Error
	if n == 0 && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("qmp socket %s: not sent: %w", c.path, context.DeadlineExceeded)
	}
	why := fmt.Errorf("qmp socket %s: write: %v: %w", c.path, err, ErrClosed)
	c.shutdown(why)
	return why
}
