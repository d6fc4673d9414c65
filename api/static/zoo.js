// zoo's pages: search as you type, copy buttons, live job lists, and the convert flow.
// Loaded as a static file (the Content-Security-Policy allows no inline script). Everything that comes from
// the API is put into the page with textContent; HTML fragments come from zoo's own escaped templates.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const TOKEN_KEY = "zoo.token"; // sessionStorage: this tab only, gone when it closes
  const FINAL = new Set(["succeeded", "failed", "canceled"]);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // --- copy buttons ---------------------------------------------------------------------------
  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      const area = el("textarea", { readonly: true });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      return ok;
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy");
    if (!button) return;
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = (await copy(button.dataset.copy || "")) ? "Copied" : "Copy failed";
    button.classList.add("done");
    setTimeout(() => { button.textContent = label; button.classList.remove("done"); }, 1500);
  });

  // --- catalog: search as you type ---------------------------------------------------------------
  function initCatalog() {
    const form = $("#search");
    const results = $("#results");
    if (!form || !results) return;
    let timer = null;
    let latest = 0;
    async function update() {
      const params = new URLSearchParams();
      for (const [key, value] of new FormData(form)) if (String(value).trim()) params.set(key, String(value).trim());
      const pageUrl = "/" + (params.toString() ? "?" + params : "");
      params.set("fragment", "true");
      const mine = ++latest;
      form.classList.add("busy");
      try {
        const response = await fetch("/?" + params, { headers: { Accept: "text/html" } });
        if (mine !== latest || !response.ok) return;
        results.innerHTML = await response.text(); // zoo's own template, every value escaped there
        history.replaceState(null, "", pageUrl);
      } finally {
        if (mine === latest) form.classList.remove("busy");
      }
    }
    const soon = () => { clearTimeout(timer); timer = setTimeout(update, 120); };
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
    form.addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(timer); update(); });
  }

  // --- jobs: the list and one job refresh themselves while anything may change ---------------------
  function initLive() {
    const box = $("#jobs[data-live], #job[data-live]");
    if (!box) return;
    const url = new URL(box.dataset.live, location.href);
    url.searchParams.set("fragment", "true");
    (async () => {
      for (;;) {
        await sleep(box.id === "job" ? 1000 : 2000);
        if (document.hidden) continue;
        if (box.id === "job" && $(".job-head", box) && FINAL.has($(".job-head", box).dataset.state)) return;
        try {
          const response = await fetch(url, { headers: { Accept: "text/html" } });
          if (response.ok) box.innerHTML = await response.text();
        } catch (_) { /* the server restarts: try again */ }
      }
    })();
  }

  // --- convert ----------------------------------------------------------------------------------
  async function api(method, path, token, body, extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const error = new Error((data && data.message) || `HTTP ${response.status}`);
      error.hint = data && data.hint;
      error.code = data && data.error;
      throw error;
    }
    return data;
  }

  function readOptions(form) {
    const options = {};
    for (const box of $$(".option", form)) {
      const input = $("input, select", box);
      const kind = box.dataset.kind;
      if (kind === "boolean") options[box.dataset.option] = input.checked;
      else if (kind === "choice") options[box.dataset.option] = input.value;
      else if (input.value.trim() !== "") {
        options[box.dataset.option] = kind === "integer" ? parseInt(input.value, 10) : parseFloat(input.value);
      }
    }
    return options;
  }

  function parseFrame(frame) {
    const event = { event: "message", data: "", id: null };
    for (const line of frame.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      if (field === "event") event.event = value;
      else if (field === "data") event.data += (event.data ? "\n" : "") + value;
      else if (field === "id") event.id = value;
    }
    if (!event.data) return null;
    try { event.data = JSON.parse(event.data); } catch (_) { return null; }
    return event;
  }

  // Server-sent events over fetch: EventSource cannot send an Authorization header.
  async function follow(job, token, run) {
    let lastId = null;
    for (let tries = 0; tries < 50; tries++) {
      const headers = { Accept: "text/event-stream" };
      if (token) headers.Authorization = "Bearer " + token;
      if (lastId) headers["Last-Event-ID"] = lastId;
      let response;
      try {
        response = await fetch(job.links.events, { headers, credentials: "omit" });
      } catch (_) { await sleep(1000); continue; }
      if (!response.ok) { run.fail({ message: `the event stream answered ${response.status}` }); return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        let chunk;
        try { chunk = await reader.read(); } catch (_) { break; }
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!event) continue;
          if (event.id) lastId = event.id;
          if (event.event === "end") { run.finish(event.data); return; }
          run.event(event.event, event.data);
        }
      }
      await sleep(500); // the stream dropped before its end: resume after the last event seen
    }
  }

  class Run {
    constructor(job, token) {
      this.job = job;
      this.token = token;
      this.state = el("span", { className: "badge job-" + job.state, text: job.state });
      this.cancel = el("button", { type: "button", className: "secondary cancel", text: "Cancel" });
      this.progress = el("progress", { max: "1", value: String(job.progress || 0) });
      this.stages = el("ol", { className: "stages" });
      this.notes = el("ul", { className: "notes" });
      this.outcome = el("div", { className: "outcome" });
      const link = el("a", { href: "/jobs/" + encodeURIComponent(job.id), text: job.id.slice(0, 12) });
      this.node = el("article", { className: "run", "data-job": job.id, "data-state": job.state },
        el("header", {}, el("strong", { text: `${job.model} → ${job.format}` }), this.state, link, this.cancel),
        this.progress, this.stages, this.notes, this.outcome);
      this.cancel.addEventListener("click", () => this.requestCancel());
    }

    setState(state) {
      this.state.textContent = state;
      this.state.className = "badge job-" + state;
      this.node.dataset.state = state;
    }

    event(kind, data) {
      if (kind === "state") this.setState(data.state);
      else if (kind === "stage") {
        for (const li of $$("li", this.stages)) li.classList.add("done");
        this.stages.append(el("li", { "data-stage": data.stage, className: "current" },
          el("strong", { text: data.stage }), data.detail ? el("span", { className: "detail", text: " " + data.detail }) : null));
        this.progress.value = data.progress || 0;
      } else if (kind === "note") this.notes.append(el("li", { text: data.message || "" }));
    }

    async requestCancel() {
      this.cancel.disabled = true;
      this.cancel.textContent = "Canceling…";
      try {
        const job = await api("POST", this.job.links.cancel, this.token);
        if (FINAL.has(job.state)) this.finish(job);
      } catch (error) {
        this.notes.append(el("li", { className: "error-text", text: "cancel: " + error.message }));
        this.cancel.disabled = false;
        this.cancel.textContent = "Cancel";
      }
    }

    finish(job) {
      if (this.done) return;
      this.done = true;
      this.setState(job.state);
      this.cancel.remove();
      for (const li of $$("li", this.stages)) { li.classList.add("done"); li.classList.remove("current"); }
      this.progress.value = job.state === "succeeded" ? 1 : this.progress.value;
      this.outcome.replaceChildren();
      if (job.result) {
        const r = job.result;
        const blob = r.archive || r.artifact;
        this.outcome.append(
          el("p", {},
            el("span", { className: "badge " + (r.verified ? "verified" : "failed"), text: r.verified ? "verified" : "not verified" }),
            " ", el("a", { className: "dl", href: "/download/" + blob.sha256, download: true, text: "Download " + (r.archive ? "tar" : r.format) }),
            " ", el("code", { className: "sha", text: blob.sha256 }),
            " ", el("button", { type: "button", className: "copy", "data-copy": blob.sha256, text: "Copy sha256" })),
          el("p", { className: "muted", text: `max abs diff ${Number(r.parity.max_abs_diff).toExponential(2)}`
            + `${r.cached ? " · answered from the store" : ""}` }));
      } else if (job.error) {
        this.outcome.append(el("p", { className: "error-text", text: `${job.error.error}: ${job.error.message}` }));
        if (job.error.hint) this.outcome.append(el("p", { className: "hint", text: job.error.hint }));
      }
    }

    fail(error) {
      this.outcome.replaceChildren(el("p", { className: "error-text", text: error.message }));
    }
  }

  function initConvert() {
    const form = $("#convert");
    if (!form) return;
    const token = $("#token");
    const problem = $("#convert-error");
    token.value = sessionStorage.getItem(TOKEN_KEY) || "";
    token.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, token.value.trim()));
    $("#forget-token").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); token.value = ""; });
    const say = (text) => { problem.textContent = text; problem.hidden = !text; };

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      say("");
      const secret = token.value.trim();
      const formats = $$("input[name=format]:checked", form).map((input) => input.value);
      const model = $("#model").value.trim();
      if (!secret) return say("Enter a token with the write scope first.");
      if (!model) return say("Name a model.");
      if (!formats.length) return say("Pick at least one format.");
      const body = { model, options: readOptions(form) };
      const revision = $("#revision").value.trim();
      if (revision) body.revision = revision;
      $("#runs-empty").hidden = true;
      for (const format of formats) {
        try {
          const job = await api("POST", "/v1/jobs", secret, { ...body, format });
          const run = new Run(job, secret);
          $("#runs").prepend(run.node);
          if (FINAL.has(job.state)) run.finish(job);
          else follow(job, secret, run);
        } catch (error) {
          say(`${format}: ${error.message}${error.hint ? " (" + error.hint + ")" : ""}`);
        }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initCatalog();
    initLive();
    initConvert();
  });
})();
