// Labelling screen: one key press labels the shown text, saves it in the background and shows
// the next text from a prefetched queue. All item text is written with textContent.
import { ApiError, apiFetch, newUuid, percent, pollJob, setProgress, showAlert } from "./common.js";

const QUEUE_SIZE = 5;
const REFILL_BELOW = 3;
const PROGRESS_REFRESH_MS = 1000;
const MODEL_REFRESH_MS = 10_000;

const root = document.getElementById("label-root");
const projectId = root.dataset.projectId;
const api = `/api/v1/projects/${projectId}`;
const alertBox = document.getElementById("label-alert");
const textBox = document.getElementById("item-text");
const emptyBox = document.getElementById("item-empty");
const positionText = document.getElementById("item-position");
const saveStatus = document.getElementById("save-status");
const undoButton = document.getElementById("undo-button");
const retrainButton = document.getElementById("retrain-button");
const labelButtons = Array.from(document.querySelectorAll(".label-button"));

const labelsByKey = new Map();
const labelsById = new Map();
for (const button of labelButtons) {
  const label = {
    id: Number(button.dataset.labelId),
    name: button.dataset.name,
    key: button.dataset.key,
    background: button.style.backgroundColor,
    color: button.style.color,
  };
  labelsByKey.set(label.key.toLowerCase(), label);
  labelsById.set(label.id, label);
}

const state = {
  queue: [],
  current: null,
  answerId: null,
  shownAt: 0,
  // True from the first key press on the shown item until the next item is shown, so that a
  // double press or key repeat cannot answer one item twice.
  answering: false,
  undoing: false,
  undosWaiting: 0,
  fetching: null,
  pending: new Map(),
  history: [],
  modelVersions: new Map(),
  // The current model version's id; undefined until the model list has loaded once.
  currentModelId: undefined,
  // Counts prediction refreshes, so that the response to an older one cannot overwrite a newer.
  predictionRefreshes: 0,
  trainingJob: null,
};

function showError(message) {
  showAlert(alertBox, message);
}

function knownIds() {
  const ids = state.queue.map((item) => item.id);
  if (state.current) {
    ids.push(state.current.id);
  }
  ids.push(...state.pending.keys());
  return ids;
}

function fetchMore() {
  if (state.fetching) {
    return state.fetching;
  }
  const exclude = knownIds().join(",");
  const url = `${api}/items/next?limit=${QUEUE_SIZE}&exclude=${encodeURIComponent(exclude)}`;
  state.fetching = apiFetch(url)
    .then((body) => {
      const known = new Set(knownIds());
      let stale = false;
      for (const item of body.items) {
        if (!known.has(item.id)) {
          state.queue.push(item);
          noteModelVersion(item);
          stale = stale || hasStalePrediction(item);
        }
      }
      if (stale) {
        // The server predicted these items before it had loaded the newest model.
        refreshPredictions();
      }
    })
    .catch((error) => showError(`Could not load the next texts: ${error.message}`))
    .finally(() => {
      state.fetching = null;
    });
  return state.fetching;
}

function renderMeta(item) {
  const list = document.getElementById("item-meta");
  const entries = Object.entries(item.meta || {}).filter(([, value]) => value !== null && value !== "");
  if (item.external_id) {
    entries.unshift(["id", item.external_id]);
  }
  const nodes = [];
  for (const [name, value] of entries) {
    const term = document.createElement("dt");
    term.className = "col-sm-4 text-break";
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.className = "col-sm-8";
    detail.textContent = typeof value === "string" ? value : JSON.stringify(value);
    nodes.push(term, detail);
  }
  list.replaceChildren(...nodes);
  document.getElementById("item-meta-empty").classList.toggle("d-none", nodes.length > 0);
}

function renderPrediction(item) {
  const box = document.getElementById("prediction");
  const prediction = item.prediction;
  box.classList.toggle("d-none", !prediction);
  if (!prediction) {
    return;
  }
  const badge = document.getElementById("prediction-label");
  const label = labelsById.get(prediction.label_id);
  badge.textContent = prediction.label;
  badge.style.backgroundColor = label ? label.background : "#6c757d";
  badge.style.color = label ? label.color : "#fff";
  document.getElementById("prediction-confidence").textContent = percent(prediction.confidence);
  const version = state.modelVersions.get(prediction.model_version_id);
  document.getElementById("prediction-model").textContent = version ? `v${version.version}` : "";
}

function render() {
  const item = state.current;
  emptyBox.classList.toggle("d-none", item !== null);
  textBox.classList.toggle("d-none", item === null);
  document.getElementById("meta-card").classList.toggle("d-none", item === null);
  labelButtons.forEach((button) => {
    button.disabled = item === null;
  });
  document.getElementById("skip-button").disabled = item === null;
  if (item === null) {
    positionText.textContent = "";
    document.getElementById("prediction").classList.add("d-none");
    return;
  }
  textBox.textContent = item.text;
  textBox.dataset.itemId = String(item.id);
  positionText.textContent = `Text ${item.external_id ? item.external_id : `#${item.id}`}`;
  renderMeta(item);
  renderPrediction(item);
}

function show(item) {
  state.current = item;
  state.answerId = newUuid();
  state.shownAt = performance.now();
  state.answering = false;
  render();
}

async function showNext() {
  if (state.queue.length === 0) {
    state.current = null;
    positionText.textContent = "Loading…";
    await fetchMore();
  }
  show(state.queue.shift() || null);
  if (state.queue.length < REFILL_BELOW) {
    fetchMore();
  }
}

function updateSaveStatus() {
  const count = state.pending.size;
  saveStatus.textContent = count ? `saving ${count}…` : "all answers saved";
}

function answer(labelId) {
  const item = state.current;
  if (!item || state.answering || state.undoing) {
    return;
  }
  state.answering = true;
  const body = {
    id: state.answerId,
    item_id: item.id,
    label_id: labelId,
    skip: labelId === null,
    duration_ms: Math.round(performance.now() - state.shownAt),
  };
  if (item.prediction) {
    body.predicted_label_id = item.prediction.label_id;
    body.predicted_confidence = item.prediction.confidence;
    body.model_version_id = item.prediction.model_version_id;
  }
  const entry = { item, answerId: body.id, promise: null };
  entry.promise = apiFetch(`${api}/answers`, { method: "POST", body })
    .then(() => scheduleProgress())
    .catch((error) => answerFailed(entry, error))
    .finally(() => {
      state.pending.delete(item.id);
      updateSaveStatus();
      if (state.pending.size === 0) {
        refreshProgress();
      }
    });
  state.pending.set(item.id, entry);
  state.history.push(entry);
  updateSaveStatus();
  showNext();
}

function answerFailed(entry, error) {
  state.history = state.history.filter((other) => other !== entry);
  if (error instanceof ApiError && error.status === 409) {
    // The item already has an answer (another tab, or a retry); nothing to redo.
    showError(`Not saved: ${error.message}`);
    return;
  }
  showError(`Your answer was not saved (${error.message}); the text is back in the queue.`);
  state.queue.unshift(entry.item);
}

async function undo() {
  if (state.undoing) {
    // Presses during an undo request wait their turn, so each undoes one more answer.
    state.undosWaiting += 1;
    return;
  }
  state.undoing = true;
  const last = state.history.pop();
  try {
    // Undo removes the newest stored answer, so every answer sent before must be stored first.
    await Promise.allSettled(Array.from(state.pending.values(), (entry) => entry.promise));
    // Undo names the page's last answer by its id. Answers sent in a row may be stored in
    // another order, so the newest stored answer need not be the last one given.
    const body = last ? { answer_id: last.answerId } : {};
    const result = await apiFetch(`${api}/answers/undo`, { method: "POST", body });
    if (!result.item) {
      state.undosWaiting = 0;
      showError("Nothing to undo: you have no answers in this project.");
      return;
    }
    const item = last && last.item.id === result.item.id ? last.item : result.item;
    if (state.current) {
      state.queue.unshift(state.current);
    }
    show(item);
    scheduleProgress();
  } catch (error) {
    state.undosWaiting = 0;
    showError(`Undo failed: ${error.message}`);
  } finally {
    state.undoing = false;
    if (state.undosWaiting > 0) {
      state.undosWaiting -= 1;
      undo();
    }
  }
}

function isTyping(target) {
  if (!(target instanceof HTMLElement)) {
    return false;
  }
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function onKeyDown(event) {
  if (event.defaultPrevented || event.isComposing || isTyping(event.target)) {
    return;
  }
  const key = event.key;
  if ((event.ctrlKey || event.metaKey) && !event.altKey && key.toLowerCase() === "z") {
    event.preventDefault();
    if (!event.repeat) {
      undo();
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  if (key === "Backspace") {
    event.preventDefault();
    if (!event.repeat) {
      undo();
    }
  } else if (key === " ") {
    event.preventDefault();
    if (!event.repeat) {
      answer(null);
    }
  } else if (key === "?") {
    document.getElementById("key-help").classList.toggle("d-none");
  } else if (labelsByKey.has(key.toLowerCase())) {
    event.preventDefault();
    if (!event.repeat) {
      answer(labelsByKey.get(key.toLowerCase()).id);
    }
  }
}

// ------------------------------------------------------------------ progress and model

let progressTimer = null;
let modelsRefreshedAt = 0;

function scheduleProgress() {
  if (progressTimer === null) {
    progressTimer = setTimeout(() => {
      progressTimer = null;
      refreshProgress();
    }, PROGRESS_REFRESH_MS);
  }
}

async function refreshProgress() {
  try {
    const body = await apiFetch(`${api}/progress`);
    const progress = body.progress;
    document.getElementById("progress-text").textContent =
      `${progress.labelled} / ${progress.total}`;
    const share = progress.total ? progress.labelled / progress.total : 0;
    document.getElementById("progress-bar").style.width = `${(100 * share).toFixed(1)}%`;
    document.querySelectorAll(".per-label-row").forEach((row) => {
      const count = progress.per_label[row.dataset.name];
      row.querySelector(".count").textContent = count === undefined ? "–" : String(count);
    });
    const live = body.live_accuracy;
    document.getElementById("live-accuracy").textContent = percent(live.accuracy);
    // A background retrain (every N answers) may have made a new model meanwhile.
    if (performance.now() - modelsRefreshedAt > MODEL_REFRESH_MS) {
      refreshModels();
    }
    // The server computes the figure over the answers of every labeller of the project.
    document.getElementById("live-accuracy-note").textContent = live.answers
      ? `Suggestions that matched the answer, over the project's last ${live.answers} ` +
        "answers with a suggestion, from all labellers."
      : "Suggestions that matched the answer, over the project's answers from all labellers " +
        "(none yet).";
  } catch (error) {
    showError(`Could not load the progress: ${error.message}`);
  }
}

function noteModelVersion(item) {
  const versionId = item.prediction ? item.prediction.model_version_id : null;
  if (versionId && !state.modelVersions.has(versionId)) {
    refreshModels();
  }
}

async function refreshModels() {
  modelsRefreshedAt = performance.now();
  try {
    const body = await apiFetch(`${api}/models`);
    state.modelVersions = new Map(body.models.map((model) => [model.id, model]));
    const current = body.models.find((model) => model.is_current);
    const status = document.getElementById("model-status");
    const previousModelId = state.currentModelId;
    state.currentModelId = current ? current.id : null;
    if (!current) {
      status.textContent =
        "No model yet. Press Retrain to train the first one; every label needs 2 labelled examples.";
    } else {
      const f1 = current.macro_f1 === null ? "–" : current.macro_f1.toFixed(3);
      status.textContent = `Version ${current.version}, trained on ${current.n_labels} labels: ` +
        `cross-validated macro-F1 ${f1}, accuracy ${percent(current.accuracy)}.`;
    }
    if (previousModelId !== undefined && previousModelId !== state.currentModelId) {
      await refreshPredictions();
    } else if (state.current) {
      renderPrediction(state.current);
    }
  } catch (error) {
    showError(`Could not load the model versions: ${error.message}`);
  }
}

function hasStalePrediction(item) {
  return Boolean(state.currentModelId) && Boolean(item.prediction) &&
    item.prediction.model_version_id !== state.currentModelId;
}

async function refreshPredictions() {
  // The shown and the prefetched items carry the previous model's predictions (or none,
  // before the first model); ask the current model for theirs. The items keep their leases.
  const items = state.current ? [state.current, ...state.queue] : [...state.queue];
  if (items.length === 0) {
    return;
  }
  const refresh = ++state.predictionRefreshes;
  const ids = items.map((item) => item.id).join(",");
  try {
    const body = await apiFetch(`${api}/items/predictions?ids=${encodeURIComponent(ids)}`);
    if (refresh !== state.predictionRefreshes) {
      return;
    }
    const predictions = new Map(body.items.map((entry) => [entry.id, entry.prediction]));
    for (const item of items) {
      if (!predictions.has(item.id)) {
        continue;
      }
      const prediction = predictions.get(item.id);
      if (prediction) {
        item.prediction = prediction;
        noteModelVersion(item);
      } else {
        delete item.prediction;
      }
    }
    if (state.current) {
      renderPrediction(state.current);
    }
  } catch (error) {
    showError(`Could not load the new model's suggestions: ${error.message}`);
  }
}

async function retrain() {
  if (state.trainingJob) {
    return;
  }
  const progress = document.getElementById("train-progress");
  const message = document.getElementById("train-message");
  retrainButton.disabled = true;
  progress.classList.remove("d-none");
  setProgress(progress, 0);
  try {
    const { job_id: jobId } = await apiFetch(`${api}/train`, { method: "POST" });
    state.trainingJob = jobId;
    const job = await pollJob(jobId, (current) => {
      setProgress(progress, current.progress);
      message.textContent = current.message || `training: ${current.status}`;
    });
    if (job.status === "failed") {
      // The server's error is one sentence; the alert adds whether a model stays in use.
      await refreshModels();
      const modelNote = state.currentModelId
        ? "The previous model stays in use."
        : "The project has no model yet.";
      const reason = job.error ? job.error.charAt(0).toUpperCase() + job.error.slice(1) : "";
      showError(`Training failed. ${modelNote} ${reason}`.trim());
      message.textContent = "Training failed.";
    } else {
      // refreshModels also fetches the new model's suggestions for the shown and queued items.
      await refreshModels();
      message.textContent = "Training finished; suggestions now come from the new model.";
    }
  } catch (error) {
    showError(`Training could not start: ${error.message}`);
  } finally {
    state.trainingJob = null;
    retrainButton.disabled = false;
    progress.classList.add("d-none");
  }
}

// ------------------------------------------------------------------ wiring

// A pointer click this soon after an item appears was aimed at the previous item: the next
// item comes from the prefetched queue within milliseconds, so a double-click would
// otherwise answer a text the labeller never saw. Keys are not held back, for fast typists.
const CLICK_GUARD_MS = 300;

function clickTooSoon(event) {
  // event.detail counts the clicks of a multi-click; 0 means a key press activated the button.
  return event.detail > 1 || (event.detail === 1 && performance.now() - state.shownAt < CLICK_GUARD_MS);
}

for (const button of labelButtons) {
  button.addEventListener("click", (event) => {
    // Blur so that a later Space press skips instead of clicking this button again.
    event.currentTarget.blur();
    if (!clickTooSoon(event)) {
      answer(Number(button.dataset.labelId));
    }
  });
}
document.getElementById("skip-button").addEventListener("click", (event) => {
  event.currentTarget.blur();
  if (!clickTooSoon(event)) {
    answer(null);
  }
});
undoButton.addEventListener("click", (event) => {
  event.currentTarget.blur();
  // When the next text is shorter, the buttons move up and Undo can land under a pointer
  // that is still double-clicking a label, which would undo the answer just given.
  if (!clickTooSoon(event)) {
    undo();
  }
});
document.getElementById("help-button").addEventListener("click", () => {
  document.getElementById("key-help").classList.toggle("d-none");
});
document.getElementById("label-alert-close").addEventListener("click", () => showError(""));
// Only users who may train the project's models get the button.
if (retrainButton) {
  retrainButton.addEventListener("click", (event) => {
    event.currentTarget.blur();
    retrain();
  });
}
document.addEventListener("keydown", onKeyDown);
window.addEventListener("beforeunload", (event) => {
  if (state.pending.size > 0) {
    event.preventDefault();
  }
});

refreshModels().then(() => showNext());
refreshProgress();
