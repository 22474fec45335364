package clustertest_test

import (
	"os"
	"testing"

	"github.com/keyward/keyward/cluster/clustertest"
)

// binary is the keyward binary these system tests run as real processes.
var binary string

func TestMain(m *testing.M) { os.Exit(clustertest.RunWithBinary(m, &binary)) }
