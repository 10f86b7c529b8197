// Dashboard: export buttons start an export job, show its progress, then download the file.
import { apiFetch, pollJob, setProgress } from "./common.js";

const statusBox = document.getElementById("export-status");
const statusText = statusBox.querySelector(".status-text");
const progress = statusBox.querySelector(".progress");

function setStatus(kind, message) {
  statusBox.classList.remove("d-none", "alert-info", "alert-success", "alert-danger");
  statusBox.classList.add(`alert-${kind}`);
  statusText.textContent = message;
}

async function runExport(button) {
  const format = button.dataset.format;
  const name = format === "csv" ? "CSV" : "JSON Lines";
  document.querySelectorAll(".export-button").forEach((other) => {
    other.disabled = true;
  });
  progress.classList.remove("d-none");
  setProgress(progress, 0);
  setStatus("info", `Exporting the labelled items as ${name}…`);
  try {
    const { job_id: jobId } = await apiFetch(
      `/api/v1/projects/${button.dataset.projectId}/exports`, { method: "POST", body: { format } });
    const job = await pollJob(jobId, (current) => setProgress(progress, current.progress));
    if (job.status === "failed") {
      setStatus("danger", `The export failed: ${job.error}`);
      return;
    }
    const url = `/api/v1/exports/${encodeURIComponent(jobId)}/download`;
    const rows = job.result && job.result.rows !== undefined ? `${job.result.rows} rows. ` : "";
    setStatus("success", `Export ready. ${rows}`);
    const link = document.createElement("a");
    link.href = url;
    link.id = "export-download";
    link.className = "alert-link";
    link.textContent = "Download it again";
    statusText.append(link);
    window.location.assign(url);
  } catch (error) {
    setStatus("danger", `The export failed: ${error.message}`);
  } finally {
    progress.classList.add("d-none");
    document.querySelectorAll(".export-button").forEach((other) => {
      other.disabled = false;
    });
  }
}

document.querySelectorAll(".export-button").forEach((button) => {
  button.addEventListener("click", () => runExport(button));
});
