package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/rotation"
	"github.com/keyward/keyward/store"
)

// Rotations is the rotation API; rotation.Service implements it.
type Rotations interface {
	SetPolicy(ctx context.Context, path string, in rotation.PolicyInput) (*fsm.RotationPolicy, error)
	DeletePolicy(ctx context.Context, path string) error
	Status(ctx context.Context, path string, ro store.ReadOptions) (*store.RotationStatus, error)
	Now(ctx context.Context, path string, wait time.Duration) (uint64, *fsm.Rotation, error)
}

// maxRotateWait bounds ?wait of POST /v1/rotate.
const maxRotateWait = 5 * time.Minute

func (s *Server) rotationRoutes(r *mux.Router) {
	r.HandleFunc("/v1/rotation/{path:.*}", s.redirectable(s.setRotation)).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/rotation/{path:.*}", s.showRotation).Methods(http.MethodGet)
	r.HandleFunc("/v1/rotation/{path:.*}", s.redirectable(s.deleteRotation)).Methods(http.MethodDelete)
	r.HandleFunc("/v1/rotation-history/{path:.*}", s.rotationHistory).Methods(http.MethodGet)
	r.HandleFunc("/v1/rotate/{path:.*}", s.redirectable(s.rotateNow)).Methods(http.MethodPost)
}

func (s *Server) setRotation(w http.ResponseWriter, r *http.Request) {
	path := pathVar(r)
	if err := store.ValidatePath(path); err != nil {
		s.fail(w, r, err)
		return
	}
	var req wire.RotationPolicyRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	in := rotation.PolicyInput{Schedule: req.Schedule, Rotator: req.Rotator, Settings: req.Settings}
	if req.Grace != "" {
		d, err := time.ParseDuration(req.Grace)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: grace must be a duration such as 60s", store.ErrInvalidArgument))
			return
		}
		in.Grace = d
	}
	if _, err := s.d.Rotation.SetPolicy(r.Context(), path, in); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.d.Rotation.Status(r.Context(), path, store.ReadOptions{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, rotationResponse(st))
}

func (s *Server) showRotation(w http.ResponseWriter, r *http.Request) {
	st, ok := s.rotationStatus(w, r)
	if !ok {
		return
	}
	setReadHeaders(w, st.Read)
	s.writeJSON(w, http.StatusOK, rotationResponse(st))
}

func (s *Server) rotationHistory(w http.ResponseWriter, r *http.Request) {
	st, ok := s.rotationStatus(w, r)
	if !ok {
		return
	}
	out := wire.RotationHistoryResponse{Path: st.Secret.Path, Rotations: make([]wire.Rotation, 0, len(st.Rotations))}
	for _, rot := range st.Rotations {
		out.Rotations = append(out.Rotations, *wireRotation(rot))
	}
	setReadHeaders(w, st.Read)
	s.writeJSON(w, http.StatusOK, out)
}

func (s *Server) rotationStatus(w http.ResponseWriter, r *http.Request) (*store.RotationStatus, bool) {
	ro, err := readOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	st, err := s.d.Rotation.Status(r.Context(), pathVar(r), ro)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return st, true
}

func (s *Server) deleteRotation(w http.ResponseWriter, r *http.Request) {
	path := pathVar(r)
	if err := s.d.Rotation.DeletePolicy(r.Context(), path); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rotateNow asks the leader for a rotation. Without ?wait it answers 202 with the rotation's
// number; with ?wait=DURATION it answers 200 once the rotation ended, or 202 when the wait ran
// out first.
func (s *Server) rotateNow(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 || d > maxRotateWait {
			s.fail(w, r, fmt.Errorf("%w: wait must be a duration up to %s", store.ErrInvalidArgument, maxRotateWait))
			return
		}
		wait = d
	}
	path := pathVar(r)
	seq, rot, err := s.d.Rotation.Now(r.Context(), path, wait)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.RotateNowResponse{Path: path, Seq: seq}
	if rot != nil {
		out.Rotation = wireRotation(rot)
		out.Done = rot.Step.Ended()
	}
	status := http.StatusAccepted
	if out.Done {
		status = http.StatusOK
	}
	s.writeJSON(w, status, out)
}

func timePtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func rotationResponse(st *store.RotationStatus) wire.RotationResponse {
	p := st.Policy
	out := wire.RotationResponse{Policy: wire.RotationPolicy{
		Path: st.Secret.Path, SecretID: p.SecretID, ID: p.ID, Schedule: p.Schedule,
		GraceSeconds: time.Duration(p.Grace).Seconds(), Rotator: p.Rotator, Settings: p.Settings,
		NextAt: timePtr(p.NextAt), ManualRequested: p.ManualAt != 0, ActiveSeq: p.Active, LastSeq: p.LastSeq,
		LastOutcome: p.LastOutcome, LastEndedAt: timePtr(p.LastEndedAt),
		CreatedAt: time.Unix(0, p.CreatedAt).UTC(), CreatedBy: p.CreatedBy, UpdatedAt: time.Unix(0, p.UpdatedAt).UTC(),
	}}
	if len(st.Rotations) > 0 {
		out.Latest = wireRotation(st.Rotations[0])
	}
	return out
}

func wireRotation(r *fsm.Rotation) *wire.Rotation {
	out := &wire.Rotation{ID: r.ID, Seq: r.Seq, Trigger: r.Trigger, By: r.By, Step: string(r.Step),
		OldVersion: r.OldVersion, NewVersion: r.NewVersion, Attempt: r.Attempt, RetryAt: timePtr(r.RetryAt),
		StartedAt: time.Unix(0, r.StartedAt).UTC(), PromotedAt: timePtr(r.PromotedAt), GraceUntil: timePtr(r.GraceUntil),
		EndedAt: timePtr(r.EndedAt), Outcome: r.Outcome, Error: r.Error}
	for _, e := range r.Events {
		out.Events = append(out.Events, wire.RotationEvent{Step: string(e.Step), At: time.Unix(0, e.At).UTC(), Attempt: e.Attempt, Error: e.Error})
	}
	return out
}
