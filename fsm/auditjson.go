package fsm

import (
	"encoding/json"
	"strconv"
)

// AppendAuditJSON appends r's JSON to dst exactly as encoding/json marshals it (fields in
// declaration order, omitempty honoured, HTML-escaped strings). Records are encoded on every
// audited request, so the common case — every string printable ASCII with nothing to
// escape — is written directly; any other record goes through encoding/json. Either way the
// bytes are the same, which the hash chain depends on (TestAppendAuditJSONMatchesMarshal).
func AppendAuditJSON(dst []byte, r *AuditRecord) []byte {
	if !plainAuditStrings(r) {
		c := *r                  // marshalling r itself would move every caller's record to the heap
		b, _ := json.Marshal(&c) // a struct of strings, ints and bools always marshals
		return append(dst, b...)
	}
	dst = append(dst, `{"id":"`...)
	dst = append(dst, r.ID...)
	dst = append(dst, '"')
	if r.Seq != 0 {
		dst = strconv.AppendUint(append(dst, `,"seq":`...), r.Seq, 10)
	}
	if r.Batch != 0 {
		dst = strconv.AppendUint(append(dst, `,"batch":`...), r.Batch, 10)
	}
	dst = appendOptString(dst, `,"node_id":"`, r.NodeID)
	dst = appendOptString(dst, `,"secret_id":"`, r.SecretID)
	dst = appendOptString(dst, `,"path":"`, r.Path)
	dst = appendOptString(dst, `,"version_id":"`, r.VersionID)
	dst = appendOptString(dst, `,"principal_type":"`, r.PrincipalType)
	dst = append(append(append(dst, `,"principal_id":"`...), r.PrincipalID...), '"')
	dst = appendOptString(dst, `,"auth_method":"`, r.AuthMethod)
	dst = append(append(append(dst, `,"action":"`...), r.Action...), '"')
	dst = appendOptString(dst, `,"ip_address":"`, r.IPAddress)
	dst = strconv.AppendBool(append(dst, `,"success":`...), r.Success)
	dst = appendOptString(dst, `,"reason":"`, r.Reason)
	dst = appendOptString(dst, `,"request_id":"`, r.RequestID)
	dst = strconv.AppendInt(append(dst, `,"accessed_at":`...), r.AccessedAt, 10)
	if r.NodeSeq != 0 {
		dst = strconv.AppendUint(append(dst, `,"node_seq":`...), r.NodeSeq, 10)
	}
	return append(dst, '}')
}

// appendOptString appends an omitempty string member (key holds its opening quote).
func appendOptString(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return append(append(append(dst, key...), v...), '"')
}

// plainAuditStrings reports whether every string of r is printable ASCII that encoding/json
// writes as it is.
func plainAuditStrings(r *AuditRecord) bool {
	for _, s := range [...]string{r.ID, r.NodeID, r.SecretID, r.Path, r.VersionID, r.PrincipalType,
		r.PrincipalID, r.AuthMethod, r.Action, r.IPAddress, r.Reason, r.RequestID} {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
	}
	return true
}
