package qmp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// QEMU names a node by its image's file name only when the node's
// options fit in one: an encrypted qcow2 (encrypt.key-secret), a raw
// node with an offset, any node with an option that changes what the
// guest sees. Otherwise its "file" and "filename" are
// json:{...}, the node's options as QEMU's flat JSON (bdrv_refresh_filename):
// children nested as objects, a child's option also as a dotted key
// ("file.filename"), the whole of it in no schema qtune could ask for.
// The image file is the filename at the end of the "file" chain.

// maxNodeDepth bounds the "file" chain walked (a format over a filter
// over a protocol is three).
const maxNodeDepth = 16

// NodeFilename returns the image file a node's filename names, and, for
// a json: filename, the node's options (dotted keys nested: "a.b" is
// opts["a"]["b"]). A plain filename is its own path, with nil options.
func NodeFilename(name string) (path string, opts map[string]any, err error) {
	raw, ok := strings.CutPrefix(name, "json:")
	if !ok {
		return name, nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	var flat map[string]any
	if err := dec.Decode(&flat); err != nil {
		return "", nil, fmt.Errorf("node filename %s: %w", short(name), err)
	}
	opts, err = nestDotted(flat)
	if err != nil {
		return "", nil, fmt.Errorf("node filename %s: %w", short(name), err)
	}
	cur := opts
	for depth := 0; depth < maxNodeDepth; depth++ {
		if fn, ok := cur["filename"].(string); ok && fn != "" {
			return fn, opts, nil
		}
		switch child := cur["file"].(type) {
		case map[string]any:
			cur = child
		case string:
			return "", opts, fmt.Errorf("node filename %s: its file is node %q, whose filename it does not say", short(name), child)
		default:
			drv, _ := cur["driver"].(string)
			return "", opts, fmt.Errorf("node filename %s: the %s node has no file (not an image in a file)", short(name), orUnknown(drv))
		}
	}
	return "", opts, fmt.Errorf("node filename %s: file chain deeper than %d", short(name), maxNodeDepth)
}

// ImagePath is the image file of a node: its filename, or the file a
// json: filename names. A name it cannot read is returned as is (and
// fails where a path is opened, with that name in the error).
func ImagePath(name string) string {
	if p, _, err := NodeFilename(name); err == nil {
		return p
	}
	return name
}

// KeySecret is the id of the secret object that unlocks an encrypted
// node, from its options (NodeFilename's or -blockdev's): qcow2's
// encrypt.key-secret, luks's key-secret. "" when it names none.
func KeySecret(opts map[string]any) string {
	if enc, ok := opts["encrypt"].(map[string]any); ok {
		s, _ := enc["key-secret"].(string)
		return s
	}
	if s, ok := opts["encrypt.key-secret"].(string); ok {
		return s
	}
	s, _ := opts["key-secret"].(string)
	return s
}

// nestDotted turns {"a.b": x, "a": {"c": y}} into {"a": {"b": x, "c": y}},
// recursively; a key that is both a value and an object is an error.
func nestDotted(m map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			n, err := nestDotted(sub)
			if err != nil {
				return nil, err
			}
			v = n
		}
		parts := strings.Split(k, ".")
		cur := out
		for i, p := range parts {
			if p == "" {
				return nil, fmt.Errorf("malformed key %q", k)
			}
			if i == len(parts)-1 {
				if err := merge(cur, p, v, k); err != nil {
					return nil, err
				}
				break
			}
			next, ok := cur[p].(map[string]any)
			if !ok {
				if _, taken := cur[p]; taken {
					return nil, fmt.Errorf("key %q is both a value and an object", k)
				}
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
	}
	return out, nil
}

func merge(m map[string]any, key string, v any, full string) error {
	old, taken := m[key]
	if !taken {
		m[key] = v
		return nil
	}
	om, ok1 := old.(map[string]any)
	vm, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		return fmt.Errorf("key %q given twice", full)
	}
	for k, x := range vm {
		if err := merge(om, k, x, full+"."+k); err != nil {
			return err
		}
	}
	return nil
}

// short cuts a long json: name for an error message.
func short(name string) string {
	if len(name) > 120 {
		return name[:117] + "..."
	}
	return name
}

func orUnknown(s string) string {
	if s == "" {
		return "unnamed"
	}
	return s
}
