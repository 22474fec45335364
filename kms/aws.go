package kms

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

const (
	// awsName is the Name of the AWS provider.
	awsName = "awskms"
	// awsDefaultRegion is used when AWSConfig.Region is empty.
	awsDefaultRegion = "us-east-1"
)

// AWSConfig configures an AWS provider.
type AWSConfig struct {
	// KeyID is the KMS key id, alias or ARN of the KEK. Required.
	KeyID string
	// Region is the AWS region; "us-east-1" if empty.
	Region string
	// Endpoint is an optional base endpoint URL, for local-kms or VPC
	// endpoints.
	Endpoint string
}

// AWS is a Provider whose KEK is a symmetric AWS KMS key. It is safe for
// concurrent use.
type AWS struct {
	client *awskms.Client
	keyID  string
}

var _ Provider = (*AWS)(nil)

// NewAWS returns an AWS KMS provider. Credentials and other settings are
// loaded with config.LoadDefaultConfig (environment, shared config files,
// instance roles, ...); no call is made to KMS.
func NewAWS(ctx context.Context, cfg AWSConfig) (*AWS, error) {
	return newAWS(ctx, cfg)
}

// newAWS is NewAWS with extra KMS client options, for tests.
func newAWS(ctx context.Context, cfg AWSConfig, optFns ...func(*awskms.Options)) (*AWS, error) {
	if cfg.KeyID == "" {
		return nil, errors.New("kms: AWSConfig.KeyID is required")
	}
	region := cfg.Region
	if region == "" {
		region = awsDefaultRegion
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("kms: load AWS config: %w", err)
	}
	if cfg.Endpoint != "" {
		optFns = append([]func(*awskms.Options){func(o *awskms.Options) {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}}, optFns...)
	}
	return &AWS{client: awskms.NewFromConfig(awsCfg, optFns...), keyID: cfg.KeyID}, nil
}

// Name returns "awskms".
func (a *AWS) Name() string { return awsName }

// KeyID returns the configured key id, alias or ARN.
func (a *AWS) KeyID() string { return a.keyID }

// GenerateDataKey asks KMS for a fresh AES-256 data key bound to encCtx. The
// returned key id is the ARN of the KMS key that wrapped it.
func (a *AWS) GenerateDataKey(ctx context.Context, encCtx map[string]string) (plaintext, wrapped []byte, keyID string, err error) {
	out, err := a.client.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
		KeyId:             aws.String(a.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: encCtx,
	})
	if err != nil {
		return nil, nil, "", classifyAWSError(err)
	}
	if len(out.Plaintext) != dataKeySize || len(out.CiphertextBlob) == 0 {
		clear(out.Plaintext)
		return nil, nil, "", fmt.Errorf("%w: aws GenerateDataKey returned a %d-byte key", ErrUnavailable, len(out.Plaintext))
	}
	keyID = aws.ToString(out.KeyId)
	if keyID == "" {
		keyID = a.keyID
	}
	return out.Plaintext, out.CiphertextBlob, keyID, nil
}

// Decrypt asks KMS to unwrap a data key with the KMS key keyID (the
// configured key if empty) and encCtx.
func (a *AWS) Decrypt(ctx context.Context, keyID string, wrapped []byte, encCtx map[string]string) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, fmt.Errorf("%w: empty wrapped key", ErrBadFormat)
	}
	if keyID == "" {
		keyID = a.keyID
	}
	out, err := a.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:             aws.String(keyID),
		CiphertextBlob:    wrapped,
		EncryptionContext: encCtx,
	})
	if err != nil {
		return nil, classifyAWSError(err)
	}
	if len(out.Plaintext) != dataKeySize {
		clear(out.Plaintext)
		return nil, fmt.Errorf("%w: aws Decrypt returned a %d-byte key", ErrDecrypt, len(out.Plaintext))
	}
	return out.Plaintext, nil
}
