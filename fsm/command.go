package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// CommandType is the first byte of every Raft log entry keyward writes.
//
// Encoding: byte 0 is the type; the rest is the payload encoded as JSON (encoding/json, byte
// slices as base64) — except for payloads with large byte fields (PutVersion, see blobs), whose
// payload is: uvarint length of the JSON, the JSON without those fields, then each field as a
// uvarint length and its raw bytes. A batch (CmdBatch) has its own framing. If bit 0x80 of the type byte is set (FlagIgnoreUnknown), a node that does
// not know the type skips the entry instead of stopping; a newer leader sets it on commands an
// older follower may safely ignore during a rolling upgrade.
type CommandType uint8

// FlagIgnoreUnknown marks a command that nodes which do not know its type may skip.
const FlagIgnoreUnknown CommandType = 0x80

// Command types. Numbers are part of the log format: never reuse or renumber one.
const (
	CmdPutVersion      CommandType = 1
	CmdDestroyVersions CommandType = 2
	CmdDeleteSecret    CommandType = 3
	CmdRestoreSecret   CommandType = 4
	CmdPurgeSecret     CommandType = 5
	CmdNoop            CommandType = 6

	CmdPutPolicy    CommandType = 16
	CmdDeletePolicy CommandType = 17

	CmdAppendAudit CommandType = 32
)

// PutVersion writes version Expect+1 of a secret as CURRENT, creating the secret when Expect
// is 0. The proposer encrypted the value for exactly that secret id and version number, so the
// command fails with a ConflictError unless the secret's LatestVersion still equals Expect.
type PutVersion struct {
	SecretID    string  `json:"secret_id"`
	Path        string  `json:"path"`
	Expect      uint64  `json:"expect"`
	CAS         *uint64 `json:"cas,omitempty"` // caller's expected CURRENT version; 0 = must not exist
	VersionID   string  `json:"version_id"`
	Ciphertext  []byte  `json:"-"` // travels raw after the JSON (see blobCarrier)
	WrappedKey  []byte  `json:"-"`
	KMSKeyID    string  `json:"kms_key_id"`
	KMSProvider string  `json:"kms_provider"`
	Description *string `json:"description,omitempty"`
	MaxVersions uint32  `json:"max_versions,omitempty"` // 0 keeps the secret's setting
	By          string  `json:"by,omitempty"`
	At          int64   `json:"at"`
	// Audit, if set, is the write's audit record: Apply commits it together with the version
	// when the write succeeds, so an acknowledged write needs no separate audit sync. A write
	// that fails is audited by the node that proposed it.
	Audit *AuditRecord `json:"audit,omitempty"`
}

// Noop changes nothing but the applied index. A new leader commits one so that its FSM has
// applied every earlier entry before it serves linearizable reads.
type Noop struct{}

// DestroyVersions drops the wrapped key and ciphertext of the listed versions.
type DestroyVersions struct {
	SecretID string   `json:"secret_id"`
	Versions []uint64 `json:"versions"`
	At       int64    `json:"at"`
}

// DeleteSecret soft-deletes a secret.
type DeleteSecret struct {
	SecretID string `json:"secret_id"`
	At       int64  `json:"at"`
}

// RestoreSecret undoes a soft delete.
type RestoreSecret struct {
	SecretID string `json:"secret_id"`
	At       int64  `json:"at"`
}

// PurgeSecret removes a secret and all its versions.
type PurgeSecret struct {
	SecretID string `json:"secret_id"`
}

// PutPolicy creates or replaces a policy.
type PutPolicy struct {
	Policy Policy `json:"policy"`
}

// DeletePolicy removes a policy.
type DeletePolicy struct {
	ID string `json:"id"`
}

// AppendAudit commits a batch of audit records; Seq numbers are assigned by Apply.
type AppendAudit struct {
	Records []AuditRecord `json:"records"`
}

// blobCarrier is a payload whose large byte fields travel raw after its JSON, sparing the
// base64 encoding and decoding of ciphertext on every node.
type blobCarrier interface {
	blobs() [][]byte
	setBlobs([][]byte) error
}

func (p *PutVersion) blobs() [][]byte { return [][]byte{p.Ciphertext, p.WrappedKey} }

func (p *PutVersion) setBlobs(b [][]byte) error {
	if len(b) != 2 {
		return fmt.Errorf("put version carries %d blobs, want 2", len(b))
	}
	p.Ciphertext, p.WrappedKey = b[0], b[1]
	return nil
}

// Encode builds a log entry: the type byte followed by the payload.
func Encode(t CommandType, payload any) ([]byte, error) {
	switch p := payload.(type) {
	case PutVersion:
		payload = &p
	case AppendAuditLines:
		payload = &p
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	bc, ok := payload.(blobCarrier)
	if !ok {
		out := make([]byte, 1+len(body))
		out[0] = byte(t)
		copy(out[1:], body)
		return out, nil
	}
	blobs := bc.blobs()
	n := 1 + binary.MaxVarintLen64 + len(body)
	for _, b := range blobs {
		n += binary.MaxVarintLen64 + len(b)
	}
	out := make([]byte, 1, n)
	out[0] = byte(t)
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = append(out, body...)
	for _, b := range blobs {
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out, nil
}

// DecodePayload decodes the payload of an entry (the bytes after the type byte) into p, a
// pointer to the command's payload type. Tools and tests use it to read commands back.
func DecodePayload(payload []byte, p any) error { return decodePayload(payload, p) }

// decodePayload decodes a payload into p: JSON, or for a blobCarrier the framed form. Byte
// fields it returns are fresh copies, never aliases of data, so state never pins a log entry.
func decodePayload(data []byte, p any) error {
	bc, ok := p.(blobCarrier)
	if !ok {
		return json.Unmarshal(data, p)
	}
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return nil, errors.New("malformed payload framing")
		}
		b := data[k : k+int(n)]
		data = data[k+int(n):]
		return b, nil
	}
	meta, err := next()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(meta, p); err != nil {
		return err
	}
	var blobs [][]byte
	for len(data) > 0 {
		b, err := next()
		if err != nil {
			return err
		}
		blobs = append(blobs, bytes.Clone(b))
	}
	return bc.setBlobs(blobs)
}

// MustEncode is Encode for payloads that cannot fail to marshal (every type in this file).
func MustEncode(t CommandType, payload any) []byte {
	b, err := Encode(t, payload)
	if err != nil {
		panic(err)
	}
	return b
}
