package kms

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"
)

// classifyAWSError wraps an AWS SDK error with the matching sentinel, keeping
// the SDK error in the chain (errors.As still finds the typed exception):
// rejected ciphertexts give ErrDecrypt, ciphertexts for another key give
// ErrWrongKey, and everything else (network failures, timeouts, throttling,
// access denied, disabled or unavailable keys, ...) gives ErrUnavailable.
func classifyAWSError(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidCiphertextException":
			return fmt.Errorf("%w: %w", ErrDecrypt, err)
		case "IncorrectKeyException", "NotFoundException", "InvalidKeyUsageException":
			return fmt.Errorf("%w: %w", ErrWrongKey, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
