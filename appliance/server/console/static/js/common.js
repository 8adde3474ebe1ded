// Small behaviours every console page shares: copy buttons, confirmations, local times.

for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", async () => {
    const source = document.querySelector(button.dataset.copy);
    const text = source ? source.textContent : "";
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
}

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

for (const time of document.querySelectorAll("time[data-epoch]")) {
  const epoch = Number(time.dataset.epoch);
  if (epoch > 0) {
    const when = new Date(epoch * 1000);
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleString();
  }
}
