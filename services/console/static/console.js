// The console's only script: refresh the live parts of a page every 2 seconds. No inline script anywhere
// (the Content-Security-Policy forbids it), and values go in with textContent, never as HTML.
"use strict";

(function () {
  // The account page: its key state follows the key store, so a suspension shows without a reload.
  const POLL_MS = 2000;
  const keyState = document.getElementById("key-state");
  if (!keyState || !keyState.dataset.account) {
    return;
  }
  const url = "/console/api/accounts/" + encodeURIComponent(keyState.dataset.account);

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin",
        cache: "no-store" });
      if (response.status === 401) {
        window.location.assign("/console/login");
        return;
      }
      if (response.ok) {
        const data = await response.json();
        if (keyState.textContent !== data.key_state) keyState.textContent = data.key_state;
      }
    } catch (error) {
      // The next poll tries again; the page still shows the last state it knew.
    }
    window.setTimeout(poll, POLL_MS);
  }

  window.setTimeout(poll, POLL_MS);
})();

(function () {
  const POLL_MS = 2000;
  const status = document.getElementById("live-status");
  const hooks = document.getElementById("live-webhooks");
  const numbers = document.querySelectorAll("[data-live]");
  if (!status && !hooks && numbers.length === 0) {
    return;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    return td;
  }

  function facts(id, values) {
    const list = document.getElementById(id);
    if (!list) return;
    list.replaceChildren();
    if (values === null) {
      const dd = document.createElement("dd");
      dd.textContent = "not available";
      list.append(dd);
      return;
    }
    if (Object.keys(values).length === 0) {
      const dd = document.createElement("dd");
      dd.textContent = "none yet";
      list.append(dd);
      return;
    }
    for (const [key, value] of Object.entries(values)) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      list.append(dt, dd);
    }
  }

  function show(data) {
    for (const el of numbers) {
      const value = data[el.dataset.live];
      el.textContent = value === null || value === undefined ? "—" : String(value);
    }
    facts("live-meter", data.meter);
    facts("live-positions", data.positions);
    if (hooks && data.webhooks) {
      const rows = data.webhooks.map((h) => {
        const tr = document.createElement("tr");
        tr.append(cell(h.received_at.replace("T", " ").replace("+00:00", "")), cell(h.type), cell(h.account),
          cell(h.id), cell(h.simulated ? "yes" : "no"));
        return tr;
      });
      hooks.replaceChildren(...rows);
    }
  }

  async function poll() {
    try {
      const response = await fetch("/console/api/live", {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
      });
      if (response.status === 401) {
        window.location.assign("/console/login");
        return;
      }
      const data = await response.json();
      if (!response.ok) {
        if (status) status.textContent = "Not updating: " + (data.detail || response.statusText);
      } else {
        show(data);
        if (status) status.textContent = "Updated " + data.at.replace("T", " ").replace("+00:00", "") + " UTC.";
      }
    } catch (error) {
      if (status) status.textContent = "Not updating: the console cannot be reached.";
    }
    window.setTimeout(poll, POLL_MS);
  }

  poll();
})();
