// Playground: chat streamed token by token from the box, and embeddings similarity.

const chat = document.getElementById("chat");
const csrf = chat.dataset.csrf;
const transcript = document.getElementById("transcript");
const input = document.getElementById("chat-input");
const send = document.getElementById("chat-send");
const stop = document.getElementById("chat-stop");
const status = document.getElementById("chat-status");
const history = [];
let controller = null;

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : role === "assistant" ? "Model" : "Error";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  transcript.append(div);
  transcript.scrollTop = transcript.scrollHeight;
  return body;
}

async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      for (const line of event.split(/\r?\n/)) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function ask(text) {
  history.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant", "");
  controller = new AbortController();
  send.disabled = true;
  stop.disabled = false;
  status.textContent = "generating…";
  let answer = "";
  try {
    const response = await fetch("/console/api/chat", {
      method: "POST", signal: controller.signal, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({
        model: document.getElementById("chat-model").value,
        system: document.getElementById("chat-system").value,
        temperature: Number(document.getElementById("chat-temperature").value),
        max_tokens: Number(document.getElementById("chat-max-tokens").value),
        messages: history,
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error?.message || `the box answered ${response.status}`);
    }
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices[0]?.delta?.content;
      if (delta) {
        answer += delta;
        out.textContent = answer;
        transcript.scrollTop = transcript.scrollHeight;
      }
      if (chunk.choices[0]?.finish_reason) status.textContent = `done (${chunk.choices[0].finish_reason})`;
    }
    history.push({ role: "assistant", content: answer });
  } catch (error) {
    if (error.name === "AbortError") {
      status.textContent = "stopped";
      history.push({ role: "assistant", content: answer });
    } else {
      bubble("error", error.message);
      history.pop();
      status.textContent = "";
    }
  } finally {
    send.disabled = false;
    stop.disabled = true;
    controller = null;
  }
}

document.getElementById("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = "";
  ask(text);
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) document.getElementById("chat-form").requestSubmit();
});
stop.addEventListener("click", () => controller?.abort());
document.getElementById("chat-clear").addEventListener("click", () => {
  history.length = 0;
  transcript.replaceChildren();
  status.textContent = "";
});

document.getElementById("sim-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = document.getElementById("sim-result");
  result.textContent = "…";
  const response = await fetch("/console/api/similarity", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({
      model: document.getElementById("sim-model").value,
      a: document.getElementById("sim-a").value, b: document.getElementById("sim-b").value,
    }),
  });
  const body = await response.json();
  result.textContent = response.ok ? `cosine similarity ${body.cosine.toFixed(3)}` : (body.error?.message || "failed");
});

const imageForm = document.getElementById("img-form");
if (imageForm) {
  const model = document.getElementById("img-model");
  const size = document.getElementById("img-size");
  model.addEventListener("change", () => {
    size.replaceChildren(...model.selectedOptions[0].dataset.sizes.split(",").map((s) => new Option(s)));
  });
  imageForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("img-status");
    const out = document.getElementById("img-out");
    const seed = document.getElementById("img-seed").value.trim();
    status.textContent = "generating…";
    const response = await fetch("/console/api/image", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ model: model.value, size: size.value, prompt: document.getElementById("img-prompt").value,
                             seed: seed ? Number(seed) : null }),
    });
    const body = await response.json();
    if (!response.ok) {
      status.textContent = body.error?.message || `the box answered ${response.status}`;
      return;
    }
    for (const item of body.data) {
      const img = new Image();
      img.src = `data:image/png;base64,${item.b64_json}`;
      img.alt = `${document.getElementById("img-prompt").value} (seed ${item.seed})`;
      out.prepend(img);
    }
    status.textContent = `done: ${body.size}, seed ${body.data[0].seed}`;
  });
}
