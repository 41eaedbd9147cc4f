// Endpoints: the list with each one's health, and the create form (its secret shown once).

import { features, get, post } from "./api.js";
import { checkbox, field, h, replace } from "./dom.js";
import { ago, percent, when } from "./format.js";
import { alertBox, badge, empty, heading, loading, markField, secretPanel } from "./ui.js";

const PAGE_SIZE = 20;

export async function endpointsView(ctx) {
  const list = h("div", { class: "list" });
  const cursors = [null];
  const newButton = ctx.can.admin ? h("a", { href: "#/endpoints/new", class: "button primary" }, "New endpoint") : null;
  const view = h("section", {}, heading("Endpoints", newButton), list);

  async function show(index) {
    replace(list, loading());
    const page = await get("/v1/webhooks", { limit: PAGE_SIZE, cursor: cursors[index] });
    if (page.next_cursor) cursors[index + 1] = page.next_cursor;
    if (!page.items.length && index === 0) {
      replace(
        list,
        empty(
          "No endpoints yet",
          ctx.can.admin
            ? "Create an endpoint with the URL of your receiver, pick the events it wants, and store its signing secret."
            : "There are no endpoints for this tenant. An administrator (integrations:admin) can create one.",
          newButton ? h("a", { href: "#/endpoints/new", class: "button primary" }, "Create the first endpoint") : null,
        ),
      );
      return;
    }
    const rows = page.items.map((endpoint) => endpointRow(endpoint));
    const pager = h(
      "div",
      { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: index === 0, on: { click: () => show(index - 1) } }, "Previous page"),
      h("button", { type: "button", class: "secondary", disabled: !page.next_cursor, on: { click: () => show(index + 1) } }, "Next page"),
    );
    replace(
      list,
      h(
        "table",
        { class: "table endpoints" },
        h("caption", { class: "visually-hidden" }, "Endpoints and their health"),
        h(
          "thead",
          {},
          h("tr", {}, ["Endpoint", "State", "Last success", "Failures in a row", "Success (24 h)"].map((text) => h("th", { scope: "col" }, text))),
        ),
        h("tbody", {}, rows.map(([row]) => row)),
      ),
      page.next_cursor || index > 0 ? pager : null,
    );
    // Health is per endpoint (GET /v1/webhooks/{id}): filled in as the answers come, four at a time.
    const queue = rows.slice();
    const worker = async () => {
      while (queue.length) {
        const [, fill] = queue.shift();
        await fill();
      }
    };
    void Promise.all([worker(), worker(), worker(), worker()]);
  }

  await show(0);
  return view;
}

function endpointRow(endpoint) {
  const cells = {
    success: h("td", { "data-label": "Last success" }, "…"),
    failures: h("td", { "data-label": "Failures in a row" }, "…"),
    rate: h("td", { "data-label": "Success (24 h)" }, "…"),
  };
  const row = h(
    "tr",
    {},
    h(
      "td",
      { "data-label": "Endpoint" },
      h("a", { href: `#/endpoints/${encodeURIComponent(endpoint.id)}`, class: "endpoint-url" }, endpoint.url),
      endpoint.description ? h("div", { class: "description" }, endpoint.description) : null,
      h("div", { class: "filters" }, endpoint.events.length ? endpoint.events.join(", ") : "all events"),
    ),
    h("td", { "data-label": "State" }, stateBadge(endpoint)),
    cells.success,
    cells.failures,
    cells.rate,
  );
  async function fill() {
    try {
      const detail = await get(`/v1/webhooks/${encodeURIComponent(endpoint.id)}`);
      const health = detail.health || {};
      replace(cells.success, health.last_success_at ? h("span", { title: when(health.last_success_at) }, ago(health.last_success_at)) : "never");
      replace(cells.failures, String(health.consecutive_failures ?? "—"));
      if (health.consecutive_failures > 0) cells.failures.classList.add("bad");
      replace(cells.rate, percent(health.success_rate_24h));
    } catch {
      for (const cell of Object.values(cells)) replace(cell, "—");
    }
  }
  return [row, fill];
}

export const DISABLED_REASONS = {
  api: "disabled by an administrator",
  failing: "disabled automatically: every attempt failed for too long",
  gone: "disabled automatically: the receiver answered 410 Gone",
};

export function stateBadge(endpoint) {
  if (endpoint.enabled) return badge("enabled", "ok");
  const reason = DISABLED_REASONS[endpoint.disabled_reason] || "disabled";
  return h("span", {}, badge("disabled", "off"), h("span", { class: "reason" }, ` ${reason}`));
}

// -- the event filter picker -------------------------------------------------------------------
/** Checkboxes for every family (its wildcard) and type of the catalog; value() → the filters. */
export function eventPicker(catalog, selected = []) {
  const chosen = new Set(selected);
  const known = new Set();
  const everything = checkbox("All events, including types added later", { checked: chosen.size === 0 });
  const groups = [];
  const familyBoxes = [];
  for (const family of catalog.families || []) {
    const wildcard = checkbox(`All ${family.family} (${family.filter})`, { checked: chosen.has(family.filter), value: family.filter });
    known.add(family.filter);
    const types = family.types.map((type) => {
      known.add(type);
      return checkbox(type, { checked: chosen.has(type) || chosen.has(family.filter), value: type });
    });
    familyBoxes.push([wildcard, types]);
    groups.push(
      h("fieldset", { class: "family" }, h("legend", {}, family.family), wildcard.wrapper, h("div", { class: "types" }, types.map((t) => t.wrapper))),
    );
  }
  const others = [...chosen].filter((filter) => !known.has(filter)).map((filter) => checkbox(filter, { checked: true, value: filter }));
  const sync = () => {
    const all = everything.input.checked;
    for (const [wildcard, types] of familyBoxes) {
      wildcard.input.disabled = all;
      for (const type of types) {
        type.input.disabled = all || wildcard.input.checked;
        if (wildcard.input.checked) type.input.checked = true;
      }
    }
    for (const other of others) other.input.disabled = all;
  };
  everything.input.addEventListener("change", sync);
  for (const [wildcard] of familyBoxes) wildcard.input.addEventListener("change", sync);
  sync();
  const node = h(
    "fieldset",
    { class: "event-picker", "data-field": "events" },
    h("legend", {}, "Events"),
    h("p", { class: "hint" }, "Pick whole families (their wildcard also covers types added later) or single types."),
    everything.wrapper,
    h("div", { class: "families" }, groups),
    others.length ? h("fieldset", { class: "family" }, h("legend", {}, "Other filters"), others.map((o) => o.wrapper)) : null,
    h("p", { class: "field-error", hidden: true }),
  );
  return {
    node,
    value() {
      if (everything.input.checked) return [];
      const filters = [];
      for (const [wildcard, types] of familyBoxes) {
        if (wildcard.input.checked) filters.push(wildcard.input.value);
        else filters.push(...types.filter((t) => t.input.checked).map((t) => t.input.value));
      }
      filters.push(...others.filter((o) => o.input.checked).map((o) => o.input.value));
      return filters;
    },
  };
}

// -- custom headers ----------------------------------------------------------------------------
/** Rows of header name and value. `existing` (name → masked value) can be kept, replaced or removed.
 * value() → the headers object to send (null for a removed one), or undefined when nothing changed. */
export function headersEditor(existing = {}) {
  const rows = h("div", { class: "header-rows" });
  const entries = [];
  for (const [name, masked] of Object.entries(existing || {})) {
    const remove = checkbox(`Remove ${name}`);
    const replacement = h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "keep the current value" });
    entries.push({ kind: "existing", name, remove: remove.input, replacement });
    rows.append(
      h("div", { class: "header-row" }, h("span", { class: "header-name" }, name), h("span", { class: "masked" }, masked), field(`New value for ${name}`, replacement), remove.wrapper),
    );
  }
  const addRow = () => {
    const name = h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "X-Custom-Header" });
    const value = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
    const row = h("div", { class: "header-row" }, field("Header name", name), field("Value", value));
    const entry = { kind: "new", name, value, row };
    row.append(
      h("button", { type: "button", class: "secondary", on: { click: () => { row.remove(); entries.splice(entries.indexOf(entry), 1); } } }, "Remove"),
    );
    entries.push(entry);
    rows.append(row);
    name.focus();
  };
  const node = h(
    "fieldset",
    { class: "headers", "data-field": "headers" },
    h("legend", {}, "Custom headers"),
    h("p", { class: "hint" }, "Sent with every delivery (for example a token your receiver checks). Values are shown masked once saved."),
    rows,
    h("button", { type: "button", class: "secondary", on: { click: addRow } }, "Add a header"),
    h("p", { class: "field-error", hidden: true }),
  );
  return {
    node,
    value() {
      const headers = {};
      for (const entry of entries) {
        if (entry.kind === "existing") {
          if (entry.remove.checked) headers[entry.name] = null;
          else if (entry.replacement.value) headers[entry.name] = entry.replacement.value;
        } else if (entry.name.value.trim()) {
          headers[entry.name.value.trim()] = entry.value.value;
        }
      }
      return Object.keys(headers).length ? headers : undefined;
    },
  };
}

// -- create ------------------------------------------------------------------------------------
export async function createEndpointView(ctx) {
  if (!ctx.can.admin) {
    return empty("Not allowed", "Creating endpoints needs a key with the integrations:admin scope.", h("a", { href: "#/endpoints", class: "button secondary" }, "Back to endpoints"));
  }
  const [catalog, offer] = await Promise.all([get("/v1/event-types"), features()]);
  const alert = alertBox();
  const url = h("input", { type: "url", required: true, autocomplete: "off", spellcheck: "false", placeholder: "https://example.com/hooks/meshanics", inputmode: "url" });
  const description = h("textarea", { rows: "2", maxlength: "512" });
  const privateNetwork = checkbox("Allow a private-network receiver", {
    hint: "Needed for receivers on loopback or private addresses (and for plain http). Link-local and cloud metadata addresses stay refused.",
  });
  const picker = eventPicker(catalog);
  const headers = offer.headers ? headersEditor() : null;
  const submit = h("button", { type: "submit", class: "primary" }, "Create endpoint");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    field("URL", url, { name: "url", hint: "Where deliveries are POSTed. https for public receivers." }),
    picker.node,
    field("Description", description, { name: "description", hint: "Optional: what this endpoint is for." }),
    h("div", { "data-field": "allow_private_network" }, privateNetwork.wrapper),
    headers ? headers.node : null,
    alert.node,
    h("div", { class: "actions" }, submit, h("a", { href: "#/endpoints", class: "button secondary" }, "Cancel")),
  );
  const view = h("section", {}, heading("New endpoint"), form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      url: url.value.trim(),
      events: picker.value(),
      description: description.value,
      allow_private_network: privateNetwork.input.checked,
    };
    const chosenHeaders = headers?.value();
    if (chosenHeaders) body.headers = chosenHeaders;
    submit.disabled = true;
    alert.clear();
    try {
      const created = await post("/v1/webhooks", body);
      showCreated(view, created);
    } catch (error) {
      markField(form, error);
      alert.show(error);
      submit.disabled = false;
    }
  });
  return view;
}

function showCreated(view, created) {
  const target = `#/endpoints/${encodeURIComponent(created.id)}`;
  replace(
    view,
    heading("Endpoint created"),
    h("p", { class: "alert success", role: "status" }, "The endpoint ", h("strong", {}, created.url), " is ", created.enabled ? "enabled" : "disabled", "."),
    secretPanel(created.secret, {
      note: "Signatures are in the X-Meshanics-Signature header (and the Standard Webhooks headers); the README shows how to verify them.",
    }),
    h("div", { class: "actions" }, h("a", { href: target, class: "button primary" }, "I have stored the secret: open the endpoint")),
  );
  view.querySelector("h1")?.focus();
}
