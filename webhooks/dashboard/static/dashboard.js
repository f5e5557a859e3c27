// falbridge dashboard: boxes placed over the image, the mask's opacity slider, and live
// statuses by short polling. Served from this origin (CSP script-src 'self'); no inline code.
"use strict";

const POLL_MS = 3000;

// Florence's boxes are in the image's pixel coordinates; as percentages of its natural
// size they stay on the right pixels whatever size the image is rendered at.
function placeBoxes(stage) {
  const image = stage.querySelector("img.input-image") || stage.querySelector("img.mask-overlay");
  const boxes = stage.querySelectorAll('[data-testid="bbox"]');
  if (!boxes.length) return;
  const place = () => {
    const width = Number(stage.dataset.naturalWidth) || (image && image.naturalWidth);
    const height = Number(stage.dataset.naturalHeight) || (image && image.naturalHeight);
    if (!width || !height) return;
    for (const box of boxes) {
      box.style.left = (100 * Number(box.dataset.x)) / width + "%";
      box.style.top = (100 * Number(box.dataset.y)) / height + "%";
      box.style.width = (100 * Number(box.dataset.w)) / width + "%";
      box.style.height = (100 * Number(box.dataset.h)) / height + "%";
      box.classList.add("placed");
    }
  };
  if (image && !image.complete) image.addEventListener("load", place);
  place();
}

function wireOpacity() {
  const slider = document.querySelector('[data-testid="mask-opacity"]');
  const overlay = document.querySelector('[data-testid="mask-overlay"]');
  if (!slider || !overlay) return;
  const apply = () => { overlay.style.opacity = String(Number(slider.value) / 100); };
  slider.addEventListener("input", apply);
  apply();
}

async function statuses(url, ids) {
  const answer = await fetch(url + "?ids=" + encodeURIComponent(ids.join(",")), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!answer.ok) throw new Error("live statuses: HTTP " + answer.status);
  return (await answer.json()).jobs;
}

// The list: rows of unfinished jobs take their new status; polling stops when none is left.
function pollRows(table) {
  const tick = async () => {
    const rows = [...table.querySelectorAll('tr[data-live="1"]')];
    if (!rows.length) return;
    try {
      const found = await statuses(table.dataset.liveUrl, rows.map((row) => row.dataset.jobId));
      for (const row of rows) {
        const now = found[row.dataset.jobId];
        if (!now) continue;
        row.dataset.status = now.status;
        const label = row.querySelector('[data-testid="job-status"]');
        if (label) {
          label.textContent = now.status;
          label.className = "status status-" + now.status;
        }
        if (now.terminal) delete row.dataset.live;
      }
    } catch (error) {
      console.warn(error);
    }
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

// A job page of an unfinished job reloads once its status changes.
function pollJob(section) {
  const tick = async () => {
    try {
      const found = await statuses(section.dataset.liveUrl, [section.dataset.jobId]);
      const now = found[section.dataset.jobId];
      if (now && now.status !== section.dataset.status) {
        window.location.reload();
        return;
      }
    } catch (error) {
      console.warn(error);
    }
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll('[data-testid="image-stage"]').forEach(placeBoxes);
  wireOpacity();
  const table = document.querySelector("table[data-live-url]");
  if (table) pollRows(table);
  const job = document.querySelector('section[data-testid="job"][data-live-url]');
  if (job) pollJob(job);
});
