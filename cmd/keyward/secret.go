package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/keyward/keyward/api/client"
)

// defaultAddr is the server address used when neither --addr nor $KEYWARD_ADDR is set.
const defaultAddr = "http://127.0.0.1:8200"

// subcommand is one subcommand of a command group such as `keyward secret`.
type subcommand struct {
	group    string // the command it belongs to; "" is "secret"
	name     string
	synopsis string // arguments after the name, as shown in the usage line
	summary  string // what it does, a few lines
	minArgs  int    // positional arguments
	maxArgs  int
	// extraHint, if set, follows the complaint about an extra positional argument.
	extraHint string
	// setup registers the subcommand's own flags on fs and returns its action, which runs
	// once the command line is parsed and checked.
	setup func(fs *flag.FlagSet) action
	// offline subcommands talk to no server: they get neither the client flags nor -o, and
	// their session has no client.
	offline bool
}

// command returns "keyward GROUP NAME".
func (sc subcommand) command() string {
	return "keyward " + cmp.Or(sc.group, "secret") + " " + sc.name
}

// action runs a parsed subcommand with its positional arguments.
type action func(ctx context.Context, s *session, args []string) error

// session is what an action works with.
type session struct {
	cli
	c    *client.Client // nil for offline subcommands
	json bool           // -o json
}

// usageError is a command-line mistake: it exits with status 2 after the usage text.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a *usageError.
func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// secretCommands lists the `keyward secret` subcommands.
func secretCommands() []subcommand {
	return []subcommand{putCommand(), getCommand(), listCommand(), versionsCommand(),
		destroyCommand(), deleteCommand(), restoreCommand()}
}

// secret is the `keyward secret` command.
func (x cli) secret(args []string) int {
	if len(args) == 0 {
		x.secretUsage(x.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		x.secretUsage(x.stdout)
		return 0
	}
	for _, sc := range secretCommands() {
		if sc.name == args[0] {
			return x.runSubcommand(sc, args[1:])
		}
	}
	fmt.Fprintf(x.stderr, "error: unknown secret subcommand %q\n\n", args[0])
	x.secretUsage(x.stderr)
	return 2
}

// secretUsage prints the usage of `keyward secret` to w.
func (x cli) secretUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: keyward secret <subcommand> [arguments]\n\nSubcommands:")
	for _, sc := range secretCommands() {
		fmt.Fprintf(w, "  %-9s %s\n", sc.name, firstLine(sc.summary))
	}
	fmt.Fprintln(w, "\nRun \"keyward secret <subcommand> --help\" for its flags.")
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// runSubcommand parses args for sc, runs it and returns the exit status.
func (x cli) runSubcommand(sc subcommand, args []string) int {
	fs := flag.NewFlagSet(sc.command(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var cf clientFlags
	output := new("text")
	if !sc.offline {
		cf.register(fs)
		fs.StringVar(output, "o", "text", "output format: text or json")
	}
	act := sc.setup(fs)

	pos, err := parseInterleaved(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		x.subcommandUsage(x.stdout, sc, fs)
		return 0
	case err != nil:
		return x.usageFailure(sc, fs, err.Error())
	case len(pos) < sc.minArgs:
		return x.usageFailure(sc, fs, "missing "+strings.Fields(sc.synopsis)[0])
	case len(pos) > sc.maxArgs:
		msg := fmt.Sprintf("unexpected argument %q", pos[sc.maxArgs])
		if sc.extraHint != "" {
			msg += ": " + sc.extraHint
		}
		return x.usageFailure(sc, fs, msg)
	case *output != "text" && *output != "json":
		return x.usageFailure(sc, fs, fmt.Sprintf("-o must be text or json, not %q", *output))
	}

	var c *client.Client
	if !sc.offline {
		cf.resolve(fs, x.getenv)
		if c, err = cf.client(); err != nil {
			fmt.Fprintf(x.stderr, "error: %v\n", err)
			if _, ok := errors.AsType[*usageError](err); ok {
				return 2
			}
			return 1
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err = act(ctx, &session{cli: x, c: c, json: *output == "json"}, pos)
	if ue, ok := errors.AsType[*usageError](err); ok {
		return x.usageFailure(sc, fs, ue.msg)
	}
	if err != nil {
		x.printError(err)
		return 1
	}
	return 0
}

// usageFailure reports a command-line mistake with the usage of sc and returns status 2.
func (x cli) usageFailure(sc subcommand, fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(x.stderr, "error: %s\n\n", msg)
	x.subcommandUsage(x.stderr, sc, fs)
	return 2
}

// subcommandUsage prints the usage of sc to w.
func (x cli) subcommandUsage(w io.Writer, sc subcommand, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n\nFlags may come before or after the arguments; \"--\" ends them.\n\nFlags:\n",
		sc.command(), sc.synopsis, sc.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// printError prints err as "error: code: message" for API errors, "error: err" otherwise.
func (x cli) printError(err error) {
	ae, ok := errors.AsType[*client.APIError](err)
	if !ok {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		return
	}
	msg := fmt.Sprintf("error: %s: %s", ae.Code, ae.Message)
	if ae.Code == "cas_mismatch" && ae.CurrentVersion != nil {
		msg += fmt.Sprintf(" (current version %d)", *ae.CurrentVersion)
	}
	fmt.Fprintln(x.stderr, msg)
}
