// The device page's recent commands stay current while a command is under way: every few seconds, as long as a
// row is pending or sent, the list is fetched again from the server (<device>/commands/, the same template the page
// rendered) and replaces the one shown. Nothing runs when no command is under way; a page opened later starts
// again. Loaded from the page's extrahead: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var UNDER_WAY = '[data-command-status="pending"], [data-command-status="sent"]';
  var MAX_FAILURES = 5;

  function underWay(box) {
    return box.querySelector(UNDER_WAY) !== null;
  }

  function watch(box) {
    var url = box.dataset.refreshUrl;
    var period = (parseInt(box.dataset.refreshSeconds, 10) || 4) * 1000;
    var failures = 0;

    function schedule() {
      if (underWay(box) && failures < MAX_FAILURES) {
        window.setTimeout(poll, period * (failures + 1));
      }
    }

    function poll() {
      if (document.hidden) {
        // A tab in the background asks nothing; it looks again once shown.
        document.addEventListener("visibilitychange", poll, { once: true });
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" }, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          failures = 0;
          box.innerHTML = html;
          if (window.rmmConsole) window.rmmConsole.refreshTimes();
        })
        .catch(function () {
          failures += 1;
        })
        .then(schedule);
    }

    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("recent-commands");
    if (box && box.dataset.refreshUrl) watch(box);
  });
})();
