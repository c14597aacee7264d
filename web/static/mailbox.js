// The Mailbox page: select all / clear selection, and a new message becomes old once it is
// played here (as on the phone). Without this script the checkboxes and buttons still work.
(function () {
  "use strict";
  const form = document.getElementById("mailbox-form");
  if (!form) return;
  const boxes = () => Array.from(form.querySelectorAll("input.select"));
  const selectAll = document.getElementById("select-all");
  const clear = document.getElementById("clear-selection");
  selectAll.hidden = false;
  clear.hidden = false;
  selectAll.addEventListener("click", () => boxes().forEach((b) => { b.checked = true; }));
  clear.addEventListener("click", () => boxes().forEach((b) => { b.checked = false; }));

  const token = form.querySelector("input[name=csrf_token]").value;
  form.querySelectorAll("audio[data-heard-url]").forEach((audio) => {
    audio.addEventListener("play", function heard() {
      audio.removeEventListener("play", heard);
      fetch(audio.dataset.heardUrl, {
        method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": token},
      }).then((response) => {
        if (!response.ok) return;
        const row = audio.closest("tr");
        row.classList.remove("new");
        row.classList.add("heard");
        const button = row.querySelector("button.heard");
        if (button) button.remove();
        delete audio.dataset.heardUrl;
      });
    });
  });
})();
