//go:build unix

package main

import (
	"syscall"
	"time"
)

// cpuTimes returns the user and system CPU time this process has used; ok is false if they
// could not be read.
func cpuTimes() (user, sys time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, false
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), true
}
