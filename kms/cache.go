package kms

import (
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Cache defaults, used for zero CacheOptions fields.
const (
	defaultCacheSize = 10000
	defaultCacheTTL  = 5 * time.Minute
)

// CacheOptions configures an Envelope's cache of unwrapped data keys.
type CacheOptions struct {
	// Size is the maximum number of cached data keys; 0 or less means
	// 10000.
	Size int
	// TTL is how long a data key stays cached after it was added; 0 or less
	// means 5 minutes.
	TTL time.Duration
}

// cacheKey identifies a wrapped data key: the SHA-256 of the KEK id, the
// wrapped key and the secret version it belongs to.
type cacheKey [sha256.Size]byte

// cacheKeyFor returns the cache key of a wrapped data key. The secret id and
// version are part of it so that a cache hit is granted only where the
// provider would have accepted the encryption context.
func cacheKeyFor(keyID string, wrapped []byte, secretID string, version uint64) cacheKey {
	h := sha256.New()
	var b []byte
	b = appendString(b, keyID)
	b = binary.BigEndian.AppendUint64(b, uint64(len(wrapped)))
	h.Write(b)
	h.Write(wrapped)
	b = appendString(b[:0], secretID)
	b = binary.BigEndian.AppendUint64(b, version)
	h.Write(b)
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// keyCache caches data keys as ready-to-use AEADs, so the raw key bytes can
// be cleared as soon as the AEAD is built. cipher.AEAD values are safe for
// concurrent use, so an entry evicted while in use stays valid.
type keyCache struct {
	lru *expirable.LRU[cacheKey, cipher.AEAD]
}

func newKeyCache(opts CacheOptions) *keyCache {
	if opts.Size <= 0 {
		opts.Size = defaultCacheSize
	}
	if opts.TTL <= 0 {
		opts.TTL = defaultCacheTTL
	}
	return &keyCache{lru: expirable.NewLRU[cacheKey, cipher.AEAD](opts.Size, nil, opts.TTL)}
}

func (c *keyCache) get(k cacheKey) (cipher.AEAD, bool) { return c.lru.Get(k) }

func (c *keyCache) add(k cacheKey, aead cipher.AEAD) { c.lru.Add(k, aead) }
