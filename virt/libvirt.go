package virt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/hashicorp/go-hclog"
)

// DefaultLibvirtSocket is libvirtd's local socket on Debian.
const DefaultLibvirtSocket = "/run/libvirt/libvirt-sock"

var (
	// ErrDomainNotFound is returned for a domain libvirt does not know.
	ErrDomainNotFound = errors.New("libvirt: domain not found")
	// ErrLibvirtDown is returned while the daemon is unreachable; the
	// connection keeps trying to come back by itself.
	ErrLibvirtDown = errors.New("libvirt: daemon not reachable")
)

// LibvirtOptions configure DialLibvirt.
type LibvirtOptions struct {
	// URI such as qemu:///system, qemu+ssh://user@host/system or
	// qemu+tls://host/system. Empty means the local Socket.
	URI string
	// Socket is the local socket (default DefaultLibvirtSocket).
	Socket string
	// CallTimeout bounds calls whose context has no deadline (default 10s).
	CallTimeout time.Duration
	// MaxBackoff caps the wait between reconnect attempts (default 30s).
	MaxBackoff time.Duration
	Log        hclog.Logger
}

// Libvirt is a libvirt connection made for a daemon. go-libvirt's calls
// take no context and the protocol has no keepalive here, so every call
// runs with a deadline; a call that misses it is abandoned (its goroutine
// ends when the reply or the disconnect comes). A missed deadline says
// only that this call was slow — one domain's hung QEMU, or a daemon busy
// under load — so it starts a probe: a call that touches no domain
// (the library version), and only when the probe too gets no answer in
// time is the connection dropped as wedged. A lost daemon is dialled
// again with capped, jittered exponential backoff, and event
// subscriptions are made again on the new connection.
type Libvirt struct {
	opts LibvirtOptions
	log  hclog.Logger

	mu      sync.Mutex
	conn    *libvirt.Libvirt // nil while down
	lastErr error
	onUp    []func(*libvirt.Libvirt) // resubscribers
	onTune  []func(domain, disk string)
	tapped  bool // tunable events are seen (see tap.go)
	probing bool // a probe of conn is under way

	// probe asks the daemon something that touches no domain; drop
	// closes a wedged connection (both replaced in tests).
	probe func(*libvirt.Libvirt) error
	drop  func(*libvirt.Libvirt)

	reconnects atomic.Uint64
	closed     chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup
}

// DialLibvirt connects to libvirtd. The first connection must succeed;
// later losses are repaired in the background.
func DialLibvirt(ctx context.Context, o LibvirtOptions) (*Libvirt, error) {
	if o.Socket == "" {
		o.Socket = DefaultLibvirtSocket
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	v := &Libvirt{opts: o, log: o.Log, closed: make(chan struct{}), probe: probeLibVersion, drop: dropConn}
	conn, err := v.connect(ctx)
	if err != nil {
		return nil, err
	}
	v.conn = conn
	v.wg.Add(1)
	go v.watch(conn)
	return v, nil
}

// Where names the daemon for messages: the URI or the socket path.
func (v *Libvirt) Where() string {
	if v.opts.URI != "" {
		return v.opts.URI
	}
	return v.opts.Socket
}

func (v *Libvirt) connect(ctx context.Context) (*libvirt.Libvirt, error) {
	type result struct {
		l   *libvirt.Libvirt
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := v.dial()
		ch <- result{l, err}
	}()
	ctx, cancel := v.deadline(ctx)
	defer cancel()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, v.dialError(r.err)
		}
		return r.l, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("libvirt %s: connect: %w", v.Where(), ctx.Err())
	}
}

// dial connects through a dialer whose connection is watched for the
// tunable event; only a remote URI (ssh, tls, tcp) goes without.
func (v *Libvirt) dial() (*libvirt.Libvirt, error) {
	tap := func(d socket.Dialer) socket.Dialer { return tapDialer{d: d, tunable: v.emitTunable} }
	local := []dialers.LocalOption{dialers.WithSocket(v.opts.Socket), dialers.WithLocalTimeout(v.opts.CallTimeout)}
	if v.opts.URI == "" {
		l := libvirt.NewWithDialer(tap(dialers.NewLocal(local...)))
		v.setTapped(true)
		return l, l.Connect()
	}
	u, err := url.Parse(v.opts.URI)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", v.opts.URI, err)
	}
	if u.Host == "" && (u.Scheme == "qemu" || u.Scheme == "qemu+unix") {
		local = local[1:]
		if s := u.Query().Get("socket"); s != "" {
			local = append(local, dialers.WithSocket(s))
		}
		l := libvirt.NewWithDialer(tap(dialers.NewLocal(local...)))
		v.setTapped(true)
		return l, l.ConnectToURI(libvirt.RemoteURI(u))
	}
	v.setTapped(false)
	return libvirt.ConnectToURI(u)
}

func (v *Libvirt) setTapped(b bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tapped = b
}

// SeesTunableEvents says whether a throttle change by another tool is
// seen as an event on this connection; over a remote URI it is not, and
// throttles must be read from libvirt.
func (v *Libvirt) SeesTunableEvents() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tapped
}

func (v *Libvirt) emitTunable(domain, disk string) {
	v.mu.Lock()
	subs := make([]func(string, string), len(v.onTune))
	copy(subs, v.onTune)
	v.mu.Unlock()
	for _, f := range subs {
		f(domain, disk)
	}
}

func (v *Libvirt) onTunable(f func(domain, disk string)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.onTune = append(v.onTune, f)
}

func (v *Libvirt) dialError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("libvirtd is not running: no socket at %s: %w", v.Where(), ErrLibvirtDown)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("libvirtd is not running: %s refuses connections: %w", v.Where(), ErrLibvirtDown)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("libvirt %s: permission denied (run as root or a member of the libvirt group): %w", v.Where(), fs.ErrPermission)
	}
	return fmt.Errorf("libvirt %s: %w", v.Where(), err)
}

func (v *Libvirt) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, v.opts.CallTimeout)
}

// watch waits for the connection to drop and brings it back.
func (v *Libvirt) watch(conn *libvirt.Libvirt) {
	defer v.wg.Done()
	for {
		select {
		case <-v.closed:
			return
		case <-conn.Disconnected():
		}
		v.mu.Lock()
		if v.conn == conn {
			v.conn = nil
		}
		v.mu.Unlock()
		v.log.Warn("libvirt connection lost; reconnecting", "libvirt", v.Where())
		next := v.reconnect()
		if next == nil {
			return
		}
		conn = next
	}
}

func (v *Libvirt) reconnect() *libvirt.Libvirt {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		conn, err := v.connect(context.Background())
		if err == nil {
			v.mu.Lock()
			v.conn, v.lastErr = conn, nil
			hooks := make([]func(*libvirt.Libvirt), len(v.onUp))
			copy(hooks, v.onUp)
			v.mu.Unlock()
			v.reconnects.Add(1)
			v.log.Info("libvirt reconnected", "libvirt", v.Where(), "attempts", attempt)
			for _, h := range hooks {
				h(conn)
			}
			return conn
		}
		v.mu.Lock()
		v.lastErr = err
		v.mu.Unlock()
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-v.closed:
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, v.opts.MaxBackoff)
	}
}

// Connected reports whether the daemon is reachable now.
func (v *Libvirt) Connected() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.conn != nil
}

// Reconnects counts how often the connection was re-established.
func (v *Libvirt) Reconnects() uint64 { return v.reconnects.Load() }

// Close ends the connection and stops reconnecting.
func (v *Libvirt) Close() error {
	v.closeOnce.Do(func() {
		close(v.closed)
		v.mu.Lock()
		conn := v.conn
		v.conn = nil
		v.mu.Unlock()
		if conn != nil {
			conn.Disconnect()
		}
	})
	v.wg.Wait()
	return nil
}

// call runs f on the current connection with a deadline.
func (v *Libvirt) call(ctx context.Context, what string, f func(*libvirt.Libvirt) error) error {
	v.mu.Lock()
	conn, lastErr := v.conn, v.lastErr
	v.mu.Unlock()
	if conn == nil {
		if lastErr != nil {
			return fmt.Errorf("libvirt %s: %s: %w", v.Where(), what, lastErr)
		}
		return fmt.Errorf("libvirt %s: %s: %w", v.Where(), what, ErrLibvirtDown)
	}
	ctx, cancel := v.deadline(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(conn) }()
	select {
	case err := <-done:
		if err != nil {
			return v.callError(what, err)
		}
		return nil
	case <-ctx.Done():
		v.suspect(conn)
		return fmt.Errorf("libvirt %s: %s: %w", v.Where(), what, ctx.Err())
	}
}

func probeLibVersion(l *libvirt.Libvirt) error {
	_, err := l.ConnectGetLibVersion()
	return err
}

func dropConn(l *libvirt.Libvirt) { l.Disconnect() }

// suspect starts a probe of conn after a call on it missed its deadline,
// unless one is under way; a probe that gets no answer within the call
// timeout drops the connection (the watcher then reconnects).
func (v *Libvirt) suspect(conn *libvirt.Libvirt) {
	v.mu.Lock()
	if v.probing || v.conn != conn {
		v.mu.Unlock()
		return
	}
	v.probing = true
	v.mu.Unlock()
	go func() {
		done := make(chan error, 1)
		go func() { done <- v.probe(conn) }()
		t := time.NewTimer(v.opts.CallTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			v.mu.Lock()
			current := v.conn == conn
			v.mu.Unlock()
			if current {
				v.log.Warn("libvirt does not answer a probe; dropping the connection", "libvirt", v.Where(), "timeout", v.opts.CallTimeout.String())
				v.drop(conn)
			}
		case <-v.closed:
		}
		v.mu.Lock()
		v.probing = false
		v.mu.Unlock()
	}()
}

func (v *Libvirt) callError(what string, err error) error {
	if libvirt.IsNotFound(err) {
		return fmt.Errorf("libvirt %s: %s: %v: %w", v.Where(), what, err, ErrDomainNotFound)
	}
	if strings.Contains(err.Error(), "connection") && !v.Connected() {
		return fmt.Errorf("libvirt %s: %s: %v: %w", v.Where(), what, err, ErrLibvirtDown)
	}
	return fmt.Errorf("libvirt %s: %s: %w", v.Where(), what, err)
}

// onReconnect registers f to run on every new connection.
func (v *Libvirt) onReconnect(f func(*libvirt.Libvirt)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.onUp = append(v.onUp, f)
}

// current returns the connection in use, nil while down.
func (v *Libvirt) current() *libvirt.Libvirt {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.conn
}
