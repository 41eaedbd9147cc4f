// Registry connections: connect (pending until approved), approve, update credentials, remove.
// Pending connections come first and stand out.

import { all, del, post, put } from "./api.js";
import { checkbox, dialog, field, h, radios, replace } from "./dom.js";
import { when } from "./format.js";
import { alertBox, badge, busy, empty, explain, heading, markField } from "./ui.js";

export async function registriesView(ctx) {
  const list = h("div", { class: "list" });
  const alert = alertBox();
  const banner = h("div", { class: "pending-banner", role: "status" });
  const view = h(
    "section",
    { class: "registries" },
    heading("Registries"),
    h("p", {}, "Upstream registries that devices pull artifacts through, strictly by digest. A connection is pending until an operator approves it."),
    banner,
    alert.node,
    list,
    ctx.can.operate ? connectForm(alert, () => load()) : null,
  );

  async function load() {
    const items = await all("/v1/registries");
    items.sort((a, b) => (a.status === b.status ? a.name.localeCompare(b.name) : a.status === "pending" ? -1 : 1));
    const pending = items.filter((r) => r.status === "pending").length;
    if (pending) {
      replace(banner, h("strong", {}, `${pending} connection${pending > 1 ? "s" : ""} awaiting approval`), ctx.can.operate ? " — approve below once you trust the upstream." : " — an operator (registries:operator) approves them.");
      banner.hidden = false;
    } else {
      replace(banner);
      banner.hidden = true;
    }
    replace(
      list,
      items.length
        ? h("ul", { class: "cards" }, items.map((r) => registryCard(r, ctx, alert, load)))
        : empty(
            "No registries connected",
            ctx.can.operate
              ? "Connect an upstream registry below; approve it to let devices pull through it."
              : "An operator (registries:operator) can connect an upstream registry.",
          ),
    );
  }

  await load();
  return view;
}

function registryCard(registry, ctx, alert, reload) {
  const pending = registry.status === "pending";
  const buttons = [];
  if (ctx.can.operate) {
    if (pending) {
      const approve = h("button", { type: "button", class: "primary" }, `Approve ${registry.name}`);
      approve.addEventListener("click", () =>
        busy(approve, alert, async () => {
          await post(`/v1/registries/${encodeURIComponent(registry.id)}/approve`);
          alert.show(`${registry.name} approved: devices can pull through it now.`, "success");
          await reload();
        }),
      );
      buttons.push(approve);
    }
    const credentials = h("button", { type: "button", class: "secondary" }, "Update credentials");
    credentials.addEventListener("click", async () => {
      const chooser = credentialsFields();
      const done = await dialog(`New credentials for ${registry.name}`, chooser.node, {
        submit: "Save credentials",
        onSubmit: () =>
          put(`/v1/registries/${encodeURIComponent(registry.id)}/credentials`, { credentials: chooser.value() }).catch((error) => {
            throw new Error(explain(error));
          }),
      });
      if (done) {
        alert.show(`Credentials of ${registry.name} updated.`, "success");
        await reload();
      }
    });
    const remove = h("button", { type: "button", class: "danger" }, "Remove");
    remove.addEventListener("click", async () => {
      const removed = await dialog(`Remove ${registry.name}?`, h("p", {}, "Devices can no longer pull through it. Cached artifacts expire on their own."), {
        submit: "Remove connection",
        danger: true,
        onSubmit: () =>
          del(`/v1/registries/${encodeURIComponent(registry.id)}`).then(
            () => true,
            (error) => {
              throw new Error(explain(error));
            },
          ),
      });
      if (removed) {
        alert.show(`${registry.name} removed.`, "success");
        await reload();
      }
    });
    buttons.push(credentials, remove);
  }
  return h(
    "li",
    { class: `card registry ${pending ? "pending" : ""}`, dataset: { registry: registry.id } },
    h("h2", {}, registry.name, " ", badge(pending ? "pending approval" : "approved", pending ? "pending" : "ok")),
    h("p", { class: "endpoint-url" }, registry.upstream_url),
    h(
      "dl",
      { class: "facts compact" },
      [
        ["Credentials", registry.auth_type === "basic" ? `basic (${registry.username ?? ""})` : "token"],
        ["Updated", when(registry.credentials_updated_at)],
        ["Connected", `${when(registry.created_at)} by ${registry.created_by}`],
        registry.approved_at ? ["Approved", `${when(registry.approved_at)} by ${registry.approved_by}`] : null,
        ["Private network", registry.allow_private_network ? "allowed" : "not allowed"],
      ]
        .filter(Boolean)
        .map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))),
    ),
    buttons.length ? h("div", { class: "actions" }, buttons) : null,
  );
}

/** Basic (username and password) or token credentials. */
function credentialsFields() {
  const kind = radios("Credentials", "credentials", [
    ["basic", "Username and password"],
    ["token", "A token (Bearer)"],
  ], "basic");
  const username = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
  const password = h("input", { type: "password", autocomplete: "new-password" });
  const token = h("input", { type: "password", autocomplete: "off" });
  const basicFields = h("div", {}, field("Username", username, { name: "credentials" }), field("Password", password));
  const tokenFields = h("div", { hidden: true }, field("Token", token));
  const sync = () => {
    basicFields.hidden = kind.value() !== "basic";
    tokenFields.hidden = kind.value() !== "token";
  };
  for (const input of kind.inputs) input.addEventListener("change", sync);
  return {
    node: h("div", { class: "credentials" }, kind.fieldset, basicFields, tokenFields, h("p", { class: "hint" }, "Stored sealed and never shown again.")),
    value: () =>
      kind.value() === "basic" ? { type: "basic", username: username.value, password: password.value } : { type: "token", token: token.value },
  };
}

function connectForm(alert, reload) {
  const formAlert = alertBox();
  const name = h("input", { type: "text", required: true, autocomplete: "off", spellcheck: "false", pattern: "[a-z0-9][a-z0-9-]*", maxlength: "63" });
  const upstream = h("input", { type: "url", required: true, autocomplete: "off", spellcheck: "false", placeholder: "https://registry.example.com" });
  const privateNetwork = checkbox("The upstream is on a private network", { hint: "Allows loopback and private addresses (and plain http). Link-local and metadata addresses stay refused." });
  const credentials = credentialsFields();
  const submit = h("button", { type: "submit", class: "primary" }, "Connect");
  const form = h(
    "form",
    { class: "form connect", novalidate: true, "aria-labelledby": "connect-title" },
    h("h2", { id: "connect-title" }, "Connect a registry"),
    field("Name", name, { name: "name", hint: "Lower-case letters, digits and dashes; devices pull <api>/v2/<name>/<repository>@sha256:…" }),
    field("Upstream URL", upstream, { name: "upstream_url" }),
    h("div", { "data-field": "allow_private_network" }, privateNetwork.wrapper),
    credentials.node,
    formAlert.node,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, formAlert, async () => {
      let connected;
      try {
        connected = await post("/v1/registries", {
          name: name.value.trim(),
          upstream_url: upstream.value.trim(),
          allow_private_network: privateNetwork.input.checked,
          credentials: credentials.value(),
        });
      } catch (error) {
        markField(form, error);
        throw error;
      }
      form.reset();
      alert.show(`${connected.name} connected: it is pending until an operator approves it.`, "success");
      await reload();
    });
  });
  return form;
}
