package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
)

// Money is an exact decimal amount. It encodes as a JSON number with exactly two decimal places (50.00)
// and never passes through float64.
type Money struct{ decimal.Decimal }

// MaxMoney bounds every amount the system accepts (a total above it is a validation error, not an overflow).
var MaxMoney = decimal.RequireFromString("999999999999.99")

// NewMoney parses a decimal string such as "12.50". It fails on more than two decimal places.
func NewMoney(s string) (Money, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Money{}, fmt.Errorf("invalid amount %q: %w", s, err)
	}
	m := Money{d}
	if !m.HasAtMostTwoDecimals() {
		return Money{}, fmt.Errorf("amount %q has more than two decimal places", s)
	}
	return m, nil
}

// MustMoney is NewMoney for constants in tests and seeds; it panics on a bad literal.
func MustMoney(s string) Money {
	m, err := NewMoney(s)
	if err != nil {
		panic(err)
	}
	return m
}

// MoneyFromCents builds an amount from integer minor units.
func MoneyFromCents(cents int64) Money { return Money{decimal.New(cents, -2)} }

// HasAtMostTwoDecimals reports whether the amount is representable in cents.
func (m Money) HasAtMostTwoDecimals() bool { return m.Equal(m.Truncate(2)) }

// String formats the amount with two decimal places.
func (m Money) String() string { return m.StringFixed(2) }

// MarshalJSON writes a JSON number with two decimal places.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(m.StringFixed(2)), nil }

// UnmarshalJSON accepts a JSON number (or, leniently, a numeric string) without rounding.
func (m *Money) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return fmt.Errorf("amount must not be null")
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	if len(b) > 40 {
		return fmt.Errorf("amount too long")
	}
	d, err := decimal.NewFromString(string(b))
	if err != nil {
		return fmt.Errorf("invalid amount: %w", err)
	}
	m.Decimal = d
	return nil
}

// NumericValue lets pgx send an amount to a numeric column in binary. Without it pgx falls back to
// the embedded Decimal's driver.Valuer: a string it fails to encode (building an error each time),
// re-parses as text and only then encodes — measured at 2–4 % of the services' CPU.
func (m Money) NumericValue() (pgtype.Numeric, error) {
	return pgtype.Numeric{Int: m.Coefficient(), Exp: m.Exponent(), Valid: true}, nil
}

// ScanNumeric reads a numeric column without a text round trip. NULL, NaN and infinities are not
// amounts.
func (m *Money) ScanNumeric(n pgtype.Numeric) error {
	switch {
	case !n.Valid:
		return errors.New("amount is NULL")
	case n.NaN || n.InfinityModifier != pgtype.Finite:
		return errors.New("amount is not a finite number")
	}
	m.Decimal = decimal.NewFromBigInt(n.Int, n.Exp)
	return nil
}
