package applesim

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/micromdm/plist"
)

// This file is the one place where the simulator builds and reads
// property lists. Everything the device receives goes through
// decodeDict (bounded, panic-free); everything it sends goes through
// encodePlist.

// encodePlist renders v as an XML property list, the form devices use.
func encodePlist(v any) ([]byte, error) {
	b, err := plist.MarshalIndent(v, "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding plist: %w", err)
	}
	return b, nil
}

// decodeDict parses an XML or binary property list whose root is a
// dictionary. Input larger than limit is refused before parsing, and a
// panic inside the plist library (which parses hostile input here) is
// turned into an error.
func decodeDict(data []byte, limit int) (dict map[string]any, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty property list")
	}
	if len(data) > limit {
		return nil, fmt.Errorf("property list is %d bytes, more than the %d allowed", len(data), limit)
	}
	defer func() {
		if r := recover(); r != nil {
			dict, err = nil, fmt.Errorf("malformed property list: %v", r)
		}
	}()
	var v any
	if err := plist.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("malformed property list: %w", err)
	}
	dict, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("property list root is %T, not a dictionary", v)
	}
	return dict, nil
}

// Typed getters. Each reports whether key held a value of the wanted
// type; a missing key and a wrongly typed value are both "not ok", and
// present tells them apart.

func getString(d map[string]any, key string) (s string, ok bool) {
	s, ok = d[key].(string)
	return s, ok
}

func getBool(d map[string]any, key string) (b bool, ok bool) {
	b, ok = d[key].(bool)
	return b, ok
}

// getInt accepts plist integers, which the decoder yields as uint64
// (non-negative) or int64.
func getInt(d map[string]any, key string) (int64, bool) {
	switch v := d[key].(type) {
	case int64:
		return v, true
	case uint64:
		if v > 1<<62 {
			return 0, false
		}
		return int64(v), true
	case int:
		return int64(v), true
	}
	return 0, false
}

func getData(d map[string]any, key string) ([]byte, bool) {
	b, ok := d[key].([]byte)
	return b, ok
}

func getDict(d map[string]any, key string) (map[string]any, bool) {
	m, ok := d[key].(map[string]any)
	return m, ok
}

func getArray(d map[string]any, key string) ([]any, bool) {
	a, ok := d[key].([]any)
	return a, ok
}

func present(d map[string]any, key string) bool {
	_, ok := d[key]
	return ok
}

// copyValue deep-copies a decoded plist value so that snapshots handed
// to tests cannot alias the device's state.
func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return copyDict(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	case []byte:
		return bytes.Clone(x)
	case time.Time, string, bool, int64, uint64, int, float32, float64, nil:
		return x
	default:
		// decodeDict yields only the types above.
		return x
	}
}

func copyDict(d map[string]any) map[string]any {
	if d == nil {
		return nil
	}
	out := make(map[string]any, len(d))
	for k, v := range d {
		out[k] = copyValue(v)
	}
	return out
}
