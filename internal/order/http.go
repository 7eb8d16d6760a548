package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/platform/httpx"
)

// orders is what the HTTP layer needs from the store (a fake in the fuzz test).
type orders interface {
	create(ctx context.Context, o newOrder, idemKey string) (Order, bool, error)
	get(ctx context.Context, id string) (Order, error)
	cancel(ctx context.Context, id, comment string) (Order, error)
}

type api struct {
	store  orders
	limits Limits
	log    *slog.Logger
	cors   httpx.CORS
}

func (a *api) routes(mux *httpx.Mux) {
	mux.CORS = &a.cors
	mux.Customer("POST /api/orders", a.create)
	mux.Customer("GET /api/orders/{orderId}", a.get)
	mux.Customer("POST /api/orders/{orderId}/cancel", a.cancel)
	mux.Customer("OPTIONS /api/orders", a.cors.Preflight)
	mux.Customer("OPTIONS /api/orders/{orderId}", a.cors.Preflight)
	mux.Customer("OPTIONS /api/orders/{orderId}/cancel", a.cors.Preflight)
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if p := httpx.DecodeJSON(w, r, a.limits.MaxBodyBytes, &req); p != nil {
		httpx.WriteProblem(w, r, p)
		return
	}
	if len(req.Items) > a.limits.MaxItems {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("an order may have at most %d items", a.limits.MaxItems),
			httpx.FieldError{Field: "items", Message: fmt.Sprintf("has %d entries; at most %d allowed", len(req.Items), a.limits.MaxItems)}))
		return
	}
	o, errs := req.validate(a.limits)
	if len(errs) > 0 {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "the order is invalid", errs...))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 200 {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "Idempotency-Key is longer than 200 characters"))
		return
	}
	ord, replayed, err := a.store.create(r.Context(), o, key)
	switch {
	case errors.Is(err, ErrIdempotencyMismatch):
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusUnprocessableEntity,
			"this Idempotency-Key was already used with a different request"))
		return
	case err != nil:
		httpx.Unavailable(w, r, a.log, "order store", err)
		return
	}
	w.Header().Set("Location", "/api/orders/"+ord.OrderID)
	status := http.StatusCreated
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	ord.Items = nil // the create response is the summary; GET returns the items
	httpx.WriteJSON(w, status, ord)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("orderId")
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "orderId must be a UUID"))
		return
	}
	o, err := a.store.get(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no order "+id))
	case err != nil:
		// Never a 404 for an outage: the order may well exist.
		httpx.Unavailable(w, r, a.log, "order store", err)
	default:
		httpx.WriteJSON(w, http.StatusOK, o)
	}
}
