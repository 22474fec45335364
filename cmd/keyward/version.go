package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the `keyward version` command.
func (x cli) version(args []string) int {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			return x.help([]string{"version"})
		}
		fmt.Fprintf(x.stderr, "error: unexpected argument %q\nUsage: keyward version\n", args[0])
		return 2
	}
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	fmt.Fprintf(x.stdout, "keyward %s%s %s\n", v, rev, runtime.Version())
	return 0
}
