// Package kms wraps and unwraps data keys with key-encryption keys, and seals secret values with envelope encryption.
package kms
