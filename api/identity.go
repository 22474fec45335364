package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store"
)

// Accounts is initialization, login, principals, grants, AppRoles and the audit log;
// store.Service implements it.
type Accounts interface {
	Init(ctx context.Context, adminID, password, rootToken string) (*store.Login, error)
	Initialized() bool
	LoginUserpass(ctx context.Context, user, password string) (*store.Login, error)
	LoginAppRole(ctx context.Context, roleID, secretID string) (*store.Login, error)
	LoginJWT(ctx context.Context, jwt string) (*store.Login, error)
	Renew(ctx context.Context) (*store.Login, error)
	Revoke(ctx context.Context, token, accessor string) error
	PutPrincipal(ctx context.Context, in store.PrincipalInput) error
	DeletePrincipal(ctx context.Context, t fsm.PrincipalType, id string) error
	Principals(ctx context.Context) ([]store.PrincipalView, error)
	SetRoleMember(ctx context.Context, role string, t fsm.PrincipalType, id string, member bool) error
	Grant(ctx context.Context, in store.GrantInput) (string, error)
	RevokeGrant(ctx context.Context, id string) error
	Grants(ctx context.Context, t fsm.PrincipalType, id string) ([]fsm.Policy, error)
	PutAppRole(ctx context.Context, in store.AppRoleInput) (string, error)
	DeleteAppRole(ctx context.Context, name string) error
	AppRoles(ctx context.Context) ([]fsm.AppRole, error)
	MintSecretID(ctx context.Context, name string) (string, time.Time, error)
	PutJWTIssuer(ctx context.Context, name string, config json.RawMessage, ttl, maxTTL time.Duration) error
	DeleteJWTIssuer(ctx context.Context, name string) error
	AuditList(ctx context.Context, f store.AuditFilter) ([]fsm.AuditRecord, uint64, error)
	AuditExport(ctx context.Context, emit func(store.AuditExportLine) error) error
	AuditVerify(ctx context.Context) (store.ChainReport, error)
}

func (s *Server) identityRoutes(r *mux.Router) {
	r.HandleFunc("/v1/sys/init", s.initStatus).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/init", s.initCluster).Methods(http.MethodPost)
	r.HandleFunc("/v1/auth/userpass/login", s.loginUserpass).Methods(http.MethodPost)
	r.HandleFunc("/v1/auth/approle/login", s.loginAppRole).Methods(http.MethodPost)
	r.HandleFunc("/v1/auth/jwt/login", s.loginJWT).Methods(http.MethodPost)
	r.HandleFunc("/v1/auth/token/self", s.tokenSelf).Methods(http.MethodGet)
	r.HandleFunc("/v1/auth/token/renew", s.tokenRenew).Methods(http.MethodPost)
	r.HandleFunc("/v1/auth/token/revoke", s.tokenRevoke).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/principals", s.listPrincipals).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/principals/{type}/{id:.+}", s.putPrincipal).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/sys/principals/{type}/{id:.+}", s.deletePrincipal).Methods(http.MethodDelete)
	r.HandleFunc("/v1/sys/roles/{role}/members/{type}/{id:.+}", s.roleMember(true)).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/sys/roles/{role}/members/{type}/{id:.+}", s.roleMember(false)).Methods(http.MethodDelete)
	r.HandleFunc("/v1/sys/grants", s.listGrants).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/grants", s.grant).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/grants/{id}", s.revokeGrant).Methods(http.MethodDelete)
	r.HandleFunc("/v1/sys/approles", s.listAppRoles).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/approles/{name}", s.putAppRole).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/sys/approles/{name}", s.deleteAppRole).Methods(http.MethodDelete)
	r.HandleFunc("/v1/sys/approles/{name}/secret-id", s.mintSecretID).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/auth/jwt/{name}", s.putJWTIssuer).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/sys/auth/jwt/{name}", s.deleteJWTIssuer).Methods(http.MethodDelete)
	r.HandleFunc("/v1/sys/audit", s.auditList).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/audit/export", s.auditExport).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/audit/verify", s.auditVerify).Methods(http.MethodGet)
}

type loginResponse struct {
	Token     string    `json:"token,omitempty"`
	Accessor  string    `json:"accessor"`
	Principal string    `json:"principal"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func (s *Server) writeLogin(w http.ResponseWriter, r *http.Request, l *store.Login, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, loginResponse{Token: l.Token, Accessor: l.Accessor, Principal: l.Principal, ExpiresAt: l.ExpiresAt})
}

func (s *Server) initStatus(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, map[string]bool{"initialized": s.d.Accounts.Initialized()})
}

func (s *Server) initCluster(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Admin    string `json:"admin"`
		Password string `json:"password"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	l, err := s.d.Accounts.Init(r.Context(), req.Admin, req.Password, "")
	s.writeLogin(w, r, l, err)
}

func (s *Server) loginUserpass(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.d.Accounts.LoginUserpass(r.Context(), req.Username, req.Password)
	s.writeLogin(w, r, l, err)
}

func (s *Server) loginAppRole(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.d.Accounts.LoginAppRole(r.Context(), req.RoleID, req.SecretID)
	s.writeLogin(w, r, l, err)
}

func (s *Server) loginJWT(w http.ResponseWriter, r *http.Request) {
	var req struct {
		JWT string `json:"jwt"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.d.Accounts.LoginJWT(r.Context(), req.JWT)
	s.writeLogin(w, r, l, err)
}

func (s *Server) tokenSelf(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r.Context())
	s.writeJSON(w, http.StatusOK, map[string]any{"principal_type": c.Type, "principal_id": c.ID,
		"method": c.Method, "roles": c.Roles, "admin": c.Admin})
}

func (s *Server) tokenRenew(w http.ResponseWriter, r *http.Request) {
	l, err := s.d.Accounts.Renew(r.Context())
	s.writeLogin(w, r, l, err)
}

func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token    string `json:"token"`
		Accessor string `json:"accessor"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if err := s.d.Accounts.Revoke(r.Context(), req.Token, req.Accessor); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"revoked": true})
}

func principalType(r *http.Request) (fsm.PrincipalType, error) {
	t := fsm.PrincipalType(mux.Vars(r)["type"])
	switch t {
	case fsm.PrincipalUser, fsm.PrincipalService, fsm.PrincipalRole:
		return t, nil
	}
	return "", fmt.Errorf("%w: principal type is USER, SERVICE or ROLE", store.ErrInvalidArgument)
}

func (s *Server) listPrincipals(w http.ResponseWriter, r *http.Request) {
	ps, err := s.d.Accounts.Principals(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"principals": ps})
}

func (s *Server) putPrincipal(w http.ResponseWriter, r *http.Request) {
	t, err := principalType(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req struct {
		Password string   `json:"password"`
		Roles    []string `json:"roles"`
		Admin    bool     `json:"admin"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	err = s.d.Accounts.PutPrincipal(r.Context(), store.PrincipalInput{Type: t, ID: mux.Vars(r)["id"],
		Password: req.Password, Roles: req.Roles, Admin: req.Admin})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) deletePrincipal(w http.ResponseWriter, r *http.Request) {
	t, err := principalType(r)
	if err == nil {
		err = s.d.Accounts.DeletePrincipal(r.Context(), t, mux.Vars(r)["id"])
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
}

func (s *Server) roleMember(member bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := principalType(r)
		if err == nil {
			err = s.d.Accounts.SetRoleMember(r.Context(), mux.Vars(r)["role"], t, mux.Vars(r)["id"], member)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, map[string]bool{"member": member})
	}
}

type grantRequest struct {
	PrincipalType string    `json:"principal_type"`
	PrincipalID   string    `json:"principal_id"`
	Actions       []string  `json:"actions"`
	Secret        string    `json:"secret,omitempty"`
	Pattern       string    `json:"pattern,omitempty"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
}

func (s *Server) grant(w http.ResponseWriter, r *http.Request) {
	var req grantRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	in := store.GrantInput{PrincipalType: fsm.PrincipalType(req.PrincipalType), PrincipalID: req.PrincipalID,
		SecretPath: req.Secret, PathPattern: req.Pattern, ExpiresAt: req.ExpiresAt}
	for _, a := range req.Actions {
		in.Actions = append(in.Actions, fsm.Action(a))
	}
	id, err := s.d.Accounts.Grant(r.Context(), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Accounts.RevokeGrant(r.Context(), mux.Vars(r)["id"]); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"revoked": true})
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	gs, err := s.d.Accounts.Grants(r.Context(), fsm.PrincipalType(q.Get("principal_type")), q.Get("principal_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"grants": gs})
}

func (s *Server) listAppRoles(w http.ResponseWriter, r *http.Request) {
	as, err := s.d.Accounts.AppRoles(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"approles": as})
}

func (s *Server) putAppRole(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Principal    string   `json:"principal"`
		SecretIDTTL  string   `json:"secret_id_ttl"`
		SecretIDUses int      `json:"secret_id_uses"`
		CIDRs        []string `json:"cidrs"`
		TokenTTL     string   `json:"token_ttl"`
		TokenMaxTTL  string   `json:"token_max_ttl"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	var in store.AppRoleInput
	var err error
	in.Name, in.Principal, in.SecretIDUses, in.CIDRs = mux.Vars(r)["name"], req.Principal, req.SecretIDUses, req.CIDRs
	for _, d := range []struct {
		s   string
		dst *time.Duration
	}{{req.SecretIDTTL, &in.SecretIDTTL}, {req.TokenTTL, &in.TokenTTL}, {req.TokenMaxTTL, &in.TokenMaxTTL}} {
		if d.s != "" && err == nil {
			*d.dst, err = time.ParseDuration(d.s)
		}
	}
	if err != nil || in.SecretIDUses < 0 {
		s.fail(w, r, fmt.Errorf("%w: durations like 10m, uses >= 0", store.ErrInvalidArgument))
		return
	}
	roleID, err := s.d.Accounts.PutAppRole(r.Context(), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"role_id": roleID})
}

func (s *Server) deleteAppRole(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Accounts.DeleteAppRole(r.Context(), mux.Vars(r)["name"]); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
}

func (s *Server) mintSecretID(w http.ResponseWriter, r *http.Request) {
	sid, exp, err := s.d.Accounts.MintSecretID(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"secret_id": sid, "expires_at": exp})
}

func (s *Server) putJWTIssuer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Config      json.RawMessage `json:"config"`
		TokenTTL    string          `json:"token_ttl"`
		TokenMaxTTL string          `json:"token_max_ttl"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ttl, err1 := parseOptDuration(req.TokenTTL)
	maxTTL, err2 := parseOptDuration(req.TokenMaxTTL)
	if err1 != nil || err2 != nil {
		s.fail(w, r, fmt.Errorf("%w: durations like 15m", store.ErrInvalidArgument))
		return
	}
	if err := s.d.Accounts.PutJWTIssuer(r.Context(), mux.Vars(r)["name"], req.Config, ttl, maxTTL); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func parseOptDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

func (s *Server) deleteJWTIssuer(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Accounts.DeleteJWTIssuer(r.Context(), mux.Vars(r)["name"]); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.AuditFilter{Path: q.Get("path"), Principal: q.Get("principal"), Action: q.Get("action"),
		Outcome: q.Get("outcome"), Limit: wireLimit(q.Get("limit"))}
	var err error
	if v := q.Get("after"); v != "" {
		f.After, err = strconv.ParseUint(v, 10, 64)
	}
	for _, t := range []struct {
		v   string
		dst *time.Time
	}{{q.Get("from"), &f.From}, {q.Get("to"), &f.To}} {
		if t.v != "" && err == nil {
			*t.dst, err = time.Parse(time.RFC3339, t.v)
		}
	}
	if err != nil || f.Limit < 0 {
		s.fail(w, r, fmt.Errorf("%w: after is a number, from/to are RFC 3339 times, limit 1..1000", store.ErrInvalidArgument))
		return
	}
	recs, next, err := s.d.Accounts.AuditList(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if recs == nil {
		recs = []fsm.AuditRecord{}
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"records": recs, "next": next})
}

func wireLimit(v string) int {
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// auditExport streams batch headers and records as JSON lines, for `audit verify --file`.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	started := false
	err := s.d.Accounts.AuditExport(r.Context(), func(l store.AuditExportLine) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		return enc.Encode(l)
	})
	if err != nil && !started {
		s.fail(w, r, err)
		return
	}
	if !started {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	_ = bw.Flush()
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := s.d.Accounts.AuditVerify(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, rep)
}
