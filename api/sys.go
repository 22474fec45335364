package api

import (
	"fmt"
	"net/http"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/store"
)

// health answers load balancers: 200 on the leader, 429 on a follower or replica (200 with
// ?standbyok), 503 when the node knows no leader. HEAD gets the status alone.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := s.d.Health.Health()
	status := http.StatusOK
	switch {
	case h.Leader == "":
		status = http.StatusServiceUnavailable
		h.Error = &wire.Error{Code: "no_leader", Message: "this node knows no leader"}
	case h.State != "Leader" && !r.URL.Query().Has("standbyok"):
		status = http.StatusTooManyRequests
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	s.writeJSON(w, status, h)
}

func (s *Server) raftSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Cluster.Snapshot(); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"snapshot": true})
}

// snapshotSave streams a consistent, checksummed snapshot (ciphertext only).
func (s *Server) snapshotSave(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="keyward.snap"`)
	// Errors after the first byte cannot change the status; the checksum trailer then is
	// missing and a restore refuses the file.
	if err := s.d.Secrets.Snapshot(r.Context(), w); err != nil {
		s.d.Log.Error("snapshot save failed", "err", err)
		if rec, ok := w.(*statusRecorder); !ok || !rec.wrote {
			s.fail(w, r, err)
		}
	}
}

func (s *Server) snapshotRestore(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, store.MaxSnapshotBytes)
	if err := s.d.Secrets.Restore(r.Context(), body); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"restored": true})
}

func (s *Server) clusterMembers(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, map[string]any{"members": s.d.Cluster.Members()})
}

func (s *Server) clusterPeers(w http.ResponseWriter, r *http.Request) {
	peers, err := s.d.Cluster.Peers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"peers": peers})
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.d.Cluster.ClusterStatus(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, st)
}

type addressRequest struct {
	Address string `json:"address"`
}

type nodeRequest struct {
	NodeID string `json:"node_id"`
}

// clusterJoin asks this node to join the cluster that a member at address belongs to.
func (s *Server) clusterJoin(w http.ResponseWriter, r *http.Request) {
	var req addressRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Address == "" {
		s.fail(w, r, fmt.Errorf("%w: address is required", store.ErrInvalidArgument))
		return
	}
	if err := s.d.Cluster.JoinCluster(r.Context(), req.Address); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"joined": true})
}

func (s *Server) clusterRemove(w http.ResponseWriter, r *http.Request) {
	var req nodeRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.NodeID == "" {
		s.fail(w, r, fmt.Errorf("%w: node_id is required", store.ErrInvalidArgument))
		return
	}
	if err := s.d.Cluster.Remove(r.Context(), req.NodeID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"removed": true})
}

func (s *Server) clusterTransfer(w http.ResponseWriter, r *http.Request) {
	var req nodeRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if err := s.d.Cluster.TransferLeader(r.Context(), req.NodeID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"transferred": true})
}
