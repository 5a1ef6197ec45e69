package qmp

import (
	"io"
)

// frameReader splits a monitor's stream into messages: each is one JSON
// object, on one line or, from a monitor with pretty=on, on many. It
// only follows strings and brackets to find where a message ends;
// decodeMessage checks the rest.
type frameReader struct {
	r        io.Reader
	buf      []byte
	off, end int    // buf[off:end] is read and not yet returned
	stack    []byte // the brackets open in the message being read
	size     int    // buf's usual size, to go back to after a large message
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, size), size: size}
}

// next returns the next message. It is valid until the next call.
func (f *frameReader) next() ([]byte, error) {
	stack := f.stack[:0]
	defer func() { f.stack = stack[:0] }()
	inString, escaped := false, false
	start := -1 // offset of the message in buf, once seen
	pos := f.off
	for {
		for ; pos < f.end; pos++ {
			// Most bytes are plain (in names and numbers): pass them in
			// a tight loop.
			if inString && !escaped {
				for pos < f.end && plainInString[f.buf[pos]] {
					pos++
				}
			} else if !inString && start >= 0 {
				for pos < f.end && plainOutside[f.buf[pos]] {
					pos++
				}
			}
			if pos == f.end {
				break
			}
			c := f.buf[pos]
			switch {
			case start < 0:
				if c == ' ' || c == '\n' || c == '\r' || c == '\t' {
					f.off = pos + 1
					continue
				}
				if c != '{' && c != '[' {
					return nil, &syntaxError{msg: "a message is not a JSON object", Off: 0}
				}
				start, stack = pos, append(stack, c)
			case inString:
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
				}
			case c == '"':
				inString = true
			case c == '{' || c == '[':
				if len(stack) >= maxDepth {
					return nil, &syntaxError{msg: "nested too deeply", Off: pos - start}
				}
				stack = append(stack, c)
			case c == '}' || c == ']':
				if open := stack[len(stack)-1]; (open == '{') != (c == '}') {
					return nil, &syntaxError{msg: "mismatched brackets", Off: pos - start}
				}
				if stack = stack[:len(stack)-1]; len(stack) == 0 {
					msg := f.buf[start : pos+1]
					f.off = pos + 1
					return msg, nil
				}
			}
		}
		// The message goes on past what was read: keep its start, read more.
		keep := f.off
		if start >= 0 {
			keep = start
			start -= keep
		}
		f.compact(keep)
		pos -= keep
		if err := f.fill(); err != nil {
			if err == io.EOF && start >= 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// compact moves buf[from:end] to the front, growing buf when the part
// kept fills most of it.
func (f *frameReader) compact(from int) {
	kept := f.end - from
	switch {
	case kept > len(f.buf)/2:
		grown := make([]byte, 2*len(f.buf))
		copy(grown, f.buf[from:f.end])
		f.buf = grown
	case len(f.buf) > f.size && kept <= f.size/2:
		// A large reply (query-qmp-schema) is over: do not keep its room.
		usual := make([]byte, f.size)
		copy(usual, f.buf[from:f.end])
		f.buf = usual
	default:
		copy(f.buf, f.buf[from:f.end])
	}
	f.off, f.end = f.off-from, kept
}

func (f *frameReader) fill() error {
	for tries := 0; tries < 100; tries++ {
		n, err := f.r.Read(f.buf[f.end:])
		f.end += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// plainInString and plainOutside are the bytes that change nothing for
// the framing inside a string and outside one.
var plainInString, plainOutside [256]bool

func init() {
	for c := range 256 {
		plainInString[c] = c != '"' && c != '\\'
		plainOutside[c] = c != '"' && c != '{' && c != '}' && c != '[' && c != ']'
	}
}
