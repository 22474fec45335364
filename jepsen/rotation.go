package jepsen

import (
	"context"
	"errors"
)

// rotationAvailable says whether the rotation workload can run against this version of
// keyward. Rotation (keyward rotation set|now, version state PENDING) is being built in
// parallel; until its API lands the workload is a stub and asking for it is an error.
const rotationAvailable = false

// ErrRotationUnavailable is returned when a run asks for the rotation workload before the
// rotation API exists.
var ErrRotationUnavailable = errors.New("jepsen: the rotation workload needs the rotation API, which this keyward does not have yet")

// rotationStep is the rotation workload's operation (not available yet).
func rotationStep(context.Context, *worker) {}
