package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
	"time"

	"github.com/keyward/keyward/api/client"
)

// ErrNotJSONObject: the field template function was given a value that is not a JSON object,
// or the object has no such key.
var ErrNotJSONObject = errors.New("secret value is not a JSON object with that key")

// getFunc reads a secret through the cache.
type getFunc func(ctx context.Context, path string, sel client.Selector) (*client.Secret, client.CacheInfo, error)

// placeholderFuncs are the template functions at parse time; render binds the real ones.
var placeholderFuncs = template.FuncMap{
	"secret":        func(string) (string, error) { return "", nil },
	"secretVersion": func(string, uint64) (string, error) { return "", nil },
	"secretState":   func(string, string) (string, error) { return "", nil },
	"field":         field,
}

// parseTemplate parses the template of t: its Source file or its Contents.
func parseTemplate(t TemplateConfig) (*template.Template, error) {
	text := t.Contents
	name := t.Destination
	if t.Source != "" {
		b, err := os.ReadFile(t.Source)
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		text, name = string(b), t.Source
	}
	tm, err := template.New(filepath.Base(name)).Option("missingkey=error").Funcs(placeholderFuncs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return tm, nil
}

// rendered is the outcome of one render.
type rendered struct {
	out []byte
	// stale: at least one value came from the cache while the cluster was unavailable.
	stale bool
}

// render executes tm with the secret functions bound to get. Any secret that cannot be read
// (never cached and the cluster unavailable, not found, forbidden) fails the render.
func render(ctx context.Context, tm *template.Template, get getFunc) (rendered, error) {
	var r rendered
	read := func(path string, sel client.Selector) (string, error) {
		s, info, err := get(ctx, path, sel)
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", path, err)
		}
		r.stale = r.stale || info.Stale
		return string(s.Value), nil
	}
	t, err := tm.Clone()
	if err != nil {
		return r, err
	}
	t.Funcs(template.FuncMap{
		"secret":        func(path string) (string, error) { return read(path, client.Selector{}) },
		"secretVersion": func(path string, v uint64) (string, error) { return read(path, client.Selector{Version: v}) },
		"secretState":   func(path, state string) (string, error) { return read(path, client.Selector{State: state}) },
	})
	var buf bytes.Buffer
	if err := t.Execute(&buf, nil); err != nil {
		return r, err
	}
	r.out = buf.Bytes()
	return r, nil
}

// field returns the member key of the JSON object value: a string as is, anything else as
// JSON. Use it as {{ secret "prod/db" | field "password" }}.
func field(key, value string) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(value), &obj); err != nil {
		// Never wrap the decoder's error: it may quote the value.
		return "", fmt.Errorf("field %q: %w", key, ErrNotJSONObject)
	}
	raw, ok := obj[key]
	if !ok {
		return "", fmt.Errorf("field %q: %w", key, ErrNotJSONObject)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	return string(raw), nil
}

// writeIfChanged makes file hold data with mode perm. It reports whether the content changed;
// an unchanged file keeps its bytes (its mode is corrected if needed).
func writeIfChanged(file string, data []byte, perm os.FileMode) (bool, error) {
	old, err := os.ReadFile(file)
	if err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm() != perm {
			return false, os.Chmod(file, perm)
		}
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, writeFileAtomic(file, data, perm)
}

// writeFileAtomic replaces file with data so that readers see the old content or the new one,
// never a part: it writes a temporary file in the same directory with mode perm, syncs it,
// renames it over file and syncs the directory. On failure file is untouched.
func writeFileAtomic(file string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(file)
	f, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// runCommand runs argv (no shell) with its output on out, and kills it after timeout.
func runCommand(ctx context.Context, argv []string, timeout time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("command %s: timed out after %s: %w", argv[0], timeout, err)
		}
		return fmt.Errorf("command %s: %w", argv[0], err)
	}
	return nil
}
