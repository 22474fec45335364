package fsm

import (
	"strconv"

	"github.com/keyward/keyward/internal/jsontext"
)

// AppendAuditJSON appends r's JSON to dst exactly as encoding/json marshals it (fields in
// declaration order, omitempty honoured, strings escaped as encoding/json escapes them), without
// reflection: records are encoded on every audited request. The hash chain depends on the bytes
// being the same (TestAppendAuditJSONMatchesMarshal).
func AppendAuditJSON(dst []byte, r *AuditRecord) []byte {
	dst = jsontext.AppendString(append(dst, `{"id":`...), r.ID)
	if r.Seq != 0 {
		dst = strconv.AppendUint(append(dst, `,"seq":`...), r.Seq, 10)
	}
	if r.Batch != 0 {
		dst = strconv.AppendUint(append(dst, `,"batch":`...), r.Batch, 10)
	}
	dst = appendOptString(dst, `,"node_id":`, r.NodeID)
	dst = appendOptString(dst, `,"secret_id":`, r.SecretID)
	dst = appendOptString(dst, `,"path":`, r.Path)
	dst = appendOptString(dst, `,"version_id":`, r.VersionID)
	dst = appendOptString(dst, `,"principal_type":`, r.PrincipalType)
	dst = jsontext.AppendString(append(dst, `,"principal_id":`...), r.PrincipalID)
	dst = appendOptString(dst, `,"auth_method":`, r.AuthMethod)
	dst = jsontext.AppendString(append(dst, `,"action":`...), r.Action)
	dst = appendOptString(dst, `,"ip_address":`, r.IPAddress)
	dst = strconv.AppendBool(append(dst, `,"success":`...), r.Success)
	dst = appendOptString(dst, `,"reason":`, r.Reason)
	dst = appendOptString(dst, `,"request_id":`, r.RequestID)
	dst = strconv.AppendInt(append(dst, `,"accessed_at":`...), r.AccessedAt, 10)
	if r.NodeSeq != 0 {
		dst = strconv.AppendUint(append(dst, `,"node_seq":`...), r.NodeSeq, 10)
	}
	return append(dst, '}')
}

// appendOptString appends an omitempty string member.
func appendOptString(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return jsontext.AppendString(append(dst, key...), v)
}
