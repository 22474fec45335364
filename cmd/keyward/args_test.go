package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		pos       []string
		state     string
		purge     bool
		desc      string
		wantError bool
	}{
		{args: []string{"prod/x", "--state", "PREVIOUS"}, pos: []string{"prod/x"}, state: "PREVIOUS"},
		{args: []string{"--state", "PREVIOUS", "prod/x"}, pos: []string{"prod/x"}, state: "PREVIOUS"},
		{args: []string{"-state=CURRENT", "a", "--purge", "b"}, pos: []string{"a", "b"}, state: "CURRENT", purge: true},
		{args: []string{"a", "--", "--purge", "-"}, pos: []string{"a", "--purge", "-"}},
		{args: []string{"--desc", "--", "a"}, pos: []string{"a"}, desc: "--"},
		{args: []string{"--desc", "-x", "a", "--purge=false"}, pos: []string{"a"}, desc: "-x"},
		{args: []string{"a", "--nope"}, wantError: true},
		{args: []string{"a", "--state"}, wantError: true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		state := fs.String("state", "", "")
		purge := fs.Bool("purge", false, "")
		desc := fs.String("desc", "", "")
		pos, err := parseInterleaved(fs, tc.args)
		if tc.wantError {
			if err == nil {
				t.Errorf("%q: no error", tc.args)
			}
			continue
		}
		if err != nil || !slices.Equal(pos, tc.pos) || *state != tc.state || *purge != tc.purge || *desc != tc.desc {
			t.Errorf("%q: pos %q state %q purge %v desc %q err %v", tc.args, pos, *state, *purge, *desc, err)
		}
	}
}
