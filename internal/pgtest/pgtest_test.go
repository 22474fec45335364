package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/pgtest"
)

func TestStartServesLogins(t *testing.T) {
	s := pgtest.Start(t)
	s.Exec(t, "CREATE ROLE app LOGIN PASSWORD 'pw-app-1'")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URLFor("app", "pw-app-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	if _, err := pgx.Connect(ctx, s.URLFor("app", "wrong")); err == nil {
		t.Fatal("a wrong password logged in")
	}
}
