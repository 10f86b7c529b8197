// Import page: upload with progress, show what was detected, map columns, run the import job.
import { apiFetch, csrfToken, errorMessage, pollJob, setProgress, showAlert } from "./common.js";

const root = document.getElementById("import-root");
const projectId = root.dataset.projectId;
const errorBox = document.getElementById("import-error");
const fileInput = document.getElementById("file-input");
const uploadButton = document.getElementById("upload-button");
const uploadProgress = document.getElementById("upload-progress");
const stepMap = document.getElementById("step-map");
const stepImport = document.getElementById("step-import");
const textSelect = document.getElementById("text-column");
const idSelect = document.getElementById("id-column");
const labelSelect = document.getElementById("label-column");
const importButton = document.getElementById("import-button");
const FORMAT_NAMES = { csv: "CSV", tsv: "TSV", json: "JSON", jsonl: "JSON Lines",
  parquet: "Parquet", xlsx: "Excel (.xlsx)" };

let upload = null;

function fail(message) {
  showAlert(errorBox, message);
  if (message) {
    errorBox.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }
}

function uploadFile(file) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const url = `/api/v1/projects/${projectId}/uploads?filename=${encodeURIComponent(file.name)}`;
    request.open("POST", url);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        const fraction = event.loaded / event.total;
        setProgress(uploadProgress, fraction, `${Math.round(fraction * 100)}%`);
      }
    });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = null;
      }
      if (request.status >= 200 && request.status < 300) {
        resolve(body);
      } else {
        reject(new Error(errorMessage(request.status, body)));
      }
    });
    request.addEventListener("error", () => reject(new Error("the upload failed: the server did not respond")));
    request.send(file);
  });
}

function fillSelect(select, columns, chosen, optional) {
  select.replaceChildren();
  if (optional) {
    select.append(new Option("(none)", ""));
  }
  for (const column of columns) {
    select.append(new Option(column, column));
  }
  select.value = columns.includes(chosen) ? chosen : (optional ? "" : columns[0]);
}

function guessTextColumn(info) {
  const preferred = [root.dataset.textColumn, "text", "Text", "tweet", "content", "body", "message"];
  const found = preferred.find((name) => name && info.columns.includes(name));
  if (found) {
    return found;
  }
  // Otherwise the column with the longest values in the preview.
  let best = info.columns[0];
  let bestLength = -1;
  for (const column of info.columns) {
    const length = info.preview.reduce((sum, row) => sum + (row[column] || "").length, 0);
    if (length > bestLength) {
      best = column;
      bestLength = length;
    }
  }
  return best;
}

function renderPreview(info) {
  const table = document.getElementById("preview-table");
  const headRow = document.createElement("tr");
  for (const column of info.columns) {
    const cell = document.createElement("th");
    cell.textContent = column;
    headRow.append(cell);
  }
  table.tHead.replaceChildren(headRow);
  const rows = info.preview.map((values) => {
    const row = document.createElement("tr");
    for (const column of info.columns) {
      const cell = document.createElement("td");
      cell.textContent = values[column] ?? "";
      row.append(cell);
    }
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
}

function renderFacts(info) {
  document.getElementById("fact-filename").textContent =
    `${info.filename} (${(info.size / 1024).toFixed(1)} KiB)`;
  document.getElementById("fact-format").textContent =
    (FORMAT_NAMES[info.format] || info.format) +
    (info.delimiter && info.delimiter !== "," ? `, delimiter ${JSON.stringify(info.delimiter)}` : "");
  document.getElementById("fact-encoding").textContent = info.encoding || "binary format";
  document.getElementById("fact-columns").textContent = info.columns.join(", ");
}

function labelSelectFor(value) {
  const template = document.getElementById("label-select-template");
  const select = template.content.firstElementChild.cloneNode(true);
  select.dataset.value = value;
  select.setAttribute("aria-label", `label for value ${value}`);
  const match = Array.from(select.options).find(
    (option) => option.value && option.value.toLowerCase() === value.toLowerCase());
  select.value = match ? match.value : "";
  return select;
}

function renderLabelMap() {
  const box = document.getElementById("label-map-box");
  const column = labelSelect.value;
  const tbody = document.querySelector("#label-map-table tbody");
  tbody.replaceChildren();
  box.classList.toggle("d-none", !column);
  if (!column) {
    return;
  }
  const values = upload.values[column];
  document.getElementById("label-map-unknown").classList.toggle("d-none", values !== null);
  document.getElementById("label-map-table").classList.toggle("d-none", values === null);
  for (const value of values || []) {
    const row = document.createElement("tr");
    const valueCell = document.createElement("td");
    const code = document.createElement("code");
    code.textContent = value;
    valueCell.append(code);
    const selectCell = document.createElement("td");
    selectCell.append(labelSelectFor(value));
    row.append(valueCell, selectCell);
    tbody.append(row);
  }
}

function showMapping(info) {
  upload = info;
  renderFacts(info);
  renderPreview(info);
  fillSelect(textSelect, info.columns, guessTextColumn(info), false);
  fillSelect(idSelect, info.columns, root.dataset.idColumn, true);
  fillSelect(labelSelect, info.columns, root.dataset.labelColumn, true);
  renderLabelMap();
  stepMap.classList.remove("d-none");
  importButton.disabled = false;
}

async function onUpload() {
  const file = fileInput.files[0];
  if (!file) {
    return;
  }
  fail("");
  stepMap.classList.add("d-none");
  stepImport.classList.add("d-none");
  const limitMb = Number(root.dataset.maxUploadMb);
  if (file.size > limitMb * 1024 * 1024) {
    fail(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB, over the upload limit of ${limitMb} MB; split the file.`);
    return;
  }
  uploadButton.disabled = true;
  uploadProgress.classList.remove("d-none");
  setProgress(uploadProgress, 0, "0%");
  try {
    const info = await uploadFile(file);
    setProgress(uploadProgress, 1, "uploaded");
    showMapping(info);
  } catch (error) {
    uploadProgress.classList.add("d-none");
    fail(`${file.name} cannot be imported: ${error.message}`);
  } finally {
    uploadButton.disabled = false;
  }
}

function labelMap() {
  // "(no label)" is sent as an empty name: the rows with that value import unlabelled.
  const map = {};
  document.querySelectorAll("#label-map-table select").forEach((select) => {
    map[select.dataset.value] = select.value;
  });
  return map;
}

function labelColumnToImport() {
  const column = labelSelect.value;
  if (!column || upload.values[column] === null) {
    return column || null;
  }
  // With every value of the column mapped to "(no label)", the column labels no row. Sent as
  // the label column, each value that is no label name would reject its row, so the column is
  // imported as an ordinary column and the rows arrive unlabelled.
  const selects = Array.from(document.querySelectorAll("#label-map-table select"));
  if (selects.length > 0 && selects.every((select) => !select.value)) {
    return null;
  }
  return column;
}

function showReport(result) {
  document.getElementById("import-report").classList.remove("d-none");
  document.getElementById("import-summary").textContent =
    `Imported ${result.rows_imported} of ${result.rows_read} rows from ${result.filename}` +
    (result.rows_labelled ? `, ${result.rows_labelled} of them labelled.` : ".");
  const counts = [
    ["Rows with errors (not imported)", result.rows_with_errors],
    ["Duplicate texts skipped", result.duplicates_skipped],
    ["Duplicate texts kept", result.duplicates_kept],
  ];
  document.getElementById("import-counts").replaceChildren(...counts.map(([name, value]) => {
    const item = document.createElement("li");
    item.textContent = `${name}: ${value}`;
    return item;
  }));
  const errors = result.row_errors || [];
  document.getElementById("row-errors-box").classList.toggle("d-none", errors.length === 0);
  document.querySelector("#row-errors tbody").replaceChildren(...errors.map((error) => {
    const row = document.createElement("tr");
    const line = document.createElement("td");
    line.textContent = String(error.line);
    const reason = document.createElement("td");
    reason.textContent = error.reason;
    row.append(line, reason);
    return row;
  }));
}

async function onImport() {
  fail("");
  importButton.disabled = true;
  const progress = document.getElementById("import-progress");
  const message = document.getElementById("import-message");
  const labelColumn = labelColumnToImport();
  const body = {
    upload_id: upload.upload_id,
    text_column: textSelect.value,
    id_column: idSelect.value || null,
    label_column: labelColumn,
    label_map: labelColumn ? labelMap() : null,
    duplicates: document.querySelector('input[name="duplicates"]:checked').value,
  };
  try {
    const { job_id: jobId } = await apiFetch(`/api/v1/projects/${projectId}/imports`, { method: "POST", body });
    stepImport.classList.remove("d-none");
    document.getElementById("import-report").classList.add("d-none");
    const job = await pollJob(jobId, (state) => {
      setProgress(progress, state.progress);
      message.textContent = state.message || state.status;
    });
    if (job.status === "failed") {
      fail(`The import failed and nothing was imported: ${job.error}`);
      stepImport.classList.add("d-none");
      importButton.disabled = false;
      return;
    }
    setProgress(progress, 1);
    progress.querySelector(".progress-bar").classList.remove("progress-bar-animated");
    stepMap.classList.add("d-none");
    showReport(job.result || {});
  } catch (error) {
    fail(error.message);
    importButton.disabled = false;
  }
}

fileInput.addEventListener("change", () => {
  uploadButton.disabled = fileInput.files.length === 0;
});
uploadButton.addEventListener("click", onUpload);
labelSelect.addEventListener("change", renderLabelMap);
importButton.addEventListener("click", onImport);
document.getElementById("import-another").addEventListener("click", () => {
  stepImport.classList.add("d-none");
  uploadProgress.classList.add("d-none");
  fileInput.value = "";
  uploadButton.disabled = true;
  fileInput.focus();
});
