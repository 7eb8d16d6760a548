// The tracking page: talks to query-api (same origin) for views, history, the live stream and
// the dead-letter topics, and to order-service (config.orderApi, CORS) to place orders.
// Everything is rendered with textContent: data from the APIs is never parsed as HTML.
"use strict";

const STEPS = ["CREATED", "INVENTORY_RESERVED", "PAYMENT_AUTHORIZED", "DELIVERY_ASSIGNED", "DELIVERED"];
const FAILED = { INVENTORY_REJECTED: 1, PAYMENT_FAILED: 2 };
// ENDED are the statuses after which a cancellation is refused (409) or pointless.
const ENDED = ["INVENTORY_REJECTED", "PAYMENT_FAILED", "DELIVERED", "CANCELLED"];
let config = { orderApi: "", items: [] };
let stream = null;

const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.detail || body.title || r.statusText), { problem: body, status: r.status });
  return body;
}
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "—");
// fmtMoney formats an amount in the order's currency for the reader's locale ("€4.50").
function fmtMoney(amount, currency) {
  const n = Number(amount);
  try { return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(n); } catch { return `${n.toFixed(2)} ${currency}`; }
}
// timeEl shows t relative to now ("2s ago", "in 30s"), the exact time on hover; tick keeps it current.
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "narrow" });
function relText(t) {
  const s = Math.round((new Date(t).getTime() - Date.now()) / 1000);
  const [v, unit] = Math.abs(s) < 60 ? [s, "second"] : Math.abs(s) < 3600 ? [Math.round(s / 60), "minute"] :
    Math.abs(s) < 86400 ? [Math.round(s / 3600), "hour"] : [Math.round(s / 86400), "day"];
  return relative.format(v, unit);
}
function timeEl(t) {
  return el("time", { datetime: t, title: fmtTime(t), "data-rel": "" }, relText(t));
}
function tick() { for (const e of document.querySelectorAll("time[data-rel]")) e.textContent = relText(e.getAttribute("datetime")); }

// ---- operator access ----
// Listing orders and the dead-letter topics are operator endpoints: with ADMIN_TOKEN set they
// need it as a bearer token. The page asks for it once and keeps it for this tab only
// (sessionStorage), never in the URL or in localStorage.
const TOKEN_KEY = "orderflow.operatorToken";
const needsToken = (e) => e.status === 401 || e.status === 403;
function operatorJSON(url, opts = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { ...(opts.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  return getJSON(url, { ...opts, headers }).catch((e) => { throw Object.assign(e, { sentToken: token }); });
}
// askForToken shows the token form, saying why, and the panel's own message.
let tokenRefused = false; // the last token given was refused: say so until another is given
function askForToken(box, e) {
  if (e.status === 401 && e.sentToken) {
    tokenRefused = true;
    if (sessionStorage.getItem(TOKEN_KEY) === e.sentToken) sessionStorage.removeItem(TOKEN_KEY);
  }
  const why = e.status === 403 ? "operator access: this page is not on the server's machine and no ADMIN_TOKEN is set" :
    tokenRefused ? "operator token required: the one given was refused" : "operator token required";
  box.replaceChildren(el(box.tagName === "UL" ? "li" : "p", { class: "needs-token" }, why));
  $("operator-access").hidden = e.status === 403;
}
function useToken(ev) {
  ev.preventDefault();
  const token = $("op-token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  tokenRefused = false;
  $("op-token").value = "";
  $("operator-access").hidden = true;
  loadOrders();
  loadDLQ();
  if (!$("detail").hidden) loadTrace($("detail-id").textContent);
}

// ---- placing an order ----
function addLine(itemId = "", qty = 1, price = "4.50") {
  const select = el("select", { "aria-label": "Item" });
  for (const it of config.items) select.append(el("option", { value: it.itemId }, `${it.itemId} · ${it.name}`));
  if (itemId) select.value = itemId;
  const line = el("div", { class: "line" }, select,
    el("input", { type: "number", min: "1", value: String(qty), "aria-label": "Quantity", class: "qty" }),
    el("input", { inputmode: "decimal", value: price, "aria-label": "Unit price", class: "price" }),
    el("button", { type: "button", class: "secondary", onclick: () => { if ($("lines").children.length > 1) line.remove(); } }, "Remove"));
  $("lines").append(line);
}

async function placeOrder(ev) {
  ev.preventDefault();
  const errors = $("form-errors");
  errors.replaceChildren();
  const items = [...$("lines").children].map((l) => ({
    itemId: l.querySelector("select").value,
    quantity: Number(l.querySelector(".qty").value),
    unitPrice: l.querySelector(".price").value.trim(),
  }));
  const body = { customerId: $("customer").value.trim(), currency: "EUR", items };
  $("place").disabled = true;
  try {
    const order = await getJSON(config.orderApi + "/api/orders", {
      method: "POST", headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() }, body: JSON.stringify(body),
    });
    remember(order.orderId);
    await loadOrders();
    openOrder(order.orderId);
  } catch (e) {
    errors.append(el("p", {}, e.problem && e.problem.title ? `${e.problem.title}: ${e.message}` : `The order could not be placed: ${e.message}`));
    if (e.problem && e.problem.errors) errors.append(el("ul", {}, ...e.problem.errors.map((f) => el("li", {}, `${f.field}: ${f.message}`))));
  } finally {
    $("place").disabled = false;
  }
}

// ---- recent orders ----
function remember(id) {
  const ids = JSON.parse(localStorage.getItem("orderflow.orders") || "[]").filter((x) => x !== id);
  localStorage.setItem("orderflow.orders", JSON.stringify([id, ...ids].slice(0, 20)));
}
async function loadOrders() {
  const list = $("orders");
  try {
    const { orders = [] } = await operatorJSON("/api/orders?limit=100");
    orders.sort((a, b) => (b.createdAt || "").localeCompare(a.createdAt || ""));
    list.replaceChildren(...orders.slice(0, 30).map((o) => el("li", {},
      el("button", { type: "button", class: "link", onclick: () => openOrder(o.orderId) }, o.orderId.slice(0, 8)),
      el("span", {}, o.customerId || ""), el("span", { class: "status" }, o.status))));
    if (!orders.length) list.replaceChildren(el("li", {}, "No orders yet."));
  } catch (e) {
    if (needsToken(e)) askForToken(list, e);
    else list.replaceChildren(el("li", {}, `Orders unavailable: ${e.message}`));
  }
}

// ---- one order, live ----
function renderView(v) {
  $("detail-id").textContent = v.orderId;
  const status = $("detail-status");
  status.textContent = v.status || "waiting for the first event";
  status.className = "status" + (FAILED[v.status] || v.status === "CANCELLED" ? " bad" : v.status === "DELIVERY_ASSIGNED" || v.status === "DELIVERED" ? " ok" : "");
  // A cancelled order shows the steps it had reached (from the facts known), then "cancelled".
  const reachedBefore = v.deliveryId ? 3 : v.paymentId != null ? 2 : v.reservationId ? 1 : 0;
  const reached = v.status === "CANCELLED" ? reachedBefore : STEPS.indexOf(v.status);
  const failedAt = v.status === "INVENTORY_REJECTED" ? 1 : v.status === "PAYMENT_FAILED" ? 2 : v.status === "CANCELLED" ? reachedBefore + 1 : -1;
  $("steps").replaceChildren(...STEPS.map((s, i) => {
    let cls = "";
    if (failedAt >= 0) cls = i < failedAt ? "done" : i === failedAt ? "failed" : "";
    else if (i <= reached) cls = "done";
    const label = i === failedAt ? v.status : s;
    if (v.status === "CANCELLED" && i > failedAt) return null;
    return el("li", { class: cls, "aria-current": i === (failedAt >= 0 ? failedAt : reached) ? "step" : "false" }, label.replaceAll("_", " ").toLowerCase());
  }).filter(Boolean));
  $("cancel-order").hidden = ENDED.includes(v.status);
  const facts = [
    ["Customer", v.customerId], ["Total", v.totalAmount != null ? fmtMoney(v.totalAmount, v.currency) : ""],
    ["Reservation", v.reservationId], ["Rejected because", v.rejectionReason],
    ["Payment", v.paymentId != null ? `#${v.paymentId}` : ""], ["Declined because", v.failureReason],
    ["Waiting for a driver since", v.waitingSince ? timeEl(v.waitingSince) : ""],
    ["Driver", v.driverName], ["Delivery", v.deliveryId],
    ["ETA", v.estimatedDeliveryTime ? timeEl(v.estimatedDeliveryTime) : ""], ["Delivered", v.deliveredAt ? timeEl(v.deliveredAt) : ""],
    ["Cancelled because", v.cancelReason], ["Cancelled", v.cancelledAt ? timeEl(v.cancelledAt) : ""],
    ["Refunded", v.refundedAt ? timeEl(v.refundedAt) : ""],
    ["Last event", v.lastEventAt ? timeEl(v.lastEventAt) : ""],
  ].filter(([, val]) => val);
  $("facts").replaceChildren(...facts.flatMap(([k, val]) => [el("dt", {}, k), el("dd", { "data-fact": k }, val)]));
}
async function loadTimeline(id) {
  try {
    const { events = [] } = await getJSON(`/api/orders/${encodeURIComponent(id)}/events`);
    $("timeline").replaceChildren(...events.map((e) => el("li", {}, timeEl(e.occurredAt), e.summary || e.eventType)));
  } catch { /* the view shows what is known; the timeline fills in on the next update */ }
}
// loadLines shows what was ordered, from order-service (the order's owner; CORS allows this page).
async function loadLines(id) {
  const body = $("order-lines").querySelector("tbody"), foot = $("order-lines").querySelector("tfoot");
  try {
    const o = await getJSON(`${config.orderApi}/api/orders/${encodeURIComponent(id)}`);
    const names = Object.fromEntries(config.items.map((it) => [it.itemId, it.name]));
    body.replaceChildren(...(o.items || []).map((l) => {
      const cents = Math.round(Number(l.unitPrice) * 100) * l.quantity;
      return el("tr", {}, el("td", {}, l.itemId), el("td", {}, names[l.itemId] || "—"), el("td", { class: "num" }, String(l.quantity)),
        el("td", { class: "num" }, fmtMoney(l.unitPrice, o.currency)), el("td", { class: "num" }, fmtMoney(cents / 100, o.currency)));
    }));
    foot.replaceChildren(el("tr", {}, el("th", { scope: "row", colspan: "4" }, "Total"), el("td", { class: "num" }, fmtMoney(o.totalAmount, o.currency))));
  } catch (e) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "5" }, `Items unavailable: ${e.message}`)));
    foot.replaceChildren();
  }
}
// loadTrace draws the order's trace as a waterfall: one row per span (service, name, duration),
// indented by depth, its bar placed on the trace's time axis. The axis covers the saga's first
// burst (placement to assignment) unless the whole trace is asked for: later spans (ETA updates,
// the completion, minutes on) are drawn at the right edge with how much later they started.
let traceTimer = null, lastTrace = null;
async function loadTrace(id) {
  const box = $("trace");
  try {
    lastTrace = await operatorJSON(`/api/orders/${encodeURIComponent(id)}/trace`);
    drawTrace();
  } catch (e) {
    lastTrace = null;
    if (needsToken(e)) askForToken(box, e);
    else box.replaceChildren(el("p", {}, `No trace: ${e.message}`));
  }
}
function burstEnd(spans) {
  let end = 0;
  for (const s of [...spans].sort((a, b) => a.startMs - b.startMs)) {
    if (end > 0 && s.startMs > end + 1000) break;
    end = Math.max(end, s.startMs + s.durationMs);
  }
  return end;
}
function drawTrace() {
  if (!lastTrace) return;
  const whole = $("trace-axis").getAttribute("aria-pressed") === "true";
  const spans = lastTrace.spans.filter((s) => $("trace-db").checked || s.kind !== "client");
  const end = Math.max(...lastTrace.spans.map((s) => s.startMs + s.durationMs), 0);
  const axis = Math.max(whole ? end : burstEnd(lastTrace.spans), 0.001);
  const services = [...new Set(lastTrace.spans.map((s) => s.service))];
  $("trace").replaceChildren(el("p", { class: "trace-id" },
    `trace ${lastTrace.traceId} · ${lastTrace.spans.length} spans · ${services.length} services · ${(end / 1000).toFixed(2)} s in all, axis ${axis.toFixed(1)} ms`),
    ...spans.map((s) => {
      const later = s.startMs > axis;
      const bar = el("span", { class: `bar svc-${services.indexOf(s.service) % 6}${s.error ? " err" : ""}${later ? " later" : ""}` });
      bar.style.marginLeft = later ? "calc(100% - 2px)" : `${(100 * s.startMs) / axis}%`; // CSSOM: allowed by the CSP
      bar.style.width = later ? "2px" : `${Math.min(Math.max((100 * s.durationMs) / axis, 0.2), 100 - (100 * s.startMs) / axis)}%`;
      const label = el("span", { class: "span-label", title: `${s.service} ${s.name}` }, el("span", { class: "span-service" }, s.service), ` ${s.name}`);
      label.style.paddingLeft = `${s.depth * 0.6}em`;
      return el("div", { class: "span-row", role: "listitem", "data-service": s.service, "data-kind": s.kind, "data-error": String(s.error) },
        label, el("span", { class: "span-axis" }, bar),
        el("span", { class: "span-ms" }, later ? `+${(s.startMs / 1000).toFixed(1)} s` : `${s.durationMs.toFixed(2)} ms`));
    }), ...(lastTrace.truncated ? [el("p", {}, "(later spans left out)")] : []));
}
// traceSoon reloads the waterfall shortly after a change: spans reach the backend in batches.
function traceSoon(id) {
  clearTimeout(traceTimer);
  traceTimer = setTimeout(() => loadTrace(id), 1500);
}

// cancelOrder asks order-service to cancel the open order; delivery-service decides, and the
// stream shows the outcome (CANCELLED with its compensations, or the refusal in the timeline).
async function cancelOrder() {
  const id = $("detail-id").textContent, result = $("cancel-result");
  $("cancel-order").disabled = true;
  try {
    await getJSON(`${config.orderApi}/api/orders/${encodeURIComponent(id)}/cancel`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ comment: "cancelled on the tracking page" }),
    });
    result.textContent = "Cancellation requested: the delivery service decides; the outcome appears below.";
    follow(id); // the stream may have ended (idle): follow the outcome again
  } catch (e) {
    result.textContent = e.status === 409 ? `Too late to cancel: ${e.message}` : `The cancellation failed: ${e.message}`;
  } finally {
    $("cancel-order").disabled = false;
  }
}
function openOrder(id) {
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  $("detail-status").textContent = "loading…";
  $("cancel-result").textContent = "";
  $("steps").replaceChildren(); $("facts").replaceChildren(); $("timeline").replaceChildren(); $("trace").replaceChildren(); lastTrace = null;
  loadLines(id);
  loadTrace(id); // also when the read model cannot answer: the trace shows where the order is
  follow(id);
  $("detail").scrollIntoView({ behavior: "smooth", block: "start" });
}
function follow(id) {
  if (stream) stream.close();
  // The stream sends the current view first, then every change.
  stream = new EventSource(`/api/orders/${encodeURIComponent(id)}/stream`);
  // The server ends the stream at the final status or when it has been idle: no reconnecting then.
  stream.addEventListener("end", () => stream.close());
  stream.addEventListener("order", (m) => {
    const v = JSON.parse(m.data);
    renderView(v);
    loadTimeline(id);
    traceSoon(id);
    if (FAILED[v.status] || ["DELIVERY_ASSIGNED", "DELIVERED", "CANCELLED"].includes(v.status)) loadOrders();
  });
}

// ---- dead letters ----
async function loadDLQ() {
  const box = $("dlq");
  try {
    const { topics = [] } = await operatorJSON("/api/dlq");
    const parts = [];
    for (const t of topics) {
      parts.push(el("h3", {}, `${t.topic} (${t.count})`));
      if (!t.count) continue;
      const { records = [] } = await operatorJSON(`/api/dlq/${encodeURIComponent(t.topic)}?limit=20`);
      const rows = records.map((r) => el("tr", {},
        el("td", {}, `${r.partition}:${r.offset}`), el("td", {}, r.eventType || "undecodable"), el("td", {}, r.key),
        el("td", {}, r.headers["x-consumer-group"] || ""), el("td", {}, r.headers["x-error"] || ""),
        el("td", {}, r.eventId ? el("button", { type: "button", class: "secondary", onclick: () => replay(t.topic, r.eventId) }, "Replay") : "—")));
      parts.push(el("table", {}, el("thead", {}, el("tr", {}, ...["Record", "Type", "Key", "Group", "Error", ""].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, ...rows)));
    }
    box.replaceChildren(...parts);
  } catch (e) {
    if (needsToken(e)) askForToken(box, e);
    else box.replaceChildren(el("p", {}, `Dead-letter topics unavailable: ${e.message}`));
  }
}
async function replay(topic, eventId) {
  try {
    const r = await operatorJSON(`/api/dlq/${encodeURIComponent(topic)}/replay`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ eventIds: [eventId] }) });
    alert(`Replayed ${r.replayed} record(s) to the original topic.`);
  } catch (e) {
    if (needsToken(e)) askForToken($("dlq"), e);
    else alert(`Replay failed: ${e.message}`);
  }
}

async function start() {
  try { config = await getJSON("/ui/config.json"); } catch (e) { $("form-errors").textContent = `Configuration unavailable: ${e.message}`; }
  addLine(config.items[0] ? config.items[0].itemId : "", 1, "4.50");
  $("add-line").addEventListener("click", () => addLine());
  $("order-form").addEventListener("submit", placeOrder);
  $("refresh-orders").addEventListener("click", loadOrders);
  $("refresh-dlq").addEventListener("click", loadDLQ);
  $("cancel-order").addEventListener("click", cancelOrder);
  $("refresh-trace").addEventListener("click", () => loadTrace($("detail-id").textContent));
  $("trace-db").addEventListener("change", drawTrace);
  $("trace-axis").addEventListener("click", () => {
    const whole = $("trace-axis").getAttribute("aria-pressed") !== "true";
    $("trace-axis").setAttribute("aria-pressed", String(whole));
    $("trace-axis").textContent = whole ? "Zoom to the saga" : "Whole trace";
    drawTrace();
  });
  $("op-token-form").addEventListener("submit", useToken);
  setInterval(tick, 5000);
  await Promise.all([loadOrders(), loadDLQ()]);
  const id = new URLSearchParams(location.search).get("order");
  if (id) openOrder(id);
}
start();
