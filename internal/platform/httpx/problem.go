// Package httpx holds the HTTP plumbing every service shares: JSON and RFC 9457 problem responses,
// bounded request decoding, the health/info/metrics endpoints and a server that shuts down gracefully.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FieldError names one invalid request field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
	// RequestID is the id the service's log lines about this request carry (X-Request-Id).
	RequestID string `json:"requestId,omitempty"`
}

// Error makes a Problem usable as an error, so handlers can return it.
func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// NewProblem builds a problem with the standard title for status.
func NewProblem(status int, detail string, fields ...FieldError) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Errors: fields}
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	if p.RequestID == "" && r != nil {
		p.RequestID = RequestID(r.Context())
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Unavailable answers 503 because a dependency failed: the body names what is unavailable in
// general terms and the request id; err, which may hold internal detail (addresses, queries,
// driver messages), goes only to log, with the same id.
func Unavailable(w http.ResponseWriter, r *http.Request, log *slog.Logger, what string, err error) {
	log.Warn(what+" unavailable", "err", err, "requestId", RequestID(r.Context()), "path", r.URL.Path)
	WriteProblem(w, r, NewProblem(http.StatusServiceUnavailable, "the "+what+" is unavailable; retry later"))
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads a JSON body of at most maxBytes into v. It answers the request's problems itself
// (415 wrong content type, 413 too large, 400 malformed or trailing data) and returns them as *Problem.
func DecodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, v any) *Problem {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return NewProblem(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
	} else {
		return NewProblem(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBytes))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return NewProblem(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", maxBytes))
		case errors.As(err, &typeErr):
			return NewProblem(http.StatusBadRequest, "malformed JSON",
				FieldError{Field: typeErr.Field, Message: "must be a " + typeErr.Type.String()})
		case errors.Is(err, io.EOF):
			return NewProblem(http.StatusBadRequest, "request body is empty")
		default:
			return NewProblem(http.StatusBadRequest, "malformed JSON: "+err.Error())
		}
	}
	if dec.More() {
		return NewProblem(http.StatusBadRequest, "malformed JSON: trailing data after the object")
	}
	return nil
}

// ValidID reports whether a path identifier is 1 to maxLen bytes of UTF-8 without control
// characters: anything else is a 400, never a query that the database refuses (a 503).
func ValidID(id string, maxLen int) bool {
	return id != "" && len(id) <= maxLen && utf8.ValidString(id) && !strings.ContainsFunc(id, unicode.IsControl)
}
