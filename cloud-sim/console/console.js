// simcloud console: a single-page view of the simulated cloud over its public API.
//
// No build step and no dependencies: cloud-sim compiles this file into its binary and serves it
// at /ui/console.js. Every element is built with `h()` (text is never parsed as HTML), every call
// goes through `api()`, and each view gets an AbortSignal that ends its timers and long polls
// when the user leaves it. The bearer token lives in sessionStorage and travels only in the
// Authorization header: never in a URL.

const TOKEN_KEY = "simcloud.console.token";
const INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "terminated"];
const ZONE_STATES = ["available", "impaired", "outage"];
const HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const TRAFFIC_PERIOD_MS = 1000;
const REFRESH_PERIOD_MS = 5000;
const CHART_SAMPLES = 120;
const CHART_WINDOW = 10; // samples: each point is the in-zone share of the last 10 s of connections
const EVENTS_KEPT = 500;

const session = { caller: null, region: null };

// ---------------------------------------------------------------------------------------------
// Plumbing: DOM, API, status line, confirmation.

/** Builds an element: `h("td", {class: "num"}, "3")`. Children are nodes or text. */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "polyline", "line", "text", "title", "circle"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
  toString() {
    const rid = this.requestId ? ` (request ${this.requestId})` : "";
    return `${this.status} ${this.code}: ${this.message}${rid}`;
  }
}

/** A key for `Idempotency-Key`; getRandomValues works outside secure contexts too. */
function idempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** One API call. Resolves to the decoded body (null for 204), rejects with ApiError. */
async function api(method, path, body, signal) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "POST") headers["Idempotency-Key"] = idempotencyKey();
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(resp.status, e.code || `HTTP_${resp.status}`, e.message || resp.statusText, e.request_id);
    if (resp.status === 401) signIn(err);
    throw err;
  }
  return data;
}

function say(message) {
  document.getElementById("status").textContent = message;
}

function alertBox(err) {
  return h("div", { class: "alert", role: "alert" }, String(err));
}

/** Asks in a modal dialog; resolves to true when confirmed. */
function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "cancel";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Runs `fn` every `ms` until `signal` aborts; an error is shown in `errorSlot`, not thrown. */
function every(ms, signal, fn, errorSlot) {
  let timer = null;
  const tick = async () => {
    try {
      await fn();
      if (errorSlot) errorSlot.replaceChildren();
    } catch (e) {
      if (signal.aborted) return;
      if (errorSlot) errorSlot.replaceChildren(alertBox(e));
    }
    if (!signal.aborted) timer = setTimeout(tick, document.hidden ? ms * 4 : ms);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  return tick();
}

// ---------------------------------------------------------------------------------------------
// Formatting: every state is a word and a symbol; colour only repeats it.

const STATE_LOOK = {
  available: ["good", "●"], running: ["good", "●"], active: ["good", "●"], healthy: ["good", "✓"],
  impaired: ["warn", "▲"], pending: ["warn", "◔"], stopping: ["warn", "◔"], provisioning: ["warn", "◔"],
  deleting: ["warn", "◔"],
  outage: ["bad", "✖"], unhealthy: ["bad", "✖"], failed: ["bad", "✖"],
  stopped: ["idle", "■"], terminated: ["idle", "–"],
};

function stateBadge(state) {
  const [tone, mark] = STATE_LOOK[state] || ["idle", "•"];
  return h("span", { class: `state ${tone}` }, h("span", { "aria-hidden": "true" }, mark + " "), state);
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u += 1;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(1)} ${units[u]}`;
}

function percent(f) {
  return f === null || f === undefined ? "–" : `${(f * 100).toFixed(1)}%`;
}

function tagsText(tags) {
  return Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

function time(ts) {
  return ts ? ts.replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== undefined && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---------------------------------------------------------------------------------------------
// Paged, sortable tables.

/**
 * A table over a paged list call. `load(pageToken)` returns a Page; `columns` are
 * `{key, label, value(item), cell(item)?, num?}`. Sorting orders the rows of the page shown.
 */
function pagedTable({ caption, columns, load, rowAttrs }) {
  const tokens = [""];
  let page = 0;
  let items = [];
  let next = null;
  let sort = { key: null, dir: 1 };
  const table = h("table");
  const info = h("span", { class: "muted", "aria-live": "polite" });
  const prev = h("button", { type: "button", onclick: () => go(page - 1) }, "Previous page");
  const nextBtn = h("button", { type: "button", onclick: () => go(page + 1) }, "Next page");
  const pager = h("div", { class: "pager" }, prev, nextBtn, info);

  function render() {
    const rows = [...items];
    if (sort.key) {
      const col = columns.find((c) => c.key === sort.key);
      rows.sort((a, b) => {
        const x = col.value(a);
        const y = col.value(b);
        return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
      });
    }
    const head = h("tr", {}, columns.map((c) => {
      const sorted = sort.key === c.key ? (sort.dir > 0 ? "ascending" : "descending") : "none";
      if (!c.value) return h("th", { scope: "col" }, c.label);
      return h("th", { scope: "col", "aria-sort": sorted, class: c.num ? "num" : undefined },
        h("button", {
          type: "button",
          class: "sort",
          onclick: () => {
            sort = { key: c.key, dir: sort.key === c.key ? -sort.dir : 1 };
            render();
          },
        }, c.label, sorted === "none" ? "" : sorted === "ascending" ? " ▲" : " ▼"));
    }));
    const body = rows.map((it) => h("tr", rowAttrs ? rowAttrs(it) : {}, columns.map((c) =>
      h("td", { class: c.num ? "num" : undefined }, c.cell ? c.cell(it) : c.value(it)))));
    table.replaceChildren(h("caption", { class: "muted" }, caption), h("thead", {}, head), h("tbody", {}, body));
    prev.disabled = page === 0;
    nextBtn.disabled = !next;
    info.textContent = `Page ${page + 1} · ${items.length} shown${sort.key ? " · sorted within the page" : ""}`;
  }

  async function go(p) {
    const result = await load(tokens[p]);
    page = p;
    items = result.items;
    next = result.next_page_token || null;
    if (next) tokens[p + 1] = next;
    tokens.length = Math.min(tokens.length, p + 2);
    render();
  }

  return { element: h("div", {}, table, pager), refresh: () => go(page), first: () => go(0) };
}

// ---------------------------------------------------------------------------------------------
// Views. Each takes (main, params, signal) and fills `main`.

async function overviewView(main, _params, signal) {
  const errors = h("div");
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  main.append(h("h1", {}, `Region ${session.region.name}`), errors, cards);
  await every(REFRESH_PERIOD_MS, signal, async () => {
    const usage = await api("GET", "/v1/usage", undefined, signal);
    cards.replaceChildren(...usage.zones.map(zoneCard));
  }, errors);

  function zoneCard(z) {
    const counts = z.instances;
    const live = Object.entries(counts).filter(([s]) => s !== "terminated").reduce((n, [, c]) => n + c, 0);
    const card = h("section", { class: "card zone", "aria-labelledby": `zone-${z.zone}`, dataset: { zone: z.zone } },
      h("h2", { id: `zone-${z.zone}` }, z.zone, " ", h("span", { class: "zone-state" }, stateBadge(z.state))),
      h("dl", { class: "facts" },
        h("dt", {}, "Instances"), h("dd", { class: "instances" }, `${live}`),
        h("dt", {}, "Running"), h("dd", {}, `${counts.running || 0}`),
        h("dt", {}, "Stopped"), h("dd", {}, `${counts.stopped || 0}`),
        h("dt", {}, "Backends"), h("dd", { class: "backends" }, `${z.backends}`),
        h("dt", {}, "Frontends"), h("dd", {}, `${z.frontends}`)));
    if (session.caller.admin) {
      const select = h("select", { id: `set-${z.zone}` },
        ZONE_STATES.map((s) => h("option", { value: s, selected: s === z.state }, s)));
      const apply = h("button", {
        type: "button",
        class: "set-state",
        onclick: async () => {
          const state = select.value;
          if (state === z.state) return say(`${z.zone} is already ${state}`);
          const sure = await confirmAction(`Set ${z.zone} to ${state}?`,
            state === "outage"
              ? `Load balancers will treat every instance in ${z.zone} as unhealthy and close its frontends.`
              : `The zone's instances serve again as their health checks allow.`,
            `Set ${state}`);
          if (!sure) return say("Zone state unchanged");
          try {
            await api("PUT", `/v1/admin/zones/${encodeURIComponent(z.zone)}`, { state });
            say(`${z.zone} set to ${state}`);
            const usage = await api("GET", "/v1/usage", undefined, signal);
            cards.replaceChildren(...usage.zones.map(zoneCard));
          } catch (e) {
            errors.replaceChildren(alertBox(e));
          }
        },
      }, "Apply");
      card.append(h("div", { class: "toolbar", dataset: { admin: "" } },
        h("label", { for: `set-${z.zone}` }, `State of ${z.zone}`), select, apply));
    }
    return card;
  }
}

async function instancesView(main, _params, signal) {
  const errors = h("div");
  const zone = h("select", { id: "f-zone" }, h("option", { value: "" }, "all zones"),
    session.region.zones.map((z) => h("option", { value: z.name }, z.name)));
  const state = h("select", { id: "f-state" }, h("option", { value: "" }, "any state"),
    INSTANCE_STATES.map((s) => h("option", { value: s }, s)));
  const tag = h("input", { id: "f-tag", type: "text", placeholder: "key=value", size: 18 });
  const size = h("select", { id: "f-size" }, [50, 100, 500].map((n) => h("option", { value: n, selected: n === 100 }, n)));
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter instances" },
    h("label", { for: "f-zone" }, "Zone", zone),
    h("label", { for: "f-state" }, "State", state),
    h("label", { for: "f-tag" }, "Tag", tag),
    h("label", { for: "f-size" }, "Per page", size),
    h("button", { type: "submit", class: "primary" }, "Apply filters"),
    h("button", { type: "button", id: "refresh", onclick: () => run(table.refresh) }, "Refresh"));

  const act = (inst, action) => async () => {
    if (action === "terminate" && !(await confirmAction(`Terminate ${inst.name}?`,
      "A terminated instance cannot be started again; its address is released.", "Terminate"))) return;
    try {
      await api("POST", `/v1/instances/${inst.id}/${action}`);
      say(`${action} ${inst.name}: accepted`);
      await table.refresh();
    } catch (e) {
      errors.replaceChildren(alertBox(e));
    }
  };
  const actions = (inst) => h("div", { class: "actions" },
    inst.state === "stopped" && h("button", { type: "button", onclick: act(inst, "start"), "aria-label": `Start ${inst.name}` }, "Start"),
    inst.state === "running" && h("button", { type: "button", onclick: act(inst, "stop"), "aria-label": `Stop ${inst.name}` }, "Stop"),
    inst.state !== "terminated" && h("button", { type: "button", class: "danger", onclick: act(inst, "terminate"), "aria-label": `Terminate ${inst.name}` }, "Terminate"));

  const table = pagedTable({
    caption: "Instances of this project",
    rowAttrs: (i) => ({ dataset: { id: i.id, name: i.name } }),
    columns: [
      { key: "name", label: "Name", value: (i) => i.name },
      { key: "id", label: "ID", value: (i) => i.id, cell: (i) => h("code", {}, i.id) },
      { key: "zone", label: "Zone", value: (i) => i.zone },
      { key: "type", label: "Type", value: (i) => i.instance_type },
      { key: "state", label: "State", value: (i) => i.state, cell: (i) => h("span", { class: "instance-state" }, stateBadge(i.state)) },
      { key: "ip", label: "Private IP", value: (i) => i.private_ip.split(".").map((o) => o.padStart(3, "0")).join("."), cell: (i) => i.private_ip },
      { key: "tags", label: "Tags", value: (i) => tagsText(i.tags) },
      { key: "created", label: "Created", value: (i) => i.created_at, cell: (i) => time(i.created_at) },
      { key: "actions", label: "Actions", cell: actions },
    ],
    load: (token) => api("GET", `/v1/instances${query({
      zone: zone.value, state: state.value, tag: tag.value.trim(), page_size: size.value, page_token: token,
    })}`, undefined, signal),
  });

  async function run(fn) {
    try {
      await fn();
      errors.replaceChildren();
    } catch (e) {
      if (!signal.aborted) errors.replaceChildren(alertBox(e));
    }
  }
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(table.first);
  });
  main.append(h("h1", {}, "Instances"), filters, errors, table.element);
  await run(table.first);
}

async function loadBalancersView(main, params, signal) {
  if (params[0]) return loadBalancerView(main, params[0], signal);
  const errors = h("div");
  const table = pagedTable({
    caption: "Load balancers of this project",
    rowAttrs: (lb) => ({ dataset: { id: lb.id } }),
    columns: [
      { key: "name", label: "Name", value: (lb) => lb.name, cell: (lb) => h("a", { href: `#/load-balancers/${lb.id}` }, lb.name) },
      { key: "state", label: "State", value: (lb) => lb.state, cell: (lb) => stateBadge(lb.state) },
      { key: "listeners", label: "Listeners", value: (lb) => lb.listeners.map((l) => `${l.protocol}/${l.port}`).join(", ") },
      { key: "backends", label: "Backends", num: true, value: (lb) => lb.backends.length },
      { key: "groups", label: "Backend groups", num: true, value: (lb) => lb.backend_groups.length },
      { key: "frontends", label: "Frontends", value: (lb) => lb.frontends.map((f) => `${f.zone} ${f.ip}`).join(", ") },
      { key: "traffic", label: "Traffic", cell: (lb) => h("a", { href: `#/traffic/${lb.id}`, "aria-label": `Traffic of ${lb.name}` }, "Traffic") },
    ],
    load: (token) => api("GET", `/v1/load-balancers${query({ page_size: 50, page_token: token })}`, undefined, signal),
  });
  main.append(h("h1", {}, "Load balancers"), errors, table.element);
  try {
    await table.first();
  } catch (e) {
    errors.replaceChildren(alertBox(e));
  }
}

async function loadBalancerView(main, id, signal) {
  const errors = h("div");
  const body = h("div", { "aria-live": "polite" });
  main.append(h("p", {}, h("a", { href: "#/load-balancers" }, "← Load balancers")), errors, body);
  await every(REFRESH_PERIOD_MS / 2, signal, async () => {
    const [lb, report] = await Promise.all([
      api("GET", `/v1/load-balancers/${encodeURIComponent(id)}`, undefined, signal),
      api("GET", `/v1/load-balancers/${encodeURIComponent(id)}/traffic`, undefined, signal),
    ]);
    const groups = await Promise.all(lb.backend_groups.map((g) =>
      api("GET", `/v1/backend-groups/${encodeURIComponent(g)}`, undefined, signal)));
    // Every instance the load balancer sends to: those it lists, then its groups' members.
    const all = new Map([...lb.backends, ...groups.flatMap((g) => g.members)].map((b) => [b.instance_id, b]));
    const backendList = [...all.values()];
    const health = new Map(report.backends.map((b) => [b.instance_id, b]));
    const zones = [...new Set([...lb.frontends.map((f) => f.zone), ...backendList.map((b) => b.zone)])].sort();
    const p = lb.zone_policy;
    body.replaceChildren(
      h("h1", {}, `Load balancer ${lb.name} `, stateBadge(lb.state)),
      h("dl", { class: "facts" },
        h("dt", {}, "ID"), h("dd", {}, h("code", {}, lb.id)),
        h("dt", {}, "Scheme"), h("dd", {}, `${lb.scheme}, ${lb.ip_mode} mode`),
        h("dt", {}, "Traffic"), h("dd", {}, h("a", { href: `#/traffic/${lb.id}` }, "live traffic matrix")),
        h("dt", {}, "Backend groups"), h("dd", { class: "groups" }, groups.length === 0 ? "none" :
          groups.map((g) => `${g.name} (${g.zone}, ${g.members.length} member${g.members.length === 1 ? "" : "s"})`).join(", "))),
      h("h2", {}, "Listeners"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Protocol"), h("th", { scope: "col" }, "Port"), h("th", { scope: "col" }, "Backend port"))),
        h("tbody", {}, lb.listeners.map((l) => h("tr", {}, h("td", {}, l.protocol), h("td", { class: "num" }, l.port), h("td", { class: "num" }, l.backend_port))))),
      h("h2", {}, "Zone policy"),
      h("dl", { class: "facts zone-policy" },
        h("dt", {}, "Cross-zone"), h("dd", {}, p.cross_zone ? "on" : "off"),
        h("dt", {}, "Zone affinity"), h("dd", {}, p.zone_affinity),
        h("dt", {}, "Balancing"), h("dd", {}, p.balancing),
        h("dt", {}, "Fail open"), h("dd", {}, p.fail_open ? "yes" : "no"),
        h("dt", {}, "Min cluster size"), h("dd", {}, p.min_cluster_size),
        h("dt", {}, "Panic threshold"), h("dd", {}, `${p.panic_threshold_percent}%`)),
      h("h2", {}, "Frontends"),
      h("div", { class: "cards" }, lb.frontends.map((f) => h("section", { class: "card frontend", dataset: { zone: f.zone } },
        h("h3", {}, f.zone), h("p", { class: "mono" }, f.ip),
        h("p", {}, lb.listeners.map((l) => `${l.protocol.toUpperCase()} ${f.ip}:${l.port}`).join(" · "))))),
      h("h2", {}, "Backends by zone"),
      ...zones.map((z) => {
        const backends = backendList.filter((b) => b.zone === z);
        return h("section", { class: "backend-zone", dataset: { zone: z } },
          h("h3", {}, `${z} · ${backends.length} backend${backends.length === 1 ? "" : "s"}`),
          backends.length === 0 ? h("p", { class: "muted" }, "No backends in this zone.") :
            h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Instance"), h("th", { scope: "col" }, "Private IP"),
              h("th", { scope: "col" }, "Health"), h("th", { scope: "col", class: "num" }, "Active connections"))),
            h("tbody", {}, backends.map((b) => {
              const hb = health.get(b.instance_id);
              const status = hb ? (hb.healthy ? "healthy" : "unhealthy") : "unknown";
              return h("tr", { dataset: { id: b.instance_id } }, h("td", {}, h("code", {}, b.instance_id)), h("td", {}, b.private_ip),
                h("td", {}, stateBadge(status)), h("td", { class: "num" }, hb ? hb.active_connections : 0));
            }))));
      }));
  }, errors);
}

/** The traffic matrix: rows are frontend (client) zones, columns backend zones. Pure. */
function trafficMatrix(report) {
  const cells = new Map();
  const from = new Set();
  const to = new Set();
  for (const r of report.rows) {
    from.add(r.frontend_zone);
    to.add(r.backend_zone);
    const key = `${r.frontend_zone}|${r.backend_zone}`;
    const c = cells.get(key) || { connections: 0, bytes: 0 };
    c.connections += r.connections;
    c.bytes += r.bytes_in + r.bytes_out;
    cells.set(key, c);
  }
  return { from: [...from].sort(), to: [...to].sort(), cells };
}

/** Connections so far, and how many stayed in their zone. Pure. */
function tally(report) {
  let total = 0;
  let same = 0;
  for (const r of report.rows) {
    total += r.connections;
    if (r.frontend_zone === r.backend_zone) same += r.connections;
  }
  return { total, same };
}

/** In-zone share of the connections made between two tallies, or null when none were. */
function windowFraction(old, cur) {
  const total = cur.total - old.total;
  return total > 0 ? (cur.same - old.same) / total : null;
}

function chart(samples) {
  const W = 600;
  const H = 160;
  const pad = 30;
  // The x axis spans the samples so far (at least 30 s), up to CHART_SAMPLES.
  const span = Math.max(samples.length, 30);
  const x = (i) => pad + (i * (W - pad - 8)) / (span - 1);
  const y = (f) => 8 + (1 - f) * (H - 30);
  // Runs of consecutive points become lines; a lone point is a dot.
  const runs = [];
  samples.forEach((s, i) => {
    if (s === null) return;
    const p = [x(i), y(s)];
    if (i > 0 && samples[i - 1] !== null) runs.at(-1).push(p);
    else runs.push([p]);
  });
  const last = samples.filter((s) => s !== null).at(-1);
  const label = last === undefined ? "In-zone fraction over time: no traffic yet"
    : `In-zone fraction over time; now ${percent(last)} of the last ${CHART_WINDOW} s of connections`;
  return h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label },
    h("title", {}, label),
    [0, 0.5, 1].map((f) => [h("line", { class: "grid", x1: pad, x2: W - 8, y1: y(f), y2: y(f) }),
      h("text", { x: 2, y: y(f) + 4 }, `${f * 100}%`)]),
    h("text", { x: pad, y: H - 6 }, `last ${span} s; each point: connections of the ${CHART_WINDOW} s before it`),
    runs.map((run) => (run.length === 1
      ? h("circle", { class: "dot", cx: run[0][0].toFixed(1), cy: run[0][1].toFixed(1), r: 3 })
      : h("polyline", { class: "line", points: run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ") }))));
}

async function trafficView(main, params, signal) {
  const errors = h("div");
  const picker = h("select", { id: "lb-pick" }, h("option", { value: "" }, "choose a load balancer"));
  main.append(h("h1", {}, "Traffic"),
    h("form", { class: "toolbar", onsubmit: (ev) => ev.preventDefault() },
      h("label", { for: "lb-pick" }, "Load balancer", picker)), errors);
  picker.addEventListener("change", () => {
    location.hash = picker.value ? `#/traffic/${picker.value}` : "#/traffic";
  });
  try {
    const page = await api("GET", "/v1/load-balancers?page_size=500", undefined, signal);
    for (const lb of page.items) picker.append(h("option", { value: lb.id, selected: lb.id === params[0] }, `${lb.name} (${lb.id})`));
  } catch (e) {
    errors.replaceChildren(alertBox(e));
  }
  const id = params[0];
  if (!id) return;
  const summary = h("dl", { class: "facts traffic-summary" });
  const matrix = h("div");
  const chartSlot = h("div");
  const backends = h("div");
  main.append(summary, h("h2", {}, "Connections by client zone and backend zone"), matrix,
    h("h2", {}, "In-zone fraction"), chartSlot, h("h2", {}, "Per-backend load"), backends);
  const samples = []; // one per second since the view opened, the last CHART_SAMPLES
  const tallies = []; // the last CHART_WINDOW + 1 tallies, oldest first
  await every(TRAFFIC_PERIOD_MS, signal, async () => {
    const report = await api("GET", `/v1/load-balancers/${encodeURIComponent(id)}/traffic`, undefined, signal);
    tallies.push(tally(report));
    if (tallies.length > CHART_WINDOW + 1) tallies.shift();
    if (tallies.length > 1) {
      samples.push(windowFraction(tallies[0], tallies.at(-1)));
      if (samples.length > CHART_SAMPLES) samples.shift();
    }
    renderTraffic(report, samples);
  }, errors);

  function renderTraffic(report, fractions) {
    summary.replaceChildren(
      h("dt", {}, "Connections"), h("dd", { class: "total" }, report.connections),
      h("dt", {}, "Refused"), h("dd", {}, report.refused),
      h("dt", {}, "In-zone fraction"), h("dd", { class: "in-zone" }, percent(report.in_zone_fraction)));
    const m = trafficMatrix(report);
    matrix.replaceChildren(m.from.length === 0 ? h("p", { class: "muted" }, "No connections yet.") :
      h("table", { class: "matrix" },
        h("caption", { class: "muted" }, "Rows: the frontend zone the client connected to. Columns: the backend's zone. ◆ marks same-zone cells."),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "client zone \\ backend zone"), m.to.map((z) => h("th", { scope: "col" }, z)))),
        h("tbody", {}, m.from.map((f) => h("tr", { dataset: { from: f } }, h("th", { scope: "row" }, f),
          m.to.map((t) => {
            const c = m.cells.get(`${f}|${t}`) || { connections: 0, bytes: 0 };
            return h("td", { class: f === t ? "same" : undefined, dataset: { to: t, connections: c.connections } },
              f === t ? h("span", { "aria-label": "same zone" }, "◆ ") : null,
              `${c.connections} conn`, h("br"), h("span", { class: "muted" }, bytes(c.bytes)));
          }))))));
    chartSlot.replaceChildren(chart(fractions));
    const load = new Map();
    for (const r of report.rows) {
      const b = load.get(r.backend) || { zone: r.backend_zone, connections: 0, bytes: 0, errors: 0 };
      b.connections += r.connections;
      b.bytes += r.bytes_in + r.bytes_out;
      b.errors += r.errors;
      load.set(r.backend, b);
    }
    for (const b of report.backends) if (!load.has(b.instance_id)) load.set(b.instance_id, { zone: b.zone, connections: 0, bytes: 0, errors: 0 });
    const health = new Map(report.backends.map((b) => [b.instance_id, b]));
    const most = Math.max(1, ...[...load.values()].map((b) => b.connections));
    backends.replaceChildren(h("table", { class: "backend-load" },
      h("thead", {}, h("tr", {}, ["Backend", "Zone", "Health", "Active", "Connections", "Bytes", "Errors"].map((c, i) =>
        h("th", { scope: "col", class: i >= 3 ? "num" : undefined }, c)))),
      h("tbody", {}, [...load.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, b]) => {
        const hb = health.get(id);
        return h("tr", { dataset: { id } }, h("td", {}, h("code", {}, id)), h("td", {}, b.zone),
          h("td", {}, stateBadge(hb ? (hb.healthy ? "healthy" : "unhealthy") : "unknown")),
          h("td", { class: "num" }, hb ? hb.active_connections : 0),
          h("td", { class: "num" }, b.connections, h("span", { class: "bar", "aria-hidden": "true", style: { width: `${(100 * b.connections) / most}%` } })),
          h("td", { class: "num" }, bytes(b.bytes)), h("td", { class: "num" }, b.errors));
      }))));
  }
}

async function eventsView(main, _params, signal) {
  const errors = h("div");
  const kind = h("select", { id: "e-kind" }, h("option", { value: "" }, "all resources"),
    ["instance", "load_balancer", "backend_group", "route", "zone"].map((k) => h("option", { value: k }, k)));
  const rid = h("input", { id: "e-id", type: "text", placeholder: "i-… or lb-…", size: 22 });
  const tbody = h("tbody", { "aria-live": "off" });
  const live = h("span", { class: "muted", "aria-live": "polite" }, "connecting…");
  let events = [];
  const render = () => {
    const k = kind.value;
    const id = rid.value.trim();
    const shown = events.filter((e) => (!k || e.resource_kind === k) && (!id || e.resource_id.includes(id)));
    tbody.replaceChildren(...shown.slice().reverse().map((e) => h("tr", { dataset: { seq: e.seq } },
      h("td", { class: "num" }, e.seq), h("td", {}, time(e.time)), h("td", {}, e.resource_kind),
      h("td", {}, h("code", {}, e.resource_id)), h("td", {}, e.kind), h("td", {}, e.state ? stateBadge(e.state) : ""),
      h("td", {}, e.zone || ""))));
  };
  kind.addEventListener("change", render);
  rid.addEventListener("input", render);
  main.append(h("h1", {}, "Events"),
    h("form", { class: "filters", role: "search", "aria-label": "Filter events", onsubmit: (ev) => ev.preventDefault() },
      h("label", { for: "e-kind" }, "Resource kind", kind), h("label", { for: "e-id" }, "Resource ID contains", rid), live),
    errors,
    h("table", { class: "events" }, h("caption", { class: "muted" }, `Newest first; the last ${EVENTS_KEPT} are kept`),
      h("thead", {}, h("tr", {}, ["Seq", "Time", "Resource", "ID", "Event", "State", "Zone"].map((c) => h("th", { scope: "col" }, c)))), tbody));
  // Start just before the head of the log, then long-poll for what follows.
  let after;
  try {
    const head = await api("GET", "/v1/events?after=9007199254740991&wait_seconds=0", undefined, signal);
    after = Math.max(0, head.last_seq - 100);
  } catch (e) {
    if (!signal.aborted) errors.replaceChildren(alertBox(e));
    return;
  }
  (async () => {
    while (!signal.aborted) {
      try {
        const page = await api("GET", `/v1/events${query({ after, limit: 1000, wait_seconds: 20 })}`, undefined, signal);
        after = page.last_seq;
        if (page.events.length) {
          events = events.concat(page.events).slice(-EVENTS_KEPT);
          render();
        }
        live.textContent = `live · up to #${after}`;
        errors.replaceChildren();
      } catch (e) {
        if (signal.aborted) return;
        errors.replaceChildren(alertBox(e));
        live.textContent = "retrying in 2 s";
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  })();
}

async function faultsView(main, _params, signal) {
  const errors = h("div");
  const list = h("div", { "aria-live": "polite" });
  const refresh = async () => {
    const page = await api("GET", "/v1/admin/faults", undefined, signal);
    list.replaceChildren(page.items.length === 0 ? h("p", { class: "muted" }, "No fault rules.") :
      h("table", { class: "faults" },
        h("thead", {}, h("tr", {}, ["ID", "Method", "Path prefix", "Zone", "Effect", "Probability", "Remaining", "Expires", "Hits", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.items.map((r) => h("tr", { dataset: { id: r.id } },
          h("td", {}, h("code", {}, r.id)), h("td", {}, r.method || "any"), h("td", {}, r.path_prefix || "/v1/"),
          h("td", {}, r.zone || "any"), h("td", {}, effectText(r.effect)), h("td", { class: "num" }, r.probability),
          h("td", { class: "num" }, r.remaining ?? "∞"), h("td", {}, time(r.expires_at) || "never"), h("td", { class: "num" }, r.hits),
          h("td", {}, h("button", {
            type: "button",
            "aria-label": `Remove fault ${r.id}`,
            onclick: async () => {
              try {
                await api("DELETE", `/v1/admin/faults/${encodeURIComponent(r.id)}`);
                say(`fault ${r.id} removed`);
                await refresh();
              } catch (e) {
                errors.replaceChildren(alertBox(e));
              }
            },
          }, "Remove")))))));
  };
  const field = (id, label, input) => h("label", { for: id }, label, Object.assign(input, { id }));
  const type = h("select", {}, ["error", "latency", "throttle"].map((t) => h("option", { value: t }, t)));
  const status = h("input", { type: "number", min: 400, max: 599, value: 503 });
  const retry = h("input", { type: "number", min: 0, placeholder: "none" });
  const millis = h("input", { type: "number", min: 0, value: 200 });
  const rate = h("input", { type: "number", min: 0, step: "any", value: 5 });
  const burst = h("input", { type: "number", min: 1, value: 10 });
  const method = h("select", {}, h("option", { value: "" }, "any"), HTTP_METHODS.map((m) => h("option", { value: m }, m)));
  const path = h("input", { type: "text", placeholder: "/v1/instances" });
  const zone = h("select", {}, h("option", { value: "" }, "any"), session.region.zones.map((z) => h("option", { value: z.name }, z.name)));
  const probability = h("input", { type: "number", min: 0, max: 1, step: "any", value: 1 });
  const count = h("input", { type: "number", min: 1, placeholder: "unlimited" });
  const ttl = h("input", { type: "number", min: 1, placeholder: "none" });
  const perType = {
    error: [field("fx-status", "Status", status), field("fx-retry", "Retry-After (s)", retry)],
    latency: [field("fx-millis", "Delay (ms)", millis)],
    throttle: [field("fx-rate", "Rate per second", rate), field("fx-burst", "Burst", burst)],
  };
  const effectFields = h("div", { class: "toolbar" });
  const showEffect = () => effectFields.replaceChildren(...perType[type.value]);
  type.addEventListener("change", showEffect);
  showEffect();
  const num = (input) => (input.value === "" ? undefined : Number(input.value));
  const form = h("form", { class: "card", "aria-labelledby": "add-fault" },
    h("h2", { id: "add-fault" }, "Add a fault rule"),
    h("div", { class: "toolbar" }, field("fx-type", "Effect", type), effectFields),
    h("div", { class: "toolbar" }, field("fx-method", "Method", method), field("fx-path", "Path prefix", path),
      field("fx-zone", "Zone", zone)),
    h("div", { class: "toolbar" }, field("fx-prob", "Probability (0–1)", probability), field("fx-count", "Count", count),
      field("fx-ttl", "TTL (s)", ttl), h("button", { type: "submit", class: "primary" }, "Add rule")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const effect = { type: type.value };
    if (type.value === "error") Object.assign(effect, { status: num(status), retry_after_seconds: num(retry) });
    if (type.value === "latency") effect.millis = num(millis);
    if (type.value === "throttle") Object.assign(effect, { rate_per_second: num(rate), burst: num(burst) });
    const body = {
      method: method.value || undefined, path_prefix: path.value.trim() || undefined, zone: zone.value || undefined,
      effect, probability: num(probability) ?? 1, count: num(count), ttl_seconds: num(ttl),
    };
    try {
      const rule = await api("POST", "/v1/admin/faults", JSON.parse(JSON.stringify(body)));
      say(`fault ${rule.id} added`);
      await refresh();
      errors.replaceChildren();
    } catch (e) {
      errors.replaceChildren(alertBox(e));
    }
  });
  main.append(h("h1", {}, "Faults"), errors);
  try {
    await refresh();
  } catch (e) {
    errors.replaceChildren(alertBox(e));
    return; // not an admin: no form either
  }
  main.append(list, form);
}

function effectText(e) {
  if (e.type === "error") return `error ${e.status}${e.retry_after_seconds ? `, Retry-After ${e.retry_after_seconds}s` : ""}`;
  if (e.type === "latency") return `latency ${e.millis} ms`;
  return `throttle ${e.rate_per_second}/s, burst ${e.burst}`;
}

// ---------------------------------------------------------------------------------------------
// Sign-in and routing.

const VIEWS = {
  overview: overviewView,
  instances: instancesView,
  "load-balancers": loadBalancersView,
  traffic: trafficView,
  events: eventsView,
  faults: faultsView,
};

let current = null;

async function route() {
  if (!session.caller) return;
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const view = VIEWS[name] ? name : "overview";
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const main = document.getElementById("main");
  main.replaceChildren();
  main.dataset.view = view;
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.getAttribute("href") === `#/${view}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${view} · simcloud console`;
  main.focus({ preventScroll: true });
  try {
    await VIEWS[view](main, params.filter(Boolean), controller.signal);
  } catch (e) {
    if (!controller.signal.aborted) main.append(alertBox(e));
  }
}

/** Shows the sign-in form (after a 401); the token goes to sessionStorage only. */
function signIn(err) {
  if (current) current.abort();
  session.caller = null;
  document.querySelector("header nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  const main = document.getElementById("main");
  if (main.dataset.view === "sign-in" && !err) return;
  main.dataset.view = "sign-in";
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = h("form", {}, h("label", { for: "token" }, "API token", input),
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    await start();
  });
  const hadToken = sessionStorage.getItem(TOKEN_KEY);
  main.replaceChildren(h("section", { class: "login" }, h("h1", {}, "Sign in"),
    h("p", {}, "This cloud needs a bearer token (from its tokens file). It is kept for this browser tab only."),
    hadToken ? h("div", { class: "alert", role: "alert" }, "That token was not accepted.") : null, form));
  sessionStorage.removeItem(TOKEN_KEY);
  input.focus();
}

async function start() {
  try {
    session.caller = await api("GET", "/v1/whoami");
    const regions = await api("GET", "/v1/regions");
    session.region = regions.items[0];
  } catch (e) {
    if (e.status !== 401) document.getElementById("main").replaceChildren(alertBox(e));
    return;
  }
  const admin = session.caller.admin;
  document.getElementById("region").textContent = session.region.name;
  document.getElementById("who").textContent = `project ${session.caller.project}${admin ? " · admin" : ""}`;
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !admin;
  document.querySelector("header nav").hidden = false;
  document.getElementById("sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
  await route();
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  signIn(null);
});
window.addEventListener("hashchange", route);
start();
