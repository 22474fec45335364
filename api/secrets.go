package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store"
)

func pathVar(r *http.Request) string { return mux.Vars(r)["path"] }

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	path := pathVar(r)
	if err := store.ValidatePath(path); err != nil {
		s.fail(w, r, err)
		return
	}
	var req wire.PutRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	value, err := requestValue(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.d.Secrets.Put(r.Context(), store.PutInput{
		Path: path, Value: value, CAS: req.CAS, Description: req.Description,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	setIndex(w, res.Index)
	s.writeJSON(w, http.StatusOK, wire.WriteResponse{
		Path: res.Path, SecretID: res.SecretID, Version: res.Version, VersionID: res.VersionID,
		State: res.State.String(), CreatedAt: res.CreatedAt, Index: res.Index,
	})
}

func requestValue(req wire.PutRequest) ([]byte, error) {
	switch {
	case req.Value != nil && req.ValueBase64 != nil:
		return nil, fmt.Errorf("%w: give value or value_base64, not both", store.ErrInvalidValue)
	case req.Value != nil:
		return []byte(*req.Value), nil
	case req.ValueBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.ValueBase64)
		if err != nil {
			return nil, fmt.Errorf("%w: value_base64 is not standard base64", store.ErrInvalidValue)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: value or value_base64 is required", store.ErrInvalidValue)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	sel, err := selector(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ro, err := readOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v, err := s.d.Secrets.Get(r.Context(), pathVar(r), sel, ro)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	setReadHeaders(w, v.Read)
	s.writeSecret(w, secretJSON{
		Path: v.Path, SecretID: v.SecretID, Version: v.Version, VersionID: v.VersionID,
		State: v.State.String(), CreatedAt: v.CreatedAt, Plaintext: v.Plaintext,
	})
	clear(v.Plaintext)
}

func selector(r *http.Request) (store.Selector, error) {
	q := r.URL.Query()
	var sel store.Selector
	if vs := q.Get("version"); vs != "" {
		n, err := strconv.ParseUint(vs, 10, 64)
		if err != nil || n == 0 {
			return sel, fmt.Errorf("%w: version must be a positive integer", store.ErrInvalidArgument)
		}
		sel.Version = n
	}
	if ss := q.Get("state"); ss != "" {
		st, err := fsm.ParseState(ss)
		if err != nil || st == fsm.StatePending {
			return sel, fmt.Errorf("%w: state must be CURRENT, PREVIOUS or DEPRECATED", store.ErrInvalidArgument)
		}
		sel.State = st
	}
	return sel, nil
}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	ro, err := readOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	md, err := s.d.Secrets.Versions(r.Context(), pathVar(r), ro)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sec := md.Secret
	resp := wire.VersionsResponse{
		Path: sec.Path, SecretID: sec.ID, Description: sec.Description,
		CreatedAt: nanos(sec.CreatedAt), CreatedBy: sec.CreatedBy,
		CurrentVersion: sec.CurrentVersion, Versions: make([]wire.VersionInfo, 0, len(md.Versions)),
	}
	for _, v := range md.Versions {
		resp.Versions = append(resp.Versions, wire.VersionInfo{
			Version: v.Number, VersionID: v.ID, State: v.State.String(), CreatedAt: nanos(v.CreatedAt),
			CreatedBy: v.CreatedBy, KMSKeyID: v.KMSKeyID, Destroyed: v.Destroyed,
		})
	}
	setReadHeaders(w, md.Read)
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := wire.DefaultLimit
	if ls := q.Get("limit"); ls != "" {
		n, err := strconv.Atoi(ls)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: limit must be an integer", store.ErrInvalidArgument))
			return
		}
		limit = n
	}
	ro, err := readOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.d.Secrets.List(r.Context(), q.Get("prefix"), q.Get("after"), limit, ro)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := wire.ListResponse{Secrets: make([]wire.SecretMeta, 0, len(res.Secrets)), Next: res.Next}
	for _, sec := range res.Secrets {
		resp.Secrets = append(resp.Secrets, wire.SecretMeta{
			Path: sec.Path, SecretID: sec.ID, Description: sec.Description,
			CurrentVersion: sec.CurrentVersion, CreatedAt: nanos(sec.CreatedAt), UpdatedAt: nanos(sec.UpdatedAt),
		})
	}
	setReadHeaders(w, res.Read)
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) destroy(w http.ResponseWriter, r *http.Request) {
	path := pathVar(r)
	if err := store.ValidatePath(path); err != nil {
		s.fail(w, r, err)
		return
	}
	var req wire.DestroyRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	done, err := s.d.Secrets.Destroy(r.Context(), path, req.Versions)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, wire.DestroyResponse{Path: path, Destroyed: done})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	purge := false
	if ps := r.URL.Query().Get("purge"); ps != "" {
		b, err := strconv.ParseBool(ps)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: purge must be true or false", store.ErrInvalidArgument))
			return
		}
		purge = b
	}
	path := pathVar(r)
	if err := s.d.Secrets.Delete(r.Context(), path, purge); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, wire.DeleteResponse{Path: path, Deleted: true, Purged: purge})
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	path := pathVar(r)
	if err := s.d.Secrets.Undelete(r.Context(), path); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, wire.RestoreResponse{Path: path, Restored: true})
}

func nanos(n int64) time.Time { return time.Unix(0, n).UTC() }
