package kms

import (
	"context"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
)

// NewAWSWithOptions exposes newAWS to the external tests, so they can bound
// the client's retries.
func NewAWSWithOptions(ctx context.Context, cfg AWSConfig, optFns ...func(*awskms.Options)) (*AWS, error) {
	return newAWS(ctx, cfg, optFns...)
}

// ClassifyAWSError exposes classifyAWSError to the external tests.
func ClassifyAWSError(err error) error { return classifyAWSError(err) }
