/* The ranking page: fetches an assignment, lets the annotator order the answers by drag and drop or
 * keyboard, and posts the ranking to the work API. No build step; SortableJS is the only library. */
(function () {
  "use strict";

  const settings = JSON.parse(document.getElementById("rank-settings").textContent);
  const $ = (selector, root) => (root || document).querySelector(selector);
  const csrfToken = $("input[name=csrfmiddlewaretoken]").value;

  const ui = {
    loading: $("[data-loading]"),
    done: $("[data-done]"),
    doneMessage: $("[data-done-message]"),
    work: $("[data-work]"),
    turns: $("[data-turns]"),
    answers: $("[data-answers]"),
    alert: $("[data-alert]"),
    status: $("[data-status]"),
    notRankable: $("[data-not-rankable]"),
    comment: $("[data-comment]"),
    commentBox: $("[data-comment-box]"),
    guidelines: $("[data-guidelines]"),
    keys: $("[data-keys]"),
    template: $("[data-answer-template]"),
  };
  const ROLE_NAMES = { system: "System", user: "User", assistant: "Assistant" };
  const COLLAPSE_ABOVE_PX = 360;
  const TURN_COLLAPSE_ABOVE_PX = 240;

  // The current item. `groups` is the ranking being built: tie groups of answer ids, best first.
  let assignment = null;
  let groups = [];
  let cards = new Map();
  let flags = new Map();
  let shownAt = 0;
  let busy = false;
  // An untouched (shuffled) order is asked about once per item before it is sent.
  let untouchedAsked = false;
  const DRAFT_PREFIX = "rewardlab-draft-";

  // ---- talking to the API ----

  async function post(url, body, method) {
    const response = await fetch(url, {
      method: method || "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
      body: method === "GET" ? undefined : JSON.stringify(body || {}),
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (error) {
      payload = null;
    }
    if (!response.ok) {
      // The work API answers every error as {"detail": "<message>"} (field errors flattened server-side).
      const detail = payload && typeof payload.detail === "string" ? payload.detail : "";
      const error = new Error(detail || `The server answered ${response.status} ${response.statusText}.`);
      error.status = response.status;
      throw error;
    }
    return payload;
  }

  // A lease that is gone (404) or closed (409) cannot be retried: offer the way on instead.
  function showError(message, status) {
    ui.alert.replaceChildren(document.createTextNode(message));
    if (status === 404 || status === 409) {
      const next = document.createElement("button");
      next.type = "button";
      next.className = "primary";
      next.textContent = "Load the next item";
      next.addEventListener("click", () => {
        clearError();
        loadNext();
      });
      ui.alert.append(" ", next);
    }
    ui.alert.hidden = false;
  }

  function clearError() {
    ui.alert.hidden = true;
    ui.alert.textContent = "";
    ui.alert.classList.remove("is-question");
  }

  // ---- unsent work survives a reload: the lease comes back with the same id and order ----

  function saveDraft() {
    if (!assignment) return;
    try {
      window.localStorage.setItem(
        DRAFT_PREFIX + assignment.id,
        JSON.stringify({
          groups,
          flags: flagsPayload(),
          notRankable: ui.notRankable.checked,
          comment: ui.comment.value,
          elapsed: performance.now() - shownAt,
          untouchedAsked,
        })
      );
    } catch (error) {
      // Storage full or blocked: the page works without drafts.
    }
  }

  function dropDrafts(keepId) {
    try {
      Object.keys(window.localStorage)
        .filter((key) => key.startsWith(DRAFT_PREFIX) && key !== DRAFT_PREFIX + keepId)
        .forEach((key) => window.localStorage.removeItem(key));
    } catch (error) {
      // As above.
    }
  }

  // Applies the saved draft of this lease, if there is one that names exactly its answers.
  function restoreDraft(next) {
    let draft = null;
    try {
      draft = JSON.parse(window.localStorage.getItem(DRAFT_PREFIX + next.id) || "null");
    } catch (error) {
      draft = null;
    }
    if (!draft || !Array.isArray(draft.groups)) return;
    const ids = next.answers.map((answer) => answer.id).sort((a, b) => a - b);
    const named = draft.groups.flat().map(Number).sort((a, b) => a - b);
    if (named.length !== ids.length || named.some((id, index) => id !== ids[index])) return;
    groups = draft.groups.map((group) => group.map(Number));
    Object.entries(draft.flags || {}).forEach(([answerId, labels]) => {
      const set = flags.get(Number(answerId));
      if (set) labels.forEach((label) => set.add(label));
    });
    ui.notRankable.checked = Boolean(draft.notRankable);
    ui.comment.value = typeof draft.comment === "string" ? draft.comment : "";
    ui.commentBox.open = Boolean(ui.comment.value);
    shownAt = performance.now() - (Number(draft.elapsed) || 0);
    untouchedAsked = Boolean(draft.untouchedAsked);
  }

  function setBusy(value) {
    busy = value;
    ui.work.classList.toggle("is-busy", value);
    ui.work.querySelectorAll("[data-action=submit], [data-action=skip]").forEach((button) => {
      button.disabled = value;
    });
  }

  async function loadNext() {
    setBusy(true);
    try {
      const payload = await post(settings.next_url);
      showProgress(payload.progress);
      if (payload.assignment) {
        showAssignment(payload.assignment);
      } else {
        showDone(payload.message);
      }
    } catch (error) {
      ui.loading.hidden = true;
      showError(error.message);
    } finally {
      setBusy(false);
    }
  }

  function orderUntouched() {
    const shown = assignment.answers.map((answer) => answer.id);
    return groups.length === shown.length && groups.every((group, index) => group.length === 1 && group[0] === shown[index]);
  }

  async function submit() {
    if (!assignment || busy) return;
    clearError();
    const notRankable = ui.notRankable.checked;
    if (!notRankable && !untouchedAsked && orderUntouched()) {
      untouchedAsked = true;
      saveDraft();
      showError(
        "You have not changed the order the answers were shown in. Submit it as it is? " +
          "Press Enter or Submit again to confirm, or move the answers first."
      );
      ui.alert.classList.add("is-question");
      return;
    }
    const body = {
      order: notRankable ? [] : groups.map((group) => group.slice()),
      not_rankable: notRankable,
      flags: flagsPayload(),
      comment: ui.comment.value.trim(),
      seconds_spent: Math.round((performance.now() - shownAt) / 100) / 10,
    };
    if (settings.revise_url) {
      await sendRevision(body);
      return;
    }
    await finishItem(settings.submit_url_template, body, "Ranking saved. Loading the next item…");
  }

  // ---- changing a ranking sent earlier ("My rankings" → Change) ----

  async function loadReopened() {
    document.querySelectorAll("[data-action=skip]").forEach((button) => button.remove());
    $("[data-action=submit]").firstChild.textContent = "Send the change ";
    setBusy(true);
    try {
      const ranking = await post(settings.reopen_url, null, "GET");
      showAssignment({
        id: `revise-${ranking.id}`,
        conversation: ranking.conversation,
        answers: ranking.answers,
        project: ranking.project,
        initial: ranking,
      });
      announce("Your ranking is open: change it and send it again.");
    } catch (error) {
      ui.loading.hidden = true;
      showError(error.message);
    } finally {
      setBusy(false);
    }
  }

  async function sendRevision(body) {
    setBusy(true);
    try {
      await post(settings.revise_url, body);
      dropDrafts(null);
    } catch (error) {
      setBusy(false);
      showError(error.message);
      return;
    }
    window.location.assign(`${settings.mine_url}?changed=1`);
  }

  function applyInitial(initial) {
    const ids = new Set(assignment.answers.map((answer) => answer.id));
    const named = (initial.order || []).flat();
    if (named.length === ids.size && named.every((id) => ids.has(id))) {
      groups = initial.order.map((group) => group.slice());
    }
    Object.entries(initial.flags || {}).forEach(([answerId, labels]) => {
      const set = flags.get(Number(answerId));
      if (set) labels.forEach((label) => set.add(label));
    });
    ui.notRankable.checked = Boolean(initial.not_rankable);
    ui.comment.value = initial.comment || "";
    ui.commentBox.open = Boolean(ui.comment.value);
    untouchedAsked = true; // a ranking sent before was already looked at
  }

  async function skip() {
    if (!assignment || busy) return;
    clearError();
    await finishItem(settings.skip_url_template, null, "Item skipped. Loading the next item…");
  }

  // Submit and skip both close the current lease and then load the next item; a refusal keeps the item.
  async function finishItem(urlTemplate, body, doneMessage) {
    setBusy(true);
    try {
      await post(urlTemplate.replace("{id}", assignment.id), body);
      dropDrafts(null);
      announce(doneMessage);
    } catch (error) {
      setBusy(false);
      showError(error.message, error.status);
      return;
    }
    await loadNext();
  }

  function flagsPayload() {
    const result = {};
    flags.forEach((labels, answerId) => {
      if (labels.size) result[String(answerId)] = Array.from(labels);
    });
    return result;
  }

  function announce(message) {
    ui.status.textContent = message;
  }

  // ---- showing an item ----

  function showProgress(progress) {
    if (!progress) return;
    document.querySelectorAll("[data-progress]").forEach((element) => {
      const value = progress[element.dataset.progress];
      element.textContent = value === undefined || value === null ? "–" : String(value);
    });
    const bar = $("[data-progress-bar]");
    const share = progress.project_wanted ? Math.min(1, progress.project_done / progress.project_wanted) : 0;
    bar.style.width = `${(share * 100).toFixed(1)}%`;
  }

  function showDone(message) {
    assignment = null;
    ui.loading.hidden = true;
    ui.work.hidden = true;
    ui.doneMessage.textContent = message || "No more items to rank in this project. Thank you!";
    ui.done.hidden = false;
    announce(ui.doneMessage.textContent);
  }

  function showAssignment(next) {
    const sameItem = assignment && assignment.id === next.id;
    assignment = next;
    ui.loading.hidden = true;
    ui.done.hidden = true;
    ui.work.hidden = false;
    renderTurns(next.conversation || []);
    if (!sameItem) {
      groups = next.answers.map((answer) => [answer.id]);
      flags = new Map(next.answers.map((answer) => [answer.id, new Set()]));
      ui.notRankable.checked = false;
      ui.comment.value = "";
      ui.commentBox.open = false;
      shownAt = performance.now();
      untouchedAsked = false;
      dropDrafts(next.id);
      if (next.initial) applyInitial(next.initial);
      restoreDraft(next);
    }
    renderAnswers(next.answers);
    ui.work.classList.toggle("is-not-rankable", ui.notRankable.checked);
    window.scrollTo(0, 0);
    const first = ui.answers.firstElementChild;
    if (first) first.focus({ preventScroll: true });
  }

  function setRichText(element, html, text) {
    // `html` comes from the server's Markdown renderer, which escapes raw HTML and sanitises the
    // result; anything else is inserted as text.
    if (typeof html === "string") {
      element.innerHTML = html;
    } else {
      element.textContent = text || "";
    }
  }

  // The turn the answers reply to (the last user turn) is shown whole beside the answers; earlier turns
  // fold to one line each and open on click, so a long earlier turn never pushes it off the screen.
  function renderTurns(conversation) {
    ui.turns.replaceChildren();
    let latest = -1;
    conversation.forEach((turn, index) => {
      if (turn.role === "user") latest = index;
    });
    if (latest === -1) latest = conversation.length - 1;
    conversation.forEach((turn, index) => {
      const item = document.createElement("li");
      const role = ROLE_NAMES[turn.role] ? turn.role : "user";
      item.className = `turn turn-${role}`;
      const body = document.createElement("div");
      body.className = "turn-body markdown";
      setRichText(body, turn.html, turn.content);
      if (index < latest) {
        item.classList.add("turn-earlier", "is-folded");
        const toggle = document.createElement("button");
        toggle.type = "button";
        toggle.className = "turn-toggle";
        toggle.setAttribute("aria-expanded", "false");
        const label = document.createElement("span");
        label.className = "turn-role";
        label.textContent = ROLE_NAMES[role];
        const preview = document.createElement("span");
        preview.className = "turn-preview";
        preview.textContent = (turn.content || "").replace(/\s+/g, " ").trim().slice(0, 200);
        toggle.append(label, preview);
        toggle.addEventListener("click", () => {
          const folded = item.classList.toggle("is-folded");
          toggle.setAttribute("aria-expanded", String(!folded));
          if (!folded) foldIfLong(body);
        });
        item.append(toggle, body);
      } else {
        const label = document.createElement("div");
        label.className = "turn-role";
        label.textContent = index === latest && index > 0 ? `${ROLE_NAMES[role]} · latest` : ROLE_NAMES[role];
        if (index === latest) item.classList.add("turn-latest");
        item.append(label, body);
      }
      ui.turns.append(item);
    });
    ui.turns.querySelectorAll(".turn:not(.is-folded) .turn-body").forEach(foldIfLong);
  }

  // A very long turn shows its first screenful with "Show all" (measured once it is in the page).
  function foldIfLong(body) {
    if (body.dataset.measured) return;
    body.dataset.measured = "1";
    if (body.scrollHeight <= TURN_COLLAPSE_ABOVE_PX + 40) return;
    body.classList.add("is-collapsed");
    const expand = document.createElement("button");
    expand.type = "button";
    expand.className = "link expand";
    expand.textContent = "Show all";
    expand.setAttribute("aria-expanded", "false");
    expand.addEventListener("click", () => {
      const collapsed = body.classList.toggle("is-collapsed");
      expand.textContent = collapsed ? "Show all" : "Show less";
      expand.setAttribute("aria-expanded", String(!collapsed));
    });
    body.after(expand);
  }

  function renderAnswers(answers) {
    cards = new Map();
    ui.answers.replaceChildren();
    answers.forEach((answer, index) => {
      const card = ui.template.content.firstElementChild.cloneNode(true);
      card.dataset.id = String(answer.id);
      $("[data-label]", card).textContent = `Answer ${String.fromCharCode(65 + (index % 26))}`;
      const body = $("[data-body]", card);
      setRichText(body, answer.html, answer.text);
      // The card's label names it and its rank; screen readers then read the answer as its description.
      body.id = `answer-body-${answer.id}`;
      card.setAttribute("aria-describedby", body.id);
      renderFlagChoices(card, answer.id);
      cards.set(answer.id, card);
    });
    placeCards();
    // Measure after the cards are in the page: only then do they have a height.
    cards.forEach((card) => {
      const body = $("[data-body]", card);
      const expand = $("[data-expand]", card);
      const long = body.scrollHeight > COLLAPSE_ABOVE_PX + 40;
      body.classList.toggle("is-collapsed", long);
      expand.hidden = !long;
      expand.textContent = "Show all";
    });
  }

  function renderFlagChoices(card, answerId) {
    const fieldset = $("[data-flags]", card);
    if (!settings.flag_labels.length) {
      fieldset.remove();
      return;
    }
    settings.flag_labels.forEach((label) => {
      const choice = document.createElement("label");
      choice.className = "flag";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = label;
      // Out of the Tab order, so that Tab goes from answer to answer as the help says; F reaches them.
      box.tabIndex = -1;
      box.checked = flags.get(answerId).has(label);
      box.addEventListener("change", () => {
        if (box.checked) flags.get(answerId).add(label);
        else flags.get(answerId).delete(label);
        saveDraft();
        choice.classList.toggle("is-on", box.checked);
      });
      const text = document.createElement("span");
      text.textContent = label;
      choice.append(box, text);
      choice.classList.toggle("is-on", box.checked);
      fieldset.append(choice);
    });
  }

  // Puts the cards in the order of `groups` and labels ranks and ties.
  function placeCards(keepFocusOn) {
    groups.forEach((group, groupIndex) => {
      group.forEach((answerId, memberIndex) => {
        const card = cards.get(answerId);
        ui.answers.append(card);
        const tied = memberIndex > 0;
        $("[data-rank]", card).textContent = String(groupIndex + 1);
        $("[data-tie-chip]", card).hidden = !tied;
        card.classList.toggle("is-tied", tied);
        card.classList.toggle("has-tie-below", memberIndex < group.length - 1);
        card.dataset.rank = String(groupIndex + 1);
        const tieButton = $("[data-tie]", card);
        if (tieButton) {
          tieButton.textContent = tied ? "Untie" : "= Tie";
          tieButton.disabled = !tied && groupIndex === 0;
          tieButton.setAttribute("aria-label", tied ? "Untie from the answer above" : "Tie with the answer above");
        }
        card.setAttribute(
          "aria-label",
          `${$("[data-label]", card).textContent}, rank ${groupIndex + 1} of ${groups.length}${tied ? ", tied with the answer above" : ""}`
        );
      });
    });
    if (keepFocusOn) cards.get(keepFocusOn).focus();
  }

  // ---- changing the ranking ----

  function locate(answerId) {
    for (let groupIndex = 0; groupIndex < groups.length; groupIndex += 1) {
      const memberIndex = groups[groupIndex].indexOf(answerId);
      if (memberIndex !== -1) return { groupIndex, memberIndex };
    }
    return null;
  }

  function takeOut(answerId) {
    const { groupIndex } = locate(answerId);
    groups[groupIndex] = groups[groupIndex].filter((id) => id !== answerId);
    if (!groups[groupIndex].length) groups.splice(groupIndex, 1);
  }

  function moveBy(answerId, step) {
    const { groupIndex } = locate(answerId);
    const group = groups[groupIndex];
    if (group.length > 1) {
      // Leaving a tie: the answer becomes its own rank just above or below the group.
      takeOut(answerId);
      groups.splice(step < 0 ? groupIndex : groupIndex + 1, 0, [answerId]);
    } else {
      const target = groupIndex + step;
      if (target < 0 || target >= groups.length) return;
      [groups[groupIndex], groups[target]] = [groups[target], groups[groupIndex]];
    }
    changed(answerId);
  }

  function moveTo(answerId, rank) {
    takeOut(answerId);
    groups.splice(Math.min(rank - 1, groups.length), 0, [answerId]);
    changed(answerId);
  }

  function toggleTie(answerId) {
    if (!settings.allow_ties) return;
    const { groupIndex, memberIndex } = locate(answerId);
    if (memberIndex > 0) {
      takeOut(answerId);
      groups.splice(groupIndex + 1, 0, [answerId]);
      changed(answerId, "Untied.");
    } else if (groupIndex > 0) {
      const above = groups[groupIndex - 1];
      takeOut(answerId);
      above.push(answerId);
      changed(answerId, "Tied with the answer above.");
    } else {
      announce("The best answer has nothing above it to tie with.");
    }
  }

  function changed(answerId, message) {
    placeCards(answerId);
    saveDraft();
    const { groupIndex } = locate(answerId);
    const label = $("[data-label]", cards.get(answerId)).textContent;
    announce(message || `${label} is now rank ${groupIndex + 1} of ${groups.length}.`);
  }

  // After a drag the moved answer stands alone at its new place; the others keep their ties unless the
  // drop split their group.
  function adoptDomOrder(movedId) {
    const groupOf = new Map();
    groups.forEach((group, index) => group.forEach((id) => groupOf.set(id, index)));
    const order = Array.from(ui.answers.children).map((card) => Number(card.dataset.id));
    const rebuilt = [];
    let previous = null;
    order.forEach((id) => {
      const joinsPrevious =
        previous !== null && id !== movedId && previous !== movedId && groupOf.get(id) === groupOf.get(previous);
      if (joinsPrevious) rebuilt[rebuilt.length - 1].push(id);
      else rebuilt.push([id]);
      previous = id;
    });
    groups = rebuilt;
    changed(movedId);
  }

  // ---- wiring ----

  if (window.Sortable) {
    window.Sortable.create(ui.answers, {
      animation: 150,
      handle: ".answer-head",
      filter: "button, input",
      preventOnFilter: false,
      // Pointer-driven dragging behaves the same with a mouse, a pen and a finger.
      forceFallback: true,
      fallbackTolerance: 4,
      ghostClass: "is-ghost",
      chosenClass: "is-chosen",
      dragClass: "is-dragging",
      onEnd: (event) => {
        if (event.oldIndex !== event.newIndex) adoptDomOrder(Number(event.item.dataset.id));
      },
    });
  }

  ui.answers.addEventListener("click", (event) => {
    const card = event.target.closest(".answer-card");
    if (!card) return;
    const answerId = Number(card.dataset.id);
    const move = event.target.closest("[data-move]");
    if (move) moveBy(answerId, move.dataset.move === "up" ? -1 : 1);
    if (event.target.closest("[data-tie]")) toggleTie(answerId);
    if (event.target.closest("[data-expand]")) toggleExpand(card);
  });

  function toggleExpand(card) {
    const body = $("[data-body]", card);
    const expand = $("[data-expand]", card);
    if (expand.hidden) return;
    const collapsed = body.classList.toggle("is-collapsed");
    expand.textContent = collapsed ? "Show all" : "Show less";
    expand.setAttribute("aria-expanded", String(!collapsed));
  }

  ui.notRankable.addEventListener("change", () => {
    ui.work.classList.toggle("is-not-rankable", ui.notRankable.checked);
    saveDraft();
  });
  ui.comment.addEventListener("input", saveDraft);

  ui.work.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  document.addEventListener("click", (event) => {
    const action = event.target.closest("[data-action]");
    if (!action) return;
    const name = action.dataset.action;
    if (name === "skip") skip();
    if (name === "guidelines") ui.guidelines.showModal();
    if (name === "keys") ui.keys.showModal();
    if (name === "close") action.closest("dialog").close();
  });

  // Clicking the backdrop of a dialog closes it.
  [ui.guidelines, ui.keys].forEach((dialog) => {
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
  });

  function focusCard(step) {
    const list = Array.from(ui.answers.children);
    if (!list.length) return;
    const current = document.activeElement.closest ? document.activeElement.closest(".answer-card") : null;
    const index = current ? list.indexOf(current) : -1;
    const target = index === -1 ? 0 : Math.max(0, Math.min(list.length - 1, index + step));
    list[target].focus();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (document.querySelector("dialog[open]")) return;
    const target = event.target;
    const typing = target.matches("textarea, input[type=text], input:not([type]), select, [contenteditable]");
    if (typing) return;
    const key = event.key;
    const card = target.classList && target.classList.contains("answer-card") ? target : null;

    if (key === "Enter") {
      // Buttons, links and the comment toggle keep their own Enter.
      if (target.matches("button, a, summary")) return;
      event.preventDefault();
      submit();
      return;
    }
    if (!assignment || ui.work.hidden) return;

    if (card) {
      const answerId = Number(card.dataset.id);
      if (key === "ArrowUp" || key === "ArrowDown") {
        event.preventDefault();
        moveBy(answerId, key === "ArrowUp" ? -1 : 1);
        return;
      }
      if (/^[1-9]$/.test(key)) {
        event.preventDefault();
        moveTo(answerId, Number(key));
        return;
      }
      if (key === "t" || key === "T") {
        event.preventDefault();
        toggleTie(answerId);
        return;
      }
      if (key === "e" || key === "E") {
        event.preventDefault();
        toggleExpand(card);
        return;
      }
      if (key === "f" || key === "F") {
        const firstFlag = $("[data-flags] input", card);
        if (firstFlag) {
          event.preventDefault();
          firstFlag.focus();
        }
        return;
      }
    }
    const flagBox = target.matches("[data-flags] input") ? target : null;
    if (flagBox) {
      // Within a card's flags: ← → move between labels, Space ticks (the checkbox's own), Esc goes back.
      const boxes = Array.from(flagBox.closest("[data-flags]").querySelectorAll("input"));
      const index = boxes.indexOf(flagBox);
      if (key === "ArrowRight" || key === "ArrowDown" || key === "ArrowLeft" || key === "ArrowUp") {
        event.preventDefault();
        const step = key === "ArrowRight" || key === "ArrowDown" ? 1 : -1;
        boxes[(index + step + boxes.length) % boxes.length].focus();
        return;
      }
      if (key === "Escape") {
        event.preventDefault();
        flagBox.closest(".answer-card").focus();
        return;
      }
    }
    if (key === "j" || key === "J") {
      event.preventDefault();
      focusCard(1);
    } else if (key === "k" || key === "K") {
      event.preventDefault();
      focusCard(-1);
    } else if (key === "s" || key === "S") {
      event.preventDefault();
      skip();
    } else if (key === "n" || key === "N") {
      event.preventDefault();
      ui.notRankable.checked = !ui.notRankable.checked;
      ui.notRankable.dispatchEvent(new Event("change"));
      announce(ui.notRankable.checked ? "Marked: none of these answers is acceptable." : "Unmarked.");
    } else if (key === "g" || key === "G") {
      event.preventDefault();
      ui.guidelines.showModal();
    } else if (key === "?") {
      event.preventDefault();
      ui.keys.showModal();
    }
  });

  if (settings.reopen_url) loadReopened();
  else loadNext();
})();
