// Taskport's page: the JSON API of this server, shown and driven from a browser.
// Everything the API returns is written into the page as text (textContent), never as HTML.
"use strict";

const STATUSES = ["SCHEDULED", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const FINISHED = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const CANCELLABLE = new Set(["SCHEDULED", "QUEUED", "RUNNING"]);
const RETRYABLE = new Set(["FAILED", "CANCELLED"]);
const KEY = "taskport-api-key";
const PAGE = 50;
const REFRESH_MS = 3000;
const TASK_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const QUEUE = /^[a-z][a-z0-9_-]{0,39}$/;

const $ = (id) => document.getElementById(id);

const state = {
  view: "tasks",
  statuses: new Set(),
  kind: "",
  queue: "",
  cursor: null, // the page shown: null for the newest
  newer: [], // the cursors of the pages before it, to walk back
  next: null, // the next_cursor of the page shown
  task: null, // the id of the task opened
  busy: false,
  again: false, // asked for while busy
  failed: false, // the last refresh failed: its message is shown
};

class Refused extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `the server answered ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  const request = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    request.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, request);
  } catch {
    throw new Refused(0, { detail: "The server cannot be reached." });
  }
  // A refusal of a request sent before the key was given asks for nothing.
  if (response.status === 401 && key === sessionStorage.getItem(KEY)) askForKey();
  if (!response.ok) throw new Refused(response.status, await problemOf(response));
  return response.status === 204 ? null : response.json();
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function row(...cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    td.append(cell instanceof Node ? cell : document.createTextNode(cell ?? ""));
    tr.append(td);
  }
  return tr;
}

function when(instant) {
  return instant ? instant.slice(0, 19).replace("T", " ") : "";
}

function say(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function askForKey() {
  if (!$("key-form").hidden) return;
  $("key-form").hidden = false;
  $("key").focus();
}

// The view, the filters and the task opened live in the address
// (#status=FAILED,RUNNING&kind=echo&queue=images, #task=<id>, #view=workers): a view can
// be shared.
function readAddress() {
  const wanted = new URLSearchParams(location.hash.slice(1));
  state.view = Object.hasOwn(VIEWS, wanted.get("view")) ? wanted.get("view") : "tasks";
  const statuses = (wanted.get("status") || "").toUpperCase().split(",");
  state.statuses = new Set(statuses.filter((status) => STATUSES.includes(status)));
  state.kind = wanted.get("kind") || "";
  state.queue = QUEUE.test(wanted.get("queue") || "") ? wanted.get("queue") : "";
  // Only an id: an address may not point the task's buttons at another path of the API.
  state.task = TASK_ID.test(wanted.get("task") || "") ? wanted.get("task") : null;
}

function writeAddress() {
  const wanted = new URLSearchParams();
  if (state.view !== "tasks") wanted.set("view", state.view);
  if (state.statuses.size) wanted.set("status", [...state.statuses].join(","));
  if (state.kind) wanted.set("kind", state.kind);
  if (state.queue) wanted.set("queue", state.queue);
  if (state.task) wanted.set("task", state.task);
  history.replaceState(null, "", wanted.size ? `#${wanted}` : location.pathname);
}

async function showStats() {
  const stats = await api("GET", "/v1/stats");
  const list = $("status-counts");
  list.replaceChildren();
  for (const status of STATUSES) {
    const chip = el("button", `${status} ${stats.by_status[status] ?? 0}`, {
      type: "button",
      "data-status": status,
      "aria-pressed": String(state.statuses.has(status)),
      class: `status ${status.toLowerCase()}`,
    });
    chip.addEventListener("click", () => toggleStatus(status));
    const item = el("li");
    item.append(chip);
    list.append(item);
  }
  const age = stats.oldest_queued_age_seconds;
  const waiting = age === null ? "none waiting" : `${age.toFixed(1)} s waiting`;
  $("waits").textContent =
    `oldest queued: ${waiting} · outbox backlog: ${stats.outbox_backlog} messages`;
  showQueues(Object.keys(stats.by_queue));
}

// The queues holding tasks, and the one chosen: rebuilt only when they change, so that a
// list the user has open is not replaced under the pointer.
function showQueues(holding) {
  const queues = [...new Set([...holding, ...(state.queue ? [state.queue] : [])])].sort();
  const select = $("queue-filter");
  const shown = [...select.options].slice(1).map((option) => option.value);
  if (shown.join(",") !== queues.join(",")) {
    const options = queues.map((queue) => el("option", queue, { value: queue }));
    select.replaceChildren(el("option", "any", { value: "" }), ...options);
  }
  select.value = state.queue;
}

function showStatusFilter() {
  const fieldset = $("status-filter");
  for (const status of STATUSES) {
    const box = el("input", null, { type: "checkbox", value: status });
    box.addEventListener("change", () => toggleStatus(status));
    const label = el("label");
    label.append(box, ` ${status}`);
    fieldset.append(label);
  }
}

function syncFilters() {
  for (const box of $("status-filter").querySelectorAll("input")) {
    box.checked = state.statuses.has(box.value);
  }
  for (const chip of $("status-counts").querySelectorAll("button")) {
    chip.setAttribute("aria-pressed", String(state.statuses.has(chip.dataset.status)));
  }
  $("kind-filter").value = state.kind;
  $("queue-filter").value = state.queue;
  for (const [action, { statuses }] of Object.entries(BULK)) {
    $(`bulk-${action}`).disabled = bulkStatuses(statuses).length === 0;
  }
  const retried = chosenStatuses("retry");
  $("bulk-retry").textContent = `Retry the ${retried.join(" and ").toLowerCase() || "failed"} ones`;
}

// The changes to every task the filters show: the statuses chosen that the change takes
// (all it takes by default: FAILED alone for a retry), the kind and the queue chosen.
const BULK = {
  cancel: { statuses: ["SCHEDULED", "QUEUED"], fallback: ["SCHEDULED", "QUEUED"], done: "cancelled" },
  retry: { statuses: ["FAILED", "CANCELLED"], fallback: ["FAILED"], done: "retried" },
};

function bulkStatuses(statuses) {
  return state.statuses.size ? statuses.filter((status) => state.statuses.has(status)) : statuses;
}

// The statuses a change takes its tasks from: those chosen, or its default.
function chosenStatuses(action) {
  const { statuses, fallback } = BULK[action];
  return state.statuses.size ? bulkStatuses(statuses) : fallback;
}

async function changeAll(action) {
  const { done } = BULK[action];
  const body = { status: chosenStatuses(action) };
  if (state.kind) body.kind = state.kind;
  if (state.queue) body.queue = state.queue;
  const scope = [body.status.join(" or "), body.kind && `kind ${body.kind}`,
    body.queue && `queue ${body.queue}`].filter(Boolean).join(", ");
  if (!confirm(`${action[0].toUpperCase()}${action.slice(1)} every task (${scope})?`)) return;
  let changed = 0;
  try {
    for (let more = true; more; ) {
      const answer = await api("POST", `/v1/tasks/${action}`, body);
      changed += answer.ids.length;
      more = answer.more;
    }
    say(`${done} ${changed} task${changed === 1 ? "" : "s"}`);
  } catch (error) {
    say(`${action}: ${error.message} (${done} ${changed} before)`);
  }
  await refresh();
}

function toggleStatus(status) {
  if (state.statuses.has(status)) state.statuses.delete(status);
  else state.statuses.add(status);
  filtersChanged();
}

function firstPage() {
  state.cursor = null;
  state.newer = [];
}

function filtersChanged() {
  firstPage();
  writeAddress();
  syncFilters();
  refresh();
}

async function showKinds() {
  const kinds = await api("GET", "/v1/kinds");
  const select = $("kind-filter");
  const options = kinds.items.map((kind) => el("option", kind.name, { value: kind.name }));
  select.replaceChildren(el("option", "any", { value: "" }), ...options);
  select.value = state.kind;
}

async function showTasks() {
  const query = new URLSearchParams({ limit: PAGE });
  for (const status of state.statuses) query.append("status", status);
  if (state.kind) query.set("kind", state.kind);
  if (state.queue) query.set("queue", state.queue);
  if (state.cursor) query.set("cursor", state.cursor);
  const page = await api("GET", `/v1/tasks?${query}`);
  state.next = page.next_cursor;
  const rows = page.items.map((task) => {
    const link = el("button", task.id, { type: "button", class: "link" });
    link.addEventListener("click", () => openTask(task.id));
    const status = el("span", task.status, { class: `status ${task.status.toLowerCase()}` });
    const progress = task.progress
      ? `${Math.round(task.progress.fraction * 100)}% ${task.progress.message ?? ""}`
      : "";
    const shown = row(link, task.kind, task.queue, status,
      `${task.attempts}/${task.max_attempts}`, when(task.created_at), progress);
    shown.dataset.taskId = task.id;
    return shown;
  });
  $("task-rows").replaceChildren(...rows);
  $("no-tasks").hidden = rows.length > 0;
  $("older").disabled = !state.next;
  $("newer").disabled = !state.cursor;
  $("newest").disabled = !state.cursor;
}

async function openTask(id) {
  state.task = id;
  writeAddress();
  try {
    await showTask();
  } catch (error) {
    say(error.message);
  }
}

async function showTask() {
  if (!state.task) return;
  let task;
  try {
    task = await api("GET", `/v1/tasks/${state.task}`);
  } catch (error) {
    if (error.status === 404 || error.status === 422) closeTask(); // deleted, or no task id
    throw error;
  }
  $("task-title").textContent = `${task.kind} ${task.id}`;
  const fields = [
    ["status", task.cancel_requested && !FINISHED.has(task.status)
      ? `${task.status} (cancel requested)` : task.status],
    ["attempts", `${task.attempts} of ${task.max_attempts}, ${task.timeout_seconds} s each`],
    ["queue", task.queue],
    ["created", when(task.created_at)],
    ["run at", when(task.run_at)],
    ["expires", when(task.expires_at)],
    ["started", when(task.started_at)],
    ["finished", when(task.finished_at)],
    ["worker", task.worker_id],
    ["schedule", task.schedule_id],
    ["callback", task.callback_url],
    ["progress", task.progress && JSON.stringify(task.progress)],
    ["payload", JSON.stringify(task.payload, null, 2)],
    ["result", task.result === null ? null : JSON.stringify(task.result, null, 2)],
    ["error", task.error && `${task.error.type}: ${task.error.message}`],
  ];
  const list = $("task-fields");
  list.replaceChildren();
  for (const [name, value] of fields) {
    if (value === null || value === undefined || value === "") continue;
    const shown = el("dd");
    shown.append(name === "payload" || name === "result" ? el("pre", value) : value);
    list.append(el("dt", name), shown);
  }
  const buttons = $("task-actions").querySelectorAll("button");
  for (const button of buttons) {
    const allowed = { cancel: CANCELLABLE, retry: RETRYABLE, delete: FINISHED }[button.dataset.action];
    button.disabled = !allowed.has(task.status);
  }
  $("task").hidden = false;
}

function closeTask() {
  state.task = null;
  writeAddress();
  $("task").hidden = true;
}

// A button's request: whether the API took it. A refusal is shown until the next action.
async function perform(action, method, path) {
  try {
    await api(method, path);
    say("");
    return true;
  } catch (error) {
    say(`${action}: ${error.message}`);
    return false;
  }
}

async function act(action) {
  const id = state.task;
  if (action === "delete") {
    if (!confirm(`Delete task ${id}, its payload and its result?`)) return;
    if (await perform(action, "DELETE", `/v1/tasks/${id}`)) closeTask();
  } else {
    await perform(action, "POST", `/v1/tasks/${id}/${action}`);
  }
  await refresh();
}

async function showSchedules() {
  const page = await api("GET", "/v1/schedules?limit=1000");
  const rows = page.items.map((schedule) => {
    const action = schedule.paused ? "resume" : "pause";
    const button = el("button", action === "pause" ? "Pause" : "Resume", { type: "button" });
    button.addEventListener("click", async () => {
      await perform(action, "POST", `/v1/schedules/${schedule.id}/${action}`);
      await refresh();
    });
    const next = schedule.paused ? "paused" : when(schedule.next_run_at);
    return row(schedule.name ?? schedule.id, schedule.cron, schedule.timezone, schedule.kind,
      next, schedule.last_task_id ?? "", button);
  });
  $("schedule-rows").replaceChildren(...rows);
  $("no-schedules").hidden = rows.length > 0;
  $("more-schedules").hidden = !page.next_cursor; // past one page of the API: the newest
}

async function showWorkers() {
  const workers = await api("GET", "/v1/workers");
  const rows = workers.items.map((worker) => row(
    worker.id,
    el("span", worker.status, { class: `status ${worker.status}` }),
    // A queue taken with a limit shows it: "images (4)".
    worker.queues
      .map((queue) => {
        const limit = (worker.queue_limits || {})[queue];
        return limit === undefined ? queue : `${queue} (${limit})`;
      })
      .join(", "),
    worker.running,
    worker.concurrency,
    when(worker.started_at),
    when(worker.last_heartbeat),
  ));
  $("worker-rows").replaceChildren(...rows);
  $("no-workers").hidden = rows.length > 0;
}

const VIEWS = { tasks: showTasks, schedules: showSchedules, workers: showWorkers };

async function refresh() {
  if (state.busy) {
    state.again = true; // what changed meanwhile is shown by a refresh right after
    return;
  }
  state.busy = true;
  try {
    await Promise.all([showStats(), VIEWS[state.view](), showTask()]);
    syncFilters();
    if (state.failed) say(""); // what the last refresh met is over
    state.failed = false;
  } catch (error) {
    state.failed = true;
    const refused = sessionStorage.getItem(KEY) ? "This key is refused." : "An API key is needed.";
    say(error.status === 401 ? refused : error.message);
  } finally {
    state.busy = false;
    document.body.dataset.loaded = "true"; // for tests: the first round of answers is in
    if (state.again) {
      state.again = false;
      refresh();
    }
  }
}

// Every 3 s, or ten times as long as the last refresh took: on a large store, where counting
// the tasks takes a while, an open page keeps to a tenth of the server's time.
async function autoRefresh() {
  let took = 0;
  if ($("auto-refresh").checked && !document.hidden) {
    const started = performance.now();
    await refresh();
    took = performance.now() - started;
  }
  setTimeout(autoRefresh, Math.max(REFRESH_MS, 10 * took));
}

function showView(view) {
  state.view = view;
  writeAddress();
  for (const button of document.querySelectorAll("nav button")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
  for (const name of Object.keys(VIEWS)) $(`view-${name}`).hidden = name !== view;
  refresh();
}

function start() {
  readAddress();
  showStatusFilter();
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  $("kind-filter").addEventListener("change", (event) => {
    state.kind = event.target.value;
    filtersChanged();
  });
  for (const action of Object.keys(BULK)) {
    $(`bulk-${action}`).addEventListener("click", () => changeAll(action));
  }
  $("queue-filter").addEventListener("change", (event) => {
    state.queue = event.target.value;
    filtersChanged();
  });
  $("newest").addEventListener("click", () => {
    firstPage();
    refresh();
  });
  $("newer").addEventListener("click", () => {
    state.cursor = state.newer.pop() ?? null;
    refresh();
  });
  $("older").addEventListener("click", () => {
    state.newer.push(state.cursor);
    state.cursor = state.next;
    refresh();
  });
  $("close-task").addEventListener("click", closeTask);
  for (const button of $("task-actions").querySelectorAll("button")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    $("key-form").hidden = true;
    $("forget-key").hidden = false;
    showKinds().catch(() => {});
    refresh();
  });
  $("forget-key").hidden = !sessionStorage.getItem(KEY);
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("forget-key").hidden = true;
    askForKey();
  });
  window.addEventListener("hashchange", () => {
    readAddress();
    firstPage();
    showView(state.view);
  });
  setTimeout(autoRefresh, REFRESH_MS);
  syncFilters();
  showKinds().catch(() => {});
  showView(state.view);
}

start();
