// Live updates without a framework: every few seconds, fetch this page again and swap in
// the parts marked data-live (matched by id). Pauses while the tab is hidden.
(function () {
  "use strict";
  var every = 5000;
  function refresh() {
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (answer) {
        if (answer.redirected || !answer.ok) { return null; }
        return answer.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) { old.innerHTML = next.innerHTML; }
        });
        var stamp = document.getElementById("updated");
        if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }
  if (document.querySelector("[data-live]")) { window.setInterval(refresh, every); }
})();
