// The console's own script (the only one besides htmx): a JSON file chosen
// in a form is read into the form's text area, to check and send as pasted.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.dataset.into) return;
  const file = input.files && input.files[0];
  const area = input.form && input.form.elements.namedItem(input.dataset.into);
  if (!file || !area) return;
  file.text().then((text) => { area.value = text; });
});
