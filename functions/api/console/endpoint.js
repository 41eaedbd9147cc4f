// One endpoint: its health and actions (test, enable/disable, rotate, delete), and its tabs:
// the delivery log, stats, recovering a time window, and its settings.

import { del, features, get, patch, post } from "./api.js";
import { checkbox, dialog, field, h, radios, replace, select } from "./dom.js";
import { DISABLED_REASONS, eventPicker, headersEditor, stateBadge } from "./endpoints.js";
import { latencyBars, outcomeBar, progressBar } from "./charts.js";
import { ago, count, duration, instant, localInput, percent, when } from "./format.js";
import { alertBox, busy, empty, explain, facts, heading, loading, markField, secretPanel, statusBadge } from "./ui.js";

const TABS = [
  ["deliveries", "Delivery log"],
  ["stats", "Stats"],
  ["recover", "Recover"],
  ["settings", "Settings"],
];

export async function endpointView(ctx, id, tab = "deliveries") {
  const base = `/v1/webhooks/${encodeURIComponent(id)}`;
  const [endpoint, offer] = await Promise.all([get(base), features()]);
  const route = `#/endpoints/${encodeURIComponent(id)}`;
  const outcome = h("div", { class: "outcome", "aria-live": "polite" });
  const alert = alertBox();
  const health = endpoint.health || {};

  const actions = ctx.can.admin ? actionBar(ctx, endpoint, base, route, outcome, alert) : null;
  const summary = facts([
    ["State", stateBadge(endpoint)],
    ["Events", endpoint.events.length ? endpoint.events.join(", ") : "all events"],
    ["Last success", health.last_success_at ? `${when(health.last_success_at)} (${ago(health.last_success_at)})` : "never"],
    ["Failures in a row", h("span", { class: health.consecutive_failures ? "bad" : "" }, String(health.consecutive_failures ?? "—"))],
    health.failing_since ? ["Failing since", when(health.failing_since)] : null,
    ["Last status code", health.last_status_code ? String(health.last_status_code) : "—"],
    ["Success (24 h)", health.attempts_24h ? `${percent(health.success_rate_24h)} of ${count(health.attempts_24h)} attempts` : "no attempts"],
    endpoint.secret_rotation_overlap_until ? ["Previous secret signs until", when(endpoint.secret_rotation_overlap_until)] : null,
    ["Private network", endpoint.allow_private_network ? "allowed" : "not allowed"],
    endpoint.headers && Object.keys(endpoint.headers).length ? ["Custom headers", Object.keys(endpoint.headers).join(", ")] : null,
    ["Created", when(endpoint.created_at)],
    ["Id", h("code", {}, endpoint.id)],
  ]);
  const disabledNote =
    !endpoint.enabled && endpoint.disabled_reason && endpoint.disabled_reason !== "api"
      ? h("p", { class: "alert warning" }, `This endpoint was ${DISABLED_REASONS[endpoint.disabled_reason]}. Fix the receiver, then enable it again.`)
      : null;

  const tabs = TABS.filter(([name]) => name !== "settings" || ctx.can.admin).filter(
    ([name]) => name !== "recover" || ctx.can.admin || offer.replays,
  );
  const current = tabs.some(([name]) => name === tab) ? tab : "deliveries";
  const tabNav = h(
    "nav",
    { class: "tabs", "aria-label": "Endpoint sections" },
    h("ul", {}, tabs.map(([name, label]) => h("li", {}, h("a", { href: `${route}/${name}`, "aria-current": name === current ? "page" : null }, label)))),
  );
  const panel = h("section", { class: "panel", "aria-label": tabs.find(([name]) => name === current)[1] });
  const view = h(
    "section",
    { class: "endpoint" },
    heading(endpoint.url),
    endpoint.description ? h("p", { class: "description" }, endpoint.description) : null,
    disabledNote,
    summary,
    actions,
    alert.node,
    outcome,
    tabNav,
    panel,
  );
  const panels = { deliveries: deliveriesPanel, stats: statsPanel, recover: recoverPanel, settings: settingsPanel };
  replace(panel, loading());
  try {
    replace(panel, await panels[current](ctx, endpoint, base, offer));
  } catch (error) {
    replace(panel, h("p", { class: "alert error", role: "alert" }, explain(error)));
  }
  return view;
}

// -- actions ---------------------------------------------------------------------------------
function actionBar(ctx, endpoint, base, route, outcome, alert) {
  const test = h("button", { type: "button", class: "secondary" }, "Send test");
  test.addEventListener("click", () =>
    busy(test, alert, async () => {
      replace(outcome, h("p", { class: "loading", role: "status" }, "Sending a test.ping…"));
      const result = await post(`${base}/test`, { message: "sent from the console" });
      replace(outcome, testOutcome(result));
    }),
  );
  const toggle = h("button", { type: "button", class: "secondary" }, endpoint.enabled ? "Disable" : "Enable");
  toggle.addEventListener("click", () =>
    busy(toggle, alert, async () => {
      await patch(base, { enabled: !endpoint.enabled });
      ctx.go(route, endpoint.enabled ? "Endpoint disabled: no new deliveries until it is enabled again." : "Endpoint enabled.");
    }),
  );
  const rotate = h("button", { type: "button", class: "secondary" }, "Rotate secret");
  rotate.addEventListener("click", async () => {
    const overlap = select(
      [
        ["0", "None: the current secret stops signing now"],
        ["3600", "1 hour"],
        ["86400", "24 hours"],
        ["604800", "7 days"],
      ],
      "86400",
    );
    const rotated = await dialog(
      "Rotate the signing secret",
      h(
        "div",
        {},
        h("p", {}, "A new secret is made and shown once. During the overlap deliveries carry signatures with both secrets, so you can update your receiver without missing any."),
        field("Overlap", overlap),
      ),
      { submit: "Rotate", onSubmit: () => post(`${base}/rotate-secret`, { overlap_seconds: Number(overlap.value) }).catch(rethrow) },
    );
    if (!rotated) return;
    replace(
      outcome,
      secretPanel(rotated.secret, {
        title: "New signing secret",
        note: rotated.secret_rotation_overlap_until
          ? `The previous secret keeps signing until ${when(rotated.secret_rotation_overlap_until)}.`
          : "The previous secret no longer signs.",
      }),
    );
    outcome.querySelector("input")?.focus();
  });
  const remove = h("button", { type: "button", class: "danger" }, "Delete");
  remove.addEventListener("click", async () => {
    const deleted = await dialog(
      "Delete this endpoint?",
      h("div", {}, h("p", {}, "It stops receiving events at once, and its delivery history goes with it. This cannot be undone."), h("p", { class: "endpoint-url" }, endpoint.url)),
      { submit: "Delete endpoint", danger: true, onSubmit: () => del(base).then(() => true, rethrow) },
    );
    if (deleted) ctx.go("#/endpoints", "Endpoint deleted.");
  });
  return h("div", { class: "actions toolbar" }, test, toggle, rotate, remove);
}

function rethrow(error) {
  throw new Error(explain(error));
}

function testOutcome(result) {
  const delivered = result.status === "delivered";
  const code = result.status_code ? `HTTP ${result.status_code}` : "no answer";
  return h(
    "div",
    { class: `alert ${delivered ? "success" : "error"} test-outcome`, role: "status" },
    h("strong", {}, delivered ? "Test delivered" : "Test failed"),
    ` — ${code} in ${duration(result.duration_ms)}`,
    result.error ? h("div", { class: "error-text" }, result.error) : null,
    h("div", {}, h("a", { href: `#/deliveries/${encodeURIComponent(result.delivery_id)}` }, "See the delivery")),
  );
}

// -- the delivery log -----------------------------------------------------------------------------
async function deliveriesPanel(ctx, endpoint, base, offer) {
  const catalog = await get("/v1/event-types").catch(() => ({ items: [], families: [] }));
  const status = select(
    [
      ["", "any"],
      ["pending", "pending"],
      ["delivered", "delivered"],
      ["failed", "failed"],
    ],
    "",
  );
  const listId = `event-types-${endpoint.id}`;
  const eventType = h("input", { type: "text", list: listId, autocomplete: "off", spellcheck: "false", placeholder: "rollout.* or rollout.created" });
  const suggestions = h(
    "datalist",
    { id: listId },
    (catalog.families || []).flatMap((family) => [family.filter, ...family.types]).map((value) => h("option", { value })),
  );
  const since = h("input", { type: "datetime-local" });
  const until = h("input", { type: "datetime-local" });
  const statusCode = h("input", { type: "number", min: "100", max: "599", inputmode: "numeric" });
  const alert = alertBox();
  const live = checkbox("Refresh every 5 seconds", { checked: true });
  const filters = h(
    "form",
    { class: "filters-form", novalidate: true },
    field("Status", status, { name: "status" }),
    field("Event type", eventType, { name: "event_type" }),
    suggestions,
    offer.deliverySearch ? field("From", since, { name: "since" }) : null,
    offer.deliverySearch ? field("Until", until, { name: "until" }) : null,
    offer.deliverySearch ? field("Status code", statusCode, { name: "status_code" }) : null,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Apply filters"), h("button", { type: "reset", class: "secondary" }, "Clear")),
  );
  const table = h("div", { class: "log" });
  const cursors = [null];
  let index = 0;
  let shown = "";

  const query = () => ({
    status: status.value,
    event_type: eventType.value.trim(),
    since: offer.deliverySearch ? instant(since.value) : null,
    until: offer.deliverySearch ? instant(until.value) : null,
    status_code: offer.deliverySearch ? statusCode.value : null,
  });

  async function load({ quiet = false } = {}) {
    if (!quiet) replace(table, loading());
    let page;
    try {
      page = await get(`${base}/deliveries`, { ...query(), limit: 20, cursor: cursors[index] });
    } catch (error) {
      markField(filters, error);
      alert.show(error);
      if (!quiet) replace(table);
      return;
    }
    alert.clear();
    const fingerprint = JSON.stringify(page);
    if (quiet && fingerprint === shown) return;
    shown = fingerprint;
    cursors[index + 1] = page.next_cursor;
    replace(table, deliveryTable(page.items, ctx, index === 0 && !hasFilters()), pager(page));
  }

  const hasFilters = () => Object.values(query()).some((value) => value);

  function pager(page) {
    if (!page.next_cursor && index === 0) return null;
    return h(
      "div",
      { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: index === 0, on: { click: () => { index -= 1; load(); } } }, "Newer"),
      h("button", { type: "button", class: "secondary", disabled: !page.next_cursor, on: { click: () => { index += 1; load(); } } }, "Older"),
    );
  }

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    cursors.length = 1;
    index = 0;
    load();
  });
  filters.addEventListener("reset", () => {
    setTimeout(() => {
      cursors.length = 1;
      index = 0;
      load();
    });
  });
  const refresh = h("button", { type: "button", class: "secondary", on: { click: () => load() } }, "Refresh");
  const node = h(
    "div",
    {},
    h("h2", {}, "Delivery log"),
    filters,
    alert.node,
    h("div", { class: "actions" }, refresh, live.wrapper),
    table,
  );
  await load();
  const timer = setInterval(() => {
    if (!node.isConnected) clearInterval(timer);
    else if (live.input.checked && index === 0 && document.visibilityState === "visible") load({ quiet: true });
  }, 5000);
  return node;
}

function deliveryTable(items, ctx, unfiltered) {
  if (!items.length) {
    return empty(
      unfiltered ? "No deliveries yet" : "No deliveries match these filters",
      unfiltered
        ? "Deliveries appear here as events this endpoint subscribes to are written." + (ctx.can.admin ? " Send a test to see one now." : "")
        : "Change or clear the filters.",
    );
  }
  return h(
    "table",
    { class: "table deliveries" },
    h("caption", { class: "visually-hidden" }, "Deliveries, newest first"),
    h("thead", {}, h("tr", {}, ["Created", "Event", "Sequence", "Status", "Attempts", "Last code", "Last error"].map((text) => h("th", { scope: "col" }, text)))),
    h(
      "tbody",
      {},
      items.map((d) =>
        h(
          "tr",
          { dataset: { delivery: d.id } },
          h("td", { "data-label": "Created" }, h("a", { href: `#/deliveries/${encodeURIComponent(d.id)}` }, when(d.created_at))),
          h("td", { "data-label": "Event" }, d.event_type),
          h("td", { "data-label": "Sequence" }, String(d.sequence)),
          h("td", { "data-label": "Status" }, statusBadge(d.status)),
          h("td", { "data-label": "Attempts" }, String(d.attempt_count)),
          h("td", { "data-label": "Last code" }, d.last_status_code ? String(d.last_status_code) : "—"),
          h("td", { "data-label": "Last error", class: "error-text" }, d.last_error || ""),
        ),
      ),
    ),
  );
}

// -- stats ---------------------------------------------------------------------------------------
async function statsPanel(ctx, endpoint, base) {
  const windows = await Promise.all(["24h", "7d"].map((window) => get(`${base}/stats`, { window })));
  const titles = { "24h": "Last 24 hours", "7d": "Last 7 days" };
  return h(
    "div",
    { class: "stats" },
    windows.map((stats) =>
      h(
        "section",
        { class: "stats-window", "aria-label": titles[stats.window] },
        h("h2", {}, titles[stats.window] || stats.window),
        stats.attempts
          ? h("p", { class: "big" }, percent(stats.success_rate), h("span", { class: "unit" }, " success"))
          : h("p", { class: "big muted" }, "No attempts"),
        outcomeBar(stats),
        latencyBars(stats),
        facts([
          ["Attempts", count(stats.attempts)],
          ["Deliveries failed for good", count(stats.failed)],
          ["Latency p50 / p95", `${duration(stats.latency_ms?.p50)} / ${duration(stats.latency_ms?.p95)}`],
        ]),
        stats.top_errors?.length
          ? h("div", {}, h("h3", {}, "Top errors"), h("ul", { class: "top-errors" }, stats.top_errors.map((e) => h("li", {}, `${e.error}: ${count(e.count)}`))))
          : null,
      ),
    ),
  );
}

// -- recover a window ------------------------------------------------------------------------------
const TERMINAL = new Set(["completed", "cancelled"]);

async function recoverPanel(ctx, endpoint, base, offer) {
  const node = h("div", {}, h("h2", {}, "Recover a time window"));
  if (!offer.recover) {
    node.append(fallbackReplay(ctx, endpoint, base));
    return node;
  }
  const list = h("div", { class: "replays" });
  const alert = alertBox();
  if (ctx.can.admin) node.append(recoverForm(base, alert, () => refresh()));
  node.append(alert.node, h("h3", {}, "Recoveries"), list);

  let timer = null;
  async function refresh() {
    let items;
    try {
      items = (await get("/v1/replays", { webhook_id: endpoint.id })).items || [];
    } catch (error) {
      replace(list, h("p", { class: "alert error", role: "alert" }, explain(error)));
      return;
    }
    replace(list, items.length ? replayTable(items, ctx, refresh, alert) : empty("No recoveries yet", ctx.can.admin ? "Pick a window above to send its deliveries again." : "None has been started for this endpoint."));
    clearTimeout(timer);
    if (items.some((r) => !TERMINAL.has(r.status))) {
      timer = setTimeout(() => {
        if (node.isConnected) refresh();
      }, 2000);
    }
  }
  if (offer.replays) await refresh();
  else list.append(h("p", {}, "Following recoveries is not available on this deployment."));
  return node;
}

function recoverForm(base, alert, refresh) {
  const since = h("input", { type: "datetime-local", required: true, value: localInput(new Date(Date.now() - 24 * 3600 * 1000)) });
  const until = h("input", { type: "datetime-local" });
  const which = radios("Which deliveries", "status", [
    ["failed", "Failed ones"],
    ["delivered", "Delivered ones"],
    ["all", "All"],
  ], "failed");
  const missed = checkbox("Also events missed while the endpoint was disabled");
  const timing = radios("When", "timing", [
    ["now", "Now"],
    ["at", "At a scheduled time"],
  ], "now");
  const at = h("input", { type: "datetime-local" });
  const atField = field("Start at", at, { name: "at" });
  atField.hidden = true;
  for (const input of timing.inputs) input.addEventListener("change", () => (atField.hidden = timing.value() !== "at"));
  const submit = h("button", { type: "submit", class: "primary" }, "Recover");
  const form = h(
    "form",
    { class: "form recover-form", novalidate: true },
    h("div", { class: "row" }, field("From", since, { name: "since" }), field("Until", until, { name: "until", hint: "Empty: up to now." })),
    which.fieldset,
    h("div", { "data-field": "missed" }, missed.wrapper),
    timing.fieldset,
    atField,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!since.value) {
      alert.show("Choose where the window starts.");
      since.focus();
      return;
    }
    const body = {
      since: instant(since.value),
      until: instant(until.value),
      status: which.value(),
      missed: missed.input.checked,
      at: timing.value() === "at" ? instant(at.value) : null,
    };
    if (timing.value() === "at" && !body.at) {
      alert.show("Choose when the recovery starts.");
      at.focus();
      return;
    }
    busy(submit, alert, async () => {
      try {
        const started = await post(`${base}/recover`, body);
        alert.show(started.status === "scheduled" ? `Recovery scheduled for ${when(started.at)}.` : "Recovery started.", "success");
      } catch (error) {
        markField(form, error);
        throw error;
      }
      await refresh();
    });
  });
  return form;
}

function replayTable(items, ctx, refresh, alert) {
  return h(
    "table",
    { class: "table replays-table" },
    h("caption", { class: "visually-hidden" }, "Recoveries, newest first"),
    h("thead", {}, h("tr", {}, ["Window", "Deliveries", "Status", "Progress", "Started", ""].map((text) => h("th", { scope: "col" }, text)))),
    h(
      "tbody",
      {},
      items.map((r) => {
        const counts = r.counts || {};
        const cancel =
          ctx.can.admin && !TERMINAL.has(r.status)
            ? h("button", { type: "button", class: "secondary", on: { click: (event) => busy(event.currentTarget, alert, async () => { await del(`/v1/replays/${encodeURIComponent(r.id)}`); await refresh(); }) } }, "Cancel")
            : null;
        return h(
          "tr",
          { dataset: { replay: r.id } },
          h("td", { "data-label": "Window" }, `${when(r.since)} → ${r.until ? when(r.until) : "now"}`),
          h("td", { "data-label": "Deliveries" }, (r.statuses || []).join(", ") + (r.missed ? " + missed" : "")),
          h("td", { "data-label": "Status" }, statusBadge(r.status), r.status === "scheduled" && r.at ? ` for ${when(r.at)}` : ""),
          h(
            "td",
            { "data-label": "Progress" },
            progressBar(counts),
            h("span", { class: "counts" }, `${count(counts.sent ?? 0)} sent · ${count(counts.failed ?? 0)} failed · ${count(counts.skipped ?? 0)} skipped · ${count(counts.queued ?? 0)} queued`),
          ),
          h("td", { "data-label": "Started" }, when(r.created_at)),
          h("td", {}, cancel),
        );
      }),
    ),
  );
}

/** Without the recover route: replay the failed deliveries since a time (POST /v1/webhooks/{id}/replay). */
function fallbackReplay(ctx, endpoint, base) {
  if (!ctx.can.admin) return h("p", {}, "Recovering a window is not available on this deployment.");
  const alert = alertBox();
  const since = h("input", { type: "datetime-local", value: localInput(new Date(Date.now() - 24 * 3600 * 1000)) });
  const submit = h("button", { type: "submit", class: "primary" }, "Replay failed deliveries");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    h("p", {}, "This deployment replays failed deliveries (up to 100 at a time) rather than whole windows."),
    field("Created since", since, { name: "since" }),
    alert.node,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, alert, async () => {
      const replayed = await post(`${base}/replay`, { since: instant(since.value) });
      alert.show(`${replayed.items.length} failed deliveries queued again.`, "success");
    });
  });
  return form;
}

// -- settings ------------------------------------------------------------------------------------
async function settingsPanel(ctx, endpoint, base, offer) {
  const catalog = await get("/v1/event-types");
  const alert = alertBox();
  const url = h("input", { type: "url", required: true, value: endpoint.url, autocomplete: "off", spellcheck: "false" });
  const description = h("textarea", { rows: "2", maxlength: "512" });
  description.value = endpoint.description;
  const privateNetwork = checkbox("Allow a private-network receiver", { checked: endpoint.allow_private_network });
  const picker = eventPicker(catalog, endpoint.events);
  const headers = offer.headers ? headersEditor(endpoint.headers || {}) : null;
  const submit = h("button", { type: "submit", class: "primary" }, "Save changes");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    h("h2", {}, "Settings"),
    field("URL", url, { name: "url" }),
    picker.node,
    field("Description", description, { name: "description" }),
    h("div", { "data-field": "allow_private_network" }, privateNetwork.wrapper),
    headers ? headers.node : null,
    alert.node,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const changes = {};
    if (url.value.trim() !== endpoint.url) changes.url = url.value.trim();
    if (description.value !== endpoint.description) changes.description = description.value;
    if (privateNetwork.input.checked !== endpoint.allow_private_network) changes.allow_private_network = privateNetwork.input.checked;
    const events = picker.value();
    if (JSON.stringify(events) !== JSON.stringify(endpoint.events)) changes.events = events;
    const headerChanges = headers?.value();
    if (headerChanges) changes.headers = headerChanges;
    if (!Object.keys(changes).length) {
      alert.show("Nothing to save: no field was changed.", "info");
      return;
    }
    busy(submit, alert, async () => {
      try {
        await patch(base, changes);
      } catch (error) {
        markField(form, error);
        throw error;
      }
      ctx.go(`#/endpoints/${encodeURIComponent(endpoint.id)}/settings`, "Changes saved.");
    });
  });
  return form;
}

