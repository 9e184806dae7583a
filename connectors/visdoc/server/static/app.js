// visdoc search page: plain JavaScript, no dependencies. Everything from the server is put into the
// page as text (never as HTML). The API key, when the server needs one, is kept in sessionStorage
// and sent as a bearer header; images and file links use the session cookie /ui/api/session sets.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "visdoc-key";
  const NEW_COLLECTION = "\u0000new";
  const MODES = ["rerank", "hybrid", "lexical", "mmr", "dense"];
  const state = {
    key: null,
    config: null,
    collection: "",
    query: "",
    mode: "rerank",
    results: [],
    heat: null,
    selectedToken: -1,
    viewing: null,
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // -- key, session, requests --------------------------------------------------------------

  function loadKey() {
    const params = new URLSearchParams(location.search);
    if (params.has("key")) {
      sessionStorage.setItem(KEY_STORAGE, params.get("key"));
      params.delete("key"); // keep the key out of the address bar and history
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    state.key = sessionStorage.getItem(KEY_STORAGE);
  }

  function askKey() {
    const key = window.prompt("This visdoc server needs its API key:");
    if (!key) return false;
    state.key = key.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    return true;
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    if (state.key) headers["Authorization"] = "Bearer " + state.key;
    return headers;
  }

  async function openSession() {
    const response = await fetch("/ui/api/session", { method: "POST", headers: authHeaders() });
    return response.ok;
  }

  async function api(path, options = {}, retried = false) {
    const response = await fetch(path, Object.assign({}, options, { headers: authHeaders(options.headers) }));
    if (response.status === 401 && !retried && askKey()) {
      await openSession();
      return api(path, options, true);
    }
    if (!response.ok) {
      let detail = response.statusText || "request failed";
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) {
        /* not JSON */
      }
      throw new ApiError(response.status, detail);
    }
    return response.status === 204 ? null : response.json();
  }

  const enc = encodeURIComponent;
  const collectionPath = () => "/ui/api/collections/" + enc(state.collection);

  function setStatus(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // -- collections and documents -----------------------------------------------------------

  async function loadCollections(selected) {
    const collections = await api("/ui/api/collections");
    const select = $("collection");
    select.replaceChildren();
    const names = collections.map((c) => c.name);
    if (selected && !names.includes(selected)) {
      collections.push({ name: selected, exists: false });
    }
    for (const c of collections) {
      const points = typeof c.points === "number" ? ` (${c.points} pages)` : c.exists ? "" : " (empty)";
      const option = element("option", null, c.name + points);
      option.value = c.name;
      select.append(option);
    }
    const create = element("option", null, "+ New collection…");
    create.value = NEW_COLLECTION;
    select.append(create);
    state.collection = selected && [...select.options].some((o) => o.value === selected) ? selected : collections[0].name;
    select.value = state.collection;
  }

  async function loadDocuments() {
    const select = $("document");
    const keep = select.value;
    select.replaceChildren(Object.assign(element("option", null, "All documents"), { value: "" }));
    let documents = [];
    let truncated = false;
    try {
      ({ documents, truncated } = await api(collectionPath() + "/documents"));
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    for (const doc of documents) {
      const option = element("option", null, `${doc.file_name || doc.document_id} (${doc.pages} p.)`);
      option.value = doc.document_id;
      option.title = doc.source;
      select.append(option);
    }
    if (truncated) {
      const more = element("option", null, `… only the first ${documents.length} documents are listed`);
      more.disabled = true;
      select.append(more);
    }
    select.value = documents.some((d) => d.document_id === keep) ? keep : "";
    return documents;
  }

  async function changeCollection() {
    const select = $("collection");
    if (select.value === NEW_COLLECTION) {
      const name = (window.prompt("Name of the new collection (letters, digits, _ and -):") || "").trim();
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) {
        select.value = state.collection;
        if (name) setStatus("Collection names are letters, digits, '_' and '-'.", true);
        return;
      }
      await loadCollections(name);
      setStatus(`New collection ${name}: upload documents to fill it.`);
    } else {
      state.collection = select.value;
    }
    rememberInUrl();
    const documents = await loadDocuments();
    if (state.query) await runSearch();
    else if (!documents.length) setStatus("No pages in this collection yet: drop PDFs or images above.");
  }

  // -- search and results ------------------------------------------------------------------

  function rememberInUrl() {
    const params = new URLSearchParams();
    if (state.collection) params.set("collection", state.collection);
    if (state.query) params.set("q", state.query);
    if (state.mode !== "rerank") params.set("mode", state.mode);
    history.replaceState(null, "", location.pathname + "?" + params.toString());
  }

  async function runSearch(event) {
    if (event) event.preventDefault();
    const query = $("query").value.trim();
    if (!query) return;
    state.query = query;
    state.mode = $("mode").value;
    rememberInUrl();
    const documentId = $("document").value;
    setStatus("Searching…");
    try {
      const data = await api(collectionPath() + "/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query, k: 24, documents: documentId ? [documentId] : [], mode: state.mode }),
      });
      state.results = data.results;
      renderResults();
      const n = data.results.length;
      setStatus(n ? `${n} result${n === 1 ? "" : "s"} (${data.ms} ms)` : "No results.");
    } catch (error) {
      state.results = [];
      renderResults();
      setStatus(error.status === 404 ? "No pages in this collection yet: drop PDFs or images above." : error.message,
        error.status !== 404);
    }
  }

  function highlighted(parts) {
    // the snippet with the words the server found matching the query's lexical terms in <mark>,
    // built from text nodes only
    const fragment = document.createDocumentFragment();
    for (const part of parts) fragment.append(part.match ? element("mark", null, part.text) : part.text);
    return fragment;
  }

  function renderResults() {
    const container = $("results");
    container.replaceChildren();
    state.results.forEach((hit, index) => {
      const card = element("article", "card");
      card.tabIndex = 0;
      card.dataset.index = String(index);
      card.setAttribute("aria-label", `${hit.file_name}, page ${hit.page_label}, score ${hit.score.toFixed(3)}`);
      const thumb = element("div", "thumb");
      if (hit.thumb_url) {
        const img = element("img");
        img.loading = "lazy";
        img.alt = `Page ${hit.page_label} of ${hit.file_name}`;
        img.src = hit.thumb_url;
        img.addEventListener("error", () => retryImage(img), { once: true });
        thumb.append(img);
      } else {
        thumb.append(element("div", "text-chunk", hit.snippet || "(text)"));
      }
      const meta = element("div", "meta");
      meta.append(element("span", "file", hit.file_name || hit.document_id || hit.id));
      meta.append(element("span", "page", "p. " + hit.page_label + (hit.total_pages ? ` / ${hit.total_pages}` : "")));
      meta.append(element("span", "score", hit.score.toFixed(3)));
      meta.title = hit.source;
      const snippet = element("p", hit.snippet ? "snippet" : "snippet none");
      snippet.append(hit.snippet ? highlighted(hit.snippet_parts) : "no text layer");
      card.append(thumb, meta, snippet);
      card.addEventListener("click", () => openViewer(hit));
      card.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          openViewer(hit);
        }
      });
      container.append(card);
    });
  }

  async function retryImage(img) {
    // the session cookie may have expired (or the server restarted): renew it, then try once more
    if (!img.src || img.src.includes("&retry=")) return;
    if (await openSession()) img.src = img.src + "&retry=" + Date.now();
  }

  // -- page viewer and heatmap -------------------------------------------------------------

  function closeViewer() {
    $("viewer").hidden = true;
    state.viewing = null;
    state.heat = null;
  }

  async function openViewer(hit) {
    state.viewing = hit;
    state.heat = null;
    state.selectedToken = -1;
    $("viewer").hidden = false;
    $("viewer-title").textContent = `${hit.file_name} — page ${hit.page_label}` +
      (hit.title ? ` (${hit.title})` : "");
    const link = $("viewer-file");
    link.hidden = !hit.file_url;
    if (hit.file_url) {
      link.href = hit.file_url;
      link.textContent = hit.file_url.includes("#page=") ? `Open the PDF at page ${hit.page + 1}` : "Open the file";
    }
    $("page-text").replaceChildren(highlighted(hit.snippet_parts || []));
    $("tokens").replaceChildren();
    $("heat-status").textContent = "";
    const canvas = $("heatmap");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    const img = $("page-image");
    img.alt = `Page ${hit.page_label} of ${hit.file_name}`;
    img.hidden = !hit.image_url;
    if (hit.image_url) img.src = hit.image_url;
    $("viewer-close").focus();
    if (!hit.heatmap_url) {
      $("heat-status").textContent = "Text chunk: no page image.";
      return;
    }
    $("heat-status").textContent = "Computing the match heatmap…";
    try {
      const heat = await api(hit.heatmap_url + "?q=" + enc(state.query));
      if (state.viewing !== hit) return;
      state.heat = heat;
      renderTokens();
      drawHeat(-1);
      $("heat-status").textContent = `${heat.cols} × ${heat.rows} patches, ${heat.tokens.length} query tokens`;
    } catch (error) {
      $("heat-status").textContent = "No heatmap: " + error.message;
    }
  }

  function renderTokens() {
    const box = $("tokens");
    box.replaceChildren();
    const all = element("button", "token selected", "all tokens");
    all.type = "button";
    all.dataset.token = "-1";
    box.append(all);
    state.heat.tokens.forEach((label, i) => {
      const chip = element("button", "token", label);
      chip.type = "button";
      chip.dataset.token = String(i);
      chip.title = `best patch similarity ${Math.max(...state.heat.per_token[i]).toFixed(3)}`;
      box.append(chip);
    });
  }

  function selectToken(index) {
    state.selectedToken = index;
    for (const chip of $("tokens").children) chip.classList.toggle("selected", Number(chip.dataset.token) === index);
    drawHeat(index);
  }

  const STOPS = [
    [0.0, [48, 18, 59]],
    [0.35, [40, 120, 240]],
    [0.6, [30, 200, 120]],
    [0.8, [250, 200, 40]],
    [1.0, [230, 40, 20]],
  ];

  function colour(t) {
    for (let i = 1; i < STOPS.length; i++) {
      if (t <= STOPS[i][0]) {
        const [t0, c0] = STOPS[i - 1];
        const [t1, c1] = STOPS[i];
        const f = (t - t0) / (t1 - t0);
        return c0.map((v, j) => Math.round(v + f * (c1[j] - v)));
      }
    }
    return STOPS[STOPS.length - 1][1];
  }

  function drawHeat(token) {
    const heat = state.heat;
    const canvas = $("heatmap");
    if (!heat) return;
    const values = token < 0 ? heat.overall : heat.per_token[token];
    canvas.width = heat.cols;
    canvas.height = heat.rows;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(heat.cols, heat.rows);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const span = hi - lo || 1;
    values.forEach((v, i) => {
      const t = (v - lo) / span;
      const [r, g, b] = colour(t);
      image.data.set([r, g, b, Math.round(255 * (0.08 + 0.82 * t * t))], 4 * i);
    });
    ctx.putImageData(image, 0, 0);
    canvas.dataset.token = String(token);
  }

  function describePatch(event) {
    const heat = state.heat;
    if (!heat) return;
    const box = $("heatmap").getBoundingClientRect();
    const col = Math.floor(((event.clientX - box.left) / box.width) * heat.cols);
    const row = Math.floor(((event.clientY - box.top) / box.height) * heat.rows);
    if (row < 0 || col < 0 || row >= heat.rows || col >= heat.cols) return;
    const i = row * heat.cols + col;
    let best = 0;
    heat.per_token.forEach((map, t) => {
      if (map[i] > heat.per_token[best][i]) best = t;
    });
    const shown = state.selectedToken < 0 ? heat.overall[i] : heat.per_token[state.selectedToken][i];
    $("heat-status").textContent =
      `patch row ${row + 1}, column ${col + 1}: ${shown.toFixed(3)} (best token "${heat.tokens[best]}")`;
  }

  // -- uploads -----------------------------------------------------------------------------

  function jobRow(name) {
    const row = element("li", "job");
    const progress = element("progress");
    progress.max = 1;
    progress.value = 0;
    row.append(element("span", "name", name), progress, element("span", "state", "waiting"));
    $("jobs").prepend(row);
    return {
      row,
      update(text, value, kind) {
        row.querySelector(".state").textContent = text;
        if (value === null) progress.removeAttribute("value");
        else progress.value = value;
        row.dataset.state = kind || "";
      },
    };
  }

  function suffix(name) {
    const dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot).toLowerCase();
  }

  async function handleFiles(files) {
    const collection = state.collection;
    for (const file of Array.from(files)) {
      const view = jobRow(file.name);
      if (!state.config.upload_suffixes.includes(suffix(file.name))) {
        view.update("not a PDF or image: skipped", 0, "failed");
        continue;
      }
      if (file.size > state.config.max_upload_bytes) {
        view.update(`larger than ${Math.round(state.config.max_upload_bytes / 2 ** 20)} MB: skipped`, 0, "failed");
        continue;
      }
      try {
        const job = await upload(file, collection, view);
        pollJob(job.id, view, collection);
      } catch (error) {
        view.update(error.message, 0, "failed");
      }
    }
  }

  function upload(file, collection, view, retried = false) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/ui/api/collections/${enc(collection)}/uploads?filename=${enc(file.name)}`);
      for (const [name, value] of Object.entries(authHeaders({ "Content-Type": "application/octet-stream" }))) {
        xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) view.update(`uploading ${Math.round((100 * e.loaded) / e.total)}%`, e.loaded / e.total);
      };
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch (_) {
          /* not JSON */
        }
        if (xhr.status === 401 && !retried && askKey()) {
          openSession().then(() => upload(file, collection, view, true).then(resolve, reject));
        } else if (xhr.status >= 200 && xhr.status < 300) {
          resolve(body);
        } else {
          reject(new ApiError(xhr.status, body.detail || `upload failed (${xhr.status})`));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, "upload failed: no connection"));
      view.update("uploading", 0);
      xhr.send(file);
    });
  }

  function pollJob(id, view, collection) {
    const tick = async () => {
      let job;
      try {
        job = await api("/ui/api/jobs/" + enc(id));
      } catch (error) {
        view.update(error.message, 0, "failed");
        return;
      }
      if (job.state === "queued") view.update("queued", null, "queued");
      else if (job.state === "embedding") {
        view.update(`embedding ${job.done} / ${job.total || "?"} pages`, job.total ? job.done / job.total : null,
          "embedding");
      } else if (job.state === "done") {
        const note = job.message || `${job.pages_stored} page${job.pages_stored === 1 ? "" : "s"} added`;
        view.update(job.problems.length ? `${note}; ${job.problems.length} problems` : note, 1, "done");
        view.row.title = job.problems.join("\n");
        await refreshAfterUpload(collection);
        return;
      } else {
        view.update("failed: " + job.message, 0, "failed");
        return;
      }
      setTimeout(tick, 400);
    };
    tick();
  }

  async function refreshAfterUpload(collection) {
    if (collection !== state.collection) return;
    await loadCollections(state.collection);
    await loadDocuments();
    if (state.query) await runSearch();
    else setStatus("Documents added: type a query to search them.");
  }

  function bindDropzone() {
    const zone = $("dropzone");
    const input = $("file-input");
    ["dragenter", "dragover"].forEach((type) =>
      zone.addEventListener(type, (e) => {
        e.preventDefault();
        zone.classList.add("over");
      }));
    ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) handleFiles(e.dataTransfer.files);
    });
    input.addEventListener("change", () => {
      const files = Array.from(input.files);
      input.value = "";
      handleFiles(files);
    });
  }

  // -- start -------------------------------------------------------------------------------

  function bind() {
    $("search-form").addEventListener("submit", runSearch);
    $("collection").addEventListener("change", () => changeCollection().catch((e) => setStatus(e.message, true)));
    $("document").addEventListener("change", () => state.query && runSearch());
    $("mode").addEventListener("change", () => {
      state.mode = $("mode").value;
      if (state.query) runSearch();
      else rememberInUrl();
    });
    $("key-button").addEventListener("click", async () => {
      if (askKey()) {
        await openSession();
        start();
      }
    });
    $("viewer-close").addEventListener("click", closeViewer);
    $("viewer").addEventListener("click", (e) => {
      if (e.target === $("viewer")) closeViewer();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("viewer").hidden) closeViewer();
    });
    $("heat-toggle").addEventListener("change", (e) => {
      $("heatmap").hidden = !e.target.checked;
    });
    $("heat-opacity").addEventListener("input", (e) => {
      $("heatmap").style.opacity = e.target.value;
    });
    $("heatmap").style.opacity = $("heat-opacity").value;
    const tokens = $("tokens");
    tokens.addEventListener("mouseover", (e) => {
      if (e.target.dataset.token !== undefined) drawHeat(Number(e.target.dataset.token));
    });
    tokens.addEventListener("mouseleave", () => drawHeat(state.selectedToken));
    tokens.addEventListener("click", (e) => {
      if (e.target.dataset.token !== undefined) selectToken(Number(e.target.dataset.token));
    });
    $("heatmap").addEventListener("mousemove", describePatch);
    $("page-image").addEventListener("error", () => retryImage($("page-image")));
    bindDropzone();
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    try {
      state.config = await api("/ui/api/config");
      await openSession();
      const mb = Math.round(state.config.max_upload_bytes / 2 ** 20);
      $("upload-hint").textContent = `up to ${mb} MB each; they are embedded by ${state.config.model}`;
      if (MODES.includes(params.get("mode"))) $("mode").value = state.mode = params.get("mode");
      await loadCollections(params.get("collection") || state.config.collection);
      const documents = await loadDocuments();
      const query = params.get("q");
      if (query) {
        $("query").value = query;
        await runSearch();
      } else {
        setStatus(documents.length ? `${documents.length} documents. Type a query.` :
          "No pages in this collection yet: drop PDFs or images above.");
      }
      document.body.dataset.ready = "1";
    } catch (error) {
      setStatus(error.status === 401 ? "This server needs an API key (button at the top right)." : error.message, true);
    }
  }

  loadKey();
  bind();
  start();
  setInterval(() => state.config && openSession(), 20 * 60 * 1000);
})();
