// Building the page with DOM APIs only: every value from the API becomes a text node. Nothing here
// parses HTML, and the page's Trusted Types policy makes any innerHTML assignment throw.

/**
 * h("button", {class: "primary", type: "button", on: {click: f}}, "Save") → an element.
 * Attributes are set with setAttribute (names starting with "on" are refused: handlers go in `on`);
 * children are nodes, strings (as text), numbers, or arrays of them; null and false are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name.toLowerCase().startsWith("on")) {
      throw new Error(`event handler attribute ${name}: use {on: {...}}`);
    } else if (name === "value" && "value" in element) {
      element.value = value;
    } else if (name === "checked" && "checked" in element) {
      element.checked = element.defaultChecked = Boolean(value); // (a form reset returns to it)
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace everything in `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let ids = 0;
/** A unique id for label/field pairs. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled field: the label, the control, an optional hint and a place for its error. */
export function field(label, control, { hint = null, name = null } = {}) {
  const id = control.id || uid("field");
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const described = [hintId, errorId].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  const wrapper = h(
    "div",
    { class: "field", dataset: name ? { field: name } : {} },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
  return wrapper;
}

/** A checkbox with its label after it. */
export function checkbox(label, { checked = false, hint = null, value = null } = {}) {
  const input = h("input", { type: "checkbox", id: uid("check"), checked, value });
  const hintId = hint ? `${input.id}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  const wrapper = h(
    "div",
    { class: "check" },
    input,
    h("label", { for: input.id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
  return { wrapper, input };
}

/** Radio buttons in a fieldset; returns the fieldset and a getter of the chosen value. */
export function radios(legend, name, options, chosen) {
  const group = uid(name);
  const inputs = options.map(([value, label]) => {
    const input = h("input", { type: "radio", name: group, value, id: uid("radio"), checked: value === chosen });
    return [input, h("div", { class: "check" }, input, h("label", { for: input.id }, label))];
  });
  const set = h("fieldset", { class: "radios" }, h("legend", {}, legend), inputs.map(([, row]) => row));
  return {
    fieldset: set,
    inputs: inputs.map(([input]) => input),
    value: () => inputs.map(([input]) => input).find((input) => input.checked)?.value ?? chosen,
  };
}

/** A <select> of [value, label] pairs. */
export function select(options, chosen) {
  return h(
    "select",
    {},
    options.map(([value, label]) => h("option", { value, selected: value === chosen }, label)),
  );
}

/** A modal dialog (Esc closes it); resolves with the value `onSubmit` returns, or null if cancelled. */
export function dialog(title, body, { submit = "OK", danger = false, onSubmit = () => true } = {}) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const error = h("p", { class: "alert error", role: "alert", hidden: true });
    const submitButton = h("button", { type: "submit", class: danger ? "danger" : "primary" }, submit);
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const form = h(
      "form",
      { method: "dialog", class: "dialog-form" },
      h("h2", { id: titleId }, title),
      body,
      error,
      h("div", { class: "actions" }, cancel, submitButton),
    );
    const box = h("dialog", { "aria-labelledby": titleId }, form);
    let result = null;
    cancel.addEventListener("click", () => box.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submitButton.disabled = true;
      error.hidden = true;
      try {
        result = await onSubmit();
        box.close();
      } catch (failure) {
        replace(error, failure.message || String(failure));
        error.hidden = false;
        submitButton.disabled = false;
      }
    });
    box.addEventListener("close", () => {
      box.remove();
      resolve(result);
    });
    document.body.append(box);
    box.showModal();
  });
}
