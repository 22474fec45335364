package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keyward/keyward/api/wire"
)

// rotationGroup is `keyward rotation`.
func rotationGroup() commandGroup {
	return commandGroup{
		name: "rotation",
		summary: "Rotation policies: the leader rotates a secret on a schedule with zero downtime (new value\n" +
			"PENDING, set and tested at the target, promoted to CURRENT, old value revoked after the grace\n" +
			"period). Needs the ROTATE action on the secret.",
		commands: []subcommand{rotationSetCommand(), rotationShowCommand(), rotationNowCommand(),
			rotationHistoryCommand(), rotationDeleteCommand()},
	}
}

func rotationSetCommand() subcommand {
	return subcommand{
		group: "rotation", name: "set", minArgs: 1, maxArgs: 1,
		synopsis: "PATH --schedule S --rotator R [--settings JSON|@FILE] [--grace D] [-o json]",
		summary: "Creates or replaces the rotation policy of the secret at PATH (which must exist).\n" +
			"--schedule is an interval such as 24h, or a 5-field cron expression in UTC such as '0 3 * * 1'.\n" +
			"--rotator is random, postgres or webhook; --settings are its settings as JSON (or @file).\n" +
			"Settings name other secrets by path for credentials, never the credentials themselves:\n" +
			"  random:   {\"length\":32,\"alphabet\":\"alnum\"} or {\"bytes\":32,\"encoding\":\"base64\"},\n" +
			"            optional \"template\": a JSON object whose \"{{value}}\" strings get the value\n" +
			"  postgres: {\"connection\":\"PATH of the admin connection secret\",\"roles\":[\"app_blue\",\"app_green\"]}\n" +
			"  webhook:  {\"url\":\"https://...\",\"hmac_key\":\"PATH of the signing key secret\",\"timeout\":\"10s\"}",
		setup: func(fs *flag.FlagSet) action {
			schedule := fs.String("schedule", "", "`interval or cron expression` (required)")
			rotator := fs.String("rotator", "", "`NAME`: random, postgres or webhook (required)")
			settings := fs.String("settings", "", "rotator settings: `JSON`, or @FILE to read them from a file")
			grace := fs.Duration("grace", 0, "how long the old value stays valid after promotion (default 60s)")
			return func(ctx context.Context, s *session, args []string) error {
				if *schedule == "" || *rotator == "" {
					return usagef("--schedule and --rotator are required")
				}
				req := wire.RotationPolicyRequest{Schedule: *schedule, Rotator: *rotator}
				if *grace != 0 {
					req.Grace = grace.String()
				}
				if *settings != "" {
					raw := []byte(*settings)
					if name, ok := strings.CutPrefix(*settings, "@"); ok {
						b, err := os.ReadFile(name)
						if err != nil {
							return err
						}
						raw = b
					}
					if !json.Valid(raw) {
						return usagef("--settings is not valid JSON")
					}
					req.Settings = raw
				}
				out, err := s.c.SetRotation(ctx, args[0], req)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, out)
				}
				return printRotation(s, out)
			}
		},
	}
}

func printRotation(s *session, out *wire.RotationResponse) error {
	p := out.Policy
	next := "-"
	if p.NextAt != nil {
		next = timestamp(*p.NextAt)
	}
	if err := say(s.stdout, "Path:        %s\nRotator:     %s\nSchedule:    %s (UTC)\nGrace:       %s\nNext:        %s\n",
		p.Path, p.Rotator, p.Schedule, time.Duration(p.GraceSeconds*float64(time.Second)), next); err != nil {
		return err
	}
	if len(p.Settings) > 0 {
		if err := say(s.stdout, "Settings:    %s\n", p.Settings); err != nil {
			return err
		}
	}
	if p.ManualRequested {
		if err := say(s.stdout, "Requested:   a manual rotation waits for the leader\n"); err != nil {
			return err
		}
	}
	if r := out.Latest; r != nil {
		return say(s.stdout, "Latest:      #%d %s, step %s%s\n", r.Seq, r.Trigger, r.Step, rotationResult(r))
	}
	return nil
}

func rotationResult(r *wire.Rotation) string {
	switch {
	case r.Outcome != "" && r.Error != "":
		return ", " + r.Outcome + ": " + r.Error
	case r.Outcome != "":
		return ", " + r.Outcome
	case r.Error != "":
		return fmt.Sprintf(", attempt %d failed: %s", r.Attempt, r.Error)
	}
	return ""
}

func rotationShowCommand() subcommand {
	return subcommand{
		group: "rotation", name: "show", minArgs: 1, maxArgs: 1, synopsis: "PATH [-o json]",
		summary: "Shows the rotation policy of the secret at PATH and its newest rotation.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				out, err := s.c.Rotation(ctx, args[0])
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, out)
				}
				return printRotation(s, out)
			}
		},
	}
}

func rotationNowCommand() subcommand {
	return subcommand{
		group: "rotation", name: "now", minArgs: 1, maxArgs: 1, synopsis: "PATH [--wait D] [-o json]",
		summary: "Asks the leader to rotate the secret at PATH now (from any node). With --wait, follows the\n" +
			"rotation until it ends (after the grace period) or D passes, printing each step.",
		setup: func(fs *flag.FlagSet) action {
			wait := fs.Duration("wait", 0, "follow the rotation for up to `D`")
			return func(ctx context.Context, s *session, args []string) error {
				out, err := s.c.RotateNow(ctx, args[0], 0)
				if err != nil {
					return err
				}
				if *wait <= 0 {
					if s.json {
						return printJSON(s.stdout, out)
					}
					return say(s.stdout, "Rotation #%d of %s requested\n", out.Seq, args[0])
				}
				return followRotation(ctx, s, args[0], out.Seq, *wait)
			}
		},
	}
}

// followRotation polls the history until rotation seq ends or wait passes.
func followRotation(ctx context.Context, s *session, path string, seq uint64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	printed := 0
	for {
		h, err := s.c.RotationHistory(ctx, path)
		if err != nil {
			return err
		}
		var r *wire.Rotation
		for i := range h.Rotations {
			if h.Rotations[i].Seq == seq {
				r = &h.Rotations[i]
			}
		}
		if r != nil && !s.json {
			for ; printed < len(r.Events); printed++ {
				e := r.Events[printed]
				line := fmt.Sprintf("%s  %s", timestamp(e.At), e.Step)
				if e.Error != "" {
					line += fmt.Sprintf(" (attempt %d failed: %s)", e.Attempt, e.Error)
				}
				if err := say(s.stdout, "%s\n", line); err != nil {
					return err
				}
			}
		}
		if r != nil && r.Outcome != "" {
			if s.json {
				return printJSON(s.stdout, r)
			}
			if r.Outcome != "succeeded" {
				return fmt.Errorf("rotation #%d %s: %s", seq, r.Outcome, r.Error)
			}
			return say(s.stdout, "Rotation #%d of %s succeeded: version %d is CURRENT\n", seq, path, r.NewVersion)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rotation #%d has not ended after %s (see keyward rotation show %s)", seq, wait, path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func rotationHistoryCommand() subcommand {
	return subcommand{
		group: "rotation", name: "history", minArgs: 1, maxArgs: 1, synopsis: "PATH [-o json]",
		summary: "Lists the kept rotations of the secret at PATH, newest first.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				h, err := s.c.RotationHistory(ctx, args[0])
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, h)
				}
				rows := make([][]any, 0, len(h.Rotations))
				for _, r := range h.Rotations {
					ended := "-"
					if r.EndedAt != nil {
						ended = timestamp(*r.EndedAt)
					}
					rows = append(rows, []any{r.Seq, r.Trigger, r.Step, r.Outcome, r.OldVersion, r.NewVersion,
						timestamp(r.StartedAt), ended, r.Error})
				}
				return table(s.stdout, "SEQ\tTRIGGER\tSTEP\tOUTCOME\tOLD\tNEW\tSTARTED\tENDED\tERROR", rows)
			}
		},
	}
}

func rotationDeleteCommand() subcommand {
	return subcommand{
		group: "rotation", name: "delete", minArgs: 1, maxArgs: 1, synopsis: "PATH",
		summary: "Removes the rotation policy of the secret at PATH (refused while a rotation runs).",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if err := s.c.DeleteRotation(ctx, args[0]); err != nil {
					return err
				}
				return say(s.stdout, "Rotation policy of %s deleted\n", args[0])
			}
		},
	}
}
