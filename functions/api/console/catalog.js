// The event catalog: families, their types and each type's data fields.

import { get } from "./api.js";
import { h } from "./dom.js";
import { badge, heading } from "./ui.js";

export async function catalogView() {
  const catalog = await get("/v1/event-types");
  const byType = new Map((catalog.items || []).map((item) => [item.type, item]));
  return h(
    "section",
    { class: "catalog" },
    heading("Event catalog"),
    h(
      "p",
      {},
      "Every event type an endpoint can subscribe to. Subscribe to a whole family with its wildcard, which also covers types added later. Envelopes carry only the data fields listed here.",
    ),
    h("nav", { class: "toc", "aria-label": "Families" }, h("ul", {}, (catalog.families || []).map((f) => h("li", {}, h("a", { href: `#/catalog`, dataset: { family: f.family }, on: { click: jump } }, f.family))))),
    (catalog.families || []).map((family) =>
      h(
        "section",
        { class: "family-block", id: `family-${family.family}`, "aria-labelledby": `family-title-${family.family}` },
        h("h2", { id: `family-title-${family.family}` }, family.family, " ", h("code", {}, family.filter)),
        family.types.map((type) => typeBlock(byType.get(type) || { type, description: "", data: [] })),
      ),
    ),
  );
}

function jump(event) {
  event.preventDefault();
  const target = document.getElementById(`family-${event.currentTarget.dataset.family}`);
  target?.scrollIntoView();
  target?.querySelector("h2")?.setAttribute("tabindex", "-1");
  target?.querySelector("h2")?.focus();
}

function typeBlock(info) {
  return h(
    "article",
    { class: "event-type" },
    h(
      "h3",
      {},
      h("code", {}, info.type),
      info.platform_only ? [" ", badge("written by the platform", "info")] : null,
      info.operational ? [" ", badge("operational", "info")] : null,
    ),
    info.description ? h("p", {}, info.description) : null,
    info.data?.length
      ? h(
          "table",
          { class: "table fields" },
          h("caption", { class: "visually-hidden" }, `Data fields of ${info.type}`),
          h("thead", {}, h("tr", {}, ["Field", "Type", "Required", "Max length", "Description"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            info.data.map((f) =>
              h(
                "tr",
                {},
                h("td", { "data-label": "Field" }, h("code", {}, f.name)),
                h("td", { "data-label": "Type" }, f.type),
                h("td", { "data-label": "Required" }, f.required ? "yes" : "no"),
                h("td", { "data-label": "Max length" }, f.max_length ? String(f.max_length) : "—"),
                h("td", { "data-label": "Description" }, f.description || ""),
              ),
            ),
          ),
        )
      : h("p", { class: "hint" }, "No data fields."),
  );
}
