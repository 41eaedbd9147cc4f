// Formatting values for people, and the envelope exactly as it was sent.

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A stored time (RFC 3339) in the viewer's time zone; "—" when absent. */
export function when(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? String(iso) : timeFormat.format(moment);
}

/** "3 minutes ago", "in 2 hours". */
export function ago(iso) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  if (Number.isNaN(seconds)) return "";
  const units = [
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
    ["second", 1],
  ];
  const [unit, size] = units.find(([, s]) => Math.abs(seconds) >= s) || ["second", 1];
  return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(Math.round(seconds / size), unit);
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10000 ? 0 : 1)} s` : `${ms} ms`;
}

export function percent(rate) {
  if (rate === null || rate === undefined) return "—";
  return `${(rate * 100).toFixed(rate === 1 || rate === 0 ? 0 : 1)} %`;
}

export function count(n) {
  return n === null || n === undefined ? "—" : new Intl.NumberFormat().format(n);
}

/** A datetime-local input's value as RFC 3339 in UTC (null when empty). */
export function instant(localValue) {
  if (!localValue) return null;
  const moment = new Date(localValue);
  return Number.isNaN(moment.getTime()) ? null : moment.toISOString();
}

/** A moment as a datetime-local input's value, in the viewer's time zone. */
export function localInput(moment) {
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}` +
    `T${pad(moment.getHours())}:${pad(moment.getMinutes())}`
  );
}

// -- the envelope, exactly as sent ---------------------------------------------------------------
// The platform sends the envelope as compact ASCII-only JSON in a fixed field order (Python's
// json.dumps(separators=(",", ":"), ensure_ascii=True)); the API returns it parsed. Written back
// the same way, it is the same bytes. Numbers keep their source text where the browser offers it
// (JSON.parse's source access), so large integers and floats are not rounded.

const RAW = Symbol("raw");

/** Parse JSON keeping each number's source text. */
export function parseKeepingNumbers(text) {
  return JSON.parse(text, function keep(key, value, context) {
    if (typeof value === "number" && context && typeof context.source === "string") {
      return { [RAW]: context.source };
    }
    return value;
  });
}

function asciiString(value) {
  let out = '"';
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    const char = value[i];
    if (char === '"') out += '\\"';
    else if (char === "\\") out += "\\\\";
    else if (char === "\n") out += "\\n";
    else if (char === "\r") out += "\\r";
    else if (char === "\t") out += "\\t";
    else if (char === "\b") out += "\\b";
    else if (char === "\f") out += "\\f";
    // (Python escapes everything outside space..tilde, DEL included)
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += char;
  }
  return `${out}"`;
}

function pythonNumber(value) {
  if (Number.isInteger(value) && Math.abs(value) < 1e16) return String(value);
  const text = String(value); // JavaScript: 1e+21, 1.5e-7; Python: 1e+21, 1.5e-07
  return text.replace(/e([+-])(\d)$/, "e$10$2");
}

/** The compact, ASCII-only JSON text of a value, as the platform serializes envelopes. */
export function asSent(value) {
  if (value === null) return "null";
  if (typeof value === "object" && RAW in value) return value[RAW];
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return pythonNumber(value);
  if (typeof value === "string") return asciiString(value);
  if (Array.isArray(value)) return `[${value.map(asSent).join(",")}]`;
  return `{${Object.entries(value)
    .map(([key, item]) => `${asciiString(key)}:${asSent(item)}`)
    .join(",")}}`;
}

/** The same value indented for reading (not the bytes that were sent). */
export function pretty(value) {
  return JSON.stringify(value, (key, item) => (item && typeof item === "object" && RAW in item ? Number(item[RAW]) : item), 2);
}
