package qmp

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// QEMU's dotted key=value syntax (util/keyval.c) carries every value as a
// string; QEMU types them against its schema when it opens the node. A
// blockdev-reopen over QMP needs the typed values back, so the keys qtune
// knows the type of are typed here and any other key makes the node's
// options unknown: a guessed type could make a reopen fail or, worse,
// change something.

// keyvalBool are the -blockdev keys whose schema type is bool.
var keyvalBool = map[string]bool{
	"read-only": true, "auto-read-only": true, "force-share": true,
	"direct": true, "no-flush": true, "lazy-refcounts": true,
	"pass-discard-request": true, "pass-discard-snapshot": true,
	"pass-discard-other": true, "x-check-cache-dropped": true,
	"drop-cache": true, "data-file-raw": true,
}

// keyvalInt are the -blockdev keys whose schema type is an integer.
var keyvalInt = map[string]bool{
	"l2-cache-size": true, "l2-cache-entry-size": true, "cache-size": true,
	"refcount-cache-size": true, "cache-clean-interval": true,
	"offset": true, "size": true, "aio-max-batch": true,
}

// keyvalString are the -blockdev keys whose schema type is a string or an
// enum (or a child reference, which is a node name).
var keyvalString = map[string]bool{
	"driver": true, "node-name": true, "filename": true, "discard": true,
	"detect-zeroes": true, "aio": true, "locking": true, "file": true,
	"backing": true, "data-file": true, "overlap-check": true,
	"pr-manager": true,
}

// ParseKeyval splits a -blockdev value in QEMU's key=value syntax into a
// tree of strings: "a.b=x" nests, ",," is a literal comma. It refuses what
// QEMU refuses (a pair without '=', an empty or malformed key, a key given
// twice, a key that is both a value and an object) and list keys
// ("children.0"), which qtune does not rebuild.
func ParseKeyval(s string) (map[string]any, error) {
	root := map[string]any{}
	for rest := s; rest != ""; {
		key, val, next, err := nextPair(rest)
		if err != nil {
			return nil, err
		}
		if err := putKeyval(root, key, val); err != nil {
			return nil, err
		}
		rest = next
	}
	return root, nil
}

// nextPair reads one key=value from s and returns what follows its comma.
func nextPair(s string) (key, val, rest string, err error) {
	eq := strings.IndexAny(s, "=,")
	if eq < 0 || s[eq] != '=' {
		end := len(s)
		if eq >= 0 {
			end = eq
		}
		return "", "", "", fmt.Errorf("%q has no '='", s[:end])
	}
	key = s[:eq]
	var b strings.Builder
	i := eq + 1
	for ; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				b.WriteByte(',')
				i++
				continue
			}
			break
		}
		b.WriteByte(s[i])
	}
	if i < len(s) {
		i++ // the separating comma
	}
	return key, b.String(), s[i:], nil
}

func putKeyval(root map[string]any, key, val string) error {
	parts := strings.Split(key, ".")
	m := root
	for i, p := range parts {
		if !validKeyPart(p) {
			return fmt.Errorf("key %q is not a valid key", key)
		}
		if _, err := strconv.Atoi(p); err == nil {
			return fmt.Errorf("key %q: list options are not supported", key)
		}
		if i == len(parts)-1 {
			if _, dup := m[p]; dup {
				return fmt.Errorf("key %q is given twice or is also an object", key)
			}
			m[p] = val
			return nil
		}
		switch next := m[p].(type) {
		case nil:
			child := map[string]any{}
			m[p] = child
			m = child
		case map[string]any:
			m = next
		default:
			return fmt.Errorf("key %q: %s is both a value and an object", key, strings.Join(parts[:i+1], "."))
		}
	}
	return nil
}

func validKeyPart(p string) bool {
	if p == "" || len(p) > 127 {
		return false
	}
	for _, c := range p {
		ok := c == '-' || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// typeKeyval gives the string leaves of a parsed key=value tree the types
// QEMU's schema gives them, as JSON -blockdev would carry them. backing=""
// is QEMU's spelling of "no backing" (JSON null).
func typeKeyval(m map[string]any, prefix string) error {
	for k, v := range m {
		path := prefix + k
		if child, ok := v.(map[string]any); ok {
			if err := typeKeyval(child, path+"."); err != nil {
				return err
			}
			continue
		}
		s := v.(string)
		switch {
		case k == "backing" && s == "":
			m[k] = nil
		case keyvalBool[k]:
			b, err := keyvalBoolValue(s)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			m[k] = b
		case keyvalInt[k]:
			if _, err := strconv.ParseInt(s, 10, 64); err != nil {
				return fmt.Errorf("%s=%q is not an integer", path, s)
			}
			m[k] = json.Number(s)
		case keyvalString[k]:
		default:
			return fmt.Errorf("%s: qtune does not know this option's type", path)
		}
	}
	return nil
}

// keyvalBoolValue accepts what QEMU's keyval visitor accepts for a bool.
func keyvalBoolValue(s string) (bool, error) {
	switch s {
	case "on", "yes", "true", "y":
		return true, nil
	case "off", "no", "false", "n":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", s)
}

// ParseKeyvalBlockdev parses one key=value -blockdev value into typed
// options, as if it had been given as JSON.
func ParseKeyvalBlockdev(s string) (NodeOptions, error) {
	m, err := ParseKeyval(s)
	if err != nil {
		return nil, err
	}
	if err := typeKeyval(m, ""); err != nil {
		return nil, err
	}
	return NodeOptions(m), nil
}
