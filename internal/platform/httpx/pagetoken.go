package httpx

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// ErrBadPageToken: a page token this deployment did not issue for this listing (malformed,
// altered, from another listing, or signed with another key). Answer 400.
var ErrBadPageToken = errors.New("invalid page token")

// MaxCursor bounds what a page token can carry (a Cassandra paging state is well under it).
const MaxCursor = 1024

const (
	pageTokenVersion = 1
	pageTokenMAC     = 16 // bytes of HMAC-SHA256 kept: forging one is a 2^-128 guess
)

// PageTokens turns a store's cursor (a Cassandra paging state, the last key of a page) into an
// opaque token for the client, and back. A token is the cursor with an HMAC over the listing it
// belongs to (its scope: which query, with which filter), so a client can neither forge nor alter
// one nor carry it to another listing, and nothing a client invents reaches the database.
type PageTokens struct{ key []byte }

// NewPageTokens derives the signing key from secret (the deployment's ADMIN_TOKEN, shared by its
// replicas). An empty secret gets a random key: tokens then hold for this process only.
func NewPageTokens(secret string) *PageTokens {
	ikm := []byte(secret)
	if secret == "" {
		ikm = []byte(rand.Text())
	}
	m := hmac.New(sha256.New, ikm)
	m.Write([]byte("orderflow page tokens v1"))
	return &PageTokens{key: m.Sum(nil)}
}

func (p *PageTokens) mac(scope string, cursor []byte) []byte {
	m := hmac.New(sha256.New, p.key)
	var n [binary.MaxVarintLen64]byte
	m.Write([]byte{pageTokenVersion})
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(scope)))])
	m.Write([]byte(scope))
	m.Write(cursor)
	return m.Sum(nil)[:pageTokenMAC]
}

// Seal returns the token for cursor in scope; "" when there is no next page (empty cursor). A
// cursor longer than MaxCursor makes a token Open refuses; the stores' cursors (a Cassandra
// paging state, an id of at most 64 bytes) stay far below it.
func (p *PageTokens) Seal(scope string, cursor []byte) string {
	if len(cursor) == 0 {
		return ""
	}
	b := make([]byte, 0, 1+len(cursor)+pageTokenMAC)
	b = append(b, pageTokenVersion)
	b = append(b, cursor...)
	b = append(b, p.mac(scope, cursor)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Open returns the cursor a token sealed for scope carries; nil for "" (the first page), and
// ErrBadPageToken for anything this deployment did not seal for scope.
func (p *PageTokens) Open(scope, token string) ([]byte, error) {
	if token == "" {
		return nil, nil
	}
	if len(token) > base64.RawURLEncoding.EncodedLen(1+MaxCursor+pageTokenMAC) {
		return nil, ErrBadPageToken
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 1+1+pageTokenMAC || b[0] != pageTokenVersion {
		return nil, ErrBadPageToken
	}
	cursor, sum := b[1:len(b)-pageTokenMAC], b[len(b)-pageTokenMAC:]
	if !hmac.Equal(sum, p.mac(scope, cursor)) {
		return nil, ErrBadPageToken
	}
	return cursor, nil
}
