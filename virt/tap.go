package virt

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"

	"github.com/digitalocean/go-libvirt/socket"
)

// go-libvirt drops every event whose message carries typed parameters:
// its event decoder has no decoder for them, so the tunable event that
// blkdeviotune emits never reaches a subscriber (seen with libvirt 9.0).
// That event is how a throttle changed by another tool is seen without
// polling, so the bytes libvirtd sends are watched on their way to
// go-libvirt, and that one message is decoded here. The stream passes
// through unchanged; only a message's 28-byte length and header are
// looked at, and only the tunable event's body is kept.

const (
	rpcRemoteProgram    = 0x20008086
	procCallbackTunable = 346 // REMOTE_PROC_DOMAIN_EVENT_CALLBACK_TUNABLE
	rpcHeaderLen        = 28  // length word + program, version, procedure, type, serial, status
)

// tapDialer wraps the dialer go-libvirt uses.
type tapDialer struct {
	d       socket.Dialer
	tunable func(domain, disk string)
}

func (t tapDialer) Dial() (net.Conn, error) {
	c, err := t.d.Dial()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, tunable: t.tunable}, nil
}

// tapConn follows the message framing of what it reads.
type tapConn struct {
	net.Conn
	tunable func(domain, disk string)

	mu   sync.Mutex
	hdr  [rpcHeaderLen]byte
	hn   int    // header bytes seen of the current message
	left int    // body bytes still to come
	keep bool   // the body is a tunable event
	body []byte // kept body
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.feed(p[:n])
	}
	return n, err
}

func (c *tapConn) feed(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		if c.hn < rpcHeaderLen {
			k := copy(c.hdr[c.hn:], b)
			c.hn += k
			b = b[k:]
			if c.hn == rpcHeaderLen {
				c.startBody()
			}
			continue
		}
		k := min(c.left, len(b))
		if c.keep {
			c.body = append(c.body, b[:k]...)
		}
		c.left -= k
		b = b[k:]
		if c.left == 0 {
			c.endBody()
		}
	}
}

func (c *tapConn) startBody() {
	be := binary.BigEndian
	length := int(be.Uint32(c.hdr[0:4]))
	c.left = max(length-rpcHeaderLen, 0)
	c.keep = be.Uint32(c.hdr[4:8]) == rpcRemoteProgram && be.Uint32(c.hdr[12:16]) == procCallbackTunable
	c.body = c.body[:0]
	if c.left == 0 {
		c.endBody()
	}
}

func (c *tapConn) endBody() {
	if c.keep && c.tunable != nil {
		if dom, disk, err := decodeTunable(c.body); err == nil {
			c.tunable(dom, disk)
		}
	}
	c.hn, c.keep = 0, false
}

// xdrReader reads the few XDR types a tunable event has.
type xdrReader struct {
	b   []byte
	err error
}

var errShort = errors.New("xdr: message too short")

func (r *xdrReader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = errShort
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *xdrReader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *xdrReader) string() string {
	n := int(r.uint32())
	s := string(r.take(n))
	r.take((4 - n%4) % 4)
	return s
}

// decodeTunable reads remote_domain_event_callback_tunable_msg: the
// callback id, the domain (name, uuid, id) and typed parameters, of
// which only blkdeviotune.disk is wanted. A tunable event without it
// (CPU tuning, say) is no block throttle change.
func decodeTunable(body []byte) (domain, disk string, err error) {
	r := &xdrReader{b: body}
	r.uint32() // callback id
	domain = r.string()
	r.take(16) // uuid
	r.uint32() // id
	n := int(r.uint32())
	for i := 0; i < n && r.err == nil; i++ {
		field := r.string()
		switch r.uint32() { // typed parameter type
		case 1, 2, 6: // int, uint, boolean
			r.take(4)
		case 3, 4, 5: // llong, ullong, double
			r.take(8)
		case 7: // string
			if v := r.string(); field == "blkdeviotune.disk" {
				disk = v
			}
		default:
			return "", "", errors.New("xdr: unknown typed parameter type")
		}
	}
	if r.err != nil {
		return "", "", r.err
	}
	if disk == "" {
		return "", "", errors.New("not a block throttle change")
	}
	return domain, disk, nil
}
