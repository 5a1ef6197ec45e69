package qmp

import (
	"context"
	"encoding/json"
	"fmt"
)

// Schema is what query-qmp-schema says this QEMU accepts: capability
// detection by feature, not by version number.
type Schema struct {
	types    map[string]schemaEntry
	commands map[string]schemaEntry
	events   map[string]schemaEntry
}

type schemaEntry struct {
	Name     string `json:"name"`
	MetaType string `json:"meta-type"`
	ArgType  string `json:"arg-type"`
	RetType  string `json:"ret-type"`
	Members  []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"members"`
	Variants []struct {
		Case string `json:"case"`
		Type string `json:"type"`
	} `json:"variants"`
	Values []string `json:"values"`
}

// QuerySchema reads and indexes the QMP schema (~200 KB on QEMU 7.2).
func (b *Block) QuerySchema(ctx context.Context) (*Schema, error) {
	ret, err := b.ex.Execute(ctx, "query-qmp-schema", nil)
	if err != nil {
		return nil, err
	}
	return ParseSchema(ret)
}

// ParseSchema indexes a query-qmp-schema reply.
func ParseSchema(raw json.RawMessage) (*Schema, error) {
	var entries []schemaEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("qmp schema: %w", err)
	}
	s := &Schema{types: map[string]schemaEntry{}, commands: map[string]schemaEntry{}, events: map[string]schemaEntry{}}
	for _, e := range entries {
		switch e.MetaType {
		case "command":
			s.commands[e.Name] = e
		case "event":
			s.events[e.Name] = e
		default:
			s.types[e.Name] = e
		}
	}
	return s, nil
}

// HasCommand reports whether QEMU has the command.
func (s *Schema) HasCommand(name string) bool { _, ok := s.commands[name]; return ok }

// HasEvent reports whether QEMU may send the event.
func (s *Schema) HasEvent(name string) bool { _, ok := s.events[name]; return ok }

// HasArg reports whether command takes the named top-level argument,
// including the members of union variants (blockdev-add's driver options).
func (s *Schema) HasArg(command, arg string) bool {
	c, ok := s.commands[command]
	if !ok {
		return false
	}
	return s.hasMember(c.ArgType, arg, map[string]bool{})
}

func (s *Schema) hasMember(typ, member string, seen map[string]bool) bool {
	if seen[typ] {
		return false
	}
	seen[typ] = true
	t, ok := s.types[typ]
	if !ok {
		return false
	}
	for _, m := range t.Members {
		if m.Name == member {
			return true
		}
	}
	for _, v := range t.Variants {
		if s.hasMember(v.Type, member, seen) {
			return true
		}
	}
	return false
}

// EnumHas reports whether the enum type of command's argument arg has
// value (e.g. blockdev-mirror's copy-mode "write-blocking").
func (s *Schema) EnumHas(command, arg, value string) bool {
	c, ok := s.commands[command]
	if !ok {
		return false
	}
	t := s.types[c.ArgType]
	for _, m := range t.Members {
		if m.Name != arg {
			continue
		}
		for _, v := range s.types[m.Type].Values {
			if v == value {
				return true
			}
		}
	}
	return false
}
