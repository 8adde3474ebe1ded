// Dashboard charts: the box's own time series (GET /console/api/series) drawn with uPlot.

const root = document.getElementById("charts");
const empty = document.getElementById("charts-empty");
const COLORS = ["#1f5fbf", "#c46210", "#1e7b45", "#8e3fb3"];
const plots = new Map();
const SPANS = { "1h": 3600, "24h": 86400 };
let current = "1h";

function options(names, width) {
  return {
    width, height: 180,
    // the x axis always spans the chosen window, however few samples there are yet
    scales: { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - SPANS[current], now]; } } },
    axes: [{}, { size: 50 }],
    legend: { show: names.length > 1 },
    series: [{}, ...names.map((name, i) => ({ label: name.replaceAll("_", " "), stroke: COLORS[i], width: 2, spanGaps: false }))],
  };
}

async function draw(window) {
  const response = await fetch(`${root.dataset.series}?window=${window}`, { credentials: "same-origin" });
  if (!response.ok) return;
  const series = await response.json();
  const hasData = series.at.length > 0;
  empty.hidden = hasData;
  root.hidden = !hasData;
  if (!hasData) return;
  for (const el of root.querySelectorAll("[data-chart]")) {
    const names = el.dataset.chart.split(",");
    const data = [series.at, ...names.map((n) => series[n])];
    const width = Math.max(280, el.clientWidth);
    if (plots.has(el)) {
      plots.get(el).setData(data);
    } else {
      plots.set(el, new uPlot(options(names, width), data, el));
    }
  }
}

for (const button of document.querySelectorAll("[data-window]")) {
  button.addEventListener("click", () => {
    current = button.dataset.window;
    for (const b of document.querySelectorAll("[data-window]")) b.setAttribute("aria-pressed", String(b === button));
    draw(current);
  });
}
window.addEventListener("resize", () => {
  for (const [el, plot] of plots) plot.setSize({ width: Math.max(280, el.clientWidth), height: 180 });
});
draw(current);
setInterval(() => draw(current), 10000);
