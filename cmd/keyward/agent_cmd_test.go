package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentCommandUsage: configuration mistakes exit with status 2 and say what is wrong;
// flags override the config file.
func TestAgentCommandUsage(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(cfg, []byte(`{"addr":"http://127.0.0.1:1","auth":{"method":"token","token_file":"t"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full.json")
	if err := os.WriteFile(full, []byte(`{"addr":"http://127.0.0.1:1","auth":{"method":"token","token_file":"t"},"secrets":[{"path":"a"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "addr names no cluster node"},
		{[]string{"agent", "--config", filepath.Join(dir, "missing.json")}, "config file"},
		{[]string{"agent", "--config", cfg}, "nothing to do"},
		{[]string{"agent", "--config", full, "--auth", "approle"}, "auth method approle needs"},
		{[]string{"agent", "--config", full, "--listen", "0.0.0.0:8300"}, "not a loopback address"},
		{[]string{"agent", "extra"}, "unexpected argument"},
	} {
		code, _, stderr := runCLI(nil, "", tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if code, _, stderr := runCLI(nil, "", "help", "agent"); code != 0 || !strings.Contains(stderr, "-secret-id-file") {
		t.Errorf("help agent: %d %q", code, stderr)
	}
}
