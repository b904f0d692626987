// The calculator page: Evaluate with the Connect protocol (a JSON POST with
// fetch), its errors marked at the byte offset the server reports, a
// history of calls, and CalculateStream over calc's raw TCP protocol on a
// WebSocket (/ws) with the Node client's browser transport. build.sh
// bundles it with esbuild into ../static/assets/app.js.

import {
  CalculatorService,
  Code,
  CODE_NAMES,
  ConnectError,
  createClient,
  createWebSocketTransport,
  errorDetails,
  Operator,
  type WebSocketTransport,
} from "../../../client/node/src/browser.js";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const exprInput = $<HTMLInputElement>("expr");
const evalButton = $<HTMLButtonElement>("eval");
const resultOut = $<HTMLOutputElement>("result");
const errorBox = $<HTMLDivElement>("error");
const errorText = $<HTMLParagraphElement>("error-text");
const errorWhere = $<HTMLPreElement>("error-where");
const historyList = $<HTMLOListElement>("history");
const historyEmpty = $<HTMLParagraphElement>("history-empty");
const tokenInput = $<HTMLInputElement>("token");

/** The headers of a call: the bearer token when one is given. */
function authHeaders(): Record<string, string> {
  const token = tokenInput.value.trim();
  return token ? { authorization: `Bearer ${token}` } : {};
}

// ---- Evaluate, with the Connect protocol ----

/** What Evaluate answered: a result, or an error with where it is. */
type Outcome = { result: string; exact: boolean } | { error: ConnectError; offset?: number };

/**
 * Calls Evaluate as Connect's unary JSON protocol does: POST the request as
 * JSON to /calculator.v1.CalculatorService/Evaluate; an error is a JSON
 * {code, message, details} whose details carry google.rpc.ErrorInfo and
 * BadRequest as base64 protobuf.
 */
async function evaluate(expression: string): Promise<Outcome> {
  let resp: Response;
  try {
    resp = await fetch("/calculator.v1.CalculatorService/Evaluate", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Connect-Protocol-Version": "1", "Connect-Timeout-Ms": "10000", ...authHeaders() },
      body: JSON.stringify({ expression }),
    });
  } catch (e) {
    return { error: new ConnectError(`the server cannot be reached: ${(e as Error).message}`, Code.Unavailable) };
  }
  const body = (await resp.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  if (resp.ok && body) {
    return { result: String(body.result ?? "0"), exact: body.exact === true };
  }
  const err = connectError(resp.status, body);
  const offset = errorDetails(err).errorInfo?.metadata["offset"];
  return { error: err, offset: offset === undefined ? undefined : Number(offset) };
}

/** Builds the ConnectError of a Connect error body (or of a bare HTTP status). */
function connectError(httpStatus: number, body: Record<string, unknown> | undefined): ConnectError {
  const name = typeof body?.code === "string" ? body.code.toUpperCase() : "";
  let code = CODE_NAMES.indexOf((name === "CANCELED" ? "CANCELLED" : name) as (typeof CODE_NAMES)[number]);
  if (code <= 0) {
    code = httpStatus === 404 ? Code.Unimplemented : httpStatus === 503 ? Code.Unavailable : Code.Unknown;
  }
  const details = Array.isArray(body?.details)
    ? (body.details as { type?: string; value?: string }[])
        .filter((d) => typeof d.type === "string" && typeof d.value === "string")
        .map((d) => ({ type: d.type as string, value: base64(d.value as string) }))
    : [];
  const message = typeof body?.message === "string" ? body.message : `HTTP ${httpStatus}`;
  const err = new ConnectError(message, code as Code);
  err.details.push(...details); // as received: findDetails decodes them
  return err;
}

function base64(s: string): Uint8Array {
  const std = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Converts a UTF-8 byte offset in s to a UTF-16 index. */
function charIndex(s: string, byteOffset: number): number {
  const enc = new TextEncoder();
  let bytes = 0;
  let i = 0;
  for (const ch of s) {
    if (bytes >= byteOffset) {
      break;
    }
    bytes += enc.encode(ch).length;
    i += ch.length;
  }
  return i;
}

function showOutcome(expression: string, o: Outcome): void {
  resultOut.replaceChildren();
  errorBox.hidden = true;
  exprInput.removeAttribute("aria-invalid");
  if ("result" in o) {
    resultOut.textContent = o.result;
    if (!o.exact) {
      const note = document.createElement("span");
      note.className = "inexact";
      note.textContent = "(rounded to 34 digits)";
      resultOut.append(note);
    }
    return;
  }
  errorBox.hidden = false;
  errorText.textContent = `${CODE_NAMES[o.error.code] ?? o.error.code}: ${o.error.rawMessage}`;
  errorWhere.replaceChildren();
  if (o.offset === undefined) {
    errorWhere.hidden = true;
    return;
  }
  // Mark the character the error is at, or the end of the expression.
  errorWhere.hidden = false;
  exprInput.setAttribute("aria-invalid", "true");
  const i = charIndex(expression, o.offset);
  const at = [...expression.slice(i)][0] ?? "";
  const mark = document.createElement("mark");
  mark.id = "error-mark";
  mark.dataset.offset = String(o.offset);
  mark.textContent = at;
  if (at === "") {
    mark.classList.add("at-end");
  }
  errorWhere.append(expression.slice(0, i), mark, expression.slice(i + at.length));
  exprInput.focus();
  exprInput.setSelectionRange(i, i + at.length);
}

function addHistory(expression: string, o: Outcome): void {
  historyEmpty.hidden = true;
  const li = document.createElement("li");
  const b = document.createElement("button");
  b.type = "button";
  b.title = "use this expression again";
  const answer = document.createElement("span");
  if ("result" in o) {
    answer.className = "ok";
    answer.textContent = o.result;
  } else {
    answer.className = "bad";
    answer.textContent = CODE_NAMES[o.error.code] ?? String(o.error.code);
  }
  b.append(`${expression} = `, answer);
  b.addEventListener("click", () => {
    exprInput.value = expression;
    exprInput.focus();
  });
  li.append(b);
  historyList.prepend(li);
  while (historyList.children.length > 50) {
    historyList.lastElementChild?.remove();
  }
}

// An edit makes the marked error stale.
exprInput.addEventListener("input", () => exprInput.removeAttribute("aria-invalid"));

$<HTMLFormElement>("eval-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const expression = exprInput.value;
  if (expression.trim() === "") {
    return;
  }
  evalButton.disabled = true;
  void evaluate(expression)
    .then((o) => {
      showOutcome(expression, o);
      addHistory(expression, o);
    })
    .finally(() => (evalButton.disabled = false));
});

// ---- CalculateStream, over a WebSocket ----

const streamStatus = $<HTMLElement>("stream-status");
const streamReceived = $<HTMLElement>("stream-received");
const streamErrors = $<HTMLElement>("stream-errors");
const streamLast = $<HTMLElement>("stream-last");
const streamTime = $<HTMLElement>("stream-time");
const streamRun = $<HTMLButtonElement>("stream-run");
const wsURL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
let transport: WebSocketTransport | undefined;
let transportToken = "";

/** The WebSocket transport, made again when the token changes. */
function wsTransport(): WebSocketTransport {
  const token = tokenInput.value.trim();
  if (!transport || token !== transportToken) {
    void transport?.close();
    transport = createWebSocketTransport({ url: wsURL, metadata: authHeaders() });
    transportToken = token;
  }
  return transport;
}

/** The stream's requests: i op rhs for i = 1..n, made as the transport takes them. */
async function* requests(n: number, op: Operator, rhs: bigint) {
  for (let i = 1; i <= n; i++) {
    yield { id: BigInt(i), calculation: { operator: op, lhs: BigInt(i), rhs } };
  }
}

async function runStream(n: number, op: Operator, rhs: bigint): Promise<void> {
  const client = createClient(CalculatorService, wsTransport());
  let received = 0;
  let errors = 0;
  const started = performance.now();
  let painted = 0;
  const paint = (force: boolean) => {
    const now = performance.now();
    if (!force && now - painted < 50) {
      return;
    }
    painted = now;
    streamReceived.textContent = `${received} / ${n}`;
    streamErrors.textContent = String(errors);
    streamTime.textContent = `${Math.round(now - started)} ms`;
  };
  streamStatus.textContent = "running";
  try {
    for await (const r of client.calculateStream(requests(n, op, rhs), { timeoutMs: 60_000 })) {
      received++;
      if (r.outcome.case === "result") {
        streamLast.textContent = `#${r.id}: ${r.outcome.value}`;
      } else if (r.outcome.case === "error") {
        errors++;
        streamLast.textContent = `#${r.id}: ${CODE_NAMES[r.outcome.value.code] ?? r.outcome.value.code} ${r.outcome.value.message}`;
      }
      paint(false);
    }
    paint(true);
    streamStatus.textContent = `done: ${received} answers`;
  } catch (e) {
    paint(true);
    const err = e instanceof ConnectError ? e : new ConnectError(String(e), Code.Unknown);
    streamStatus.textContent = `failed: ${CODE_NAMES[err.code] ?? err.code}: ${err.rawMessage}`;
  }
}

$<HTMLFormElement>("stream-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const n = Math.min(Math.max(1, Number($<HTMLInputElement>("stream-count").value) | 0), 100_000);
  const op = Operator[$<HTMLSelectElement>("stream-op").value as keyof typeof Operator];
  let rhs: bigint;
  try {
    rhs = BigInt($<HTMLInputElement>("stream-rhs").value);
  } catch {
    streamStatus.textContent = "rhs must be an integer";
    return;
  }
  streamRun.disabled = true;
  void runStream(n, op, rhs).finally(() => (streamRun.disabled = false));
});
