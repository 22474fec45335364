package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/keyward/keyward/api/client"
)

// identityGroup returns the command group `keyward NAME` of the identity, RBAC and audit
// commands (`keyward auth` has groups of its own, see auth); ok is false for other names.
func identityGroup(name string) (g commandGroup, ok bool) {
	for _, mk := range []func() commandGroup{loginGroup, tokenGroup, userGroup, serviceGroup, roleGroup,
		policyGroup, approleGroup, auditGroup, rotationGroup} {
		if g = mk(); g.name == name {
			return g, true
		}
	}
	return commandGroup{}, false
}

// loginGroup is `keyward login`.
func loginGroup() commandGroup {
	return commandGroup{
		name: "login",
		summary: "Logs in and prints a token to use as $KEYWARD_TOKEN (or --token). Passwords, secret ids and\n" +
			"JWTs are read from stdin or a file, never from an argument.",
		commands: []subcommand{loginUserpassCommand(), loginAppRoleCommand(), loginJWTCommand()},
	}
}

func loginUserpassCommand() subcommand {
	return subcommand{
		name:     "userpass",
		synopsis: "USER [--password-file F] [-o json]",
		summary: "Logs USER in with a password read from stdin or --password-file.\n" +
			"One trailing line ending is dropped from the password.",
		minArgs: 1, maxArgs: 1,
		extraHint: "the password is read from stdin or --password-file, never from an argument",
		setup: func(fs *flag.FlagSet) action {
			file := fs.String("password-file", "", "read the password from file `F` (\"-\": stdin)")
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("USER is empty")
				}
				pw, err := s.readCredential("password", *file, "--password-file", true)
				if err != nil {
					return err
				}
				s.c.SetToken("") // a login presents credentials, not an old token
				l, err := s.c.LoginUserpass(ctx, args[0], pw)
				if err != nil {
					return err
				}
				return s.printLogin(l, "")
			}
		},
	}
}

func loginAppRoleCommand() subcommand {
	return subcommand{
		name:     "approle",
		synopsis: "--role-id ID [--secret-id-file F] [-o json]",
		summary: "Logs a workload in with an AppRole's role id and a secret id.\n" +
			"The secret id (see \"keyward approle secret-id\") is read from stdin or --secret-id-file.",
		extraHint: "the secret id is read from stdin or --secret-id-file, never from an argument",
		setup: func(fs *flag.FlagSet) action {
			roleID := fs.String("role-id", "", "the AppRole's role `ID` (required)")
			file := fs.String("secret-id-file", "", "read the secret id from file `F` (\"-\": stdin)")
			return func(ctx context.Context, s *session, _ []string) error {
				if *roleID == "" {
					return usagef("--role-id is required")
				}
				sid, err := s.readCredential("secret id", *file, "--secret-id-file", false)
				if err != nil {
					return err
				}
				s.c.SetToken("")
				l, err := s.c.LoginAppRole(ctx, *roleID, sid)
				if err != nil {
					return err
				}
				return s.printLogin(l, "")
			}
		},
	}
}

func loginJWTCommand() subcommand {
	return subcommand{
		name:     "jwt",
		synopsis: "[--jwt-file F] [-o json]",
		summary: "Logs in with a JWT signed by a trusted issuer.\n" +
			"The JWT is read from stdin or --jwt-file; issuers are configured with \"keyward auth jwt set\".",
		extraHint: "the JWT is read from stdin or --jwt-file, never from an argument",
		setup: func(fs *flag.FlagSet) action {
			file := fs.String("jwt-file", "", "read the JWT from file `F` (\"-\": stdin), such as a projected service account token")
			return func(ctx context.Context, s *session, _ []string) error {
				jwt, err := s.readCredential("JWT", *file, "--jwt-file", false)
				if err != nil {
					return err
				}
				s.c.SetToken("")
				l, err := s.c.LoginJWT(ctx, jwt)
				if err != nil {
					return err
				}
				return s.printLogin(l, "")
			}
		},
	}
}

// operatorInitCommand is `keyward operator init`.
func operatorInitCommand() subcommand {
	return subcommand{
		name:     "init",
		synopsis: "[--admin NAME] [--password-stdin] [-o json]",
		summary: "Initializes a new cluster: creates the admin user and prints its token, once.\n" +
			"The token does not expire until revoked and is shown only this once. With --password-stdin\n" +
			"the admin can also log in with \"keyward login userpass\".",
		setup: func(fs *flag.FlagSet) action {
			admin := fs.String("admin", "admin", "the admin user's `NAME`")
			pwStdin := fs.Bool("password-stdin", false, "read a password for the admin from stdin")
			return func(ctx context.Context, s *session, _ []string) error {
				if *admin == "" {
					return usagef("--admin is empty")
				}
				pw := ""
				if *pwStdin {
					var err error
					if pw, err = s.readCredential("password", "", "", true); err != nil {
						return err
					}
				}
				s.c.SetToken("")
				l, err := s.c.Init(ctx, *admin, pw)
				if err != nil {
					return err
				}
				return s.printLogin(l, "Initialized the cluster. This is the admin token; it is shown only once, so keep it safe.\n\n")
			}
		},
	}
}

// maxCredentialBytes bounds a password, token, secret id or JWT read from stdin or a file.
const maxCredentialBytes = 64 << 10

// readCredential reads a password, token, secret id or JWT (what) from file, or from stdin
// when file is "" or "-". fileFlag names the flag that gives the file ("" when there is
// none). It refuses a terminal stdin rather than wait for typing, and an empty credential. A
// password loses one trailing line ending; anything else loses surrounding white space.
func (s *session) readCredential(what, file, fileFlag string, password bool) (string, error) {
	var r io.Reader = s.stdin
	name := "stdin"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
		defer f.Close()
		r, name = f, file
	} else if r == nil || isTerminal(s.stdin) {
		if fileFlag != "" {
			return "", usagef("no %s: pipe it on stdin or use %s (stdin is a terminal)", what, fileFlag)
		}
		return "", usagef("no %s: pipe it on stdin (stdin is a terminal)", what)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCredentialBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s from %s: %w", what, name, err)
	}
	if len(b) > maxCredentialBytes {
		return "", fmt.Errorf("%s from %s is over %d bytes", what, name, maxCredentialBytes)
	}
	v := string(b)
	if password {
		v = strings.TrimSuffix(strings.TrimSuffix(v, "\n"), "\r")
	} else {
		v = strings.TrimSpace(v)
	}
	if v == "" {
		return "", usagef("the %s from %s is empty", what, name)
	}
	return v, nil
}

// printLogin prints the answer of init or a login: the token and an export line for the shell
// in text, the answer itself with -o json. intro, if set, comes first in text.
func (s *session) printLogin(l *client.LoginResponse, intro string) error {
	if s.json {
		return printJSON(s.stdout, l)
	}
	expires := "never"
	if !l.ExpiresAt.IsZero() {
		expires = timestamp(l.ExpiresAt)
	}
	if err := say(s.stdout, "%s", intro); err != nil {
		return err
	}
	rows := [][]any{{"Accessor:", l.Accessor}, {"Principal:", l.Principal}, {"Expires:", expires}}
	if err := table(s.stdout, "Token:\t"+l.Token, rows); err != nil {
		return err
	}
	return say(s.stdout, "\nexport KEYWARD_TOKEN=%s\n", shellQuote(l.Token))
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_.,:+=@%/-]+$`)

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// principalTypes are the principal types in the order they are listed.
var principalTypes = []string{client.PrincipalUser, client.PrincipalService, client.PrincipalRole}

// parsePrincipal parses "TYPE/ID" (TYPE case-insensitive). With typeOnly, a bare TYPE is taken
// too, with an empty id.
func parsePrincipal(s string, typeOnly bool) (typ, id string, err error) {
	t, id, found := strings.Cut(s, "/")
	typ = strings.ToUpper(t)
	if !slices.Contains(principalTypes, typ) || (found && id == "") || (!found && !typeOnly) {
		return "", "", usagef("principal must be TYPE/ID with TYPE one of USER, SERVICE or ROLE, not %q", s)
	}
	return typ, id, nil
}

// nameList collects a repeatable flag whose values may also be comma-separated, in order and
// without repeats.
type nameList []string

func (l *nameList) String() string { return strings.Join(*l, ",") }

func (l *nameList) Set(v string) error {
	for n := range strings.SplitSeq(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return fmt.Errorf("empty name in %q", v)
		}
		if !slices.Contains(*l, n) {
			*l = append(*l, n)
		}
	}
	return nil
}

// yesNo formats a flag for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// joinOrDash joins names with commas, or returns "-" when there are none.
func joinOrDash(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}
