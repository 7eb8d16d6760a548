package order

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/shopspring/decimal"
	"golang.org/x/text/currency"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
)

// Limits bound what one order may contain.
type Limits struct {
	MaxBodyBytes int64 // default 64 KiB
	MaxItems     int   // default 100
	MaxQuantity  int   // per line, default 10000
	MaxIDLen     int   // customerId and itemId, default 64
}

func (l Limits) withDefaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 64 << 10
	}
	if l.MaxItems <= 0 {
		l.MaxItems = 100
	}
	if l.MaxQuantity <= 0 {
		l.MaxQuantity = 10000
	}
	if l.MaxIDLen <= 0 {
		l.MaxIDLen = 64
	}
	return l
}

// createRequest is the POST /api/orders body. Numbers stay json.Number so that validation sees
// exactly what the client sent (2.50 vs 2.5, 1e3, 2.0 as a quantity).
type createRequest struct {
	CustomerID      *string       `json:"customerId"`
	Currency        *string       `json:"currency"`
	Items           []requestItem `json:"items"`
	DeliveryAddress *string       `json:"deliveryAddress,omitempty"`
}

type requestItem struct {
	ItemID    *string     `json:"itemId"`
	Quantity  json.Number `json:"quantity"`
	UnitPrice json.Number `json:"unitPrice"`
}

// newOrder is a validated request.
type newOrder struct {
	CustomerID string
	Currency   string
	Items      []event.Item
	Total      event.Money
}

// hash identifies the request's meaning for Idempotency-Key comparison (not its formatting).
func (o newOrder) hash() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s", o.CustomerID, o.Currency)
	for _, it := range o.Items {
		fmt.Fprintf(&b, "\x00%s\x00%d\x00%s", it.ItemID, it.Quantity, it.UnitPrice.String())
	}
	h := sha256.Sum256([]byte(b.String()))
	return h[:]
}

// validate checks every field and returns all problems at once, each naming its field. A list
// longer than MaxItems is reported separately (413) by the caller.
func (r createRequest) validate(l Limits) (newOrder, []httpx.FieldError) {
	var errs []httpx.FieldError
	add := func(field, msg string) { errs = append(errs, httpx.FieldError{Field: field, Message: msg}) }
	var o newOrder
	switch {
	case r.CustomerID == nil || strings.TrimSpace(*r.CustomerID) == "":
		add("customerId", "is required and must not be blank")
	case !validID(*r.CustomerID, l.MaxIDLen):
		add("customerId", fmt.Sprintf("must be at most %d printable characters", l.MaxIDLen))
	default:
		o.CustomerID = *r.CustomerID
	}
	switch {
	case r.Currency == nil || *r.Currency == "":
		add("currency", "is required (ISO 4217 code such as EUR)")
	default:
		u, err := currency.ParseISO(*r.Currency)
		if err != nil || len(*r.Currency) != 3 || strings.ToUpper(*r.Currency) != *r.Currency || u.String() == "XXX" {
			add("currency", fmt.Sprintf("%q is not an ISO 4217 currency code", *r.Currency))
		} else {
			o.Currency = u.String()
		}
	}
	if len(r.Items) == 0 {
		add("items", "at least one item is required")
	}
	total := decimal.Zero
	for i, it := range r.Items {
		f := fmt.Sprintf("items[%d]", i)
		item := event.Item{}
		if it.ItemID == nil || strings.TrimSpace(*it.ItemID) == "" {
			add(f+".itemId", "is required and must not be blank")
		} else if !validID(*it.ItemID, l.MaxIDLen) {
			add(f+".itemId", fmt.Sprintf("must be at most %d printable characters", l.MaxIDLen))
		} else {
			item.ItemID = *it.ItemID
		}
		q, qerr := parseQuantity(it.Quantity, l.MaxQuantity)
		if qerr != "" {
			add(f+".quantity", qerr)
		}
		item.Quantity = q
		p, perr := parsePrice(it.UnitPrice)
		if perr != "" {
			add(f+".unitPrice", perr)
		}
		item.UnitPrice = p
		if qerr == "" && perr == "" {
			total = total.Add(p.Mul(decimal.NewFromInt(int64(q))))
		}
		o.Items = append(o.Items, item)
	}
	if total.GreaterThan(event.MaxMoney) {
		add("items", fmt.Sprintf("order total exceeds %s", event.MaxMoney.StringFixed(2)))
	}
	o.Total = event.Money{Decimal: total}
	return o, errs
}

func validID(s string, maxLen int) bool {
	if len(s) > maxLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func parseQuantity(n json.Number, maxQ int) (int, string) {
	if n == "" {
		return 0, "is required"
	}
	d, err := parseDecimal(n)
	if err != nil || !d.IsInteger() || d.Sign() <= 0 {
		return 0, "must be a positive integer"
	}
	if d.GreaterThan(decimal.NewFromInt(int64(maxQ))) {
		return 0, fmt.Sprintf("must be at most %d", maxQ)
	}
	return int(d.IntPart()), ""
}

func parsePrice(n json.Number) (event.Money, string) {
	if n == "" {
		return event.Money{}, "is required"
	}
	d, err := parseDecimal(n)
	if err != nil {
		return event.Money{}, "must be a decimal number"
	}
	m := event.Money{Decimal: d}
	switch {
	case d.Sign() <= 0:
		return m, "must be positive"
	case !m.HasAtMostTwoDecimals():
		return m, "must have at most 2 decimal places"
	case d.GreaterThan(event.MaxMoney):
		return m, "is too large"
	}
	return m, ""
}

// parseDecimal bounds length and exponent before any arithmetic, so "1e999999999" cannot make the
// server allocate a huge number.
func parseDecimal(n json.Number) (decimal.Decimal, error) {
	if len(n) > 32 {
		return decimal.Decimal{}, fmt.Errorf("too long")
	}
	d, err := decimal.NewFromString(n.String())
	if err != nil {
		return d, err
	}
	if e := d.Exponent(); e > 20 || e < -20 {
		return d, fmt.Errorf("out of range")
	}
	return d, nil
}
