// Dashboard: while the embed job runs, show its progress, then reload to show the new counts.
import { pollJob, setProgress } from "./common.js";

const progress = document.getElementById("embeddings-progress");
const statusText = document.getElementById("embeddings-status");

async function follow(jobId) {
  const job = await pollJob(
    jobId,
    (current) => {
      setProgress(progress, current.progress);
      if (current.message) {
        statusText.textContent = `Computing embeddings in the background: ${current.message}.`;
      }
    },
    1000,
  );
  if (job.status === "failed") {
    statusText.textContent = `The embedding job failed: ${job.error}`;
    return;
  }
  window.location.reload();
}

if (progress && progress.dataset.jobId) {
  follow(progress.dataset.jobId).catch((error) => {
    statusText.textContent = `Could not follow the embedding job: ${error.message}`;
  });
}
