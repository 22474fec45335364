package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/keyward/keyward/cluster/certs"
)

// maxDays bounds --days: a hundred years.
const maxDays = 36525

// tlsCommand is one `keyward tls` subcommand, named by two words ("ca create").
type tlsCommand struct {
	name     string
	synopsis string // the flags, as shown in the usage line
	short    string // what it does, in the list of subcommands
	summary  string // what it does, a few lines
	// setup registers the command's flags on fs and returns its action, which runs once the
	// command line is parsed.
	setup func(fs *flag.FlagSet) func(x cli) error
}

// tlsCommands lists the `keyward tls` subcommands.
func tlsCommands() []tlsCommand {
	return []tlsCommand{caCreateCommand(), certCreateCommand()}
}

// tls is the `keyward tls` command.
func (x cli) tls(args []string) int {
	if len(args) == 0 {
		x.tlsUsage(x.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		x.tlsUsage(x.stdout)
		return 0
	}
	if len(args) >= 2 {
		for _, tc := range tlsCommands() {
			if tc.name == args[0]+" "+args[1] {
				return x.runTLSCommand(tc, args[2:])
			}
		}
	}
	group := false
	for _, tc := range tlsCommands() {
		group = group || strings.HasPrefix(tc.name, args[0]+" ")
	}
	switch {
	case group && len(args) >= 2 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help"):
		x.tlsUsage(x.stdout)
		return 0
	case group && len(args) == 1:
		fmt.Fprintf(x.stderr, "error: missing subcommand after %q\n\n", "tls "+args[0])
	default:
		fmt.Fprintf(x.stderr, "error: unknown tls subcommand %q\n\n", strings.Join(args[:min(len(args), 2)], " "))
	}
	x.tlsUsage(x.stderr)
	return 2
}

// tlsUsage prints the usage of `keyward tls` to w.
func (x cli) tlsUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: keyward tls <subcommand> [flags]\n\nSubcommands:")
	for _, tc := range tlsCommands() {
		fmt.Fprintf(w, "  %-12s %s\n", tc.name, tc.short)
	}
	fmt.Fprintln(w, "\nRun \"keyward tls <subcommand> --help\" for its flags.")
}

// runTLSCommand parses args for tc, runs it and returns the exit status.
func (x cli) runTLSCommand(tc tlsCommand, args []string) int {
	fs := flag.NewFlagSet("keyward tls "+tc.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	act := tc.setup(fs)
	pos, err := parseInterleaved(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		x.tlsCommandUsage(x.stdout, tc, fs)
		return 0
	case err != nil:
		return x.tlsUsageFailure(tc, fs, err.Error())
	case len(pos) > 0:
		return x.tlsUsageFailure(tc, fs, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	err = act(x)
	if ue, ok := errors.AsType[*usageError](err); ok {
		return x.tlsUsageFailure(tc, fs, ue.msg)
	}
	if err != nil {
		x.printError(err)
		return 1
	}
	return 0
}

// tlsUsageFailure reports a command-line mistake with the usage of tc and returns status 2.
func (x cli) tlsUsageFailure(tc tlsCommand, fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(x.stderr, "error: %s\n\n", msg)
	x.tlsCommandUsage(x.stderr, tc, fs)
	return 2
}

// tlsCommandUsage prints the usage of tc to w.
func (x cli) tlsCommandUsage(w io.Writer, tc tlsCommand, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: keyward tls %s %s\n\n%s\n\nFlags:\n", tc.name, tc.synopsis, tc.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// daysFlag registers --days on fs with default def.
func daysFlag(fs *flag.FlagSet, def int) func() (time.Duration, error) {
	days := fs.Int("days", def, "validity in `DAYS` from now")
	return func() (time.Duration, error) {
		if *days < 1 || *days > maxDays {
			return 0, usagef("--days must be from 1 to %d, not %d", maxDays, *days)
		}
		return time.Duration(*days) * 24 * time.Hour, nil
	}
}

// caCreateCommand is `keyward tls ca create`.
func caCreateCommand() tlsCommand {
	return tlsCommand{
		name:     "ca create",
		synopsis: "[--dir DIR] [--name NAME] [--common-name CN] [--days N]",
		short:    "create a cluster CA: a self-signed certificate and its key",
		summary: "Creates a cluster CA: a self-signed ECDSA P-256 certificate DIR/NAME.pem and its key\n" +
			"DIR/NAME-key.pem (mode 0600). Existing files are never overwritten. Keep the key offline\n" +
			"if you can: anyone holding it can issue certificates that the cluster trusts.",
		setup: func(fs *flag.FlagSet) func(x cli) error {
			dir := fs.String("dir", ".", "write the files into `DIR`, created if missing")
			name := fs.String("name", "keyward-ca", "file `NAME`: NAME.pem and NAME-key.pem")
			cn := fs.String("common-name", "keyward cluster CA", "the CA's subject common name `CN`")
			validity := daysFlag(fs, 3650)
			return func(x cli) error {
				v, err := validity()
				if err != nil {
					return err
				}
				certPath, keyPath, err := certs.CreateCA(*dir, *name, *cn, v)
				if err != nil {
					return err
				}
				return say(x.stdout, "Wrote CA certificate %s\nWrote CA key %s\n", certPath, keyPath)
			}
		},
	}
}

// certCreateCommand is `keyward tls cert create`.
func certCreateCommand() tlsCommand {
	return tlsCommand{
		name: "cert create",
		synopsis: "--ca CA.pem --ca-key CA-key.pem --name NAME [--dir DIR] [--common-name CN]\n" +
			"       [--dns NAME,...] [--ip ADDR,...] [--uri URI] [--days N] [--server] [--client]",
		short: "issue a node, server or client certificate from the CA",
		summary: "Issues an ECDSA P-256 certificate signed by the CA and writes it as DIR/NAME.pem and its key\n" +
			"as DIR/NAME-key.pem (mode 0600). Existing files are never overwritten. Without --server or\n" +
			"--client it is a node certificate, usable as both. The certificate expires no later than\n" +
			"the CA. --dns and --ip take comma-separated lists; all three SAN flags may be repeated.",
		setup: func(fs *flag.FlagSet) func(x cli) error {
			var r certs.CertRequest
			fs.StringVar(&r.CACert, "ca", "", "the CA certificate `FILE` (required)")
			fs.StringVar(&r.CAKey, "ca-key", "", "the CA key `FILE` (required)")
			fs.StringVar(&r.Name, "name", "", "file `NAME`: NAME.pem and NAME-key.pem (required)")
			fs.StringVar(&r.Dir, "dir", ".", "write the files into `DIR`, created if missing")
			fs.StringVar(&r.CommonName, "common-name", "", "subject common name `CN` (default NAME)")
			fs.Func("dns", "DNS `NAMES` to certify, comma-separated", func(v string) error {
				r.DNSNames = append(r.DNSNames, splitList(v)...)
				return nil
			})
			fs.Func("ip", "IP `ADDRESSES` to certify, comma-separated", func(v string) error {
				for _, s := range splitList(v) {
					ip := net.ParseIP(s)
					if ip == nil {
						return fmt.Errorf("not an IP address: %q", s)
					}
					r.IPs = append(r.IPs, ip)
				}
				return nil
			})
			fs.Func("uri", "a `URI` to certify, such as spiffe://TRUST-DOMAIN/PATH", func(v string) error {
				u, err := url.Parse(v)
				if err != nil || !u.IsAbs() {
					return fmt.Errorf("not an absolute URI: %q", v)
				}
				r.URIs = append(r.URIs, u)
				return nil
			})
			validity := daysFlag(fs, 365)
			fs.BoolVar(&r.Server, "server", false, "certify for server authentication")
			fs.BoolVar(&r.Client, "client", false, "certify for client authentication")
			return func(x cli) error {
				var err error
				switch {
				case r.CACert == "":
					return usagef("--ca is required")
				case r.CAKey == "":
					return usagef("--ca-key is required")
				case r.Name == "":
					return usagef("--name is required")
				}
				if r.Validity, err = validity(); err != nil {
					return err
				}
				if !r.Server && !r.Client {
					r.Server, r.Client = true, true
				}
				certPath, keyPath, err := certs.CreateCert(r)
				if err != nil {
					return err
				}
				return say(x.stdout, "Wrote certificate %s\nWrote key %s\n", certPath, keyPath)
			}
		},
	}
}

// splitList splits a comma-separated flag value, dropping blanks around and between items.
func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
