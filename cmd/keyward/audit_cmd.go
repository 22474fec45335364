package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/store"
)

// auditGroup is `keyward audit`.
func auditGroup() commandGroup {
	return commandGroup{
		name: "audit",
		summary: "Reads and checks the audit log (admins). Every access, allowed or denied, is recorded; the\n" +
			"committed records form a hash chain of batches, so a changed record shows.",
		commands: []subcommand{auditListCommand(), auditExportCommand(), auditVerifyCommand()},
	}
}

// auditFormats are the output formats of `keyward audit list`.
var auditFormats = []string{"table", "json", "jsonl"}

func auditListCommand() subcommand {
	return subcommand{
		name: "list",
		synopsis: "[--path P] [--principal ID] [--action A] [--outcome success|failure] [--from T] [--to T] " +
			"[--limit N] [--after SEQ] [--all] [--format table|json|jsonl]",
		summary: "Lists committed audit records in order, as SEQ TIME PRINCIPAL ACTION PATH OUTCOME IP REASON.\n" +
			"--from and --to are RFC 3339 times or durations before now, such as 24h; --from is inclusive,\n" +
			"--to exclusive. --format jsonl prints one record per line; -o json is --format json.",
		setup: func(fs *flag.FlagSet) action {
			var q client.AuditQuery
			fs.StringVar(&q.Path, "path", "", "only records of the secret at `P`")
			fs.StringVar(&q.Principal, "principal", "", "only records of the principal `ID` (the id alone, such as alice)")
			act := fs.String("action", "", "only records of action `A`, such as READ, WRITE, LOGIN or GRANT")
			fs.StringVar(&q.Outcome, "outcome", "", "only successes or only failures: `success` or failure")
			from := fs.String("from", "", "only records at or after `T`: an RFC 3339 time, or a duration before now")
			to := fs.String("to", "", "only records before `T`: an RFC 3339 time, or a duration before now")
			fs.IntVar(&q.Limit, "limit", 0, "records per page, 1..1000 (default 100; 1000 with --all)")
			fs.Uint64Var(&q.After, "after", 0, "start after record `SEQ` (the cursor a previous page printed)")
			all := fs.Bool("all", false, "follow the pages to the end")
			format := fs.String("format", "", "output `format`: table, json or jsonl (default table, or json with -o json)")
			return func(ctx context.Context, s *session, _ []string) error {
				f := *format
				switch {
				case f == "" && s.json:
					f = "json"
				case f == "":
					f = "table"
				case !slices.Contains(auditFormats, f):
					return usagef("--format must be table, json or jsonl, not %q", f)
				case s.json && f != "json":
					return usagef("-o json and --format %s disagree", f)
				}
				if q.Outcome != "" && q.Outcome != "success" && q.Outcome != "failure" {
					return usagef("--outcome must be success or failure, not %q", q.Outcome)
				}
				if q.Limit < 0 || q.Limit > 1000 {
					return usagef("--limit must be 1..1000")
				}
				q.Action = strings.ToUpper(*act)
				now := time.Now()
				var err error
				if *from != "" {
					if q.From, err = parseWhen("--from", *from, now, true); err != nil {
						return err
					}
				}
				if *to != "" {
					if q.To, err = parseWhen("--to", *to, now, true); err != nil {
						return err
					}
				}
				if *all && q.Limit == 0 {
					q.Limit = 1000
				}
				return s.auditList(ctx, q, *all, f)
			}
		},
	}
}

// auditList prints one page of audit records, or every page from q.After on with all, in
// format f. jsonl prints each page as it comes; the others print once at the end.
func (s *session) auditList(ctx context.Context, q client.AuditQuery, all bool, f string) error {
	enc := json.NewEncoder(s.stdout)
	enc.SetEscapeHTML(false)
	recs := []client.AuditRecord{}
	var next uint64
	for {
		page, n, err := s.c.AuditList(ctx, q)
		if err != nil {
			return err
		}
		next = n
		if f == "jsonl" {
			for i := range page {
				if err := enc.Encode(&page[i]); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
			}
		} else {
			recs = append(recs, page...)
		}
		if !all || next == 0 {
			break
		}
		if next <= q.After {
			return fmt.Errorf("audit list: the server repeated the cursor %d", next)
		}
		q.After = next
	}
	switch f {
	case "json":
		if err := printJSON(s.stdout, map[string]any{"records": recs, "next": next}); err != nil {
			return err
		}
	case "table":
		rows := make([][]any, 0, len(recs))
		for _, r := range recs {
			who := r.PrincipalID
			if r.PrincipalType != "" {
				who = r.PrincipalType + "/" + who
			}
			outcome := "success"
			if !r.Success {
				outcome = "failure"
			}
			rows = append(rows, []any{r.Seq, nanoTime(r.AccessedAt), orDash(who), r.Action, orDash(r.Path), outcome,
				orDash(r.IPAddress), orDash(r.Reason)})
		}
		if err := table(s.stdout, "SEQ\tTIME\tPRINCIPAL\tACTION\tPATH\tOUTCOME\tIP\tREASON", rows); err != nil {
			return err
		}
	}
	if next != 0 && f != "json" {
		fmt.Fprintf(s.stderr, "(more records follow: --after %d, or --all)\n", next)
	}
	return nil
}

func auditExportCommand() subcommand {
	return subcommand{
		name:     "export",
		synopsis: "FILE [-o json]",
		summary: "Exports the committed audit log to FILE as JSON lines.\n" +
			"Each batch header ({\"batch\":...}) is followed by its records ({\"record\":...}), in chain\n" +
			"order. It is written to FILE.tmp (mode 0600) first, then synced and renamed, so FILE is\n" +
			"either complete or untouched. Check it with \"keyward audit verify --file FILE\".",
		minArgs: 1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				file := args[0]
				if file == "" {
					return usagef("FILE is empty")
				}
				n, lines, err := saveAuditExport(ctx, s.c, file)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"file": file, "bytes": n, "lines": lines})
				}
				return say(s.stdout, "Wrote %d lines (%d bytes) of the audit log to %s\n", lines, n, file)
			}
		},
	}
}

// lineWriter counts the bytes and lines written through it and keeps the last byte.
type lineWriter struct {
	w            io.Writer
	bytes, lines int64
	last         byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	l.bytes += int64(n)
	l.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
	if n > 0 {
		l.last = p[n-1]
	}
	return n, err
}

// saveAuditExport streams the audit export into file.tmp, syncs it and renames it to file;
// on failure it removes file.tmp and leaves file as it was. It returns the bytes and lines
// written.
func saveAuditExport(ctx context.Context, c *client.Client, file string) (n, lines int64, err error) {
	lw := &lineWriter{}
	err = writeFileAtomic(file, "audit export", func(w io.Writer) error {
		lw.w = w
		if err := c.AuditExport(ctx, lw); err != nil {
			return err
		}
		if lw.bytes > 0 && lw.last != '\n' {
			return errors.New("audit export: the server's answer was cut short (no final line ending)")
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return lw.bytes, lw.lines, nil
}

func auditVerifyCommand() subcommand {
	return subcommand{
		name:     "verify",
		synopsis: "[--file EXPORT] [-o json]",
		summary: "Checks the hash chain of the audit log, or of an export of it with --file.\n" +
			"Prints OK with the counts of batches and records, or BROKEN with the first batch that does\n" +
			"not check out and then exits 1. Without --file the cluster checks its committed log; with\n" +
			"--file this command recomputes the chain of an export (\"keyward audit export\") itself,\n" +
			"talking to no server. The chain starts at the first batch present, which is not batch 1 once\n" +
			"--audit-retention has dropped older ones.",
		setup: func(fs *flag.FlagSet) action {
			file := fs.String("file", "", "check the export in `EXPORT` locally instead of asking the cluster")
			return func(ctx context.Context, s *session, _ []string) error {
				var rep client.ChainReport
				if *file != "" {
					r, err := verifyExportFile(*file)
					if err != nil {
						return err
					}
					rep = client.ChainReport(r)
				} else {
					r, err := s.c.AuditVerify(ctx)
					if err != nil {
						return err
					}
					rep = *r
				}
				var err error
				switch {
				case s.json:
					err = printJSON(s.stdout, rep)
				case rep.OK:
					err = say(s.stdout, "OK: %d batches, %d records; the hash chain is intact\n", rep.Batches, rep.Records)
				default:
					err = say(s.stdout, "BROKEN at batch %d: %s\n", rep.BrokenBatch, rep.Reason)
				}
				if err != nil {
					return err
				}
				if !rep.OK {
					return fmt.Errorf("the audit log does not verify: batch %d is broken", rep.BrokenBatch)
				}
				return nil
			}
		},
	}
}

// maxExportLine bounds one line of an audit export.
const maxExportLine = 1 << 20

// verifyExportFile reads an audit export and recomputes its hash chain. A file that is not
// an export as keyward writes it (a line that is not exactly one batch header or one record,
// a record before any batch header, a line re-encoded or edited into another form) is an
// error.
func verifyExportFile(file string) (store.ChainReport, error) {
	f, err := os.Open(file)
	if err != nil {
		return store.ChainReport{}, fmt.Errorf("audit verify: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	var lines []store.AuditExportLine
	var batch uint64 // the batch the lines belong to
	inBatch := false
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		bad := func(format string, a ...any) (store.ChainReport, error) {
			return store.ChainReport{}, fmt.Errorf("audit verify: %s line %d: %s", file, n, fmt.Sprintf(format, a...))
		}
		var l store.AuditExportLine
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return bad("not an audit export line: %v", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return bad("holds more than one JSON value")
		}
		kinds := 0
		for _, set := range []bool{l.Batch != nil, l.Record != nil, l.End != nil} {
			if set {
				kinds++
			}
		}
		switch {
		case kinds != 1:
			return bad("is not exactly one batch header, record or trailer")
		case l.End != nil:
		case l.Batch != nil:
			batch, inBatch = l.Batch.Seq, true
		case !inBatch:
			return bad("a record before any batch header")
		}
		// Decoding forgives what hashing cannot show: letter case of names, repeated names,
		// spacing. Only the exact bytes keyward writes are taken.
		if canon, err := json.Marshal(&l); err != nil || !bytes.Equal(canon, b) {
			return bad("differs from what keyward writes for it (batch %d): the line was edited or re-encoded", batch)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return store.ChainReport{}, fmt.Errorf("audit verify: read %s: %w", file, err)
	}
	return store.VerifyChain(lines), nil
}
