// One delivery: the envelope exactly as sent, every attempt on a timeline, and replay.

import { call, post } from "./api.js";
import { h, replace } from "./dom.js";
import { asSent, duration, parseKeepingNumbers, pretty, when } from "./format.js";
import { copyButton, alertBox, busy, facts, heading, statusBadge } from "./ui.js";

export async function deliveryView(ctx, id) {
  const path = `/v1/deliveries/${encodeURIComponent(id)}`;
  const view = h("section", { class: "delivery" });
  const alert = alertBox();
  let timer = null;

  async function load() {
    const text = await call("GET", path, { text: true });
    const delivery = JSON.parse(text);
    const envelope = parseKeepingNumbers(text).envelope;
    render(delivery, envelope);
    clearTimeout(timer);
    if (delivery.status === "pending") {
      // Follow it until it settles (a replay, or a delivery still being attempted).
      timer = setTimeout(() => {
        if (view.isConnected) load().catch((error) => alert.show(error));
      }, 1500);
    }
  }

  function render(delivery, envelope) {
    const endpoint = `#/endpoints/${encodeURIComponent(delivery.webhook_id)}`;
    const replay = ctx.can.admin
      ? h("button", { type: "button", class: "primary", disabled: delivery.status === "pending" }, "Replay")
      : null;
    replay?.addEventListener("click", () =>
      busy(replay, alert, async () => {
        await post(`${path}/replay`);
        alert.show("Replay queued: the same bytes, idempotency key and sequence are sent again.", "success");
        await load();
      }),
    );
    const sent = envelope === undefined ? null : asSent(envelope);
    const showPretty = sent ? h("details", {}, h("summary", {}, "Indented for reading"), h("pre", { class: "envelope" }, pretty(envelope))) : null;
    replace(
      view,
      heading(`${delivery.event_type} #${delivery.sequence}`, statusBadge(delivery.status)),
      h("p", {}, h("a", { href: endpoint }, "Back to the endpoint")),
      facts([
        ["Status", statusBadge(delivery.status)],
        ["Idempotency key", h("code", {}, delivery.idempotency_key)],
        ["Attempts", String(delivery.attempt_count)],
        ["Created", when(delivery.created_at)],
        ["Delivered", when(delivery.delivered_at)],
        delivery.next_attempt_at ? ["Next attempt", when(delivery.next_attempt_at)] : null,
        ["Replays", String(delivery.replays ?? 0)],
        ["Id", h("code", {}, delivery.id)],
      ]),
      replay
        ? h(
            "div",
            { class: "actions" },
            replay,
            delivery.status === "pending" ? h("span", { class: "hint" }, "A pending delivery cannot be replayed until it settles.") : null,
          )
        : null,
      alert.node,
      h(
        "section",
        { "aria-labelledby": "envelope-title" },
        h("h2", { id: "envelope-title" }, "Envelope, exactly as sent"),
        h("p", { class: "hint" }, "The bytes that were signed and POSTed (every attempt and replay sends the same)."),
        sent ? h("pre", { class: "envelope", id: "envelope-sent", tabindex: "0" }, sent) : h("p", { class: "empty-inline" }, "The API did not return the envelope."),
        sent ? h("div", { class: "actions" }, copyButton(sent, "Copy envelope")) : null,
        showPretty,
      ),
      h(
        "section",
        { "aria-labelledby": "attempts-title" },
        h("h2", { id: "attempts-title" }, "Attempts"),
        (delivery.attempts || []).length
          ? h("ol", { class: "timeline" }, delivery.attempts.map(attemptItem))
          : h("p", { class: "empty-inline" }, "No attempt yet: the first one is on its way."),
      ),
    );
  }

  await load();
  return view;
}

function attemptItem(attempt) {
  return h(
    "li",
    { class: `attempt ${attempt.outcome}` },
    h("div", { class: "attempt-head" }, h("strong", {}, `Attempt ${attempt.attempt}`), " ", statusBadge(attempt.outcome)),
    h(
      "div",
      { class: "attempt-facts" },
      h("span", {}, when(attempt.at)),
      h("span", {}, attempt.status_code ? `HTTP ${attempt.status_code}` : "no HTTP answer"),
      h("span", {}, duration(attempt.duration_ms)),
    ),
    attempt.error ? h("div", { class: "error-text" }, attempt.error) : null,
  );
}
