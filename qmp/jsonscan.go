package qmp

import (
	"encoding/json"
	"fmt"
)

// A small JSON scanner for the two places where encoding/json was most of
// a sampling agent's CPU (400 disks, one reply of ~30 KB per VM every
// second): splitting the monitor's stream into messages, and decoding
// query-blockstats. encoding/json ran over each reply five times (the
// stream decoder's scan, the skip of the raw "return", its copy, the
// validity check of Unmarshal and the decode, which skipped the unused
// "parent" counters byte by byte through its state machine); this
// scanner walks a reply three times with plain loops: to frame it, to
// check it as the message is taken apart, and to decode the counters.
// Taking a 20-disk reply apart and decoding its counters costs a fifth
// or less of what encoding/json spent (BenchmarkReplyScanner against
// BenchmarkReplyEncodingJSON; framing is not in either). It accepts
// exactly what json.Valid accepts (fuzzed against it); the small members
// of a message, and every reply that is not read field by field, still go
// through encoding/json.

// maxDepth bounds nesting, as encoding/json does, so a hostile peer
// cannot exhaust the stack.
const maxDepth = 10000

// syntaxError is JSON that is not well-formed. Off is the byte offset
// in the message.
type syntaxError struct {
	msg string
	Off int
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.Off, e.msg)
}

func badJSON(b []byte, i int, what string) error {
	if i >= len(b) {
		return &syntaxError{msg: "unexpected end of " + what, Off: i}
	}
	return &syntaxError{msg: fmt.Sprintf("unexpected %q in %s", b[i], what), Off: i}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipValue checks the value that starts at b[i] (no space before it)
// and returns the offset just past it. It keeps its own stack of open
// brackets rather than recursing: it runs over every reply.
func skipValue(b []byte, i int) (int, error) {
	var small [64]byte
	stack := small[:0]
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return i, badJSON(b, i, "value")
		}
		var err error
		switch c := b[i]; {
		case c == '{' || c == '[':
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			if i = skipSpace(b, i+1); i < len(b) && b[i] == closer {
				i++
				break // an empty one
			}
			if len(stack) >= maxDepth {
				return i, &syntaxError{msg: "nested too deeply", Off: i}
			}
			stack = append(stack, c)
			if c == '{' {
				if i, err = skipKey(b, i); err != nil {
					return i, err
				}
			}
			continue
		case c == '"':
			i, _, err = scanString(b, i)
		case c == '-' || (c >= '0' && c <= '9'):
			i, err = skipNumber(b, i)
		case c == 't':
			i, err = skipLiteral(b, i, "true")
		case c == 'f':
			i, err = skipLiteral(b, i, "false")
		case c == 'n':
			i, err = skipLiteral(b, i, "null")
		default:
			return i, badJSON(b, i, "value")
		}
		if err != nil {
			return i, err
		}
		// After a value: close what it ends, or go on to the next one.
		for {
			if len(stack) == 0 {
				return i, nil
			}
			open := stack[len(stack)-1]
			i = skipSpace(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				if open == '{' {
					if i, err = skipKey(b, i); err != nil {
						return i, err
					}
				}
				break
			}
			if i < len(b) && ((open == '{' && b[i] == '}') || (open == '[' && b[i] == ']')) {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return i, badJSON(b, i, "object or array")
		}
	}
}

// skipKey checks `"name" :` at b[i] and returns the offset of the value.
func skipKey(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return i, badJSON(b, i, "object key")
	}
	i, _, err := scanString(b, i)
	if err != nil {
		return i, err
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
		return i, badJSON(b, i, "object")
	}
	return skipSpace(b, i+1), nil
}

func skipLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, badJSON(b, i, "literal")
	}
	return i + len(lit), nil
}

// skipNumber follows JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, error) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return i, badJSON(b, i, "number")
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, badJSON(b, i, "number")
		}
		i = skipDigits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, badJSON(b, i, "number")
		}
		i = skipDigits(b, i)
	}
	return i, nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// scanString checks the string that starts at b[i] and returns the
// offset past its closing quote and whether it has escapes (then its
// text needs unquoting; without, it is b[i+1:end-1] as it stands).
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	i++ // the opening quote
	for i < len(b) {
		for i < len(b) && plainString[b[i]] {
			i++
		}
		if i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, badJSON(b, i+1, "string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(b) || !isHex(b[k]) {
						return k, escaped, badJSON(b, k, "string escape")
					}
				}
				i += 6
			default:
				return i + 1, escaped, badJSON(b, i+1, "string escape")
			}
		case c < 0x20:
			return i, escaped, badJSON(b, i, "string")
		default:
			i++
		}
	}
	return i, escaped, badJSON(b, i, "string")
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// walkObject checks the object that starts at b[i], handing each member's
// key (its raw text between the quotes, unquoted when it has escapes) and
// the offset of its value to member, which returns the offset past that
// value. It returns the offset past the object.
func walkObject(b []byte, i int, member func(key []byte, at int) (int, error)) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return i, badJSON(b, i, "object")
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, badJSON(b, i, "object key")
		}
		end, escaped, err := scanString(b, i)
		if err != nil {
			return end, err
		}
		key := b[i+1 : end-1]
		if escaped {
			var s string
			if err := json.Unmarshal(b[i:end], &s); err != nil {
				return i, &syntaxError{msg: err.Error(), Off: i}
			}
			key = []byte(s)
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return i, badJSON(b, i, "object")
		}
		if i = skipSpace(b, i+1); i >= len(b) {
			return i, badJSON(b, i, "object")
		}
		if i, err = member(key, i); err != nil {
			return i, err
		}
		switch i = skipSpace(b, i); {
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		case i < len(b) && b[i] == '}':
			return i + 1, nil
		default:
			return i, badJSON(b, i, "object")
		}
	}
}

// walkArray is walkObject for an array's elements.
func walkArray(b []byte, i int, elem func(at int) (int, error)) (int, error) {
	if i >= len(b) || b[i] != '[' {
		return i, badJSON(b, i, "array")
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return i, badJSON(b, i, "array")
		}
		var err error
		if i, err = elem(i); err != nil {
			return i, err
		}
		switch i = skipSpace(b, i); {
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		case i < len(b) && b[i] == ']':
			return i + 1, nil
		default:
			return i, badJSON(b, i, "array")
		}
	}
}

// wholeValue checks that b is one JSON value with nothing but space
// around it and returns the offsets of the value.
func wholeValue(b []byte) (start, end int, err error) {
	start = skipSpace(b, 0)
	if end, err = skipValue(b, start); err != nil {
		return start, end, err
	}
	if i := skipSpace(b, end); i != len(b) {
		return start, end, badJSON(b, i, "after the value")
	}
	return start, end, nil
}

// plainString is the bytes that stand for themselves in a JSON string.
var plainString [256]bool

func init() {
	for c := range 256 {
		plainString[c] = c >= 0x20 && c != '"' && c != '\\'
	}
}
