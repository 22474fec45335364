package jwtauth

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// splitPointer splits a JSON Pointer (RFC 6901) such as "/kubernetes.io/namespace"
// into unescaped reference tokens.
func splitPointer(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("JSON pointer must start with '/'")
	}
	parts := strings.Split(p[1:], "/")
	for n, part := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(part, "~0", ""), "~1", ""), "~") {
			return nil, errors.New("JSON pointer has an invalid '~' escape")
		}
		parts[n] = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// lookupClaim finds a claim by top-level name or, if name starts with "/",
// by JSON Pointer. Array elements are addressed by decimal index.
func lookupClaim(claims map[string]any, name string) (any, bool) {
	if !strings.HasPrefix(name, "/") {
		v, ok := claims[name]
		return v, ok
	}
	parts, err := splitPointer(name)
	if err != nil {
		return nil, false
	}
	var cur any = claims
	for _, part := range parts {
		switch node := cur.(type) {
		case map[string]any:
			v, ok := node[part]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			idx, err := strconv.Atoi(part)
			if err != nil || idx < 0 || idx >= len(node) || strconv.Itoa(idx) != part {
				return nil, false
			}
			cur = node[idx]
		default:
			return nil, false
		}
	}
	return cur, true
}

// boundMatches reports whether a claim value satisfies a bound value: equal,
// or, if want ends in "*", prefixed by the rest. Strings, booleans and
// numbers are compared by their text; an array matches if any scalar element
// does. Objects and null never match.
func boundMatches(v any, want string) bool {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if s, ok := scalarText(e); ok && textMatches(s, want) {
				return true
			}
		}
		return false
	}
	s, ok := scalarText(v)
	return ok && textMatches(s, want)
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

func textMatches(s, want string) bool {
	if prefix, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return s == want
}
