package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/orderflow/orderflow/internal/delivery"
	"github.com/orderflow/orderflow/internal/inventory"
	"github.com/orderflow/orderflow/internal/order"
	"github.com/orderflow/orderflow/internal/payment"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// initStores prepares the shared servers before the services start (a compose init step or a
// Kubernetes Job): every service's Postgres database and every Kafka topic. Each service also
// creates what it needs at start-up; doing it once up front avoids races between replicas and
// lets the operator see one clear failure.
func initStores(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	var dbs []pg.Config
	var errs []error
	add := func(c pg.Config, err error) {
		errs = append(errs, err)
		dbs = append(dbs, c)
	}
	oc, err := service.Load(getenv, order.Configure)
	add(oc.Postgres, err)
	ic, err := service.Load(getenv, inventory.Configure)
	add(ic.Postgres, err)
	pc, err := service.Load(getenv, payment.Configure)
	add(pc.Postgres, err)
	dc, err := service.Load(getenv, delivery.Configure)
	add(dc.Postgres, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, c := range dbs {
		if err := pg.EnsureDatabase(ctx, c); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "database ready: %s\n", c.Database)
	}
	return createTopics(ctx, getenv, stdout)
}

// probe GETs a URL and succeeds on a 2xx answer: the container health check of an image that has
// no shell or curl (distroless).
func probe(ctx context.Context, url string, stdout io.Writer) error {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("probe: %q is not an http(s) URL", url)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("probe: %s answered %s", url, resp.Status)
	}
	fmt.Fprintf(stdout, "%s %s\n", url, resp.Status)
	return nil
}
