package clustertest_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/keyward/keyward/cluster/clustertest"
)

// binary is the keyward binary these system tests run as real processes.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyward-system-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = clustertest.BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
