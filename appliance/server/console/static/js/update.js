// Software update: send the bundle as it is (upload progress from the browser), then follow the box applying it.

const form = document.getElementById("update-form");
const box = document.getElementById("update-progress");
const bar = document.getElementById("update-bar");
const message = document.getElementById("update-message");
const cancel = document.getElementById("update-cancel");
const csrf = form.dataset.csrf;
const BUSY = new Set(["queued", "verifying", "writing"]);
const MiB = 1024 * 1024;

function show(state, text, done, total) {
  box.dataset.state = state;
  message.textContent = text;
  bar.hidden = !(total > 0);
  if (total > 0) { bar.max = total; bar.value = done; }
  cancel.hidden = state !== "queued";
  form.querySelector("button[type=submit]").disabled = BUSY.has(state) || state === "uploading";
}

function describe(p) {
  const amount = p.total > 0 && BUSY.has(p.state) ? ` (${Math.floor(p.done / MiB)} of ${Math.ceil(p.total / MiB)} MiB)` : "";
  return `${p.state}: ${p.version}${amount}${p.message ? " – " + p.message : ""}`;
}

async function follow() {
  for (;;) {
    let view;
    try {
      const r = await fetch("/console/api/update", { headers: { Accept: "application/json" } });
      if (r.status === 401) { show("idle", "Your session has ended; sign in again to follow the update.", 0, 0); return; }
      view = await r.json();
    } catch {
      show("rebooting", "The box is rebooting; this page follows it when it is back.", 0, 0);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      continue;
    }
    const p = view.progress;
    if (!p) return;
    show(p.state, describe(p), p.done, p.total);
    if (!BUSY.has(p.state)) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const file = document.getElementById("update-file").files[0];
  if (!file) return;
  const reboot = document.getElementById("update-reboot").checked;
  const xhr = new XMLHttpRequest();
  xhr.open("PUT", `/console/api/update?reboot=${reboot}`);
  xhr.setRequestHeader("x-csrf-token", csrf);
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.upload.addEventListener("progress", (e) => {
    show("uploading", `uploading ${file.name}: ${Math.floor(e.loaded / MiB)} of ${Math.ceil(e.total / MiB)} MiB`, e.loaded, e.total);
  });
  xhr.upload.addEventListener("load", () => show("uploading", `checking ${file.name}: signature and every digest`, 0, 0));
  xhr.addEventListener("load", () => {
    if (xhr.status === 202) { follow(); return; }
    let text = `upload failed (HTTP ${xhr.status})`;
    try { text = JSON.parse(xhr.responseText).error.message; } catch { /* not JSON: keep the status line */ }
    show("failed", text, 0, 0);
  });
  xhr.addEventListener("error", () => show("failed", "the upload was cut short; check the connection and upload again", 0, 0));
  show("uploading", `uploading ${file.name}`, 0, file.size);
  xhr.send(file);
});

cancel.addEventListener("click", async () => {
  const r = await fetch("/console/api/update/cancel", { method: "POST", headers: { "x-csrf-token": csrf } });
  const body = await r.json();
  if (r.ok && body.progress) show(body.progress.state, describe(body.progress), 0, 0);
  else if (!r.ok) show("failed", body.error.message, 0, 0);
});

if (BUSY.has(box.dataset.state)) follow();
