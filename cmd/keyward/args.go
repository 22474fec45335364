package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/certs"
)

// parseInterleaved parses the flags of fs wherever they stand in args and returns the
// positional arguments in order, so "get PATH --state PREVIOUS" and "get --state PREVIOUS PATH"
// mean the same. "--" ends the flags; a lone "-" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			if takesValue(fs, a) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return append(fs.Args(), pos...), nil
}

// takesValue reports whether the flag argument a ("-name" or "--name") names a flag of fs that
// takes its value from the next argument.
func takesValue(fs *flag.FlagSet, a string) bool {
	name := strings.TrimPrefix(a[1:], "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// clientFlags are the flags every command that talks to a server shares. Those not given on
// the command line come from the environment.
type clientFlags struct {
	addr, token, caCert, clientCert, clientKey string
	set                                        map[string]bool // given on the command line
}

// register adds --addr, --token, --ca-cert, --client-cert and --client-key to fs.
func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "server `URL` (default $KEYWARD_ADDR or "+defaultAddr+"); of a comma-separated list the first is used")
	fs.StringVar(&f.token, "token", "", "API token (default $KEYWARD_TOKEN)")
	fs.StringVar(&f.caCert, "ca-cert", "", "PEM `file` of the CA that signed the server's certificate, for https (default $KEYWARD_CACERT, else the system roots)")
	fs.StringVar(&f.clientCert, "client-cert", "", "PEM `file` of a client certificate to present over https (default $KEYWARD_CLIENT_CERT)")
	fs.StringVar(&f.clientKey, "client-key", "", "PEM `file` of the client certificate's key (default $KEYWARD_CLIENT_KEY)")
}

// resolve fills the flags that fs did not see on the command line from the environment.
func (f *clientFlags) resolve(fs *flag.FlagSet, getenv func(string) string) {
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	for name, v := range map[string]struct {
		dst *string
		env string
	}{
		"addr": {&f.addr, "KEYWARD_ADDR"}, "token": {&f.token, "KEYWARD_TOKEN"},
		"ca-cert": {&f.caCert, "KEYWARD_CACERT"}, "client-cert": {&f.clientCert, "KEYWARD_CLIENT_CERT"},
		"client-key": {&f.clientKey, "KEYWARD_CLIENT_KEY"},
	} {
		if !f.set[name] {
			*v.dst = getenv(v.env)
		}
	}
	if !f.set["addr"] && f.addr == "" {
		f.addr = defaultAddr
	}
}

// firstAddr returns the first non-blank address of a comma-separated list.
func firstAddr(list string) string {
	for a := range strings.SplitSeq(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			return a
		}
	}
	return ""
}

// client returns a client for the first address of --addr. An https address gets TLS with the
// CA and client certificate of the flags; an http one refuses TLS flags given on the command
// line (those from the environment are ignored). A bad address or flag combination is a
// *usageError; a certificate that cannot be loaded is not.
func (f *clientFlags) client() (*client.Client, error) {
	addr := firstAddr(f.addr)
	if addr == "" {
		return nil, usagef("--addr names no server")
	}
	opts := []client.Option{client.WithToken(f.token)}
	if strings.HasPrefix(strings.ToLower(addr), "https://") {
		if (f.clientCert == "") != (f.clientKey == "") {
			return nil, usagef("--client-cert and --client-key go together")
		}
		cfg, err := certs.ClientTLS(f.caCert, f.clientCert, f.clientKey)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		opts = append(opts, client.WithTLSConfig(cfg))
	} else {
		for _, name := range []string{"ca-cert", "client-cert", "client-key"} {
			if f.set[name] {
				return nil, usagef("--%s needs an https:// server address, not %q", name, addr)
			}
		}
	}
	c, err := client.New(addr, opts...)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return c, nil
}
