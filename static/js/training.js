// Live progress of the run shown on the runs page: poll its JSON while it is queued or running.
(function () {
  "use strict";
  const section = document.getElementById("run");
  if (!section || section.dataset.active !== "1") return;
  const url = section.dataset.progressUrl;
  const field = (name) => section.querySelector(`[data-field="${name}"]`);
  const bar = field("bar");
  const progressbar = section.querySelector('[role="progressbar"]');

  function fmt(value, digits) {
    return value === null || value === undefined ? "?" : Number(value).toFixed(digits);
  }

  function render(state) {
    bar.style.width = `${state.percent}%`;
    progressbar.setAttribute("aria-valuenow", String(state.percent));
    const status = field("status");
    status.textContent = state.status_label;
    status.className = `status status-${state.status}`;
    let summary = `step ${state.step} of ${state.total_steps || "?"} · epoch ${fmt(state.epoch, 2)}`;
    if (state.loss !== null) summary += ` · loss ${fmt(state.loss, 4)}`;
    if (state.eval_accuracy !== null && state.eval_accuracy !== undefined) {
      summary += ` · eval accuracy ${fmt(state.eval_accuracy, 3)}`;
    }
    field("summary").textContent = summary;
    // The run's row in the table below follows the panel.
    const row = document.querySelector(`tr[data-run="${section.dataset.run}"]`);
    if (row) {
      const rowStatus = row.querySelector('[data-cell="status"]');
      rowStatus.textContent = state.status_label;
      rowStatus.className = `status status-${state.status}`;
      row.querySelector('[data-cell="progress"]').textContent = `${state.percent}%`;
    }
    const log = field("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = state.log_tail;
    if (atBottom) log.scrollTop = log.scrollHeight;
    // Our own server-rendered SVG: every text in it was escaped on the server.
    field("loss").innerHTML = state.loss_svg;
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const state = await response.json();
        render(state);
        if (!state.is_active) {
          // Finished: reload once so that buttons, version and accuracy chart show the outcome.
          window.location.reload();
          return;
        }
      }
    } catch (error) {
      // A dropped poll is retried on the next tick.
    }
    window.setTimeout(poll, 2000);
  }
  window.setTimeout(poll, 2000);
})();
