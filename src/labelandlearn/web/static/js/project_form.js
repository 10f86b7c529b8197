// Project form: add and remove label rows; field names follow WTForms' labels-N-field scheme.

const MAX_LABELS = 50;
const MIN_LABELS = 2;
const PALETTE = ["#d62728", "#7f7f7f", "#2ca02c", "#1f77b4", "#ff7f0e",
  "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];

const body = document.querySelector("#label-rows tbody");
const addButton = document.getElementById("add-label");

function rows() {
  return Array.from(body.querySelectorAll("tr.label-row"));
}

function renumber() {
  rows().forEach((row, index) => {
    row.querySelectorAll("input").forEach((input) => {
      const field = input.name.replace(/^labels-\d+-/, "");
      input.name = `labels-${index}-${field}`;
      input.id = `labels-${index}-${field}`;
    });
  });
  const count = rows().length;
  addButton.disabled = count >= MAX_LABELS;
  body.querySelectorAll(".remove-label").forEach((button) => {
    button.disabled = count <= MIN_LABELS;
  });
}

function addRow() {
  const current = rows();
  if (current.length >= MAX_LABELS) {
    return;
  }
  const row = current[current.length - 1].cloneNode(true);
  row.querySelectorAll("input").forEach((input) => {
    input.value = "";
    input.classList.remove("is-invalid");
  });
  row.querySelector('input[type="color"]').value = PALETTE[current.length % PALETTE.length];
  body.appendChild(row);
  renumber();
  row.querySelector('input[name$="-name"]').focus();
}

body.addEventListener("click", (event) => {
  const button = event.target.closest(".remove-label");
  if (!button || rows().length <= MIN_LABELS) {
    return;
  }
  button.closest("tr").remove();
  renumber();
});
addButton.addEventListener("click", addRow);
renumber();
