// The console's shell: sign-in, navigation and the router (views live in the other modules).
// Routes are in the URL's fragment (#/endpoints/ep_…): they name resources, never the key.

import { ApiError, call, features, onUnauthorized, session } from "./api.js";
import { catalogView } from "./catalog.js";
import { deliveryView } from "./delivery.js";
import { h, replace } from "./dom.js";
import { endpointView } from "./endpoint.js";
import { createEndpointView, endpointsView } from "./endpoints.js";
import { registriesView } from "./registries.js";
import { alertBox, empty, explain, loading } from "./ui.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

/** What the signed-in key may do (the API checks again on every call). */
function abilities(scopes) {
  const has = (scope) => scopes.includes(scope);
  const admin = has("integrations:admin");
  const read = admin || has("integrations:read");
  const operate = has("registries:operator");
  return { read, admin, operate, registries: read || operate, scopes };
}

const context = {
  identity: null,
  can: abilities([]),
  notices: [],
  /** Go to a route (a fragment such as "#/endpoints"), optionally with a notice to show there. */
  go(route, notice = null) {
    if (notice) context.notices.push(notice);
    if (location.hash === route) render();
    else location.hash = route;
  },
};

const ROUTES = [
  [/^#\/endpoints\/new$/, () => createEndpointView],
  [/^#\/endpoints\/([^/]+)(?:\/(deliveries|stats|recover|settings))?$/, () => endpointView],
  [/^#\/deliveries\/([^/]+)$/, () => deliveryView],
  [/^#\/catalog$/, () => catalogView],
  [/^#\/registries$/, () => registriesView],
  [/^#\/endpoints$/, () => endpointsView],
];

let generation = 0;
let previousRoute = null;

async function render() {
  generation += 1;
  const mine = generation;
  if (!session.key()) {
    showSignIn();
    return;
  }
  if (!context.identity) {
    replace(main, loading("Signing in…"));
    try {
      await signIn(session.key());
    } catch (error) {
      session.forget();
      showSignIn(explain(error));
      return;
    }
  }
  if (!context.can.read && !context.can.registries) {
    replace(
      main,
      empty(
        "Nothing to show for this key",
        `Its scopes (${context.identity.scopes.join(", ") || "none"}) open none of the console's pages. ` +
          "Sign in with a key holding integrations:read, integrations:admin or registries:operator.",
      ),
    );
    main.querySelector("h2")?.focus();
    return;
  }
  const route = location.hash || defaultRoute();
  const found = ROUTES.map(([pattern, view]) => [route.match(pattern), view]).find(([match]) => match);
  if (!found) {
    location.replace(defaultRoute());
    return;
  }
  const [match, view] = found;
  highlightNav(route);
  replace(main, loading());
  const notices = context.notices.splice(0);
  try {
    const node = await view()(context, ...match.slice(1).map((part) => (part ? decodeURIComponent(part) : part)));
    if (mine !== generation) return; // a newer navigation won
    replace(main, notices.map((text) => h("p", { class: "alert success", role: "status" }, text)), node);
  } catch (error) {
    if (mine !== generation) return;
    replace(main, errorPage(error));
  }
  // A new view: focus its heading. Another tab of the same endpoint: keep focus on the tabs.
  const sameEndpoint = (a, b) => a && b && a.split("/").slice(0, 3).join("/") === b.split("/").slice(0, 3).join("/");
  const tab = route.startsWith("#/endpoints/") && sameEndpoint(route, previousRoute) ? main.querySelector(".tabs [aria-current=page]") : null;
  (tab || main.querySelector("h1"))?.focus({ preventScroll: Boolean(tab) });
  previousRoute = route;
}

function errorPage(error) {
  if (error instanceof ApiError && error.status === 404) {
    return empty("Not found", `${explain(error)} It may have been deleted, or it belongs to another tenant.`, link("#/endpoints", "Back to endpoints"));
  }
  return empty("Something went wrong", explain(error), h("button", { type: "button", class: "secondary", on: { click: render } }, "Try again"));
}

function link(href, text) {
  return h("a", { href, class: "button secondary" }, text);
}

function defaultRoute() {
  return context.can.read ? "#/endpoints" : context.can.registries ? "#/registries" : "#/catalog";
}

async function signIn(key) {
  const identity = await call("GET", "/v1/whoami", { key });
  context.identity = identity;
  context.can = abilities(identity.scopes || []);
  features(); // read the API's offer in the background
  renderChrome();
}

function renderChrome() {
  const can = context.can;
  const items = [
    can.read ? ["#/endpoints", "Endpoints"] : null,
    can.read ? ["#/catalog", "Event catalog"] : null,
    can.registries ? ["#/registries", "Registries"] : null,
  ].filter(Boolean);
  replace(nav, h("ul", {}, items.map(([href, text]) => h("li", {}, h("a", { href }, text)))));
  nav.hidden = false;
  const scopes = context.identity.scopes.join(", ") || "no scopes";
  replace(
    who,
    h("span", { class: "tenant" }, "Tenant ", h("strong", {}, context.identity.tenant_id)),
    h("span", { class: "scopes" }, scopes),
    h("button", { type: "button", class: "secondary", id: "sign-out", on: { click: () => signOut() } }, "Sign out"),
  );
  who.hidden = false;
}

function highlightNav(route) {
  for (const anchor of nav.querySelectorAll("a")) {
    const section = anchor.getAttribute("href");
    const current = route === section || route.startsWith(`${section}/`) || (section === "#/endpoints" && route.startsWith("#/deliveries/"));
    if (current) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
}

function signOut(message = null) {
  session.forget();
  context.identity = null;
  context.can = abilities([]);
  nav.hidden = true;
  who.hidden = true;
  replace(nav);
  replace(who);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  showSignIn(message, message ? "error" : "success", message ? null : "Signed out. The key was forgotten by this tab.");
}

function showSignIn(message = null, kind = "error", info = null) {
  const alert = alertBox();
  const input = h("input", {
    type: "password",
    id: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-hint",
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  // No name on the field and no action: the form is never sent by the browser, only by this script.
  const form = h(
    "form",
    { class: "sign-in", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), input),
    h(
      "p",
      { class: "hint", id: "api-key-hint" },
      "Your key (msk_…) stays in this browser tab only and is forgotten when you sign out or close the tab. " +
        "The console shows what the key's scopes allow.",
    ),
    alert.node,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      alert.show("Enter an API key.");
      input.focus();
      return;
    }
    submit.disabled = true;
    alert.clear();
    try {
      await signIn(key);
      session.store(key);
      input.value = "";
      render();
    } catch (error) {
      alert.show(error instanceof ApiError && error.status === 401 ? "That API key was not accepted (unknown, malformed or revoked)." : explain(error));
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(
    main,
    h(
      "section",
      { class: "sign-in-page" },
      h("h1", { tabindex: "-1" }, "Sign in"),
      info ? h("p", { class: "alert success", role: "status" }, info) : null,
      form,
    ),
  );
  if (message) alert.show(message, kind);
  input.focus();
}

onUnauthorized(() => signOut("The API no longer accepts this key (revoked?). Sign in again."));
window.addEventListener("hashchange", render);
render();

// The skip link moves focus without touching the fragment (which holds the route).
document.querySelector(".skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
