package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store/jwtauth"
)

// JWTVerifier checks JWTs against the configured issuers; *jwtauth.Verifier implements it.
type JWTVerifier interface {
	SetIssuers(issuers []jwtauth.Issuer) error
	Verify(ctx context.Context, token string) (jwtauth.Identity, error)
}

// PutJWTIssuer stores a trusted JWT/OIDC issuer (admin). config is a jwtauth.Issuer in JSON.
func (s *Service) PutJWTIssuer(ctx context.Context, name string, config json.RawMessage, ttl, maxTTL time.Duration) error {
	var iss jwtauth.Issuer
	if err := json.Unmarshal(config, &iss); err != nil {
		return fmt.Errorf("%w: issuer config: %v", ErrInvalidArgument, err)
	}
	iss.Name = name
	if err := iss.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	raw, err := json.Marshal(iss)
	if err != nil {
		return err
	}
	_, err = s.adminCommand(ctx, "PUT_JWT_ISSUER", fsm.CmdPutJWTIssuer, fsm.PutJWTIssuer{Issuer: fsm.JWTIssuer{
		Name: name, Config: raw, TokenTTL: int64(ttl), TokenMaxTTL: int64(maxTTL)}})
	return err
}

// DeleteJWTIssuer removes one (admin).
func (s *Service) DeleteJWTIssuer(ctx context.Context, name string) error {
	_, err := s.adminCommand(ctx, "DELETE_JWT_ISSUER", fsm.CmdDeleteJWTIssuer, fsm.DeleteJWTIssuer{Name: name})
	return err
}

// LoginJWT verifies a workload's JWT against the configured issuers and issues a token to the
// SERVICE principal its claims name.
func (s *Service) LoginJWT(ctx context.Context, token string) (*Login, error) {
	c, _ := CallerFrom(ctx)
	c.Method = "jwt"
	ctx = WithCaller(ctx, c)
	if s.d.JWT == nil {
		return nil, s.audited(ctx, record{action: "LOGIN"}, fmt.Errorf("%w: JWT login is not configured", ErrLoginFailed))
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, s.audited(ctx, record{action: "LOGIN"}, err)
	}
	var issuers []jwtauth.Issuer
	ttls := map[string][2]time.Duration{}
	st.JWTIssuers(func(j *fsm.JWTIssuer) bool {
		var iss jwtauth.Issuer
		if json.Unmarshal(j.Config, &iss) == nil {
			iss.Name = j.Name
			issuers = append(issuers, iss)
			ttls[j.Name] = [2]time.Duration{time.Duration(j.TokenTTL), time.Duration(j.TokenMaxTTL)}
		}
		return true
	})
	if err := s.d.JWT.SetIssuers(issuers); err != nil {
		return nil, s.audited(ctx, record{action: "LOGIN"}, err)
	}
	id, err := s.d.JWT.Verify(ctx, token)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %v", ErrLoginFailed, err)
		}
		return nil, s.audited(ctx, record{action: "LOGIN"}, err)
	}
	t := ttls[id.Issuer]
	return s.loginService(ctx, id.Principal, "jwt", t[0], t[1])
}
