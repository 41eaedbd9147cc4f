// Pieces every view uses: headings, notices, errors, badges, empty states, the secret panel.

import { ApiError } from "./api.js";
import { h, replace } from "./dom.js";

/** The view's heading (focused after navigation, so keyboard and screen reader users land on it). */
export function heading(text, ...extra) {
  return h("div", { class: "page-heading" }, h("h1", { tabindex: "-1" }, text), extra);
}

/** Words for an error: the API's message (with the field it names), or the failure's own. */
export function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 403) return `${error.text} Ask for a key with that scope.`;
    return error.text;
  }
  return error?.message || String(error);
}

/** An alert region: show(error | text, kind) / clear(). */
export function alertBox() {
  const box = h("div", { class: "alert", role: "alert", hidden: true });
  return {
    node: box,
    show(what, kind = "error") {
      box.className = `alert ${kind}`;
      replace(box, typeof what === "string" ? what : explain(what));
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
      replace(box);
    },
  };
}

/** Mark the form field an API error names (400 with `field`), and say so under it. */
export function markField(form, error) {
  for (const marked of form.querySelectorAll("[aria-invalid]")) marked.removeAttribute("aria-invalid");
  for (const message of form.querySelectorAll(".field-error")) {
    message.hidden = true;
    replace(message);
  }
  if (!(error instanceof ApiError) || !error.field) return false;
  const name = error.field.split(".")[0];
  const wrapper = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (!wrapper) return false;
  const control = wrapper.querySelector("input, select, textarea");
  control?.setAttribute("aria-invalid", "true");
  const message = wrapper.querySelector(".field-error");
  if (message) {
    replace(message, error.message);
    message.hidden = false;
  }
  control?.focus();
  return true;
}

export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${kind}` }, text);
}

export function statusBadge(status) {
  return badge(status, status);
}

export function empty(title, text, ...actions) {
  return h("div", { class: "empty" }, h("h2", {}, title), h("p", {}, text), actions.length ? h("div", { class: "actions" }, actions) : null);
}

export function loading(text = "Loading…") {
  return h("p", { class: "loading", role: "status" }, text);
}

/** A definition list of [term, value] rows (values are nodes or text). */
export function facts(rows) {
  return h(
    "dl",
    { class: "facts" },
    rows.filter(Boolean).map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value ?? "—"))),
  );
}

/** A button that copies `text`, saying whether it worked. */
export function copyButton(text, label = "Copy") {
  const status = h("span", { class: "copy-status", role: "status" });
  const button = h("button", { type: "button", class: "secondary" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      replace(status, "Copied.");
    } catch {
      replace(status, "Copying is blocked here: select the text and copy it.");
    }
  });
  return h("span", { class: "copy" }, button, status);
}

/** A secret shown once: the value, a copy button and the warning. */
export function secretPanel(secret, { title = "Signing secret", note = null } = {}) {
  const value = h("input", {
    type: "text",
    readonly: true,
    value: secret,
    class: "secret",
    id: "secret-value",
    spellcheck: "false",
    autocomplete: "off",
    "aria-describedby": "secret-warning",
  });
  value.addEventListener("focus", () => value.select());
  return h(
    "section",
    { class: "secret-panel", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, title),
    h(
      "p",
      { class: "warning", id: "secret-warning" },
      "Store this secret now: it is shown only this once. Your receiver needs it to verify signatures; " +
        "if it is lost, rotate the secret to get a new one.",
    ),
    h("label", { for: "secret-value", class: "visually-hidden" }, title),
    h("div", { class: "secret-row" }, value, copyButton(secret, "Copy secret")),
    note ? h("p", {}, note) : null,
  );
}

/** Run an action from a button: disabled while it runs, its failure shown in `alert`. */
export async function busy(button, alert, action) {
  button.disabled = true;
  alert?.clear();
  try {
    return await action();
  } catch (error) {
    alert?.show(error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}
