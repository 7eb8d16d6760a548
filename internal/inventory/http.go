package inventory

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/orderflow/orderflow/internal/catalog"
	"github.com/orderflow/orderflow/internal/platform/httpx"
)

type api struct {
	store  *store
	log    *slog.Logger
	tokens *httpx.PageTokens
}

func (a *api) routes(mux *httpx.Mux) {
	mux.Operator("GET /api/inventory", a.list)
	mux.Operator("GET /api/inventory/{itemId}", a.get)
	mux.Operator("PUT /api/inventory/{itemId}", a.put)
}

// validItemID accepts what the catalog and the order API accept: 1 to 64 bytes of UTF-8 without
// control characters (Postgres refuses invalid UTF-8, and that must be a 400, not an outage).
func validItemID(id string) bool { return httpx.ValidID(id, 64) }

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("itemId")
	if !validItemID(id) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "itemId must be 1 to 64 characters of UTF-8 text"))
		return
	}
	it, err := a.store.item(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no item "+id))
	case err != nil:
		a.unavailable(w, r, err)
	default:
		httpx.WriteJSON(w, http.StatusOK, it)
	}
}

func (a *api) put(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("itemId")
	if !validItemID(id) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "itemId must be 1 to 64 characters"))
		return
	}
	var body struct {
		Available *int `json:"available"`
	}
	if p := httpx.DecodeJSON(w, r, 4<<10, &body); p != nil {
		httpx.WriteProblem(w, r, p)
		return
	}
	if body.Available == nil || *body.Available < 0 || *body.Available > catalog.MaxStock {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "invalid stock level",
			httpx.FieldError{Field: "available", Message: "is required: an integer from 0 to 1000000000"}))
		return
	}
	it, err := a.store.setAvailable(r.Context(), id, *body.Available)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.log.Info("stock set by operator", "itemId", id, "available", it.Available)
	httpx.WriteJSON(w, http.StatusOK, it)
}

type page struct {
	Items         []Item `json:"items"`
	NextPageToken string `json:"nextPageToken,omitempty"`
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "limit must be an integer from 1 to 500"))
			return
		}
		limit = n
	}
	after, err := a.tokens.Open("inventory", r.URL.Query().Get("pageToken"))
	if err != nil {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "pageToken is not one this listing issued: pass nextPageToken from the previous page unchanged"))
		return
	}
	items, err := a.store.list(r.Context(), string(after), limit+1)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	p := page{Items: items}
	if len(items) > limit {
		p.Items = items[:limit]
		p.NextPageToken = a.tokens.Seal("inventory", []byte(items[limit-1].ItemID))
	}
	if p.Items == nil {
		p.Items = []Item{}
	}
	httpx.WriteJSON(w, http.StatusOK, p)
}

func (a *api) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Unavailable(w, r, a.log, "inventory store", err)
}
