package qmp

import (
	"encoding/json"
	"errors"
	"fmt"
)

// message is any one message QEMU sends: a greeting, a reply or an event.
type message struct {
	QMP       *greetingBody
	ID        json.RawMessage
	Return    json.RawMessage
	Error     *errorBody
	Event     string
	Data      json.RawMessage
	Timestamp *timestamp
}

type greetingBody struct {
	Version struct {
		QEMU    Version `json:"qemu"`
		Package string  `json:"package"`
	} `json:"version"`
	Capabilities []string `json:"capabilities"`
}

type errorBody struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

type timestamp struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

// decodeMessage parses one QMP message. It is the parser of untrusted
// input and is fuzzed. A message that is not well-formed JSON is a
// *syntaxError; one of the wrong shape is another error. The raw parts
// (id, return, data) are copies: b may be reused.
//
// It walks the message with the scanner of jsonscan.go rather than
// json.Unmarshal: "return" holds the large replies (query-blockstats
// every second), which only need checking and copying here; the small
// members are decoded with encoding/json.
func decodeMessage(b []byte) (message, error) {
	var m message
	start := skipSpace(b, 0)
	if start < len(b) && b[start] != '{' {
		if _, _, err := wholeValue(b); err != nil {
			return m, fmt.Errorf("qmp: malformed message: %w", err)
		}
		return m, errors.New("qmp: message is not a JSON object")
	}
	// One pass: walkObject checks the object as it goes.
	var shapeErr error
	end, err := walkObject(b, start, func(key []byte, at int) (int, error) {
		end, err := skipValue(b, at)
		if err != nil {
			return end, err
		}
		if err := m.set(string(key), b[at:end]); err != nil && shapeErr == nil {
			shapeErr = err
		}
		return end, nil
	})
	if err == nil {
		if i := skipSpace(b, end); i != len(b) {
			err = badJSON(b, i, "after the message")
		}
	}
	if err != nil {
		return m, fmt.Errorf("qmp: malformed message: %w", err)
	}
	if shapeErr != nil {
		return m, fmt.Errorf("qmp: malformed message: %w", shapeErr)
	}
	return m, m.check()
}

// set stores one member; a later duplicate wins, as with encoding/json.
func (m *message) set(key string, v []byte) error {
	isNull := string(v) == "null"
	switch key {
	case "QMP":
		m.QMP = nil
		if !isNull {
			m.QMP = new(greetingBody)
			return json.Unmarshal(v, m.QMP)
		}
	case "id":
		m.ID = append(json.RawMessage(nil), v...)
	case "return":
		m.Return = append(json.RawMessage(nil), v...)
	case "error":
		m.Error = nil
		if !isNull {
			m.Error = new(errorBody)
			return json.Unmarshal(v, m.Error)
		}
	case "event":
		m.Event = ""
		return json.Unmarshal(v, &m.Event)
	case "data":
		m.Data = append(json.RawMessage(nil), v...)
	case "timestamp":
		m.Timestamp = nil
		if !isNull {
			m.Timestamp = new(timestamp)
			return json.Unmarshal(v, m.Timestamp)
		}
	}
	return nil
}

func (m *message) check() error {
	if m.QMP == nil && m.ID == nil && m.Return == nil && m.Error == nil && m.Event == "" {
		return errors.New("qmp: message is neither greeting, reply nor event")
	}
	return nil
}

// DecodeReply decodes one QMP reply to command that came by another way
// than a socket (libvirt's qemu-monitor-command): its "return" ("{}" when
// it has none), or its error as *Error.
func DecodeReply(command string, body []byte) (json.RawMessage, error) {
	m, err := decodeMessage(body)
	if err != nil {
		return nil, err
	}
	if m.Error != nil {
		return nil, &Error{Command: command, Class: m.Error.Class, Desc: m.Error.Desc}
	}
	if m.Return == nil {
		return json.RawMessage("{}"), nil
	}
	return m.Return, nil
}
