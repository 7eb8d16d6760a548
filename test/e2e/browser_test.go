package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orderflow/orderflow/internal/testkit"
)

// TestTrackingPageInBrowser drives the tracking page in headless Chromium against orderflow dev
// with ADMIN_TOKEN set: the operator panels say a token is required, placing an order needs none;
// watch it reach DELIVERY_ASSIGNED live, see the driver and the ETA; then give the token once and
// see the operator panels load and the order's trace drawn as a waterfall; keep screenshots (go test -artifacts keeps it;
// UPDATE_SCREENSHOT=1 refreshes the README's); then cancel the order with the page's button and see
// it end CANCELLED with its compensations in the timeline.
func TestTrackingPageInBrowser(t *testing.T) {
	e2e(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; scripts/infra up installs it (Debian package chromium)")
	}
	const token = "browser-operator-token"
	// The built-in catalog, as a newcomer sees it; deliveries take 30-60 s, so the order can still be
	// cancelled at the end.
	sys := startDev(t, false, "ADMIN_TOKEN="+token, "DELIVERY_TIME_SPEED=60")
	alloc, cancel := chromedp.NewExecAllocator(testkit.Context(t, 3*time.Minute), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1100))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()

	page := "http://" + sys.addrs["QUERY"] + "/"
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// The form is filled from /ui/config.json (the seeded catalog).
	step("open the page", chromedp.Navigate(page), chromedp.WaitVisible("#lines select"))
	options := text("#lines select")
	// Without a token the operator panels say so instead of failing silently.
	step("operator panels without a token", chromedp.WaitVisible("#orders .needs-token"), chromedp.WaitVisible("#dlq .needs-token"),
		chromedp.WaitVisible("#operator-access"))
	noToken := text("#orders") + " / " + text("#dlq")
	// A bad price first: the API's validation error is shown on the page.
	step("submit an invalid order", chromedp.SetValue("#lines .price", "-1"), chromedp.Click("#place"), chromedp.WaitVisible("#form-errors li"))
	errText := text("#form-errors")
	step("place an order", chromedp.SetValue("#lines .price", "4.50"), chromedp.SetValue("#customer", "browser-test"),
		chromedp.Click("#place"), chromedp.WaitVisible("#detail"))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`["DELIVERY_ASSIGNED","DELIVERED"].includes(document.getElementById("detail-status").textContent)`,
		chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("the order never showed DELIVERY_ASSIGNED: %v (status %q)", err, text("#detail-status"))
	}
	step("timeline", chromedp.WaitVisible("#timeline li"))
	status, eta, driver := text("#detail-status"), text(`dd[data-fact="ETA"]`), text(`dd[data-fact="Driver"]`)
	orderID := text("#detail-id")
	step("the order's lines", chromedp.WaitVisible("#order-lines tfoot td"))
	lines, total := text("#order-lines tbody"), text("#order-lines tfoot")
	hover, err := chromedp.Run(ctx, chromedp.AttributeValue(`dd[data-fact="Last event"] time`, "title"))
	if err != nil {
		t.Fatal(err)
	}
	lastEvent := hover.Value
	// A wrong token is refused and forgotten; the right one, given once, loads both panels.
	// The form is submitted as by the button, without pointer coordinates: the page may still be
	// scrolling smoothly to the order, and a click computed before the scroll misses.
	useToken := func(tok string) {
		step("type a token", chromedp.SetValue("#op-token", tok))
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("op-token-form").requestSubmit(), true`)); err != nil {
			t.Fatalf("submit the token: %v", err)
		}
	}
	useToken("wrong")
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#orders").textContent.includes("was refused")`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("a wrong token was not reported as refused: %v (orders panel %q)", err, text("#orders"))
	}
	useToken(token)
	step("the operator panels load", chromedp.WaitVisible("#orders li button"), chromedp.WaitVisible("#dlq h3"), chromedp.WaitNotVisible("#operator-access"))
	withToken := text("#orders")
	dlq := text("#dlq")
	// The order's trace as a waterfall, from dev mode's in-process trace store: every service's
	// spans, the placement first, the projection's last hop included.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => {
		const rows = [...document.querySelectorAll("#trace .span-row")];
		const services = new Set(rows.map((r) => r.dataset.service));
		return services.size === 5 && rows.some((r) => r.dataset.service === "query-api" && r.textContent.includes("raw.delivery-events process"));
	})()`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the waterfall did not show the saga: %v (%q)", err, text("#trace"))
	}
	waterfall := text("#trace")
	first := text("#trace .span-row")
	if !strings.Contains(first, "order-service") || !strings.Contains(first, "POST /api/orders") || !strings.Contains(waterfall, " ms") {
		t.Errorf("waterfall starts with %q; want the placement (order-service POST /api/orders) and durations in ms", first)
	}
	dbRows := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#trace .span-row[data-kind="client"]').length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	hidden := dbRows()
	step("show the database calls", chromedp.Click("#trace-db"))
	if shown := dbRows(); hidden != 0 || shown == 0 {
		t.Errorf("database spans: %d rows hidden by default (want 0), %d shown on request (want some)", hidden, shown)
	}
	step("hide them again", chromedp.Click("#trace-db"))
	trace, err := chromedp.Run(ctx, chromedp.Screenshot("#trace"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "trace-waterfall.png"), trace, 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "images", "trace-waterfall.png"), trace, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("orderflow.operatorToken")`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(options, "SKU-001 · Espresso Beans") {
		t.Errorf("item choices %q lack the seeded catalog", options)
	}
	if !strings.Contains(errText, "unitPrice") {
		t.Errorf("validation error shown as %q; want the API's field error for unitPrice", errText)
	}
	if status != "DELIVERY_ASSIGNED" && status != "DELIVERED" {
		t.Errorf("status %q", status)
	}
	if strings.TrimSpace(eta) == "" || strings.TrimSpace(driver) == "" {
		t.Errorf("ETA %q, driver %q: both must be shown", eta, driver)
	}
	// What was ordered: item, catalog name, quantity, unit price and line total in the order's
	// currency, and the total; times relative, the exact one on hover.
	for _, want := range []string{"SKU-001", "Espresso Beans", "1", "€4.50"} {
		if !strings.Contains(lines, want) {
			t.Errorf("order lines %q lack %q", lines, want)
		}
	}
	if !strings.Contains(total, "Total") || !strings.Contains(total, "€4.50") {
		t.Errorf("order total %q, want €4.50", total)
	}
	if lastEvent == "" || !strings.Contains(text(`dd[data-fact="Last event"]`), "ago") && !strings.Contains(text(`dd[data-fact="Last event"]`), "now") {
		t.Errorf("last event shown as %q (title %q); want a relative time with the exact one on hover", text(`dd[data-fact="Last event"]`), lastEvent)
	}
	if strings.Count(noToken, "operator token required") != 2 {
		t.Errorf("without a token the operator panels show %q; want \"operator token required\" in both", noToken)
	}
	if len(orderID) < 8 || !strings.Contains(withToken, orderID[:8]) || !strings.Contains(dlq, "dlq.order-events") || stored != token {
		t.Errorf("with the token: orders %q (want %s), dead letters %q, sessionStorage %q", withToken, orderID, dlq, stored)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "tracking-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("status %s, driver %s, ETA %s; screenshot %s (%d bytes)", status, driver, eta, shot, len(png))
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "images", "tracking-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Cancel it with the page's button (not delivered yet: a delivery takes 30-60 s here): the order ends CANCELLED with its reason, and the timeline shows every compensation.
	if status == "DELIVERED" {
		t.Fatal("the order was delivered before the cancellation step: nothing left to cancel")
	}
	step("cancel the order", chromedp.WaitVisible("#cancel-order"), chromedp.Click("#cancel-order"))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("detail-status").textContent === "CANCELLED" &&
		document.getElementById("timeline").textContent.includes("payment refunded") &&
		document.getElementById("timeline").textContent.includes("stock released: ORDER_CANCELLED")`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the cancellation did not show: %v (status %q, result %q, timeline %q)", err, text("#detail-status"), text("#cancel-result"), text("#timeline"))
	}
	timeline, reason := text("#timeline"), text(`dd[data-fact="Cancelled because"]`)
	for _, want := range []string{"cancellation requested: CUSTOMER_REQUEST (cancelled on the tracking page)", "cancelled: CUSTOMER_REQUEST; driver"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("timeline %q lacks %q", timeline, want)
		}
	}
	if reason != "CUSTOMER_REQUEST" || !strings.Contains(text("#cancel-result"), "Cancellation requested") {
		t.Errorf("cancel reason %q, result %q", reason, text("#cancel-result"))
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("cancel-order").hidden`)); err != nil || !hidden {
		t.Errorf("the Cancel button is still offered on a cancelled order (%v)", err)
	}
}
