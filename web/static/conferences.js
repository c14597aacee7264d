// Live participants: the list is fetched again every few seconds while the page is open.
// Without this script the page still works: reloading it shows the room as it is.
(function () {
  "use strict";
  var box = document.getElementById("conference-live");
  if (!box || !window.fetch) { return; }
  var busy = false;
  function refresh() {
    if (busy || document.hidden || box.contains(document.activeElement)) { return; }
    busy = true;
    fetch(box.getAttribute("data-refresh"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { box.innerHTML = html; } })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  setInterval(refresh, 3000);
})();
